//! Holds, orders, payment, tickets and cancellation, against the real
//! cluster and the sandbox card gateway.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use marquee_booking::fairness::{Client, ClientKeys};
use marquee_booking::tickets::{verify_with, PublicKey};
use marquee_ratelimit::{Slots, SlotsSettings};
use marquee_storage::holds::{LockMode, LockPolicy, RoomEntry, SeatChoice};
use marquee_storage::seating::BestRequest;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::catalog::{created, id_of, later, movie, schedule, screen, showtime_body, theater};
use crate::helpers::{assert_problem, connect, spawn_app, spawn_app_with, TestApp};

/// A showtime a day ahead on a `rows` x `seats` screen.
pub async fn show(app: &TestApp, rows: usize, seats: usize) -> (Uuid, Uuid) {
    let theater = theater(app, "Marquee Boston", "Boston", 42.36, -71.06).await;
    let screen = screen(app, theater, rows, seats).await;
    let movie = movie(app, "Heat", 100, "1995-12-15").await;
    let body = showtime_body(movie, theater, screen, later(1, 18));
    (id_of(&created(schedule(app, body).await).await), movie)
}

pub async fn hold(app: &TestApp, showtime: Uuid, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/showtimes/{showtime}/holds")))
        .json(&body)
        .send()
        .await
        .expect("answer")
}

/// Holds `seats` and returns the hold and its booking token.
pub async fn held(app: &TestApp, showtime: Uuid, email: &str, seats: &[&str]) -> (Value, String) {
    let response = hold(app, showtime, json!({"email": email, "seats": seats})).await;
    assert_eq!(response.status().as_u16(), 201, "hold refused");
    let body: Value = response.json().await.expect("json");
    let token = body["booking_token"].as_str().expect("token").to_owned();
    (body["hold"].clone(), token)
}

pub async fn pay(
    app: &TestApp,
    hold: &Value,
    token: &str,
    key: &str,
    card: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/orders"))
        .header("Booking-Token", token)
        .header("Idempotency-Key", key)
        .json(&json!({"hold_id": hold["id"], "payment": {"method": "card", "token": card}}))
        .send()
        .await
        .expect("answer")
}

async fn seat_map(app: &TestApp, showtime: Uuid) -> Value {
    // The seat map is cached for a few seconds; ask the database.
    app.state
        .cache
        .invalidate(&[marquee::cache::Entry::SeatMap(showtime)])
        .await;
    app.get(&format!("/v1/showtimes/{showtime}/seats"))
        .await
        .json()
        .await
        .expect("json")
}

