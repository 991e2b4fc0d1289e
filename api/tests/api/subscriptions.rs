//! Subscriptions and alerts, end to end through the real components: the
//! scanner finds what is new, the relay and broker carry the alert, and
//! the notification service delivers it to the inbox, the mailbox and the
//! sandbox SMS carrier, on the channels the user chose.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::accounts::{
    access, accounts_app, accounts_app_with, await_mail, get, hold_as, signed_up,
};
use crate::catalog::{created, id_of, later, movie, schedule, screen, showtime_body, theater};
use crate::helpers::{assert_problem, TestApp};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("answer")
}

/// Asks for a code to be texted to `number`.
async fn ask_code(app: &TestApp, bearer: &str, number: &str) -> reqwest::Response {
    let body = json!({ "phone": number });
    send(
        app,
        reqwest::Method::POST,
        "/v1/me/phone",
        bearer,
        Some(body),
    )
    .await
}

/// Types back a texted code.
async fn type_code(app: &TestApp, bearer: &str, code: &str) -> reqwest::Response {
    let body = json!({ "code": code });
    send(
        app,
        reqwest::Method::POST,
        "/v1/me/phone/confirmation",
        bearer,
        Some(body),
    )
    .await
}

async fn put_preferences(app: &TestApp, bearer: &str, body: Value) -> reqwest::Response {
    send(
        app,
        reqwest::Method::PUT,
        "/v1/me/preferences",
        bearer,
        Some(body),
    )
    .await
}

async fn subscribe(app: &TestApp, bearer: &str, body: Value) -> reqwest::Response {
    send(
        app,
        reqwest::Method::POST,
        "/v1/me/subscriptions",
        bearer,
        Some(body),
    )
    .await
}

/// Waits (long-polling) for a notice of `kind` in the caller's inbox.
async fn await_notice(app: &TestApp, bearer: &str, kind: &str) -> Value {
    for _ in 0..6 {
        let page: Value = get(app, "/v1/me/notifications?wait=10", bearer)
            .await
            .json()
            .await
            .expect("json");
        if let Some(notice) = page["notices"]
            .as_array()
            .and_then(|notices| notices.iter().find(|notice| notice["kind"] == kind))
        {
            return notice.clone();
        }
    }
    panic!("no {kind} notice arrived");
}

/// The texts the sandbox carrier accepted for `to`, over its HTTP API.
async fn texts_to(app: &TestApp, to: &str) -> Vec<Value> {
    let settings = &app.schema.settings.sms;
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        app.sms_url.as_deref().expect("the sandbox carrier runs"),
        settings.account_sid
    );
    let list: Value = reqwest::Client::new()
        .get(url)
        .query(&[("To", to)])
        .basic_auth(
            &settings.account_sid,
            Some(secrecy::ExposeSecret::expose_secret(&settings.auth_token)),
        )
        .send()
        .await
        .expect("carrier answers")
        .json()
        .await
        .expect("json");
    list["messages"].as_array().cloned().unwrap_or_default()
}

