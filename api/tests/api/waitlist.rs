//! The waiting list of a sold-out showtime: freed seats go to the first
//! party that fits, in the order parties joined, who are told on their
//! channels; declined and lapsed offers go to the next party.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::accounts::{access, accounts_app_with, signed_up, user_id};
use crate::booking::{held, pay, show};
use crate::helpers::{assert_problem, TestApp};

async fn join(app: &TestApp, showtime: Uuid, bearer: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/showtimes/{showtime}/waitlist")))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .expect("answer")
}

async fn entry(app: &TestApp, showtime: Uuid, bearer: &str, id: &str) -> Value {
    app.client
        .get(app.url(&format!("/v1/showtimes/{showtime}/waitlist/{id}")))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json")
}

/// Waits for the entry to be offered seats; the entry.
async fn await_offer(app: &TestApp, showtime: Uuid, bearer: &str, id: &str) -> Value {
    for _ in 0..40 {
        let found = entry(app, showtime, bearer, id).await;
        if found["state"] != "waiting" {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("entry {id} was never offered seats");
}

/// A 1 x 4 showtime, sold out to a guest; the showtime and the order.
async fn sold_out(app: &TestApp) -> (Uuid, Value, String) {
    let (showtime, _) = show(app, 1, 4).await;
    let (hold, token) = held(
        app,
        showtime,
        "buyer@example.com",
        &["A-1", "A-2", "A-3", "A-4"],
    )
    .await;
    let paid = pay(app, &hold, &token, &Uuid::new_v4().to_string(), "tok_visa").await;
    assert_eq!(paid.status().as_u16(), 201);
    (showtime, paid.json().await.expect("json"), token)
}

async fn cancel_seats(app: &TestApp, order: &Value, token: &str, seats: &[&str]) {
    let response = app
        .client
        .post(app.url(&format!(
            "/v1/orders/{}/cancellation",
            order["id"].as_str().expect("id")
        )))
        .header("Booking-Token", token)
        .json(&json!({ "seats": seats }))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200, "cancelled");
}

#[tokio::test]
async fn freed_seats_go_to_the_first_party_that_fits_who_is_told_and_pays() {
    let app = accounts_app_with(|_| {}).await;
    let (showtime, order, token) = sold_out(&app).await;
    let (_, big) = signed_up(&app, "party-of-three").await;
    let (_, small) = signed_up(&app, "party-of-two").await;
    let big_entry: Value = join(&app, showtime, access(&big), json!({"party_size": 3}))
        .await
        .json()
        .await
        .expect("json");
    let small_entry: Value = join(&app, showtime, access(&small), json!({"party_size": 2}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(big_entry["ahead"], 0);
    assert_eq!(small_entry["ahead"], 1);

    cancel_seats(&app, &order, &token, &["A-3", "A-4"]).await;
    let offered = await_offer(
        &app,
        showtime,
        access(&small),
        small_entry["id"].as_str().expect("id"),
    )
    .await;
    assert_eq!(offered["state"], "offered");
    let hold_id = offered["hold_id"].as_str().expect("hold").to_owned();
    let still = entry(
        &app,
        showtime,
        access(&big),
        big_entry["id"].as_str().expect("id"),
    )
    .await;
    assert_eq!(
        still["state"], "waiting",
        "a party that does not fit keeps its place"
    );

    let mut told = false;
    for _ in 0..20 {
        let inbox: Value = app
            .client
            .get(app.url("/v1/me/notifications?wait=2"))
            .bearer_auth(access(&small))
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        told = inbox["notices"]
            .as_array()
            .expect("notices")
            .iter()
            .any(|notice| notice["kind"] == "waitlist_offer" && notice["subject_id"] == hold_id);
        if told {
            break;
        }
    }
    assert!(told, "the party was told in its inbox");

    let paid = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(access(&small))
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(
            &json!({"hold_id": hold_id, "payment": {"method": "card", "token": "tok_mastercard"}}),
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(paid.status().as_u16(), 201);
    let mut fulfilled = Value::Null;
    for _ in 0..20 {
        fulfilled = entry(
            &app,
            showtime,
            access(&small),
            small_entry["id"].as_str().expect("id"),
        )
        .await;
        if fulfilled["state"] == "fulfilled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(fulfilled["state"], "fulfilled");
    let staff: Value = app
        .client
        .get(app.url(&format!("/v1/admin/showtimes/{showtime}/waitlist")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let entries = staff["entries"].as_array().expect("entries");
    assert_eq!(
        entries.len(),
        1,
        "only the waiting party is still on the list"
    );
    assert_eq!(entries[0]["user_id"], user_id(&big).to_string());
}

#[tokio::test]
async fn a_declined_offer_goes_to_the_next_party_and_leaving_takes_a_party_off() {
    let app = accounts_app_with(|_| {}).await;
    let (showtime, order, token) = sold_out(&app).await;
    let (_, first) = signed_up(&app, "first-party").await;
    let (_, second) = signed_up(&app, "second-party").await;
    let (_, third) = signed_up(&app, "third-party").await;
    let mut entries = Vec::new();
    for tokens in [&first, &second, &third] {
        let joined: Value = join(&app, showtime, access(tokens), json!({"party_size": 2}))
            .await
            .json()
            .await
            .expect("json");
        entries.push(joined["id"].as_str().expect("id").to_owned());
    }
    let again: Value = join(&app, showtime, access(&first), json!({"party_size": 2}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["id"], entries[0], "joining twice keeps one place");

    let left = app
        .client
        .delete(app.url(&format!("/v1/showtimes/{showtime}/waitlist/{}", entries[1])))
        .bearer_auth(access(&second))
        .send()
        .await
        .expect("answer");
    assert_eq!(left.status().as_u16(), 204);
    cancel_seats(&app, &order, &token, &["A-3", "A-4"]).await;
    let offered = await_offer(&app, showtime, access(&first), &entries[0]).await;
    assert_eq!(offered["state"], "offered");
    let declined = app
        .client
        .post(app.url(&format!(
            "/v1/showtimes/{showtime}/waitlist/{}/decline",
            entries[0]
        )))
        .bearer_auth(access(&first))
        .send()
        .await
        .expect("answer");
    assert_eq!(declined.status().as_u16(), 204);
    let next = await_offer(&app, showtime, access(&third), &entries[2]).await;
    assert_eq!(
        next["state"], "offered",
        "the seats went past the one who left"
    );
    assert_eq!(
        entry(&app, showtime, access(&first), &entries[0]).await["state"],
        "declined"
    );
    let twice = app
        .client
        .post(app.url(&format!(
            "/v1/showtimes/{showtime}/waitlist/{}/decline",
            entries[0]
        )))
        .bearer_auth(access(&first))
        .send()
        .await
        .expect("answer");
    assert_problem(twice, 409).await;
}

#[tokio::test]
async fn bad_waiting_list_requests_get_a_problem_and_change_nothing() {
    let app = accounts_app_with(|_| {}).await;
    let (showtime, _, _) = sold_out(&app).await;
    let (_, tokens) = signed_up(&app, "bad-party").await;
    for body in [
        json!({"party_size": 0}),
        json!({"party_size": 11}),
        json!({"party_size": 2, "wheelchair_spaces": 2}),
        json!({"party_size": "two"}),
        json!({}),
    ] {
        assert_problem(join(&app, showtime, access(&tokens), body).await, 422).await;
    }
    let guest = app
        .client
        .post(app.url(&format!("/v1/showtimes/{showtime}/waitlist")))
        .json(&json!({"party_size": 2}))
        .send()
        .await
        .expect("answer");
    assert_problem(guest, 401).await;
    assert_problem(
        join(
            &app,
            Uuid::new_v4(),
            access(&tokens),
            json!({"party_size": 2}),
        )
        .await,
        404,
    )
    .await;
    let (_, someone_else) = signed_up(&app, "someone-else").await;
    let mine: Value = join(&app, showtime, access(&tokens), json!({"party_size": 2}))
        .await
        .json()
        .await
        .expect("json");
    let peek = app
        .client
        .get(app.url(&format!(
            "/v1/showtimes/{showtime}/waitlist/{}",
            mine["id"].as_str().expect("id")
        )))
        .bearer_auth(access(&someone_else))
        .send()
        .await
        .expect("answer");
    assert_problem(peek, 404).await;
}
