//! A hot showtime's virtual waiting room: staff or demand turn it on, holds
//! then need a pass, and the line lets people out first come, first served,
//! until the show sells out.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::accounts::{access, accounts_app_with, signed_up};
use crate::booking::{hold, pay, show};
use crate::helpers::{assert_problem, TestApp};

async fn app_with(configure: impl FnOnce(&mut marquee::settings::Settings)) -> TestApp {
    accounts_app_with(configure).await
}

async fn device(app: &TestApp) -> String {
    let body: Value = app
        .client
        .post(app.url("/v1/devices"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    body["device_id"].as_str().expect("device id").to_owned()
}

async fn set_room(app: &TestApp, showtime: Uuid, mode: &str) -> Value {
    let response = app
        .client
        .put(app.url(&format!("/v1/admin/showtimes/{showtime}/waiting-room")))
        .bearer_auth(app.admin_token())
        .json(&json!({ "mode": mode }))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("json")
}

async fn join(app: &TestApp, showtime: Uuid, device: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/showtimes/{showtime}/queue")))
        .header("Device-Id", device)
        .send()
        .await
        .expect("answer")
}

async fn place(
    app: &TestApp,
    showtime: Uuid,
    device: &str,
    place: &str,
    query: &str,
) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/showtimes/{showtime}/queue/{place}{query}")))
        .header("Device-Id", device)
        .send()
        .await
        .expect("answer")
}

/// Long-polls a place until it is let out; its pass.
async fn await_pass(app: &TestApp, showtime: Uuid, device: &str, id: &str) -> String {
    for _ in 0..20 {
        let view: Value = place(app, showtime, device, id, "?wait=5")
            .await
            .json()
            .await
            .expect("json");
        if let Some(pass) = view["pass"].as_str() {
            assert_eq!(view["state"], "admitted");
            return pass.to_owned();
        }
    }
    panic!("place {id} was never let out");
}

async fn hold_with(
    app: &TestApp,
    showtime: Uuid,
    device: &str,
    pass: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/showtimes/{showtime}/holds")))
        .header("Device-Id", device)
        .json(&body);
    if let Some(pass) = pass {
        request = request.header("Queue-Pass", pass);
    }
    request.send().await.expect("answer")
}

#[tokio::test]
async fn with_the_room_on_a_hold_needs_the_pass_the_line_gives_its_holder() {
    let app = app_with(|_| {}).await;
    let (showtime, _) = show(&app, 4, 10).await;
    let room = set_room(&app, showtime, "on").await;
    assert_eq!(room["active"], true);
    assert_eq!(room["reason"], "staff");
    let shown: Value = app
        .get(&format!("/v1/showtimes/{showtime}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["waiting_room"], true, "the showtime says so");

    let phone = device(&app).await;
    let problem = assert_problem(
        hold_with(
            &app,
            showtime,
            &phone,
            None,
            json!({"email": "a@example.com", "seats": ["A-1"]}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "urn:marquee:problem:waiting-room");

    let joined = join(&app, showtime, &phone).await;
    assert_eq!(joined.status().as_u16(), 200);
    let joined: Value = joined.json().await.expect("json");
    assert_eq!(joined["number"], 1);
    let id = joined["id"].as_str().expect("id").to_owned();
    let pass = await_pass(&app, showtime, &phone, &id).await;

    let stranger = device(&app).await;
    let problem = assert_problem(
        hold_with(
            &app,
            showtime,
            &stranger,
            Some(&pass),
            json!({"email": "b@example.com", "seats": ["A-2"]}),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(problem["type"], "urn:marquee:problem:queue-pass-refused");

    let held = hold_with(
        &app,
        showtime,
        &phone,
        Some(&pass),
        json!({"email": "a@example.com", "seats": ["A-1"]}),
    )
    .await;
    assert_eq!(held.status().as_u16(), 201);
    let spent = hold_with(
        &app,
        showtime,
        &phone,
        Some(&pass),
        json!({"email": "a@example.com", "seats": ["A-3"]}),
    )
    .await;
    let problem = assert_problem(spent, 409).await;
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("spent or lapsed"));
    let after: Value = place(&app, showtime, &phone, &id, "")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["state"], "used");

    set_room(&app, showtime, "off").await;
    let direct = hold_with(
        &app,
        showtime,
        &stranger,
        None,
        json!({"email": "c@example.com", "seats": ["B-1"]}),
    )
    .await;
    assert_eq!(
        direct.status().as_u16(),
        201,
        "with the room off, holds need no pass"
    );
}

#[tokio::test]
async fn a_reload_or_a_second_tab_finds_the_same_place_and_accounts_get_one_each() {
    let app = app_with(|_| {}).await;
    let (showtime, _) = show(&app, 2, 6).await;
    set_room(&app, showtime, "on").await;
    let phone = device(&app).await;
    let first: Value = join(&app, showtime, &phone)
        .await
        .json()
        .await
        .expect("json");
    let again: Value = join(&app, showtime, &phone)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(first["id"], again["id"]);
    assert_eq!(first["number"], again["number"]);

    let (_, tokens) = signed_up(&app, "line").await;
    let as_account = |app: &TestApp| {
        app.client
            .post(app.url(&format!("/v1/showtimes/{showtime}/queue")))
            .bearer_auth(access(&tokens))
            .send()
    };
    let mine: Value = as_account(&app)
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let tab: Value = as_account(&app)
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(mine["id"], tab["id"]);
    assert_eq!(mine["number"], 2);

    let other = device(&app).await;
    let hidden = place(
        &app,
        showtime,
        &other,
        first["id"].as_str().expect("id"),
        "",
    )
    .await;
    assert_problem(hidden, 404).await;
    let guest = app
        .client
        .post(app.url(&format!("/v1/showtimes/{showtime}/queue")))
        .send()
        .await
        .expect("answer");
    let problem = assert_problem(guest, 422).await;
    assert_eq!(problem["errors"][0]["field"], "Device-Id");
    let wait_too_long = place(
        &app,
        showtime,
        &phone,
        first["id"].as_str().expect("id"),
        "?wait=300",
    )
    .await;
    assert!(wait_too_long.status().is_client_error());
    let (unknown_showtime, _) = show(&app, 2, 6).await;
    let problem = assert_problem(join(&app, unknown_showtime, &phone).await, 409).await;
    assert_eq!(problem["type"], "urn:marquee:problem:no-waiting-room");
}

#[tokio::test]
async fn the_line_lets_people_out_in_the_order_they_came() {
    let app = app_with(|settings| {
        settings.booking.waiting_room.admit_per_second = 2.0;
    })
    .await;
    let (showtime, _) = show(&app, 10, 20).await;
    set_room(&app, showtime, "on").await;
    let mut line = Vec::new();
    for _ in 0..8 {
        let phone = device(&app).await;
        let joined: Value = join(&app, showtime, &phone)
            .await
            .json()
            .await
            .expect("json");
        line.push((phone, joined["id"].as_str().expect("id").to_owned()));
    }
    let mut admitted_at = Vec::new();
    for (phone, id) in &line {
        await_pass(&app, showtime, phone, id).await;
        let view: Value = place(&app, showtime, phone, id, "")
            .await
            .json()
            .await
            .expect("json");
        admitted_at.push(view["admitted_at"].as_str().expect("admitted").to_owned());
    }
    let mut sorted = admitted_at.clone();
    sorted.sort();
    assert_eq!(admitted_at, sorted, "let out first come, first served");
    let room: Value = app
        .get(&format!("/v1/showtimes/{showtime}/waiting-room"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(room["waiting"], 0);
    assert_eq!(room["admitted"], 8);
}

#[tokio::test]
async fn a_room_turns_on_by_itself_when_hold_attempts_outrun_the_seats_left() {
    let app = app_with(|settings| {
        settings.booking.waiting_room.auto = true;
        settings.booking.waiting_room.min_attempts_per_second = 5.0;
        settings.booking.waiting_room.attempts_per_seat_left = 0.1;
    })
    .await;
    let (showtime, _) = show(&app, 4, 10).await;
    let started = std::time::Instant::now();
    let mut on = false;
    while started.elapsed() < Duration::from_secs(10) && !on {
        for number in 0..10 {
            let seat = format!("D-{}", number % 10 + 1);
            let _ = hold(
                &app,
                showtime,
                json!({"email": format!("rush-{number}@example.com"), "seats": [seat]}),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let room: Value = app
            .get(&format!("/v1/showtimes/{showtime}/waiting-room"))
            .await
            .json()
            .await
            .expect("json");
        on = room["active"] == true;
        if on {
            assert_eq!(room["reason"], "demand");
        }
    }
    assert!(on, "the room never turned on");
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("marquee_waiting_rooms_turned_on_total{reason=\"demand\"} 1"),
        "{metrics}"
    );
    let problem = assert_problem(
        hold(
            &app,
            showtime,
            json!({"email": "late@example.com", "seats": ["A-1"]}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "urn:marquee:problem:waiting-room");
}

#[tokio::test]
async fn when_the_show_sells_out_everyone_in_line_is_told_and_pointed_to_the_waiting_list() {
    let app = app_with(|settings| {
        settings.booking.waiting_room.admit_per_second = 1.0;
        settings.booking.waiting_room.checkout_capacity = 1;
    })
    .await;
    let (showtime, _) = show(&app, 1, 4).await;
    set_room(&app, showtime, "on").await;
    let buyer = device(&app).await;
    let waiting = device(&app).await;
    let first: Value = join(&app, showtime, &buyer)
        .await
        .json()
        .await
        .expect("json");
    let second: Value = join(&app, showtime, &waiting)
        .await
        .json()
        .await
        .expect("json");
    let pass = await_pass(&app, showtime, &buyer, first["id"].as_str().expect("id")).await;
    let held = hold_with(
        &app,
        showtime,
        &buyer,
        Some(&pass),
        json!({"email": "all@example.com", "seats": ["A-1", "A-2", "A-3", "A-4"]}),
    )
    .await;
    assert_eq!(held.status().as_u16(), 201);
    let held: Value = held.json().await.expect("json");
    let paid = pay(
        &app,
        &held["hold"],
        held["booking_token"].as_str().expect("token"),
        &Uuid::new_v4().to_string(),
        "tok_visa",
    )
    .await;
    assert_eq!(paid.status().as_u16(), 201);
    let id = second["id"].as_str().expect("id");
    let mut told = Value::Null;
    for _ in 0..10 {
        told = place(&app, showtime, &waiting, id, "?wait=3")
            .await
            .json()
            .await
            .expect("json");
        if told["state"] == "sold_out" {
            break;
        }
    }
    assert_eq!(told["state"], "sold_out");
    assert_eq!(
        told["waitlist"],
        format!("/v1/showtimes/{showtime}/waitlist")
    );
    let late = device(&app).await;
    let problem = assert_problem(join(&app, showtime, &late).await, 409).await;
    assert_eq!(problem["type"], "urn:marquee:problem:sold-out");
}

#[tokio::test]
async fn bad_room_requests_and_lapsed_or_made_up_passes_get_a_problem_and_hold_nothing() {
    let app = app_with(|settings| {
        settings.booking.waiting_room.pass_ttl_seconds = 1;
    })
    .await;
    let (showtime, _) = show(&app, 2, 6).await;
    let put = |token: Option<String>, body: Value, target: Uuid| {
        let app = &app;
        async move {
            let mut request = app
                .client
                .put(app.url(&format!("/v1/admin/showtimes/{target}/waiting-room")))
                .json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.expect("answer")
        }
    };
    assert_problem(put(None, json!({"mode": "on"}), showtime).await, 401).await;
    assert_problem(
        put(
            Some(app.admin_token()),
            json!({"mode": "sideways"}),
            showtime,
        )
        .await,
        422,
    )
    .await;
    assert_problem(put(Some(app.admin_token()), json!({}), showtime).await, 422).await;
    assert_problem(
        put(
            Some(app.admin_token()),
            json!({"mode": "on"}),
            Uuid::new_v4(),
        )
        .await,
        404,
    )
    .await;
    assert_problem(
        app.get(&format!("/v1/showtimes/{}/waiting-room", Uuid::new_v4()))
            .await,
        404,
    )
    .await;
    let room: Value = app
        .get(&format!("/v1/showtimes/{showtime}/waiting-room"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(room["active"], false, "nothing was turned on");

    set_room(&app, showtime, "on").await;
    let phone = device(&app).await;
    let made_up = hold_with(
        &app,
        showtime,
        &phone,
        Some("qp1.made.up"),
        json!({"email": "m@example.com", "seats": ["A-3"]}),
    )
    .await;
    assert_problem(made_up, 403).await;
    let joined: Value = join(&app, showtime, &phone)
        .await
        .json()
        .await
        .expect("json");
    let pass = await_pass(&app, showtime, &phone, joined["id"].as_str().expect("id")).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let lapsed = hold_with(
        &app,
        showtime,
        &phone,
        Some(&pass),
        json!({"email": "m@example.com", "seats": ["A-3"]}),
    )
    .await;
    assert_problem(lapsed, 403).await;
    let seats: Value = app
        .get(&format!("/v1/showtimes/{showtime}/seats"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(seats["counts"]["held"], 0, "no hold was written");
}
