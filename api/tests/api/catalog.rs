//! Theaters, screens, showtimes, seat maps, listings and the cache.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, connect, spawn_app, spawn_app_with, TestApp};

pub fn layout(rows: usize, seats: usize) -> Value {
    let letters = ["A", "B", "C", "D", "E", "F", "G", "H", "J", "K"];
    json!({"rows": (0..rows).map(|r| json!({
        "label": letters[r],
        "seats": (0..seats).map(|s| {
            let kind = match (r, s) {
                (0, 0) => "wheelchair",
                (0, 1) => "companion",
                (_, _) if r + 1 == rows => "premium",
                _ => "standard",
            };
            // An aisle after the fourth seat.
            json!({"number": (s + 1).to_string(), "column": s + 1 + usize::from(s >= 4), "kind": kind})
        }).collect::<Vec<_>>()
    })).collect::<Vec<_>>()})
}

pub fn prices() -> Value {
    json!([
        {"kind": "standard", "amount_minor": 1200},
        {"kind": "premium", "amount_minor": 1600},
        {"kind": "wheelchair", "amount_minor": 1200},
        {"kind": "companion", "amount_minor": 1200}
    ])
}

pub async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(app.admin_token())
        .json(&body)
        .send()
        .await
        .expect("answer")
}

pub async fn created(response: reqwest::Response) -> Value {
    assert_eq!(response.status().as_u16(), 201, "not created");
    response.json().await.expect("json")
}

pub fn id_of(value: &Value) -> Uuid {
    value["id"].as_str().expect("id").parse().expect("uuid")
}

pub async fn theater(app: &TestApp, name: &str, city: &str, lat: f64, lon: f64) -> Uuid {
    let hours: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|day| json!({"day": day, "opens": "06:00", "closes": "02:00"}))
        .collect();
    theater_with_hours(app, name, city, lat, lon, hours).await
}

/// A theater that publishes no hours, so it is open whenever a test runs.
pub async fn theater_always_open(
    app: &TestApp,
    name: &str,
    city: &str,
    lat: f64,
    lon: f64,
) -> Uuid {
    theater_with_hours(app, name, city, lat, lon, Vec::new()).await
}

async fn theater_with_hours(
    app: &TestApp,
    name: &str,
    city: &str,
    lat: f64,
    lon: f64,
    hours: Vec<Value>,
) -> Uuid {
    let body = json!({
        "name": name, "country": "US", "region": "MA", "city": city,
        "street": "1 Main St", "postcode": "02108", "latitude": lat, "longitude": lon,
        "timezone": "America/New_York",
        "opening_hours": hours
    });
    id_of(&created(admin(app, reqwest::Method::POST, "/v1/admin/theaters", body).await).await)
}

pub async fn screen(app: &TestApp, theater: Uuid, rows: usize, seats: usize) -> Uuid {
    let body = json!({"name": format!("Screen {rows}x{seats}"), "layout": layout(rows, seats)});
    let path = format!("/v1/admin/theaters/{theater}/screens");
    id_of(&created(admin(app, reqwest::Method::POST, &path, body).await).await)
}

pub async fn movie(app: &TestApp, title: &str, runtime: i32, release: &str) -> Uuid {
    let body = json!({"title": title, "genres": ["drama"], "runtime_minutes": runtime,
        "release_date": release, "cast": ["Ada Lovelace"], "synopsis": "A story."});
    id_of(&created(app.create_movie(body).await).await)
}

pub fn showtime_body(movie: Uuid, theater: Uuid, screen: Uuid, starts_at: DateTime<Utc>) -> Value {
    json!({"movie_id": movie, "theater_id": theater, "screen_id": screen,
        "starts_at": starts_at.to_rfc3339(), "format": "2d", "language": "en",
        "currency": "USD", "prices": prices()})
}

pub async fn schedule(app: &TestApp, body: Value) -> reqwest::Response {
    admin(app, reqwest::Method::POST, "/v1/admin/showtimes", body).await
}

