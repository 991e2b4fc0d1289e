//! Tickets at the door: admission once, void tickets refused online and
//! offline, rotating keys, and the door staff's role.

use chrono::{Duration as Span, Timelike, Utc};
use marquee_booking::door::open_revocations;
use marquee_booking::tickets::{PreviousKey, PublicKey, TicketClaims, TicketSigner};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::accounts::{access, enrol_totp, promote, sign_in, signed_up};
use crate::booking::{held, pay};
use crate::catalog::{created, id_of, movie, schedule, screen, showtime_body, theater_always_open};
use crate::helpers::{assert_problem, spawn_app_with, TestApp};

/// A showtime starting in `minutes`, so the doors take its tickets now.
async fn tonight(app: &TestApp, minutes: i64) -> Uuid {
    let theater = theater_always_open(app, "Marquee Door", "Boston", 42.36, -71.06).await;
    let screen = screen(app, theater, 3, 8).await;
    let movie = movie(app, "Door Movie", 100, "1995-12-15").await;
    let starts = (Utc::now() + Span::minutes(minutes))
        .with_second(0)
        .and_then(|time| time.with_nanosecond(0))
        .expect("time");
    id_of(&created(schedule(app, showtime_body(movie, theater, screen, starts)).await).await)
}

/// Buys `seats` as a guest; the order.
async fn bought(app: &TestApp, showtime: Uuid, email: &str, seats: &[&str]) -> (Value, String) {
    let (hold, token) = held(app, showtime, email, seats).await;
    let card = format!("tok_visa_{}", email.replace(['@', '.'], "-"));
    let response = pay(app, &hold, &token, &Uuid::new_v4().to_string(), &card).await;
    assert_eq!(response.status().as_u16(), 201, "payment refused");
    (response.json().await.expect("json"), token)
}

fn code(order: &Value, seat: &str) -> String {
    order["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .find(|ticket| ticket["seat"] == seat)
        .and_then(|ticket| ticket["code"].as_str())
        .expect("ticket for the seat")
        .to_owned()
}

async fn scan(app: &TestApp, bearer: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/checkins"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .expect("answer")
}

async fn admissions(app: &TestApp) -> i64 {
    let mut total = 0;
    for shard in &app.schema.settings.database.shards {
        let client = crate::helpers::connect(&shard.primary)
            .await
            .expect("connect");
        let row = client
            .query_one(
                &format!("select count(*) from {}.admissions", app.schema.name),
                &[],
            )
            .await
            .expect("count");
        total += row.get::<_, i64>(0);
    }
    total
}

async fn key_set(app: &TestApp) -> Vec<PublicKey> {
    let set: Value = app
        .get("/v1/tickets/signing-key")
        .await
        .json()
        .await
        .expect("json");
    set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| PublicKey {
            kid: key["kid"].as_str().expect("kid").to_owned(),
            x: key["x"].as_str().expect("x").to_owned(),
            current: key["status"] == "current",
            verify_until: key["verify_until"]
                .as_str()
                .and_then(|until| until.parse().ok()),
        })
        .collect()
}

#[tokio::test]
async fn a_valid_ticket_gets_in_once_and_a_second_scan_says_when_and_where() {
    let app = spawn_app_with(|_| {}).await;
    let showtime = tonight(&app, 30).await;
    let (order, _) = bought(&app, showtime, "door@example.com", &["A-1", "A-2"]).await;
    let operator = app.admin_token();

    let first = scan(
        &app,
        &operator,
        json!({"code": code(&order, "A-1"), "showtime_id": showtime, "device_id": "screen-1-left"}),
    )
    .await;
    assert_eq!(first.status().as_u16(), 200);
    let admitted: Value = first.json().await.expect("json");
    assert_eq!(admitted["seat"], "A-1");
    assert_eq!(admitted["showtime_id"], showtime.to_string());
    assert_eq!(admitted["device_id"], "screen-1-left");
    assert_eq!(admitted["offline"], false);

    let again = scan(
        &app,
        &operator,
        json!({"code": code(&order, "A-1"), "showtime_id": showtime, "device_id": "screen-1-right"}),
    )
    .await;
    let problem = assert_problem(again, 409).await;
    assert_eq!(
        problem["type"],
        "urn:marquee:problem:ticket-already-admitted"
    );
    assert_eq!(problem["admission"]["device_id"], "screen-1-left");
    assert_eq!(problem["admission"]["admitted_at"], admitted["admitted_at"]);
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("screen-1-left"));
    assert_eq!(admissions(&app).await, 1);

    let other_seat = scan(
        &app,
        &operator,
        json!({"code": code(&order, "A-2"), "showtime_id": showtime, "device_id": "screen-1-right"}),
    )
    .await;
    assert_eq!(other_seat.status().as_u16(), 200);
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("marquee_door_scans_total{outcome=\"already_admitted\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_cancelled_ticket_is_refused_at_the_door_and_the_resold_seat_gets_in() {
    let app = spawn_app_with(|settings| settings.booking.cancellation.cutoff_minutes = 0).await;
    let showtime = tonight(&app, 150).await;
    let (order, token) = bought(&app, showtime, "refund@example.com", &["B-4"]).await;
    let old_code = code(&order, "B-4");
    let cancelled = app
        .client
        .post(app.url(&format!(
            "/v1/orders/{}/cancellation",
            order["id"].as_str().expect("id")
        )))
        .header("Booking-Token", &token)
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(cancelled.status().as_u16(), 200, "cancelled");
    let (resold, _) = bought(&app, showtime, "second@example.com", &["B-4"]).await;
    let operator = app.admin_token();

    let refused = scan(
        &app,
        &operator,
        json!({"code": old_code, "showtime_id": showtime, "device_id": "door"}),
    )
    .await;
    let problem = assert_problem(refused, 409).await;
    assert_eq!(problem["type"], "urn:marquee:problem:ticket-void");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("cancelled"));
    let admitted = scan(
        &app,
        &operator,
        json!({"code": code(&resold, "B-4"), "showtime_id": showtime, "device_id": "door"}),
    )
    .await;
    assert_eq!(admitted.status().as_u16(), 200);
    assert_eq!(admissions(&app).await, 1);
}