fn status_of(map: &Value, seat: &str) -> String {
    map["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| row["seats"].as_array().expect("seats").iter())
        .find(|s| s["id"] == seat)
        .map(|s| s["status"].as_str().unwrap_or_default().to_owned())
        .expect("seat on the map")
}

/// Runs a statement on every shard primary with `{schema}` replaced; the
/// rows it matches live on one of them.
pub async fn on_every_shard(app: &TestApp, statement: &str) {
    for shard in &app.schema.settings.database.shards {
        let client = connect(&shard.primary).await.expect("connect");
        client
            .batch_execute(&statement.replace("{schema}", &app.schema.name))
            .await
            .expect("statement runs");
    }
}

async fn count_where(app: &TestApp, query: &str) -> i64 {
    let mut total = 0;
    for shard in &app.schema.settings.database.shards {
        let client = connect(&shard.primary).await.expect("connect");
        let row = client
            .query_one(&query.replace("{schema}", &app.schema.name), &[])
            .await
            .expect("count");
        total += row.get::<_, i64>(0);
    }
    total
}

#[tokio::test]
async fn a_customer_holds_seats_pays_and_gets_signed_tickets() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 3, 8).await;
    let (hold, token) = held(&app, showtime, "ada@example.com", &["B-3", "B-4"]).await;
    assert_eq!(hold["status"], "active");
    assert_eq!(hold["amount_minor"], 2400);
    assert_eq!(status_of(&seat_map(&app, showtime).await, "B-3"), "held");

    let response = pay(&app, &hold, &token, &Uuid::new_v4().to_string(), "tok_visa").await;
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.headers()["idempotent-replayed"], "false");
    let order: Value = response.json().await.expect("json");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["amount_minor"], 2400);
    assert_eq!(order["payment"]["provider"], "sandbox-card");
    let tickets = order["tickets"].as_array().expect("tickets");
    assert_eq!(tickets.len(), 2);

    let set: Value = app
        .get("/v1/tickets/signing-key")
        .await
        .json()
        .await
        .expect("json");
    let keys: Vec<PublicKey> = set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| PublicKey {
            kid: key["kid"].as_str().expect("kid").to_owned(),
            x: key["x"].as_str().expect("x").to_owned(),
            current: key["status"] == "current",
            verify_until: None,
        })
        .collect();
    assert_eq!(keys.len(), 1);
    for ticket in tickets {
        let claims = verify_with(&keys, ticket["code"].as_str().expect("code"))
            .expect("a genuine ticket verifies");
        assert_eq!(claims.seat, ticket["seat"].as_str().expect("seat"));
        assert_eq!(claims.showtime, showtime);
    }
    let map = seat_map(&app, showtime).await;
    assert_eq!(status_of(&map, "B-3"), "sold");
    assert_eq!(map["counts"]["sold"], 2);

    let fetched: Value = app
        .client
        .get(app.url(&format!("/v1/orders/{}", order["id"].as_str().expect("id"))))
        .header("Booking-Token", &token)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(fetched["tickets"], order["tickets"]);

    let map: Value = app
        .client
        .get(app.url("/v1/admin/shards"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let nodes = map["nodes"].as_array().expect("nodes");
    let busy: Vec<&Value> = nodes
        .iter()
        .filter(|node| node["bookings_per_second"].as_f64() > Some(0.0))
        .collect();
    assert_eq!(busy.len(), 1, "one node confirmed the order: {map}");
    assert_eq!(busy[0]["orders"], 1);
    assert_eq!(busy[0]["seat_states"], 2);
}

#[tokio::test]
async fn best_available_seats_sit_together_in_one_row_without_stranding_a_seat() {
    let app = spawn_app().await;
    // An aisle after seat 4 leaves blocks of 4 and 6: three together fit
    // only in the 6, since 3 of the 4 would strand the fourth.
    let (showtime, _) = show(&app, 4, 10).await;
    held(&app, showtime, "a@example.com", &["C-2"]).await;
    let response = hold(
        &app,
        showtime,
        json!({"email": "b@example.com", "best_available": {"count": 3}}),
    )
    .await;
    let body: Value = response.json().await.expect("json");
    let seats: Vec<&str> = body["hold"]["seats"]
        .as_array()
        .unwrap_or_else(|| panic!("no seats: {body}"))
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(seats.len(), 3);
    let row = seats[0].split('-').next().expect("row");
    assert!(
        seats.iter().all(|s| s.starts_with(&format!("{row}-"))),
        "{seats:?}"
    );
    let numbers: Vec<u32> = seats
        .iter()
        .map(|s| {
            s.split('-')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("number")
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{seats:?}");
    assert!(numbers[0] >= 5, "{seats:?}: the 4-seat block cannot take 3");
    assert!(
        numbers[0] != 6 && numbers[2] != 9,
        "{seats:?}: strands a seat"
    );

    let wheelchair = hold(
        &app,
        showtime,
        json!({"email": "c@example.com", "best_available": {"count": 2, "wheelchair_spaces": 1}}),
    )
    .await;
    let body: Value = wheelchair.json().await.expect("json");
    let kinds: Vec<&str> = body["hold"]["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| s["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["wheelchair", "companion"]);
}

#[tokio::test]
async fn a_hold_lapses_and_its_seats_return_with_nobody_acting() {
    let app = spawn_app_with(|settings| settings.booking.hold_ttl_seconds = 1).await;
    let (showtime, _) = show(&app, 2, 6).await;
    let (hold, token) = held(&app, showtime, "ada@example.com", &["A-3"]).await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(status_of(&seat_map(&app, showtime).await, "A-3"), "free");

    // Another customer can take the seat at once.
    held(&app, showtime, "bob@example.com", &["A-3"]).await;
    let late = pay(&app, &hold, &token, "late", "tok_visa").await;
    let problem = assert_problem(late, 409).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("expired"));
    assert_eq!(
        count_where(&app, "select count(*) from {schema}.orders").await,
        0
    );
    assert_eq!(
        count_where(&app, "select count(*) from {schema}.idempotency_keys").await,
        0,
        "a refused order leaves no key behind"
    );

    // The sweeper marks the first hold expired.
    let mut status = Value::Null;
    for _ in 0..30 {
        let response = app
            .client
            .get(app.url(&format!("/v1/holds/{}", hold["id"].as_str().expect("id"))))
            .header("Booking-Token", &token)
            .send()
            .await
            .expect("answer");
        status = response.json::<Value>().await.expect("json")["status"].clone();
        if status == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, "expired");
}

#[tokio::test]
async fn a_hold_can_be_extended_once_and_released_by_its_owner_only() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 2, 6).await;
    let (hold, token) = held(&app, showtime, "ada@example.com", &["A-3"]).await;
    let id = hold["id"].as_str().expect("id");
    let extend = |token: String| {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/holds/{id}/extension"));
        async move {
            client
                .post(url)
                .header("Booking-Token", token)
                .send()
                .await
                .expect("answer")
        }
    };
    let first = extend(token.clone()).await;
    assert_eq!(first.status().as_u16(), 200);
    let extended: Value = first.json().await.expect("json");
    assert_eq!(extended["extended"], true);
    assert!(extended["expires_at"].as_str() > hold["expires_at"].as_str());
    assert_problem(extend(token.clone()).await, 409).await;

    let stranger = app
        .client
        .delete(app.url(&format!("/v1/holds/{id}")))
        .header("Booking-Token", "bk_not-the-token")
        .send()
        .await
        .expect("answer");
    assert_problem(stranger, 403).await;
    assert_eq!(status_of(&seat_map(&app, showtime).await, "A-3"), "held");
    let anonymous = app
        .client
        .delete(app.url(&format!("/v1/holds/{id}")))
        .send()
        .await
        .expect("answer");
    assert_problem(anonymous, 401).await;

    let released = app
        .client
        .delete(app.url(&format!("/v1/holds/{id}")))
        .header("Booking-Token", &token)
        .send()
        .await
        .expect("answer");
    assert_eq!(released.status().as_u16(), 204);
    assert_eq!(status_of(&seat_map(&app, showtime).await, "A-3"), "free");
}