/// A whole hour some days ahead, so tests never race the clock.
pub fn later(days: i64, hour: u32) -> DateTime<Utc> {
    (Utc::now() + Duration::days(days))
        .date_naive()
        .and_hms_opt(hour, 0, 0)
        .expect("time")
        .and_utc()
}

pub async fn count(app: &TestApp, table: &str) -> i64 {
    let mut total = 0;
    for shard in &app.schema.settings.database.shards {
        let client = connect(&shard.primary).await.expect("connect");
        let row = client
            .query_one(
                &format!("select count(*) from {}.{table}", app.schema.name),
                &[],
            )
            .await
            .expect("count");
        total += row.get::<_, i64>(0);
    }
    total
}

#[tokio::test]
async fn an_admin_schedules_a_showtime_whose_end_is_derived_and_whose_seat_map_is_live() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 5, 8).await;
    let movie = movie(&app, "Heat", 170, "1995-12-15").await;
    let starts = later(2, 18);
    let mut body = showtime_body(movie, theater, screen, starts);
    body["blocked_seats"] = json!(["C-5"]);
    let showtime = created(schedule(&app, body).await).await;
    let ends: DateTime<Utc> = showtime["ends_at"]
        .as_str()
        .expect("end")
        .parse()
        .expect("time");
    assert_eq!(
        ends - starts,
        Duration::minutes(170 + 20),
        "runtime plus turnaround"
    );
    assert_eq!(showtime["capacity"], 40);
    assert_eq!(showtime["seats_available"], 39);

    let id = id_of(&showtime);
    let map: Value = app
        .get(&format!("/v1/showtimes/{id}/seats"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(map["counts"]["free"], 39);
    assert_eq!(map["counts"]["blocked"], 1);
    let seats: Vec<&Value> = map["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| row["seats"].as_array().expect("seats"))
        .collect();
    let blocked = seats.iter().find(|s| s["id"] == "C-5").expect("C-5");
    assert_eq!(blocked["status"], "blocked");
    let premium = seats.iter().find(|s| s["id"] == "E-1").expect("E-1");
    assert_eq!(
        (premium["kind"].as_str(), premium["price_minor"].as_i64()),
        (Some("premium"), Some(1600))
    );
    assert_eq!(
        seats.iter().find(|s| s["id"] == "A-5").expect("A-5")["column"],
        6,
        "aisle kept"
    );
    assert_eq!(map["bookable"], true);
}

#[tokio::test]
async fn an_overlapping_showtime_on_the_same_screen_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let busy = screen(&app, theater, 3, 6).await;
    let first = movie(&app, "Heat", 170, "1995-12-15").await;
    let second = movie(&app, "Alien", 117, "1979-05-25").await;
    created(schedule(&app, showtime_body(first, theater, busy, later(3, 12))).await).await;

    // 14:00 is inside 12:00 + 170 min + 20 min turnaround.
    let clash = schedule(&app, showtime_body(second, theater, busy, later(3, 14))).await;
    let problem = assert_problem(clash, 409).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("screen is taken"));
    assert_eq!(count(&app, "showtimes").await, 1);
    assert_eq!(count(&app, "screen_slots").await, 1);

    // Right after the turnaround the screen is free again.
    created(schedule(&app, showtime_body(second, theater, busy, later(3, 16))).await).await;
    // Another screen at the same time is fine.
    let other = screen(&app, theater, 2, 5).await;
    created(schedule(&app, showtime_body(second, theater, other, later(3, 12))).await).await;
}

