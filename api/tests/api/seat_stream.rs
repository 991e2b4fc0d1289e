//! Live seat maps: a watcher's stream starts with the current states and
//! then shows each hold, sale and release as it commits, carried by the
//! change stream through the real relay and broker.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::booking::{hold, show};
use crate::helpers::{assert_problem, spawn_app};

/// Reads server-sent events until one satisfies `done`; every `seats`
/// event's data so far.
async fn read_until(
    chunks: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: ")) {
                let states: Value = serde_json::from_str(data).expect("json data");
                if done(&states) {
                    return states;
                }
            }
        }
        match tokio::time::timeout(Duration::from_secs(1), chunks.next()).await {
            Ok(Some(chunk)) => buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk"))),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    panic!("the awaited seat states never arrived: {buffer}");
}

#[tokio::test]
async fn a_watched_seat_map_shows_each_hold_and_release_as_it_commits() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 4, 8).await;
    let response = app
        .client
        .get(app.url(&format!("/v1/showtimes/{showtime}/seats/stream")))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(response.status().as_u16(), 200);
    let mut chunks = response.bytes_stream();
    let mut buffer = String::new();
    let first = read_until(&mut chunks, &mut buffer, |_| true).await;
    assert_eq!(first["taken"], json!({}));
    assert_eq!(first["seats_available"], 32);

    let held = hold(
        &app,
        showtime,
        json!({"email": "watcher@example.com", "seats": ["C-4", "C-5"]}),
    )
    .await;
    assert_eq!(held.status().as_u16(), 201);
    let held: Value = held.json().await.expect("json");
    let after_hold = read_until(&mut chunks, &mut buffer, |states| {
        states["taken"]["C-4"] == "held"
    })
    .await;
    assert_eq!(after_hold["taken"], json!({"C-4": "held", "C-5": "held"}));
    assert_eq!(after_hold["seats_available"], 30);

    let released = app
        .client
        .delete(app.url(&format!(
            "/v1/holds/{}",
            held["hold"]["id"].as_str().expect("id")
        )))
        .header(
            "Booking-Token",
            held["booking_token"].as_str().expect("token"),
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(released.status().as_u16(), 204);
    let after_release = read_until(&mut chunks, &mut buffer, |states| {
        states["taken"] == json!({})
    })
    .await;
    assert_eq!(after_release["seats_available"], 32);
}

#[tokio::test]
async fn the_stream_of_an_unknown_showtime_is_a_404_problem() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url(&format!("/v1/showtimes/{}/seats/stream", Uuid::new_v4())))
        .send()
        .await
        .expect("answer");
    assert_problem(response, 404).await;
}