#[tokio::test]
async fn one_customer_cannot_hold_more_than_the_limit_of_a_showtime() {
    let app = spawn_app_with(|settings| settings.booking.max_seats_per_customer = 4).await;
    let (showtime, _) = show(&app, 3, 8).await;
    held(
        &app,
        showtime,
        "scalper@example.com",
        &["A-3", "A-4", "A-5"],
    )
    .await;
    let over = hold(
        &app,
        showtime,
        json!({"email": "Scalper@Example.com", "seats": ["B-3", "B-4"]}),
    )
    .await;
    let problem = assert_problem(over, 429).await;
    assert_eq!(problem["type"], "urn:marquee:problem:unpaid-seat-limit");
    held(&app, showtime, "scalper@example.com", &["B-3"]).await;
    assert_eq!(
        count_where(
            &app,
            "select count(*) from {schema}.seat_states where state = 'held'"
        )
        .await,
        4
    );
}

#[tokio::test]
async fn bad_holds_get_a_problem_and_change_nothing() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 2, 6).await;
    let cases = [
        (
            json!({"email": "a@example.com", "seats": ["Z-9"]}),
            422,
            "seats[0]",
        ),
        (
            json!({"email": "a@example.com", "seats": ["A-1", "A-1"]}),
            422,
            "seats[1]",
        ),
        (json!({"email": "a@example.com"}), 422, "seats"),
        (
            json!({"email": "a@example.com", "seats": ["A-1"], "best_available": {"count": 1}}),
            422,
            "seats",
        ),
        (
            json!({"email": "a@example.com", "best_available": {"count": 2, "wheelchair_spaces": 2}}),
            422,
            "best_available.wheelchair_spaces",
        ),
        (
            json!({"email": "a@example.com", "best_available": {"count": 11}}),
            422,
            "best_available.count",
        ),
        (
            json!({"email": "not-an-email", "seats": ["A-1"]}),
            422,
            "email",
        ),
    ];
    for (body, status, field) in cases {
        let problem = assert_problem(hold(&app, showtime, body.clone()).await, status).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(fields.contains(&field), "{body}: {problem}");
    }
    let unknown = hold(
        &app,
        Uuid::new_v4(),
        json!({"email": "a@example.com", "seats": ["A-1"]}),
    )
    .await;
    assert_problem(unknown, 404).await;
    held(&app, showtime, "a@example.com", &["A-3"]).await;
    let taken = hold(
        &app,
        showtime,
        json!({"email": "b@example.com", "seats": ["A-3", "A-4"]}),
    )
    .await;
    let problem = assert_problem(taken, 409).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("A-3"));

    on_every_shard(
        &app,
        &format!("update {{schema}}.showtimes set starts_at = now() - interval '5 minutes' where id = '{showtime}'"),
    )
    .await;
    let started = hold(
        &app,
        showtime,
        json!({"email": "c@example.com", "seats": ["B-1"]}),
    )
    .await;
    assert_problem(started, 409).await;
    assert_eq!(
        count_where(&app, "select count(*) from {schema}.seat_states").await,
        1,
        "only the one good hold wrote anything"
    );
    assert_eq!(
        count_where(&app, "select count(*) from {schema}.holds").await,
        1
    );
}