#[tokio::test]
async fn bad_showtimes_get_a_422_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 3, 6).await;
    let future_release = (Utc::now() + Duration::days(60)).date_naive().to_string();
    let unreleased = movie(&app, "Sequel", 100, &future_release).await;
    let released = movie(&app, "Original", 100, "2001-01-01").await;

    let before_release = schedule(
        &app,
        showtime_body(unreleased, theater, screen, later(5, 12)),
    )
    .await;
    let problem = assert_problem(before_release, 422).await;
    assert_eq!(problem["errors"][0]["field"], "starts_at");

    let mut outside = showtime_body(released, theater, screen, later(5, 12));
    outside["blocked_seats"] = json!(["Z-99"]);
    let problem = assert_problem(schedule(&app, outside).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "blocked_seats[0]");

    let mut unpriced = showtime_body(released, theater, screen, later(5, 12));
    unpriced["prices"] = json!([{"kind": "standard", "amount_minor": 1000}]);
    let problem = assert_problem(schedule(&app, unpriced).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "prices");

    let past = schedule(
        &app,
        showtime_body(released, theater, screen, Utc::now() - Duration::hours(1)),
    )
    .await;
    assert_problem(past, 422).await;

    // 08:00 UTC is 03:00 in Boston, after the theater closes at 02:00.
    let closed = schedule(&app, showtime_body(released, theater, screen, later(5, 8))).await;
    let problem = assert_problem(closed, 422).await;
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("closed"));

    let unknown_screen = schedule(
        &app,
        showtime_body(released, theater, Uuid::now_v7(), later(5, 12)),
    )
    .await;
    assert_problem(unknown_screen, 404).await;
    assert_eq!(count(&app, "showtimes").await, 0);
    assert_eq!(count(&app, "screen_slots").await, 0);
}

#[tokio::test]
async fn an_invalid_layout_names_every_offending_seat() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let mut bad = layout(2, 4);
    bad["rows"][0]["seats"][1]["kind"] = json!("standard");
    bad["rows"][1]["label"] = json!("A");
    let path = format!("/v1/admin/theaters/{theater}/screens");
    let response = admin(
        &app,
        reqwest::Method::POST,
        &path,
        json!({"name": "Bad", "layout": bad}),
    )
    .await;
    let problem = assert_problem(response, 422).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        vec!["layout.rows[0].seats[0].kind", "layout.rows[1].label"]
    );
    assert_eq!(count(&app, "screens").await, 0);
}

