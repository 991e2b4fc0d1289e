//! Nobody hoards a show: guests' holds count against their canonical
//! address, their network address and their device, live holds are capped
//! per client, and a card pays for no more seats than one customer may.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::booking::{hold, pay, show};
use crate::helpers::{assert_problem, spawn_app_with, TestApp};

/// Limits as production has them; the test suite otherwise raises them,
/// because every test client shares one address.
fn production_limits(settings: &mut marquee::settings::Settings) {
    settings.booking.fairness = marquee_booking::settings::FairnessSettings::default();
}

async fn held_count(app: &TestApp, showtime: Uuid) -> u64 {
    app.state
        .cache
        .invalidate(&[marquee::cache::Entry::SeatMap(showtime)])
        .await;
    let map: Value = app
        .get(&format!("/v1/showtimes/{showtime}/seats"))
        .await
        .json()
        .await
        .expect("json");
    map["counts"]["held"].as_u64().expect("held count")
}

async fn device(app: &TestApp) -> String {
    let response = app
        .client
        .post(app.url("/v1/devices"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    body["device_id"].as_str().expect("device id").to_owned()
}

async fn hold_from(app: &TestApp, showtime: Uuid, device: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/showtimes/{showtime}/holds")))
        .header("Device-Id", device)
        .json(&body)
        .send()
        .await
        .expect("answer")
}

#[tokio::test]
async fn addresses_that_reach_one_mailbox_share_one_customer_limit() {
    let app = spawn_app_with(production_limits).await;
    let (showtime, _) = show(&app, 4, 10).await;
    let first = hold(
        &app,
        showtime,
        json!({"email": "Ada.Lovelace+one@gmail.com", "best_available": {"count": 6}}),
    )
    .await;
    assert_eq!(first.status().as_u16(), 201);
    let second = hold(
        &app,
        showtime,
        json!({"email": "adalovelace+two@googlemail.com", "best_available": {"count": 6}}),
    )
    .await;
    let problem = assert_problem(second, 429).await;
    assert_eq!(problem["type"], "urn:marquee:problem:unpaid-seat-limit");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("address"));
    assert_eq!(held_count(&app, showtime).await, 6, "nothing half-written");
    let unrelated = hold(
        &app,
        showtime,
        json!({"email": "grace@example.com", "best_available": {"count": 4}}),
    )
    .await;
    assert_eq!(unrelated.status().as_u16(), 201);
}

#[tokio::test]
async fn one_machine_cannot_hold_a_show_under_made_up_addresses() {
    let app = spawn_app_with(production_limits).await;
    let (showtime, _) = show(&app, 10, 20).await;
    for number in 0..4 {
        let response = hold(
            &app,
            showtime,
            json!({"email": format!("made-up-{number}@example.com"), "best_available": {"count": 10}}),
        )
        .await;
        assert_eq!(response.status().as_u16(), 201, "hold {number}");
    }
    let fifth = hold(
        &app,
        showtime,
        json!({"email": "made-up-4@example.com", "best_available": {"count": 10}}),
    )
    .await;
    let retry_after: u64 = fifth
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After");
    assert!((590..=601).contains(&retry_after), "{retry_after}");
    let problem = assert_problem(fifth, 429).await;
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("network address already holds 40 unpaid seats"));
    assert_eq!(held_count(&app, showtime).await, 40);
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("marquee_hold_limits_total{limit=\"address\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_device_id_counts_its_holds_together_and_a_forged_one_is_refused() {
    let app = spawn_app_with(|settings| {
        production_limits(settings);
        settings.booking.fairness.max_unpaid_seats_per_device = 4;
    })
    .await;
    let (showtime, _) = show(&app, 4, 10).await;
    let phone = device(&app).await;
    assert!(phone.starts_with("dv1."));
    let first = hold_from(
        &app,
        showtime,
        &phone,
        json!({"email": "a@example.com", "best_available": {"count": 4}}),
    )
    .await;
    assert_eq!(first.status().as_u16(), 201);
    let problem = assert_problem(
        hold_from(
            &app,
            showtime,
            &phone,
            json!({"email": "b@example.com", "best_available": {"count": 1}}),
        )
        .await,
        429,
    )
    .await;
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("4 unpaid seats"));
    let forged = format!("{}x", &phone[..phone.len() - 1]);
    let problem = assert_problem(
        hold_from(
            &app,
            showtime,
            &forged,
            json!({"email": "c@example.com", "best_available": {"count": 1}}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "Device-Id");
    assert_eq!(held_count(&app, showtime).await, 4);
}

#[tokio::test]
async fn one_client_has_only_so_many_live_holds_across_showtimes() {
    let app = spawn_app_with(|settings| {
        production_limits(settings);
        settings.booking.fairness.max_live_holds_per_address = 2;
    })
    .await;
    let mut holds = Vec::new();
    for number in 0..2 {
        let (showtime, _) = show(&app, 2, 6).await;
        let response = hold(
            &app,
            showtime,
            json!({"email": format!("live-{number}@example.com"), "seats": ["A-1"]}),
        )
        .await;
        assert_eq!(response.status().as_u16(), 201);
        holds.push(response.json::<Value>().await.expect("json"));
    }
    let (third, _) = show(&app, 2, 6).await;
    let problem = assert_problem(
        hold(
            &app,
            third,
            json!({"email": "live-2@example.com", "seats": ["A-1"]}),
        )
        .await,
        429,
    )
    .await;
    assert_eq!(problem["type"], "urn:marquee:problem:live-hold-limit");
    assert_eq!(held_count(&app, third).await, 0);
    let released = app
        .client
        .delete(app.url(&format!(
            "/v1/holds/{}",
            holds[0]["hold"]["id"].as_str().expect("id")
        )))
        .header(
            "Booking-Token",
            holds[0]["booking_token"].as_str().expect("token"),
        )
        .send()
        .await
        .expect("answer");
    assert!(released.status().is_success());
    let now_allowed = hold(
        &app,
        third,
        json!({"email": "live-2@example.com", "seats": ["A-1"]}),
    )
    .await;
    assert_eq!(
        now_allowed.status().as_u16(),
        201,
        "a released hold frees its slot"
    );
}

#[tokio::test]
async fn one_card_pays_for_no_more_seats_of_a_showtime_than_one_customer_may() {
    let app = spawn_app_with(|settings| settings.booking.max_seats_per_customer = 4).await;
    let (showtime, _) = show(&app, 4, 10).await;
    let mut holds = Vec::new();
    for email in ["first@example.com", "second@example.com"] {
        let response = hold(
            &app,
            showtime,
            json!({"email": email, "best_available": {"count": 3}}),
        )
        .await;
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.expect("json");
        holds.push((
            body["hold"].clone(),
            body["booking_token"].as_str().expect("token").to_owned(),
        ));
    }
    let paid = pay(
        &app,
        &holds[0].0,
        &holds[0].1,
        &Uuid::new_v4().to_string(),
        "tok_visa",
    )
    .await;
    assert_eq!(paid.status().as_u16(), 201);
    let key = Uuid::new_v4().to_string();
    let refused = pay(&app, &holds[1].0, &holds[1].1, &key, "tok_visa").await;
    let problem = assert_problem(refused, 422).await;
    assert_eq!(problem["type"], "urn:marquee:problem:card-seat-limit");
    let replayed = pay(&app, &holds[1].0, &holds[1].1, &key, "tok_visa").await;
    assert_eq!(
        replayed.status().as_u16(),
        422,
        "the refusal is kept for its key"
    );
    let other_card = pay(
        &app,
        &holds[1].0,
        &holds[1].1,
        &Uuid::new_v4().to_string(),
        "tok_visa_another-card",
    )
    .await;
    assert_eq!(
        other_card.status().as_u16(),
        201,
        "the hold was kept for another card"
    );
}

#[tokio::test]
async fn a_lapsed_hold_shows_its_seats_free_on_the_live_map_within_a_second() {
    let app = spawn_app_with(|settings| settings.booking.hold_ttl_seconds = 2).await;
    let (showtime, _) = show(&app, 2, 6).await;
    let stream = app
        .client
        .get(app.url(&format!("/v1/showtimes/{showtime}/seats/stream")))
        .send()
        .await
        .expect("stream");
    let mut events = stream.bytes_stream();
    let held = hold(
        &app,
        showtime,
        json!({"email": "lapse@example.com", "seats": ["A-2"]}),
    )
    .await;
    assert_eq!(held.status().as_u16(), 201);
    let body: Value = held.json().await.expect("json");
    let expires_at: chrono::DateTime<chrono::Utc> = body["hold"]["expires_at"]
        .as_str()
        .expect("expiry")
        .parse()
        .expect("time");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    let mut freed_at = None;
    while Instant::now() < deadline {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(5), events.next()).await
        else {
            break;
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: ")) else {
                continue;
            };
            let states: Value = serde_json::from_str(data).expect("json");
            if chrono::Utc::now() > expires_at && states["taken"].get("A-2").is_none() {
                freed_at = Some(chrono::Utc::now());
            }
        }
        if freed_at.is_some() {
            break;
        }
    }
    let freed_at = freed_at.expect("the lapsed seat came back on the stream");
    let late = (freed_at - expires_at).num_milliseconds();
    assert!(
        late < 1_000,
        "the stream showed the seat free {late} ms after the lapse"
    );
    assert_eq!(held_count(&app, showtime).await, 0);
}