#[tokio::test]
async fn a_retried_order_replays_its_answer_and_a_reused_key_is_refused() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 2, 6).await;
    let (hold, token) = held(&app, showtime, "ada@example.com", &["A-3"]).await;
    let key = Uuid::new_v4().to_string();
    let first = pay(&app, &hold, &token, &key, "tok_visa").await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.expect("json");

    let again = pay(&app, &hold, &token, &key, "tok_visa").await;
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.expect("json"), first);

    let other_card = pay(&app, &hold, &token, &key, "tok_mastercard").await;
    let problem = assert_problem(other_card, 422).await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(
        count_where(&app, "select count(*) from {schema}.orders").await,
        1
    );
    assert_eq!(
        count_where(
            &app,
            "select count(*) from {schema}.payments where kind = 'capture'"
        )
        .await,
        1,
        "charged once"
    );

    let (other, other_token) = held(&app, showtime, "bob@example.com", &["A-4"]).await;
    let stolen = pay(
        &app,
        &other,
        &token,
        &Uuid::new_v4().to_string(),
        "tok_visa",
    )
    .await;
    assert_problem(stolen, 403).await;
    let no_key = app
        .client
        .post(app.url("/v1/orders"))
        .header("Booking-Token", &other_token)
        .json(&json!({"hold_id": other["id"], "payment": {"method": "card", "token": "tok_visa"}}))
        .send()
        .await
        .expect("answer");
    assert_problem(no_key, 400).await;
    let card_number = pay(&app, &other, &other_token, "k2", "4242 4242 4242 4242").await;
    let problem = assert_problem(card_number, 422).await;
    assert!(
        !problem.to_string().contains("4242"),
        "a card number is never echoed"
    );
    assert_eq!(
        count_where(&app, "select count(*) from {schema}.orders").await,
        1
    );
}

#[tokio::test]
async fn a_key_still_in_flight_answers_409_and_a_gateway_timeout_is_resolved_by_lookup() {
    let app = spawn_app_with(|settings| {
        settings.payments.timeout_ms = 400;
        settings.payments.sandbox_late_answer_ms = 1_500;
    })
    .await;
    let (showtime, _) = show(&app, 2, 6).await;
    let (hold, token) = held(&app, showtime, "ada@example.com", &["A-3"]).await;
    let key = Uuid::new_v4().to_string();
    let slow = pay(&app, &hold, &token, &key, "tok_timeout");
    let racing = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        pay(&app, &hold, &token, &key, "tok_timeout").await
    };
    let (slow, racing) = tokio::join!(slow, racing);
    assert_problem(racing, 409).await;
    // The gateway recorded the authorization it answered too late; the
    // order finds it and completes.
    assert_eq!(slow.status().as_u16(), 201);
    let order: Value = slow.json().await.expect("json");
    assert_eq!(order["status"], "confirmed");
}