#[tokio::test]
async fn forged_truncated_and_other_showtime_codes_get_422_and_nothing_is_recorded() {
    let app = spawn_app_with(|_| {}).await;
    let showtime = tonight(&app, 30).await;
    let other = tonight(&app, 40).await;
    let (order, _) = bought(&app, showtime, "forged@example.com", &["C-1"]).await;
    let genuine = code(&order, "C-1");
    let claims = TicketClaims {
        ticket: Uuid::new_v4(),
        order: Uuid::new_v4(),
        showtime,
        seat: "C-2".to_owned(),
    };
    let forged_key = TicketSigner::new("a key nobody gave this service", &[]).sign(&claims);
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!("{}.{}.{}x.{}", parts[0], parts[1], parts[2], parts[3]);
    let operator = app.admin_token();
    for (bad, field) in [
        (
            json!({"code": genuine[..genuine.len() - 12], "showtime_id": showtime, "device_id": "d"}),
            "code",
        ),
        (
            json!({"code": tampered, "showtime_id": showtime, "device_id": "d"}),
            "code",
        ),
        (
            json!({"code": forged_key, "showtime_id": showtime, "device_id": "d"}),
            "code",
        ),
        (
            json!({"code": genuine, "showtime_id": other, "device_id": "d"}),
            "code",
        ),
        (
            json!({"code": "", "showtime_id": showtime, "device_id": "d"}),
            "code",
        ),
        (
            json!({"code": "x".repeat(5000), "showtime_id": showtime, "device_id": "d"}),
            "code",
        ),
        (
            json!({"code": genuine, "showtime_id": showtime, "device_id": "has space"}),
            "device_id",
        ),
        (
            json!({"code": genuine, "showtime_id": showtime, "device_id": ""}),
            "device_id",
        ),
        (
            json!({"code": genuine, "showtime_id": "not-a-uuid", "device_id": "d"}),
            "showtime_id",
        ),
    ] {
        let problem = assert_problem(scan(&app, &operator, bad.clone()).await, 422).await;
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|error| error["field"].as_str())
            .collect();
        assert!(
            named.iter().any(|name| name.starts_with(field)),
            "{bad}: {problem}"
        );
    }
    let unknown = scan(
        &app,
        &operator,
        json!({"code": TicketSigner::new("", &[]).sign(&claims), "showtime_id": showtime, "device_id": "d"}),
    )
    .await;
    assert_problem(unknown, 422).await;
    assert_eq!(admissions(&app).await, 0, "nothing recorded");
}