#[tokio::test]
async fn movie_details_group_showtimes_by_theater_and_local_day_and_hide_shows_under_way() {
    let app = spawn_app().await;
    // Open around the clock: the show under way starts whenever the test
    // runs.
    let boston = theater_always_open(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, boston, 3, 6).await;
    let movie = movie(&app, "Heat", 100, "1995-12-15").await;
    // 03:00 UTC is the previous evening in Boston.
    created(schedule(&app, showtime_body(movie, boston, screen, later(2, 3))).await).await;
    created(schedule(&app, showtime_body(movie, boston, screen, later(2, 18))).await).await;
    // A show under way, written below the API, which refuses past starts.
    let running = app
        .state
        .storage
        .create_showtime(&marquee_storage::NewShowtimeRequest {
            movie_id: movie,
            theater_id: boston,
            screen_id: screen,
            starts_at: Utc::now() - Duration::minutes(10),
            format: "2d".into(),
            language: "en".into(),
            currency: "USD".into(),
            prices: [
                marquee_storage::layout::SeatKind::Standard,
                marquee_storage::layout::SeatKind::Premium,
                marquee_storage::layout::SeatKind::Wheelchair,
                marquee_storage::layout::SeatKind::Companion,
            ]
            .into_iter()
            .map(|k| (k, 1000))
            .collect(),
            blocked_seats: Vec::new(),
            turnaround: Duration::minutes(20),
        })
        .await
        .expect("scheduled");

    let details: Value = app
        .get(&format!("/v1/movies/{movie}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(details["title"], "Heat");
    assert_eq!(details["cast"][0], "Ada Lovelace");
    let days = details["theaters"][0]["days"].as_array().expect("days");
    let expected_day = (later(2, 3) - Duration::hours(5)).date_naive().to_string();
    assert_eq!(days.len(), 2, "{details}");
    assert_eq!(days[0]["date"], expected_day);
    assert!(days
        .iter()
        .flat_map(|d| d["showtimes"].as_array().expect("list"))
        .all(|s| s["in_progress"] == false));

    let with: Value = app
        .get(&format!("/v1/movies/{movie}?include_in_progress=true"))
        .await
        .json()
        .await
        .expect("json");
    let first = &with["theaters"][0]["days"][0]["showtimes"][0];
    assert_eq!(first["id"], running.id.to_string());
    assert_eq!(
        (first["in_progress"].as_bool(), first["bookable"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(first["warning"].is_string());

    let refused = app.get(&format!("/v1/showtimes/{}", running.id)).await;
    assert_problem(refused, 409).await;
    let shown: Value = app
        .get(&format!(
            "/v1/showtimes/{}?include_in_progress=true",
            running.id
        ))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["in_progress"], true);
    assert!(shown["warning"].is_string());
}

#[tokio::test]
async fn theaters_are_found_by_city_or_nearest_first_within_a_radius() {
    let app = spawn_app().await;
    let downtown = theater(&app, "Downtown", "Boston", 42.355, -71.060).await;
    let cambridge = theater(&app, "Cambridge", "Cambridge", 42.373, -71.119).await;
    theater(&app, "Worcester", "Worcester", 42.262, -71.802).await;

    let near: Value = app
        .get("/v1/theaters?lat=42.356&lon=-71.062&radius_km=10")
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = near["theaters"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, vec![downtown.to_string(), cambridge.to_string()]);
    assert!(
        near["theaters"][0]["distance_km"]
            .as_f64()
            .expect("distance")
            < 1.0
    );

    let city: Value = app
        .get("/v1/theaters?city=boston")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(city["theaters"].as_array().expect("list").len(), 1);

    assert_problem(app.get("/v1/theaters?lat=42").await, 422).await;
    assert_problem(
        app.get("/v1/theaters?lat=42&lon=-71&radius_km=9000").await,
        400,
    )
    .await;
    assert_problem(app.get("/v1/theaters").await, 422).await;
}

#[tokio::test]
async fn the_movie_list_pages_through_every_shard_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let mut expected = Vec::new();
    for n in 0..23 {
        let title = format!("Film {n:02}");
        let genre = if n % 2 == 0 { "drama" } else { "comedy" };
        let response = app
            .create_movie(json!({"title": title, "genres": [genre]}))
            .await;
        created(response).await;
        expected.push(title);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/movies?limit=5&cursor={c}"),
            None => "/v1/movies?limit=5".to_owned(),
        };
        let page: Value = app.get(&path).await.json().await.expect("json");
        seen.extend(
            page["movies"]
                .as_array()
                .expect("movies")
                .iter()
                .filter_map(|m| m["title"].as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    let dramas: Value = app
        .get("/v1/movies?genre=drama&limit=100")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(dramas["movies"].as_array().expect("movies").len(), 12);
    assert_problem(app.get("/v1/movies?genre=opera").await, 400).await;
    assert_problem(app.get("/v1/movies?cursor=zz.nope").await, 422).await;
    assert_problem(
        app.get("/v1/movies?released_from=2001-01-01&released_to=2000-01-01")
            .await,
        422,
    )
    .await;
}

#[tokio::test]
async fn cached_details_are_invalidated_when_a_showtime_is_added() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 3, 6).await;
    let movie = movie(&app, "Heat", 100, "1995-12-15").await;
    let before: Value = app
        .get(&format!("/v1/movies/{movie}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(before["theaters"].as_array().expect("theaters").len(), 0);
    created(schedule(&app, showtime_body(movie, theater, screen, later(1, 18))).await).await;
    let after: Value = app
        .get(&format!("/v1/movies/{movie}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        after["theaters"].as_array().expect("theaters").len(),
        1,
        "stale cache served"
    );
    let hits = app.get("/metrics").await.text().await.expect("text");
    assert!(hits.contains("marquee_cache_lookups_total{kind=\"movie\",outcome=\"miss\"}"));
}

#[tokio::test]
async fn requests_succeed_from_the_database_when_redis_is_down() {
    let app = spawn_app_with(|settings| {
        settings.redis.url = "redis://127.0.0.1:1/".to_owned().into();
    })
    .await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 3, 6).await;
    let movie = movie(&app, "Heat", 100, "1995-12-15").await;
    let showtime =
        created(schedule(&app, showtime_body(movie, theater, screen, later(1, 18))).await).await;
    let id = id_of(&showtime);
    for _ in 0..3 {
        assert_eq!(
            app.get(&format!("/v1/movies/{movie}"))
                .await
                .status()
                .as_u16(),
            200
        );
        assert_eq!(
            app.get(&format!("/v1/showtimes/{id}/seats"))
                .await
                .status()
                .as_u16(),
            200
        );
        assert_eq!(
            app.get(&format!("/v1/showtimes/{id}"))
                .await
                .status()
                .as_u16(),
            200
        );
    }
}

#[tokio::test]
async fn deleting_is_refused_while_something_depends_on_it_and_frees_the_screen_after() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 3, 6).await;
    let movie = movie(&app, "Heat", 100, "1995-12-15").await;
    let showtime = id_of(
        &created(schedule(&app, showtime_body(movie, theater, screen, later(1, 18))).await).await,
    );

    let app = &app;
    let delete =
        |path: String| async move { admin(app, reqwest::Method::DELETE, &path, json!({})).await };
    assert_problem(delete(format!("/v1/admin/movies/{movie}")).await, 409).await;
    assert_problem(
        delete(format!("/v1/admin/theaters/{theater}/screens/{screen}")).await,
        409,
    )
    .await;
    assert_problem(delete(format!("/v1/admin/theaters/{theater}")).await, 409).await;

    assert_eq!(
        delete(format!("/v1/admin/showtimes/{showtime}"))
            .await
            .status()
            .as_u16(),
        204
    );
    assert_problem(app.get(&format!("/v1/showtimes/{showtime}")).await, 404).await;
    created(schedule(app, showtime_body(movie, theater, screen, later(1, 18))).await).await;
}

#[tokio::test]
async fn a_moved_movie_takes_its_showtimes_and_seat_maps_along() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 3, 6).await;
    let movie = movie(&app, "Heat", 100, "1995-12-15").await;
    let mut body = showtime_body(movie, theater, screen, later(1, 18));
    body["blocked_seats"] = json!(["B-2"]);
    let showtime = id_of(&created(schedule(&app, body).await).await);
    let home = app
        .state
        .storage
        .movie_node(movie)
        .expect("routable")
        .to_string();
    let target = ["shard-0", "shard-1", "shard-2"]
        .into_iter()
        .find(|n| *n != home)
        .expect("node");

    let moved = admin(
        &app,
        reqwest::Method::PUT,
        &format!("/v1/admin/movies/{movie}/placement"),
        json!({"node": target}),
    )
    .await;
    assert_eq!(moved.status().as_u16(), 200);
    let map: Value = app
        .get(&format!("/v1/showtimes/{showtime}/seats"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(map["counts"]["blocked"], 1);
    assert_eq!(
        app.state
            .storage
            .movie_node(movie)
            .expect("routable")
            .to_string(),
        target
    );
    assert_eq!(
        count(&app, "showtimes").await,
        1,
        "copied once, source cleaned up"
    );
    assert_eq!(count(&app, "seat_states").await, 1);

    let back = admin(
        &app,
        reqwest::Method::PUT,
        &format!("/v1/admin/movies/{movie}/placement"),
        json!({"node": home}),
    )
    .await;
    assert_eq!(back.status().as_u16(), 200);
    assert_eq!(
        app.get(&format!("/v1/showtimes/{showtime}"))
            .await
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn seeding_twice_writes_the_same_catalogue_once() {
    let app = spawn_app().await;
    let scale = marquee::seed::Scale {
        movies: Some(200),
        cities: 2,
        theaters_per_city: 2,
        screens_per_theater: 2,
        days: 2,
        now_playing: 20,
        showtime_batch: 5_000,
    };
    let settings = &app.schema.settings;
    let run = || {
        marquee::seed::run(
            &app.state.storage,
            &settings.seed.movies_path,
            &settings.seed.places_path,
            &scale,
            settings.catalog.turnaround_minutes,
        )
    };
    let first = run().await.expect("first seed");
    let counts = (
        count(&app, "theaters").await,
        count(&app, "screens").await,
        count(&app, "showtimes").await,
    );
    let second = run().await.expect("second seed");
    assert_eq!(first, second);
    assert_eq!((first.theaters, first.screens), (4, 8));
    assert!(
        first.showtimes >= 8 * 2 * 3,
        "only {} showtimes",
        first.showtimes
    );
    assert_eq!(
        counts,
        (4, 8, i64::try_from(first.showtimes).expect("fits"))
    );
    assert_eq!(
        (
            count(&app, "theaters").await,
            count(&app, "screens").await,
            count(&app, "showtimes").await
        ),
        counts,
        "nothing duplicated"
    );
    // A seeded showtime is reached by its id alone.
    let mut future = None;
    for shard in &settings.database.shards {
        let client = connect(&shard.primary).await.expect("connect");
        let sql = format!(
            "select id from {}.showtimes where starts_at > now() + interval '1 hour' limit 1",
            app.schema.name
        );
        if let Some(row) = client.query_opt(&sql, &[]).await.expect("query") {
            future = Some(row.get::<_, Uuid>(0));
        }
    }
    let id = future.expect("a future showtime");
    let map: Value = app
        .get(&format!("/v1/showtimes/{id}/seats"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(map["showtime_id"], id.to_string());
    assert!(map["counts"]["free"].as_u64().expect("free") > 50);
}

#[tokio::test]
async fn a_release_date_cannot_move_past_a_scheduled_showtime() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 3, 6).await;
    let movie = movie(&app, "Heat", 100, "1995-12-15").await;
    created(schedule(&app, showtime_body(movie, theater, screen, later(3, 18))).await).await;
    let later_release = (Utc::now() + Duration::days(30)).date_naive().to_string();
    let body = json!({"title": "Heat", "genres": ["drama"], "runtime_minutes": 100, "release_date": later_release});
    let response = admin(
        &app,
        reqwest::Method::PUT,
        &format!("/v1/admin/movies/{movie}"),
        body,
    )
    .await;
    assert_problem(response, 409).await;
    let details: Value = app
        .get(&format!("/v1/movies/{movie}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(details["release_date"], "1995-12-15", "nothing changed");
}

#[tokio::test]
async fn admins_racing_for_one_screen_slot_get_exactly_one_showtime() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 3, 6).await;
    let mut movies = Vec::new();
    for n in 0..6 {
        movies.push(movie(&app, &format!("Contender {n}"), 100, "2001-01-01").await);
    }
    // Six different movies, each asking for the screen at overlapping times.
    let attempts = movies.iter().enumerate().map(|(n, movie)| {
        let starts = later(4, 18) + Duration::minutes(10 * n as i64);
        schedule(&app, showtime_body(*movie, theater, screen, starts))
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(count(&app, "showtimes").await, 1);
    assert_eq!(count(&app, "screen_slots").await, 1);
}

#[tokio::test]
async fn a_reservation_left_by_a_crash_is_cleared_when_it_next_blocks_a_request() {
    let app = spawn_app().await;
    let theater = theater(&app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(&app, theater, 3, 6).await;
    let movie = movie(&app, "Heat", 100, "1995-12-15").await;
    let starts = later(2, 18);
    // A reservation whose showtime was never written, as a crash between
    // the two writes leaves it.
    let node = app
        .state
        .storage
        .cluster()
        .route(theater.as_bytes())
        .expect("routed");
    let orphan = Uuid::now_v7();
    connect(
        &app.schema
            .settings
            .database
            .shards
            .iter()
            .find(|s| s.name == node.id().as_str())
            .expect("shard")
            .primary,
    )
    .await
    .expect("connect")
    .execute(
        &format!(
            "insert into {}.screen_slots (screen_id, showtime_id, starts_at, ends_at, created_at) \
                 values ($1, $2, $3, $4, now() - interval '5 minutes')",
            app.schema.name
        ),
        &[&screen, &orphan, &starts, &(starts + Duration::hours(2))],
    )
    .await
    .expect("orphan written");

    created(schedule(&app, showtime_body(movie, theater, screen, starts)).await).await;
    assert_eq!(
        count(&app, "screen_slots").await,
        1,
        "the orphan was replaced"
    );
}