async fn await_texts(app: &TestApp, to: &str, count: usize) -> Vec<Value> {
    for _ in 0..150 {
        let texts = texts_to(app, to).await;
        if texts.len() >= count {
            return texts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{count} text(s) to {to} never arrived");
}

/// The code in the newest text to `number`.
async fn code_sent_to(app: &TestApp, number: &str, count: usize) -> String {
    let texts = await_texts(app, number, count).await;
    let body = texts[0]["body"].as_str().expect("body");
    body.split(|c: char| !c.is_ascii_digit())
        .find(|part| part.len() == 6)
        .expect("a six-digit code")
        .to_owned()
}

async fn confirm_phone(app: &TestApp, bearer: &str, number: &str) {
    let asked = ask_code(app, bearer, number).await;
    assert_eq!(asked.status().as_u16(), 202);
    let code = code_sent_to(app, number, 1).await;
    let confirmed = type_code(app, bearer, &code).await;
    assert_eq!(confirmed.status().as_u16(), 200);
}

fn phone() -> String {
    format!("+1617{:07}", rand_digits())
}

fn rand_digits() -> u32 {
    u32::from_le_bytes(
        Uuid::new_v4().as_bytes()[..4]
            .try_into()
            .expect("four bytes"),
    ) % 10_000_000
}

#[tokio::test]
async fn a_new_showtime_matching_a_subscription_reaches_the_inbox_the_mailbox_and_the_phone() {
    let app = accounts_app().await;
    let (email, tokens) = signed_up(&app, "alerts").await;
    let bearer = access(&tokens).to_owned();
    let number = phone();
    confirm_phone(&app, &bearer, &number).await;
    let preferences = json!({"email": true, "sms": true, "in_app": true});
    let set = put_preferences(&app, &bearer, preferences).await;
    assert_eq!(set.status().as_u16(), 200);
    let read: Value = get(&app, "/v1/me/preferences", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        read,
        json!({"email": true, "sms": true, "in_app": true, "phone": number})
    );

    let hall = theater(&app, "Coolidge Corner", "Brookline", 42.3426, -71.1211).await;
    let room = screen(&app, hall, 3, 6).await;
    let film = movie(&app, "The Grand Budapest Hotel", 100, "2014-03-07").await;
    let other = movie(&app, "Paddington", 95, "2014-11-28").await;
    let by_title = subscribe(
        &app,
        &bearer,
        json!({"title_words": "budapest", "city": "Brookline", "format": "2d"}),
    )
    .await;
    let by_title = created(by_title).await;
    assert_eq!(by_title["kind"], "showtimes");
    assert_eq!(by_title["title_words"], json!(["budapest"]));
    // The same user asking twice in other words is still told once.
    created(subscribe(&app, &bearer, json!({"movie_id": film})).await).await;
    // Genre alone hears of releases, not of every showtime in the genre.
    let (_, genre_tokens) = signed_up(&app, "genre").await;
    let by_genre = access(&genre_tokens).to_owned();
    let releases = created(subscribe(&app, &by_genre, json!({"genre": "drama"})).await).await;
    assert_eq!(releases["kind"], "releases");

    // A showtime of another movie matches nothing; the matching one, two
    // days later, is told of once on every channel.
    created(schedule(&app, showtime_body(other, hall, room, later(2, 12))).await).await;
    let show =
        id_of(&created(schedule(&app, showtime_body(film, hall, room, later(2, 18))).await).await);
    let notice = await_notice(&app, &bearer, "showtime.new").await;
    assert_eq!(notice["title"], "New showtimes: The Grand Budapest Hotel");
    assert_eq!(notice["subject_id"], show.to_string());
    assert!(notice["body"]
        .as_str()
        .expect("body")
        .contains("Coolidge Corner"));
    let mail = await_mail(&email, "New showtimes: The Grand Budapest Hotel", 1).await;
    assert!(mail.contains("Coolidge Corner"));
    let texts = await_texts(&app, &number, 2).await;
    assert!(texts[0]["body"]
        .as_str()
        .expect("body")
        .starts_with("Marquee: New showtimes: The Grand Budapest Hotel"));

    // A later showtime the same day, found by a later pass, is told of
    // too; nothing else is raised twice.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let late =
        id_of(&created(schedule(&app, showtime_body(film, hall, room, later(2, 21))).await).await);
    await_texts(&app, &number, 3).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let page: Value = get(&app, "/v1/me/notifications", &bearer)
        .await
        .json()
        .await
        .expect("json");
    let alerts: Vec<&Value> = page["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .filter(|n| n["kind"] == "showtime.new")
        .collect();
    assert_eq!(alerts.len(), 2, "{page}");
    assert_eq!(alerts[1]["subject_id"], late.to_string());
    assert_eq!(
        texts_to(&app, &number).await.len(),
        3,
        "the code and two alerts"
    );
    let genre_page: Value = get(&app, "/v1/me/notifications", &by_genre)
        .await
        .json()
        .await
        .expect("json");
    // It may hear of the two films as releases, never of their showtimes.
    assert!(
        genre_page["notices"]
            .as_array()
            .expect("notices")
            .iter()
            .all(|notice| notice["kind"] == "movie.released"),
        "a genre subscriber hears of releases only: {genre_page}"
    );
}

#[tokio::test]
async fn a_watched_sold_out_showtime_alerts_once_when_seats_are_freed_and_the_watch_is_spent() {
    let app = accounts_app().await;
    let (_, holder_tokens) = signed_up(&app, "holder").await;
    let (_, watcher_tokens) = signed_up(&app, "watcher").await;
    let (holder, watcher) = (
        access(&holder_tokens).to_owned(),
        access(&watcher_tokens).to_owned(),
    );
    let hall = theater(&app, "Brattle", "Cambridge", 42.3735, -71.1210).await;
    let room = screen(&app, hall, 1, 4).await;
    let film = movie(&app, "Casablanca", 102, "1942-11-26").await;
    let show =
        id_of(&created(schedule(&app, showtime_body(film, hall, room, later(3, 20))).await).await);

    let early = subscribe(&app, &watcher, json!({"showtime_id": show})).await;
    let problem = assert_problem(early, 422).await;
    assert!(problem["errors"][0]["message"]
        .as_str()
        .expect("message")
        .contains("not sold out"));

    let held = hold_as(&app, &holder, show, json!(["A-3", "A-4"])).await;
    assert_eq!(held.status().as_u16(), 201);
    let rest = hold_as(&app, &holder, show, json!(["A-1", "A-2"])).await;
    assert_eq!(rest.status().as_u16(), 201, "the last seats are held");
    let rest: Value = rest.json().await.expect("json");
    let watch = created(subscribe(&app, &watcher, json!({"showtime_id": show})).await).await;
    assert_eq!(watch["kind"], "freed_seats");

    let released = send(
        &app,
        reqwest::Method::DELETE,
        &format!(
            "/v1/holds/{}",
            rest["hold"]["id"].as_str().expect("hold id")
        ),
        &holder,
        None,
    )
    .await;
    assert_eq!(released.status().as_u16(), 204);
    let notice = await_notice(&app, &watcher, "seats.freed").await;
    assert_eq!(notice["subject_id"], show.to_string());
    assert!(notice["title"]
        .as_str()
        .expect("title")
        .contains("Casablanca"));
    let list: Value = get(&app, "/v1/me/subscriptions", &watcher)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        list["subscriptions"],
        json!([]),
        "the watch is spent by its alert"
    );

    // Sold out and freed again: the spent watch tells nobody a second time.
    let again = hold_as(&app, &holder, show, json!(["A-1", "A-2"])).await;
    assert_eq!(again.status().as_u16(), 201);
    let again: Value = again.json().await.expect("json");
    let freed = send(
        &app,
        reqwest::Method::DELETE,
        &format!(
            "/v1/holds/{}",
            again["hold"]["id"].as_str().expect("hold id")
        ),
        &holder,
        None,
    )
    .await;
    assert_eq!(freed.status().as_u16(), 204);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let page: Value = get(&app, "/v1/me/notifications", &watcher)
        .await
        .json()
        .await
        .expect("json");
    let freed_notices = page["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .filter(|n| n["kind"] == "seats.freed")
        .count();
    assert_eq!(freed_notices, 1);
}

#[tokio::test]
async fn filters_that_could_never_match_are_refused_with_a_422_naming_why() {
    let app = accounts_app().await;
    let (_, tokens) = signed_up(&app, "unmatchable").await;
    let bearer = access(&tokens).to_owned();
    let hall = theater(&app, "Somerville Theatre", "Somerville", 42.3967, -71.1226).await;
    let room = screen(&app, hall, 2, 4).await;
    let film = movie(&app, "Jaws", 124, "1975-06-20").await;
    let show =
        id_of(&created(schedule(&app, showtime_body(film, hall, room, later(1, 18))).await).await);
    let cases = [
        (json!({}), ""),
        (json!({"title_words": " -- "}), "title_words"),
        (
            json!({"movie_id": film, "title_words": "shark tale"}),
            "title_words",
        ),
        (json!({"movie_id": film, "genre": "comedy"}), "genre"),
        (json!({"movie_id": Uuid::new_v4()}), "movie_id"),
        (json!({"theater_id": hall, "city": "Boston"}), "city"),
        (
            json!({"theater_id": hall, "near": {"latitude": 40.7128, "longitude": -74.006, "radius_km": 10}}),
            "near",
        ),
        (json!({"theater_id": Uuid::new_v4()}), "theater_id"),
        (json!({"showtime_id": Uuid::new_v4()}), "showtime_id"),
        (
            json!({"showtime_id": show, "city": "Somerville"}),
            "showtime_id",
        ),
    ];
    for (body, field) in cases {
        let problem = assert_problem(subscribe(&app, &bearer, body.clone()).await, 422).await;
        assert!(
            problem["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|e| e["field"] == field),
            "{body} should name {field:?}: {problem}"
        );
    }
    let bad_shape = subscribe(
        &app,
        &bearer,
        json!({"near": {"latitude": 91, "longitude": 0, "radius_km": 5}}),
    )
    .await;
    assert_problem(bad_shape, 422).await;
    let no_phone = put_preferences(
        &app,
        &bearer,
        json!({"email": true, "sms": true, "in_app": true}),
    )
    .await;
    assert_problem(no_phone, 422).await;
    let bad_phone = ask_code(&app, &bearer, "0617 555").await;
    assert_problem(bad_phone, 422).await;
    let list: Value = get(&app, "/v1/me/subscriptions", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        list["subscriptions"],
        json!([]),
        "nothing refused was stored"
    );
    let unknown = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/me/subscriptions/{}", Uuid::new_v4()),
        &bearer,
        None,
    )
    .await;
    assert_problem(unknown, 404).await;
    let anonymous = app
        .client
        .get(app.url("/v1/me/subscriptions"))
        .send()
        .await
        .expect("answer");
    assert_problem(anonymous, 401).await;
}

#[tokio::test]
async fn an_account_holds_at_most_its_cap_of_subscriptions_even_when_asking_in_parallel() {
    let app = accounts_app_with(|settings| settings.jobs.max_subscriptions = 3).await;
    let (_, tokens) = signed_up(&app, "capped").await;
    let bearer = access(&tokens).to_owned();
    let attempts = futures::future::join_all((0..8).map(|n| {
        let bearer = bearer.clone();
        let app = &app;
        async move {
            subscribe(app, &bearer, json!({"title_words": format!("word{n}")}))
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(
        attempts.iter().filter(|status| **status == 201).count(),
        3,
        "{attempts:?}"
    );
    assert_eq!(
        attempts.iter().filter(|status| **status == 409).count(),
        5,
        "{attempts:?}"
    );
    let list: Value = get(&app, "/v1/me/subscriptions", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["limit"], 3);
    let held = list["subscriptions"].as_array().expect("list");
    assert_eq!(held.len(), 3);
    let gone = send(
        &app,
        reqwest::Method::DELETE,
        &format!(
            "/v1/me/subscriptions/{}",
            held[0]["id"].as_str().expect("id")
        ),
        &bearer,
        None,
    )
    .await;
    assert_eq!(gone.status().as_u16(), 204);
    assert_eq!(
        subscribe(&app, &bearer, json!({"genre": "horror"}))
            .await
            .status()
            .as_u16(),
        201
    );
}

#[tokio::test]
async fn a_release_file_is_imported_once_and_tells_subscribers_while_a_bad_one_is_set_aside() {
    let app = accounts_app_with(|settings| settings.jobs.import_every_ms = 300).await;
    let (_, tokens) = signed_up(&app, "releases").await;
    let bearer = access(&tokens).to_owned();
    let words = format!("moonrise {}", Uuid::new_v4().simple());
    let unique = words.split(' ').nth(1).expect("word").to_owned();
    let subscription = created(
        subscribe(
            &app,
            &bearer,
            json!({"title_words": words, "genre": "drama"}),
        )
        .await,
    )
    .await;
    assert_eq!(subscription["kind"], "releases");

    let folder = std::path::PathBuf::from(&app.schema.settings.jobs.releases_dir);
    std::fs::create_dir_all(&folder).expect("folder");
    let release = json!({"distributor": "Focus Features", "releases": [
        {"external_id": "FF-1", "title": format!("Moonrise Kingdom {unique}"), "genres": ["Drama", "comedy"],
         "release_date": "2027-05-25", "director": "Wes Anderson", "runtime_minutes": 94},
        {"external_id": "FF-2", "title": "Another Film", "genres": ["horror"], "release_date": "2027-06-01"}
    ]});
    std::fs::write(folder.join("a-focus.json"), release.to_string()).expect("write");
    std::fs::write(
        folder.join("b-broken.json"),
        r#"{"distributor": "X", "releases": [{"title": ""}]}"#,
    )
    .expect("write");

    let notice = await_notice(&app, &bearer, "movie.released").await;
    assert!(notice["title"]
        .as_str()
        .expect("title")
        .contains("Moonrise Kingdom"));
    let imported = notice["subject_id"].as_str().expect("movie id");
    let details = app.get(&format!("/v1/movies/{imported}")).await;
    assert_eq!(details.status().as_u16(), 200);
    let details: Value = details.json().await.expect("json");
    assert_eq!(details["director"], "Wes Anderson");
    assert_eq!(details["genres"], json!(["drama", "comedy"]));
    assert!(folder.join("imported/a-focus.json").exists());
    assert!(folder.join("rejected/b-broken.json").exists());
    assert!(folder.join("rejected/b-broken.json.error.txt").exists());

    // The same file dropped again imports nothing new and alerts no one.
    std::fs::write(folder.join("c-again.json"), release.to_string()).expect("write");
    for _ in 0..100 {
        if folder.join("imported/c-again.json").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(folder.join("imported/c-again.json").exists());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let page: Value = get(&app, "/v1/me/notifications", &bearer)
        .await
        .json()
        .await
        .expect("json");
    let releases = page["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .filter(|n| n["kind"] == "movie.released")
        .count();
    assert_eq!(releases, 1);
}

#[tokio::test]
async fn a_release_the_database_refuses_sets_its_file_aside_without_holding_up_the_next() {
    let app = accounts_app_with(|settings| settings.jobs.import_every_ms = 300).await;
    let folder = std::path::PathBuf::from(&app.schema.settings.jobs.releases_dir);
    std::fs::create_dir_all(&folder).expect("folder");
    // A NUL byte passes the file's validation, and PostgreSQL refuses it in
    // text, on every attempt.
    let poisoned = json!({"distributor": "Nul Pictures", "releases": [
        {"external_id": "NP-1", "title": "Fine Film", "genres": ["drama"], "release_date": "2027-01-01"},
        {"external_id": "NP-2", "title": "Broken Film", "genres": ["drama"], "release_date": "2027-01-02",
         "synopsis": "a\u{0}b"}
    ]});
    std::fs::write(folder.join("a-poisoned.json"), poisoned.to_string()).expect("write");
    let good = json!({"distributor": "Clean Pictures", "releases": [
        {"external_id": "CP-1", "title": "Clean Film", "genres": ["comedy"], "release_date": "2027-02-01"}
    ]});
    std::fs::write(folder.join("b-good.json"), good.to_string()).expect("write");

    let rejected = folder.join("rejected/a-poisoned.json");
    for _ in 0..150 {
        if rejected.exists() && folder.join("imported/b-good.json").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        folder.join("imported/b-good.json").exists(),
        "the good file waited"
    );
    assert!(rejected.exists(), "the refused file was never set aside");
    let reason = std::fs::read_to_string(folder.join("rejected/a-poisoned.json.error.txt"))
        .expect("the reason is written beside it");
    assert!(
        reason.contains("refused 3 passes in a row") && reason.contains("NP-2"),
        "{reason}"
    );
    // The release before the refused one stays imported; the refused one
    // is not in the catalogue.
    let release = |distributor: &str, id: &str| {
        marquee_storage::demo_places::stable_id(&format!("release:{distributor}:{id}"))
    };
    let storage = &app.state.storage;
    assert!(storage
        .movie(release("Nul Pictures", "NP-1"))
        .await
        .expect("read")
        .is_some());
    assert!(storage
        .movie(release("Nul Pictures", "NP-2"))
        .await
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn a_phone_number_gets_texts_only_once_the_code_sent_to_it_is_typed_back() {
    let app = accounts_app().await;
    let (_, tokens) = signed_up(&app, "phone").await;
    let bearer = access(&tokens).to_owned();
    let number = phone();
    let sms_on = json!({"email": true, "sms": true, "in_app": true});
    let refused = put_preferences(&app, &bearer, sms_on.clone()).await;
    assert_problem(refused, 422).await;

    let asked = ask_code(&app, &bearer, &number).await;
    assert_eq!(asked.status().as_u16(), 202);
    let code = code_sent_to(&app, &number, 1).await;
    let too_soon = ask_code(&app, &bearer, &number).await;
    let too_soon = assert_problem(too_soon, 429).await;
    assert!(too_soon["detail"]
        .as_str()
        .expect("detail")
        .contains("wait"));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let guess = type_code(&app, &bearer, wrong).await;
    assert_problem(guess, 422).await;
    let unconfirmed: Value = get(&app, "/v1/me/preferences", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert!(unconfirmed.get("phone").is_none(), "{unconfirmed}");

    let right = type_code(&app, &bearer, &code).await;
    assert_eq!(right.status().as_u16(), 200);
    let confirmed: Value = right.json().await.expect("json");
    assert_eq!(confirmed["phone"], number);
    let again = type_code(&app, &bearer, &code).await;
    assert_problem(again, 409).await;
    let set = put_preferences(&app, &bearer, sms_on).await;
    assert_eq!(set.status().as_u16(), 200);

    // A number the carrier cannot text is refused when the code is sent.
    let (_, other) = signed_up(&app, "landline").await;
    let landline = ask_code(&app, access(&other), "+15005550009").await;
    let problem = assert_problem(landline, 422).await;
    assert_eq!(problem["errors"][0]["field"], "phone");
}

#[tokio::test]
async fn a_phone_code_stops_working_after_five_wrong_tries() {
    let app = accounts_app().await;
    let (_, tokens) = signed_up(&app, "guesser").await;
    let bearer = access(&tokens).to_owned();
    let number = phone();
    let asked = ask_code(&app, &bearer, &number).await;
    assert_eq!(asked.status().as_u16(), 202);
    let code = code_sent_to(&app, &number, 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let guess = type_code(&app, &bearer, wrong).await;
        assert_problem(guess, 422).await;
    }
    let right_too_late = type_code(&app, &bearer, &code).await;
    assert_problem(right_too_late, 409).await;
    let read: Value = get(&app, "/v1/me/preferences", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert!(read.get("phone").is_none(), "{read}");
}