#[tokio::test]
async fn the_doors_refuse_a_showtime_that_is_not_on_now() {
    let app = spawn_app_with(|_| {}).await;
    let showtime = tonight(&app, 60 * 26).await;
    let (order, _) = bought(&app, showtime, "early@example.com", &["A-5"]).await;
    let problem = assert_problem(
        scan(
            &app,
            &app.admin_token(),
            json!({"code": code(&order, "A-5"), "showtime_id": showtime, "device_id": "door"}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(problem["type"], "urn:marquee:problem:doors-closed");
    assert_eq!(admissions(&app).await, 0);
}

#[tokio::test]
async fn an_admitted_ticket_cannot_be_cancelled_by_its_customer_but_staff_can() {
    let app = spawn_app_with(|settings| {
        settings.booking.cancellation.cutoff_minutes = 0;
        settings.booking.door.opens_minutes_before = 600;
    })
    .await;
    let showtime = tonight(&app, 240).await;
    let (order, token) = bought(&app, showtime, "inside@example.com", &["A-7"]).await;
    let scanned = scan(
        &app,
        &app.admin_token(),
        json!({"code": code(&order, "A-7"), "showtime_id": showtime, "device_id": "door"}),
    )
    .await;
    assert_eq!(scanned.status().as_u16(), 200);
    let path = format!(
        "/v1/orders/{}/cancellation",
        order["id"].as_str().expect("id")
    );
    let refused = app
        .client
        .post(app.url(&path))
        .header("Booking-Token", &token)
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    let problem = assert_problem(refused, 409).await;
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("admitted at the door"));
    let by_staff = app
        .client
        .post(app.url(&format!(
            "/v1/admin/orders/{}/cancellation",
            order["id"].as_str().expect("id")
        )))
        .bearer_auth(app.admin_token())
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(by_staff.status().as_u16(), 200);
}

#[tokio::test]
async fn offline_scanners_refuse_what_the_signed_list_voids_and_upload_admissions_once() {
    let app = spawn_app_with(|settings| settings.booking.cancellation.cutoff_minutes = 0).await;
    let showtime = tonight(&app, 150).await;
    let (kept, _) = bought(&app, showtime, "kept@example.com", &["A-1", "A-2"]).await;
    let (voided, token) = bought(&app, showtime, "void@example.com", &["A-3"]).await;
    let operator = app.admin_token();
    let list = |since: i64| {
        let app = &app;
        let operator = operator.clone();
        async move {
            let response = app
                .client
                .get(app.url(&format!(
                    "/v1/showtimes/{showtime}/revocations?since={since}"
                )))
                .bearer_auth(operator)
                .send()
                .await
                .expect("answer");
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.expect("json")
        }
    };
    let empty = list(0).await;
    assert_eq!(empty["version"], 0);
    let cancelled = app
        .client
        .post(app.url(&format!(
            "/v1/orders/{}/cancellation",
            voided["id"].as_str().expect("id")
        )))
        .header("Booking-Token", &token)
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(cancelled.status().as_u16(), 200);

    let signed = list(0).await;
    assert_eq!(signed["version"], 1);
    let keys = key_set(&app).await;
    let document = open_revocations(
        &keys,
        signed["document"].as_str().expect("document"),
        signed["key_id"].as_str().expect("kid"),
        signed["signature"].as_str().expect("signature"),
    )
    .expect("the list's signature verifies with the key set");
    let void_ticket: Uuid = voided["tickets"][0]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    assert_eq!(document.voided, vec![void_ticket]);
    assert_eq!(document.version, 1);
    let mut altered = signed["document"].as_str().expect("document").to_owned();
    altered.push('A');
    assert!(open_revocations(
        &keys,
        &altered,
        signed["key_id"].as_str().expect("kid"),
        signed["signature"].as_str().expect("signature"),
    )
    .is_none());
    assert_eq!(list(1).await["voided"], json!([]), "nothing new since 1");

    let at = Utc::now() - Span::minutes(2);
    let upload = json!({"device_id": "offline-1", "admissions": [
        {"code": code(&kept, "A-1"), "admitted_at": at.to_rfc3339()},
        {"code": code(&voided, "A-3"), "admitted_at": at.to_rfc3339()},
        {"code": "MQT2.garbage", "admitted_at": at.to_rfc3339()},
        {"code": code(&kept, "A-2"), "admitted_at": (Utc::now() + Span::hours(2)).to_rfc3339()},
    ]});
    let sync = |body: Value| {
        let app = &app;
        let operator = operator.clone();
        async move {
            let response = app
                .client
                .post(app.url("/v1/checkins/sync"))
                .bearer_auth(operator)
                .json(&body)
                .send()
                .await
                .expect("answer");
            assert_eq!(response.status().as_u16(), 200);
            let report: Value = response.json().await.expect("json");
            report["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|result| result["outcome"].as_str().expect("outcome").to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        sync(upload.clone()).await,
        ["admitted", "void", "invalid", "out_of_hours"]
    );
    assert_eq!(
        sync(upload).await,
        ["recorded", "void", "invalid", "out_of_hours"],
        "an upload sent again records nothing new"
    );
    let elsewhere = json!({"device_id": "offline-2", "admissions": [
        {"code": code(&kept, "A-1"), "admitted_at": Utc::now().to_rfc3339()},
    ]});
    assert_eq!(sync(elsewhere).await, ["duplicate"]);
    assert_eq!(admissions(&app).await, 1);

    for bad in [
        json!({"device_id": "d", "admissions": []}),
        json!({"device_id": "d", "admissions": [{"code": "x"}]}),
        json!({"device_id": "", "admissions": [{"code": "x", "admitted_at": at.to_rfc3339()}]}),
        json!({"device_id": "d", "admissions": [{"code": "x", "admitted_at": "yesterday"}]}),
    ] {
        let response = app
            .client
            .post(app.url("/v1/checkins/sync"))
            .bearer_auth(&operator)
            .json(&bad)
            .send()
            .await
            .expect("answer");
        assert_problem(response, 422).await;
    }
    let unknown = app
        .client
        .get(app.url(&format!("/v1/showtimes/{}/revocations", Uuid::new_v4())))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("answer");
    assert_problem(unknown, 404).await;
}

#[tokio::test]
async fn a_rotated_key_keeps_admitting_its_tickets_until_its_date_and_the_key_set_lists_it() {
    let old_secret = "the ticket key before the rotation, long enough";
    let app = spawn_app_with(|settings| {
        settings.booking.previous_ticket_keys = vec![
            PreviousKey {
                secret: old_secret.to_owned(),
                verify_until: Utc::now() + Span::days(1),
            },
            PreviousKey {
                secret: "a key retired long ago, also long enough".to_owned(),
                verify_until: Utc::now() - Span::days(1),
            },
        ];
    })
    .await;
    let keys = key_set(&app).await;
    assert_eq!(keys.len(), 2, "the retired key is no longer published");
    assert!(keys[0].current && !keys[1].current);
    assert!(keys[1].verify_until.is_some());

    let showtime = tonight(&app, 30).await;
    let (order, _) = bought(&app, showtime, "rotated@example.com", &["B-1", "B-2"]).await;
    let ticket = |seat: &str| TicketClaims {
        ticket: order["tickets"]
            .as_array()
            .expect("tickets")
            .iter()
            .find(|ticket| ticket["seat"] == seat)
            .and_then(|ticket| ticket["id"].as_str())
            .expect("ticket")
            .parse()
            .expect("uuid"),
        order: order["id"].as_str().expect("id").parse().expect("uuid"),
        showtime,
        seat: seat.to_owned(),
    };
    let signed_before = TicketSigner::new(old_secret, &[]).sign(&ticket("B-1"));
    let admitted = scan(
        &app,
        &app.admin_token(),
        json!({"code": signed_before, "showtime_id": showtime, "device_id": "door"}),
    )
    .await;
    assert_eq!(
        admitted.status().as_u16(),
        200,
        "an old key's ticket gets in"
    );
    let retired =
        TicketSigner::new("a key retired long ago, also long enough", &[]).sign(&ticket("B-2"));
    let problem = assert_problem(
        scan(
            &app,
            &app.admin_token(),
            json!({"code": retired, "showtime_id": showtime, "device_id": "door"}),
        )
        .await,
        422,
    )
    .await;
    assert!(problem["errors"][0]["message"]
        .as_str()
        .expect("message")
        .contains("stopped verifying"));
    assert!(
        code(&order, "B-1").contains(&keys[0].kid),
        "new tickets use the new key"
    );
}

#[tokio::test]
async fn door_routes_are_for_scanners_and_staff_signed_in_with_two_factors() {
    let app = crate::accounts::accounts_app().await;
    let showtime = tonight(&app, 30).await;
    let (order, _) = bought(&app, showtime, "role@example.com", &["C-5"]).await;
    let body = json!({"code": code(&order, "C-5"), "showtime_id": showtime, "device_id": "door"});
    let nobody = app
        .client
        .post(app.url("/v1/checkins"))
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_problem(nobody, 401).await;
    let (email, tokens) = signed_up(&app, "scanner").await;
    assert_problem(scan(&app, access(&tokens), body.clone()).await, 403).await;
    promote(&app, &tokens, "scanner").await;
    let without_factor = sign_in(&app, &email, crate::accounts::PASSWORD, None).await;
    assert_eq!(without_factor["role"], "scanner");
    let problem =
        assert_problem(scan(&app, access(&without_factor), body.clone()).await, 403).await;
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("two-factor"));
    let secret = enrol_totp(&app, &without_factor).await;
    let with_code = sign_in(
        &app,
        &email,
        crate::accounts::PASSWORD,
        // The next step's code: the step the enrolment used cannot be
        // replayed, and the next one is accepted for clock drift.
        Some(&marquee_auth::totp::code_at(
            &secret,
            Utc::now().timestamp() + 30,
        )),
    )
    .await;
    assert_eq!(with_code["role"], "scanner");
    let admitted = scan(&app, access(&with_code), body).await;
    assert_eq!(admitted.status().as_u16(), 200);
    let staff_route = app
        .client
        .get(app.url("/v1/admin/users"))
        .bearer_auth(access(&with_code))
        .send()
        .await
        .expect("answer");
    assert_problem(staff_route, 403).await;
}
