//! The in-app inbox: a booking's notice reaches a waiting long-poll and an
//! event stream at once, bells cross instances through Redis, and bad
//! requests are refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use marquee::inbox::InboxHub;
use marquee_notifications::Bell;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::accounts::{access, accounts_app, get, hold_as, pay_as, post, signed_up};
use crate::booking::show;
use crate::helpers::assert_problem;

#[tokio::test]
async fn a_booking_wakes_a_waiting_long_poll_and_an_event_stream_with_its_notice() {
    let app = accounts_app().await;
    let (_, tokens) = signed_up(&app, "inbox").await;
    let bearer = access(&tokens).to_owned();
    let (showtime, _) = show(&app, 4, 8).await;
    let long_poll = tokio::spawn({
        let (client, url, bearer) = (
            app.client.clone(),
            app.url("/v1/me/notifications?wait=25"),
            bearer.clone(),
        );
        async move {
            let asked = Instant::now();
            let page: Value = client
                .get(url)
                .bearer_auth(bearer)
                .send()
                .await
                .expect("answer")
                .json()
                .await
                .expect("json");
            (asked.elapsed(), page)
        }
    });
    let stream = app
        .client
        .get(app.url("/v1/me/notifications/stream"))
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("a stream");
    assert_eq!(stream.status().as_u16(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/event-stream"));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let held = hold_as(&app, &bearer, showtime, json!(["C-1", "C-2"])).await;
    assert_eq!(held.status().as_u16(), 201);
    let hold: Value = held.json().await.expect("json");
    let paid = pay_as(&app, &bearer, hold["hold"]["id"].clone()).await;
    assert_eq!(paid.status().as_u16(), 201);
    let order: Value = paid.json().await.expect("order");

    let (waited, page) = long_poll.await.expect("long-poll");
    assert!(
        waited < Duration::from_secs(20),
        "the notice ended the wait, not the timeout ({waited:?})"
    );
    let notices = page["notices"].as_array().expect("notices");
    assert_eq!(notices.len(), 1, "{page}");
    assert_eq!(notices[0]["kind"], "booking.confirmed");
    assert_eq!(notices[0]["subject_id"], order["id"]);
    assert!(notices[0]["body"]
        .as_str()
        .expect("body")
        .contains("C-1, C-2"));
    let id = notices[0]["id"].as_str().expect("id").to_owned();
    let mut received = String::new();
    let mut chunks = stream.bytes_stream();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !received.contains(&format!("id: {id}")) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), chunks.next()).await {
            Ok(Some(chunk)) => received.push_str(&String::from_utf8_lossy(&chunk.expect("chunk"))),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    assert!(received.contains(&format!("id: {id}")), "{received}");
    assert!(received.contains("booking.confirmed"), "{received}");

    let marked = post(
        &app,
        "/v1/me/notifications/read",
        Some(&bearer),
        json!({"up_to": id}),
    )
    .await;
    assert_eq!(marked.status().as_u16(), 200);
    let marked: Value = marked.json().await.expect("json");
    assert_eq!(marked["marked"], 1);
    let after: Value = get(&app, "/v1/me/notifications", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert!(after["notices"][0]["read_at"].is_string(), "{after}");
    let nothing_newer: Value = get(&app, &format!("/v1/me/notifications?after={id}"), &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(nothing_newer["notices"], json!([]));
}

#[tokio::test]
async fn a_bell_rung_on_one_instance_wakes_a_waiter_on_another_through_redis() {
    let app = accounts_app().await;
    let settings = &app.schema.settings.redis;
    // Two instances of one deployment: the same Redis and key prefix.
    let channel_prefix = format!("{}bells-{}:", settings.key_prefix, Uuid::new_v4().simple());
    let hub = |prefix: &str| {
        Arc::new(InboxHub::new(
            redis::Client::open(secrecy::ExposeSecret::expose_secret(&settings.url)).ok(),
            prefix,
            Duration::from_millis(500),
        ))
    };
    let (waiting, ringing) = (hub(&channel_prefix), hub(&channel_prefix));
    let listener = Arc::clone(&waiting).spawn_listener();
    let user = Uuid::now_v7();
    let bell = waiting.bell(user);
    // The subscription is up once a ring gets through; ring until it does.
    let woke = async {
        loop {
            let rung = bell.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            ringing.ring(user).await;
            if tokio::time::timeout(Duration::from_millis(200), rung)
                .await
                .is_ok()
            {
                return;
            }
        }
    };

    let woken = tokio::time::timeout(Duration::from_secs(10), woke).await;
    listener.abort();

    assert!(woken.is_ok(), "the other instance's bell woke the waiter");
}

#[tokio::test]
async fn bad_inbox_requests_get_a_problem() {
    let app = accounts_app().await;
    let (_, tokens) = signed_up(&app, "inbox-bad").await;
    let bearer = access(&tokens);

    assert_problem(get(&app, "/v1/me/notifications?wait=31", bearer).await, 400).await;
    assert_problem(get(&app, "/v1/me/notifications?limit=0", bearer).await, 400).await;
    assert_problem(
        get(&app, "/v1/me/notifications?after=yesterday", bearer).await,
        400,
    )
    .await;
    assert_problem(
        post(
            &app,
            "/v1/me/notifications/read",
            Some(bearer),
            json!({"up_to": "not an id"}),
        )
        .await,
        422,
    )
    .await;
    let anonymous = app
        .client
        .get(app.url("/v1/me/notifications"))
        .send()
        .await
        .expect("answer");
    assert_problem(anonymous, 401).await;
}
