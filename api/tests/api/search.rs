//! Search over movies and showtimes, kept fresh from the change stream.

use std::time::{Duration, Instant};

use marquee::startup::Application;
use serde_json::{json, Value};

use crate::catalog::{admin, later, movie, schedule, screen, showtime_body, theater};
use crate::helpers::{
    assert_problem, https_client, spawn_app, spawn_app_behind_proxy, spawn_app_with, PrivateBroker,
    TestApp,
};

/// The index is kept fresh from the change stream in the background: polls
/// a query until `done` holds or two seconds pass, and returns the last
/// answer.
pub async fn search_until(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    search_within(app, path, Duration::from_secs(2), done).await
}

async fn search_within(
    app: &TestApp,
    path: &str,
    wait: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let found: Value = app.get(path).await.json().await.expect("json");
        if done(&found) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_change_made_through_one_instance_is_searchable_on_another_within_two_seconds() {
    let app = spawn_app().await;
    let other = Application::build(app.schema.settings.clone())
        .await
        .expect("second instance builds");
    let other_url = format!("https://127.0.0.1:{}", other.port());
    let server = tokio::spawn(other.run_until_stopped(std::future::pending()));
    let client = https_client();

    let started = Instant::now();
    app.create_movie(json!({"title": "Zebra Crossing Nights", "genres": ["drama"]}))
        .await;
    let mut found = false;
    while started.elapsed() < Duration::from_secs(2) && !found {
        let answer: Value = client
            .get(format!("{other_url}/v1/search?q=zebra"))
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        found = answer["hits"][0]["title"] == "Zebra Crossing Nights";
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.abort();
    assert!(
        found,
        "not searchable on the other instance after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_change_made_while_the_broker_is_down_is_searchable_once_it_is_back() {
    let mut broker = PrivateBroker::start().await;
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    let app = spawn_app_with(|settings| settings.broker.bootstrap_servers = bootstrap).await;

    broker.stop();
    let created = app
        .create_movie(json!({"title": "Quillon Harbour Lights", "genres": ["drama"]}))
        .await;
    assert_eq!(created.status().as_u16(), 201);
    // Only the stream brings a change into the index, and it waits in the
    // outbox while the broker is away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let meanwhile: Value = app
        .get("/v1/search?q=quillon")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(meanwhile["total"], 0, "{meanwhile}");

    // The broker comes back empty: the index's group has lost its offsets
    // and reads what the relay publishes again.
    broker.restart().await;
    let found = search_within(&app, "/v1/search?q=quillon", Duration::from_secs(60), |v| {
        v["total"] == 1
    })
    .await;
    assert_eq!(
        found["hits"][0]["title"], "Quillon Harbour Lights",
        "{found}"
    );
}

#[tokio::test]
async fn a_change_the_index_could_not_apply_is_read_again_from_its_committed_offsets() {
    let (proxy, app) = spawn_app_behind_proxy(1).await;
    let film = movie(&app, "Ostrakon Dawn", 100, "2001-01-01").await;
    // The renamed theater must live on a node the application still
    // reaches; its showtimes are looked up on every node, so applying the
    // rename fails while shard-1 is cut off.
    let mut renamed = None;
    for city in [
        "Salem", "Lowell", "Quincy", "Woburn", "Revere", "Malden", "Medford", "Beverly",
    ] {
        let hall = theater(&app, "Ostrakon Hall", city, 42.52, -70.9).await;
        let room = screen(&app, hall, 3, 6).await;
        let scheduled = schedule(&app, showtime_body(film, hall, room, later(2, 18))).await;
        assert_eq!(scheduled.status().as_u16(), 201);
        let path = format!("/v1/search?q=ostrakon&city={city},%20MA");
        let indexed =
            search_within(&app, &path, Duration::from_secs(10), |v| v["total"] == 1).await;
        assert_eq!(indexed["total"], 1, "{indexed}");

        proxy.cut();
        let body = json!({
            "name": "Ostrakon Hall", "country": "US", "region": "MA", "city": "Marblehead",
            "street": "1 Main St", "postcode": "01945", "latitude": 42.5, "longitude": -70.86,
            "timezone": "America/New_York", "opening_hours": []
        });
        let answer = admin(
            &app,
            reqwest::Method::PUT,
            &format!("/v1/admin/theaters/{hall}"),
            body,
        )
        .await;
        if answer.status().as_u16() == 200 {
            renamed = Some(hall);
            break;
        }
        proxy.restore();
    }
    assert!(renamed.is_some(), "no theater landed off shard-1");

    let moved = "/v1/search?q=ostrakon&city=Marblehead,%20MA";
    tokio::time::sleep(Duration::from_secs(2)).await;
    let meanwhile: Value = app.get(moved).await.json().await.expect("json");
    assert_eq!(
        meanwhile["total"], 0,
        "applied while a node was cut off: {meanwhile}"
    );

    // The failed batch was never committed, so the consumer that replaces
    // the failed one reads it again.
    proxy.restore();
    let found = search_within(&app, moved, Duration::from_secs(30), |v| v["total"] == 1).await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(
        found["hits"][0]["showtimes"][0]["theater_name"],
        "Ostrakon Hall"
    );
}

#[tokio::test]
async fn showtime_filters_keep_only_movies_playing_there_and_facets_count_every_match() {
    let app = spawn_app().await;
    let boston = theater(&app, "Boston Common", "Boston", 42.355, -71.06).await;
    let chicago = theater(&app, "Chicago Loop", "Chicago", 41.88, -87.63).await;
    let (boston_screen, chicago_screen) = (
        screen(&app, boston, 3, 6).await,
        screen(&app, chicago, 3, 6).await,
    );
    let heat = movie(&app, "Heat Wave", 100, "1995-12-15").await;
    let alien = movie(&app, "Heat Signature", 100, "1979-05-25").await;
    let mut imax = showtime_body(heat, boston, boston_screen, later(2, 18));
    imax["format"] = json!("imax");
    schedule(&app, imax).await;
    schedule(
        &app,
        showtime_body(alien, chicago, chicago_screen, later(2, 18)),
    )
    .await;

    let everything = search_until(&app, "/v1/search?q=heat", |v| {
        v["facets"]["formats"]
            .as_array()
            .is_some_and(|formats| formats.len() == 2)
    })
    .await;
    assert_eq!(everything["total"], 2);
    let in_boston = search_until(&app, "/v1/search?q=heat&city=Boston,%20MA", |v| {
        v["total"] == 1
    })
    .await;
    assert_eq!(in_boston["hits"][0]["id"], heat.to_string(), "{in_boston}");
    assert_eq!(in_boston["hits"][0]["showtimes"][0]["format"], "imax");
    let near = search_until(&app, "/v1/search?lat=41.9&lon=-87.6&radius_km=20", |v| {
        v["total"] == 1
    })
    .await;
    assert_eq!(near["hits"][0]["id"], alien.to_string());
    let imax_only: Value = app
        .get("/v1/search?format=imax")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(imax_only["total"], 1);
    let formats = &everything["facets"]["formats"];
    assert!(
        formats
            .as_array()
            .expect("facet")
            .iter()
            .any(|f| f["value"] == "imax" && f["count"] == 1),
        "{formats}"
    );

    let suggestions: Value = app
        .get("/v1/search/suggest?q=heat%20sig")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(suggestions["suggestions"][0]["title"], "Heat Signature");
}

#[tokio::test]
async fn bad_search_input_is_a_4xx_problem_naming_the_parameter() {
    let app = spawn_app().await;
    // Values the schema itself refuses.
    for path in [
        "/v1/search?genre=opera",
        "/v1/search?lat=40&lon=-70&radius_km=900",
        "/v1/search?format=4dx",
    ] {
        assert_problem(app.get(path).await, 400).await;
    }
    // Values that parse but cannot be answered as asked.
    for (path, parameter) in [
        (
            "/v1/search?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z",
            "to",
        ),
        ("/v1/search?lat=40", "lon"),
        ("/v1/search?cursor=%25%25not-a-cursor", "cursor"),
        ("/v1/search?language=English", "language"),
    ] {
        let problem = assert_problem(app.get(path).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], parameter, "{path}");
    }
    // An empty value is a value, and not a time.
    assert_problem(app.get("/v1/search?q=heat&from=").await, 400).await;
}