#[tokio::test]
async fn a_declined_card_keeps_the_hold_so_another_card_can_pay_and_nothing_is_released_twice() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 2, 6).await;
    let (hold, token) = held(&app, showtime, "ada@example.com", &["A-3", "A-4"]).await;
    let declined_key = Uuid::new_v4().to_string();
    for card in ["tok_chargeDeclined", "tok_chargeDeclinedInsufficientFunds"] {
        let key = if card == "tok_chargeDeclined" {
            declined_key.clone()
        } else {
            Uuid::new_v4().to_string()
        };
        let declined = assert_problem(pay(&app, &hold, &token, &key, card).await, 402).await;
        assert!(declined["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("declined"));
        let map = seat_map(&app, showtime).await;
        assert_eq!(
            map["counts"]["held"], 2,
            "the hold keeps its seats after {card}"
        );
    }
    let replay = pay(&app, &hold, &token, &declined_key, "tok_chargeDeclined").await;
    assert_problem(replay, 402).await;

    let paid = pay(&app, &hold, &token, &Uuid::new_v4().to_string(), "tok_visa").await;
    assert_eq!(paid.status().as_u16(), 201);
    let map = seat_map(&app, showtime).await;
    assert_eq!(map["counts"]["sold"], 2);
    assert_eq!(map["counts"]["held"], 0);
    assert_eq!(map["counts"]["free"], 10);
    assert_eq!(
        count_where(
            &app,
            "select count(*) from {schema}.orders where status = 'failed'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn customers_cancel_by_the_policy_tiers_and_staff_cancel_anything() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 3, 8).await;
    let (hold, token) = held(&app, showtime, "ada@example.com", &["B-2", "B-3", "B-4"]).await;
    let order: Value = pay(&app, &hold, &token, "k1", "tok_visa")
        .await
        .json()
        .await
        .expect("json");
    let id = order["id"].as_str().expect("id").to_owned();
    let cancel = |token: &str, body: Value| {
        app.client
            .post(app.url(&format!("/v1/orders/{id}/cancellation")))
            .header("Booking-Token", token.to_owned())
            .json(&body)
            .send()
    };

    // A day ahead: a full refund for one seat, which goes back on sale.
    let one = cancel(&token, json!({"seats": ["B-2"]}))
        .await
        .expect("answer");
    assert_eq!(one.status().as_u16(), 200);
    let one: Value = one.json().await.expect("json");
    assert_eq!(one["refund"]["amount_minor"], 1200);
    assert_eq!(one["refund"]["status"], "succeeded");
    assert_eq!(one["order"]["status"], "confirmed");
    assert_eq!(status_of(&seat_map(&app, showtime).await, "B-2"), "free");
    let again = cancel(&token, json!({"seats": ["B-2"]}))
        .await
        .expect("answer");
    assert_problem(again, 422).await;
    assert_problem(cancel("bk_wrong", json!({})).await.expect("answer"), 403).await;

    // An hour ahead: half back.
    on_every_shard(
        &app,
        &format!("update {{schema}}.showtimes set starts_at = now() + interval '60 minutes' where id = '{showtime}'"),
    )
    .await;
    let half: Value = cancel(&token, json!({"seats": ["B-3"]}))
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(half["refund"]["amount_minor"], 600);

    // Past the cutoff customers cannot cancel; staff still can.
    on_every_shard(
        &app,
        &format!("update {{schema}}.showtimes set starts_at = now() + interval '10 minutes' where id = '{showtime}'"),
    )
    .await;
    assert_problem(cancel(&token, json!({})).await.expect("answer"), 409).await;
    let staff = app
        .client
        .post(app.url(&format!("/v1/admin/orders/{id}/cancellation")))
        .bearer_auth(app.admin_token())
        .json(&json!({"refund_percent": 100}))
        .send()
        .await
        .expect("answer");
    assert_eq!(staff.status().as_u16(), 200);
    let staff: Value = staff.json().await.expect("json");
    assert_eq!(staff["order"]["status"], "cancelled");
    assert_eq!(staff["order"]["refunded_minor"], 1200 + 600 + 1200);
    assert_eq!(staff["cancelled_seats"], json!(["B-4"]));
    assert_eq!(seat_map(&app, showtime).await["counts"]["sold"], 0);
    assert_eq!(
        count_where(
            &app,
            "select count(*) from {schema}.payments where kind = 'refund' and status = 'succeeded'"
        )
        .await,
        3
    );
}

/// Buyers racing for the seats of one showtime in one locking mode; every
/// seat held at most once, and the database agrees with the answers.
async fn race(app: &TestApp, policy: LockPolicy, buyers: usize) {
    let (showtime, _) = show(app, 5, 10).await;
    app.state
        .storage
        .set_lock_policy(showtime, policy)
        .await
        .expect("policy set");
    let tasks: Vec<_> = (0..buyers)
        .map(|i| {
            let booking = Arc::clone(&app.state.booking);
            tokio::spawn(async move {
                // Half want the same four seats; half want any two together.
                let choice = if i % 2 == 0 {
                    SeatChoice::Seats(vec!["C-5".to_owned(), "C-6".to_owned()])
                } else {
                    SeatChoice::Best(BestRequest {
                        count: 2,
                        wheelchair: 0,
                    })
                };
                booking
                    .hold(
                        showtime,
                        &format!("buyer{i}@example.com"),
                        &choice,
                        None,
                        &Client::default(),
                        RoomEntry::NoPass,
                    )
                    .await
                    .map(|(hold, _)| hold)
            })
        })
        .collect();
    let mut seats = Vec::new();
    let mut holds = 0;
    for task in tasks {
        if let Ok(hold) = task.await.expect("task") {
            holds += 1;
            seats.extend(hold.seats.into_iter().map(|seat| seat.seat));
        }
    }
    let unique: HashSet<&String> = seats.iter().collect();
    assert_eq!(
        unique.len(),
        seats.len(),
        "{policy:?}: a seat was held twice"
    );
    assert!(
        holds >= 20,
        "{policy:?}: only {holds} holds in a 50-seat showtime"
    );
    let in_db = count_where(
        app,
        &format!("select count(*) from {{schema}}.seat_states where showtime_id = '{showtime}' and state = 'held'"),
    )
    .await;
    assert_eq!(
        in_db as usize,
        seats.len(),
        "{policy:?}: answers and rows disagree"
    );
}

#[tokio::test]
async fn hundreds_of_racing_buyers_never_get_the_same_seat_in_any_locking_mode() {
    let app = spawn_app_with(|settings| settings.database.pool.max_size = 16).await;
    for policy in [
        LockPolicy::Fixed(LockMode::Optimistic),
        LockPolicy::Fixed(LockMode::Pessimistic),
        LockPolicy::Auto,
    ] {
        race(&app, policy, 200).await;
    }
}

#[tokio::test]
async fn contention_switches_a_showtime_to_pessimistic_and_admins_see_it() {
    let app = spawn_app_with(|settings| {
        settings.database.pool.max_size = 16;
        settings.booking.locking.min_samples = 5;
        settings.booking.locking.pessimistic_above = 0.1;
    })
    .await;
    let (showtime, _) = show(&app, 5, 10).await;
    let path = format!("/v1/admin/showtimes/{showtime}/locking");
    let before: Value = app
        .client
        .get(app.url(&path))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(before["policy"], "auto");
    assert_eq!(before["mode"], "optimistic");
    let mut switched = false;
    for round in 0..5 {
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let booking = Arc::clone(&app.state.booking);
                tokio::spawn(async move {
                    let choice = SeatChoice::Best(BestRequest {
                        count: 1,
                        wheelchair: 0,
                    });
                    let _ = booking
                        .hold(
                            showtime,
                            &format!("r{round}b{i}@example.com"),
                            &choice,
                            None,
                            &Client::default(),
                            RoomEntry::NoPass,
                        )
                        .await;
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let now: Value = app
            .client
            .get(app.url(&path))
            .bearer_auth(app.admin_token())
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        if now["auto_mode"] == "pessimistic" {
            assert!(now["switches"].as_i64() >= Some(1));
            assert_eq!(now["switch_log"][0]["mode"], "pessimistic");
            assert!(now["switch_log"][0]["conflict_rate"].as_f64() >= Some(0.1));
            switched = true;
            break;
        }
    }
    assert!(
        switched,
        "40 buyers at once for single seats never switched the showtime"
    );
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(metrics.contains("marquee_seat_locking_switches_total{to=\"pessimistic\"}"));

    let pinned = app
        .client
        .put(app.url(&path))
        .bearer_auth(app.admin_token())
        .json(&json!({"policy": "optimistic"}))
        .send()
        .await
        .expect("answer");
    let pinned: Value = pinned.json().await.expect("json");
    assert_eq!(pinned["policy"], "optimistic");
    assert_eq!(pinned["mode"], "optimistic");
    let bad = app
        .client
        .put(app.url(&path))
        .bearer_auth(app.admin_token())
        .json(&json!({"policy": "sometimes"}))
        .send()
        .await
        .expect("answer");
    assert!(bad.status().is_client_error());
}

/// Responses as the recovery sweeper stores them; their shape is the API's
/// business, not the sweeper's.
struct Plain;

impl marquee_booking::Render for Plain {
    fn order(&self, order: &marquee_storage::orders::Order) -> Value {
        json!({"id": order.id, "status": order.status})
    }

    fn problem(&self, status: u16, slug: &str, detail: &str) -> Value {
        json!({"status": status, "type": slug, "detail": detail})
    }
}

#[tokio::test]
async fn a_payment_captured_before_a_crash_is_confirmed_or_refunded_by_recovery() {
    use marquee_payments::{
        AuthorizeRequest, GatewayConfig, PaymentProvider, PaymentState, SandboxCardConfig,
        SandboxCardProvider, SandboxGateway,
    };
    use marquee_storage::orders::{BeginOrder, Begun};

    let app = spawn_app().await;
    let (showtime, _) = show(&app, 2, 6).await;
    let gateway = SandboxGateway::new(GatewayConfig::new("sk_test_recovery"))
        .start("127.0.0.1:0")
        .await
        .expect("gateway");
    let provider = Arc::new(SandboxCardProvider::new(SandboxCardConfig {
        base_url: gateway.url(),
        secret_key: secrecy::SecretString::from("sk_test_recovery".to_owned()),
        timeout: Duration::from_secs(2),
    }));
    let settings = marquee_booking::Settings {
        recovery_after_seconds: 0,
        ticket_signing_secret: "a ticket key for the recovery test, long enough".to_owned(),
        ..marquee_booking::Settings::default()
    };
    let booking = marquee_booking::Booking::new(
        app.state.storage.clone(),
        provider.clone(),
        settings,
        &prometheus::Registry::new(),
        ClientKeys::new(b"recovery test client keys"),
        Slots::new(
            None,
            format!("{}live", app.schema.name),
            SlotsSettings::default(),
        ),
    )
    .expect("booking");

    // Two purchases get as far as a captured payment, then the instance
    // dies before confirming either.
    let mut orders = Vec::new();
    for (email, seat) in [("kept@example.com", "A-3"), ("lost@example.com", "B-3")] {
        let choice = SeatChoice::Seats(vec![seat.to_owned()]);
        let (hold, token) = booking
            .hold(
                showtime,
                email,
                &choice,
                None,
                &Client::default(),
                RoomEntry::NoPass,
            )
            .await
            .expect("hold");
        let token_hash = marquee_booking::token_hash(&token);
        let begun = app
            .state
            .storage
            .begin_order(&BeginOrder {
                key: &Uuid::new_v4().to_string(),
                request_hash: b"request",
                order_id: marquee_sharding::ids::sibling(hold.id),
                hold_id: hold.id,
                token_hash: &token_hash,
                payment_method: "card",
                provider: provider.name(),
                payment_window: Duration::from_secs(300),
                authorization_id: marquee_sharding::ids::sibling(hold.id),
            })
            .await
            .expect("begin");
        let Begun::Started(order) = begun else {
            panic!("a new key starts an order")
        };
        let authorization = provider
            .authorize(&AuthorizeRequest {
                reference: order.id.to_string(),
                token: "tok_visa".to_owned(),
                amount: order.amount,
                currency: order.currency.clone(),
                idempotency_key: Uuid::new_v4().to_string(),
            })
            .await
            .expect("authorized");
        provider
            .capture(&authorization.id, order.amount, &Uuid::new_v4().to_string())
            .await
            .expect("captured");
        orders.push((*order, hold.id));
    }
    // The second purchase's seat is lost meanwhile, as if its hold had
    // lapsed and the seat been sold to someone else.
    on_every_shard(
        &app,
        &format!(
            "delete from {{schema}}.seat_states where hold_id = '{}'",
            orders[1].1
        ),
    )
    .await;

    let settled = booking.recover(&Plain).await.expect("recovery runs");
    assert_eq!(settled, 2);
    let kept = app
        .state
        .storage
        .order(orders[0].0.id)
        .await
        .expect("read")
        .expect("order");
    assert_eq!(kept.status, "confirmed");
    assert_eq!(kept.tickets.len(), 1);
    let lost = app
        .state
        .storage
        .order(orders[1].0.id)
        .await
        .expect("read")
        .expect("order");
    assert_eq!(lost.status, "failed");
    let record = provider
        .find(&lost.id.to_string())
        .await
        .expect("gateway answers")
        .expect("payment exists");
    assert_eq!(record.state, PaymentState::Refunded);
    assert_eq!(record.refunded, lost.amount);
    let kept_record = provider
        .find(&kept.id.to_string())
        .await
        .expect("gateway answers")
        .expect("payment exists");
    assert_eq!(kept_record.state, PaymentState::Captured);
    assert_eq!(
        booking.recover(&Plain).await.expect("recovery runs"),
        0,
        "nothing left to settle"
    );
}

#[tokio::test]
async fn bookings_made_while_their_movie_moves_all_survive_once_and_no_seat_sells_twice() {
    let app = spawn_app_with(|settings| settings.database.pool.max_size = 16).await;
    // 100 seats for 48 purchases of two.
    let (showtime, movie) = show(&app, 10, 10).await;
    let home = crate::helpers::home_of(&app, movie);
    let away = ["shard-0", "shard-1", "shard-2"]
        .into_iter()
        .find(|node| *node != home)
        .expect("another node")
        .to_owned();
    let buyers: Vec<_> = (0..24)
        .map(|i| {
            let booking = Arc::clone(&app.state.booking);
            tokio::spawn(async move {
                let mut confirmed = Vec::new();
                for round in 0..2 {
                    let email = format!("mover{i}r{round}@example.com");
                    let choice = SeatChoice::Best(BestRequest {
                        count: 2,
                        wheelchair: 0,
                    });
                    // A request refused while the movie is fenced is retried,
                    // as a client would on a 503, for as long as a move on a
                    // busy machine may take.
                    let mut placed = None;
                    for _ in 0..400 {
                        match booking
                            .hold(
                                showtime,
                                &email,
                                &choice,
                                None,
                                &Client::default(),
                                RoomEntry::NoPass,
                            )
                            .await
                        {
                            Ok(held) => {
                                placed = Some(held);
                                break;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                    let Some((hold, token)) = placed else {
                        continue;
                    };
                    let key = Uuid::new_v4().to_string();
                    // A card of its own per buyer: one card pays for no
                    // more seats of a showtime than one customer may.
                    let request = marquee_booking::OrderRequest {
                        hold_id: hold.id,
                        method: "card".to_owned(),
                        token: format!("tok_visa_{}", hold.id),
                    };
                    for _ in 0..400 {
                        match booking.place_order(&key, &request, &token, &Plain).await {
                            Ok(reply) if reply.status == 201 => {
                                let id: Uuid = reply.body["id"]
                                    .as_str()
                                    .and_then(|id| id.parse().ok())
                                    .expect("order id");
                                confirmed.push(id);
                                break;
                            }
                            Ok(reply) => panic!("order refused: {}", reply.body),
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
                confirmed
            })
        })
        .collect();
    for node in [&away, &home] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let moved = crate::catalog::admin(
            &app,
            reqwest::Method::PUT,
            &format!("/v1/admin/movies/{movie}/placement"),
            json!({"node": node}),
        )
        .await;
        assert_eq!(moved.status().as_u16(), 200, "move to {node}");
    }
    let mut orders = Vec::new();
    for buyer in buyers {
        orders.extend(buyer.await.expect("buyer"));
    }
    assert!(
        orders.len() >= 40,
        "only {} of 48 purchases completed",
        orders.len()
    );
    let mut seats = HashSet::new();
    for id in &orders {
        let order = app
            .state
            .storage
            .order(*id)
            .await
            .expect("read")
            .expect("order survived");
        assert_eq!(order.status, "confirmed");
        for ticket in &order.tickets {
            assert!(
                seats.insert(ticket.seat.clone()),
                "{} sold twice",
                ticket.seat
            );
        }
    }
    assert_eq!(
        count_where(
            &app,
            "select count(*) from {schema}.orders where status = 'confirmed'"
        )
        .await,
        orders.len() as i64,
        "no order duplicated or left on the old node"
    );
    assert_eq!(
        count_where(
            &app,
            "select count(*) from {schema}.seat_states where state = 'sold'"
        )
        .await,
        seats.len() as i64
    );
    assert_eq!(crate::helpers::holders(&app, movie).await, vec![home]);
}

#[tokio::test]
async fn seats_are_held_and_paid_for_while_redis_is_down_and_readiness_says_degraded() {
    let app = spawn_app_with(|settings| {
        settings.redis.url = "redis://127.0.0.1:1/".to_owned().into();
    })
    .await;
    let (showtime, _) = show(&app, 2, 6).await;

    let (hold, token) = held(&app, showtime, "no-redis@example.com", &["A-3", "A-4"]).await;
    let paid = pay(&app, &hold, &token, &Uuid::new_v4().to_string(), "tok_visa").await;

    assert_eq!(paid.status().as_u16(), 201, "the sale goes through");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 200);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "degraded", "{body}");
}
