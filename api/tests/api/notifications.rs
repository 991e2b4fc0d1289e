//! The notification service against the real broker and SMTP sink: a
//! booking's confirmation lands with a scannable QR per ticket and a valid
//! calendar file, and a replayed stream sends nothing twice.

use std::sync::Arc;
use std::time::Duration;

use icalendar::{Calendar, CalendarComponent, Component, EventLike};
use mail_parser::MimeHeaders;
use marquee_notifications::{Notifier, Settings};
use marquee_sharding::NodeId;
use marquee_storage::receipts::Claim;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::accounts::unique_email;
use crate::booking::{held, pay, show};
use crate::helpers::{recent_mail, spawn_app, PrivateBroker, TestApp};

/// Every message the sink holds for `to`, raw, once at least `count` have
/// arrived (the consumer group may take a few seconds to be assigned).
async fn messages_to(to: &str, count: usize) -> Vec<Vec<u8>> {
    for _ in 0..600 {
        let mut found = Vec::new();
        for path in recent_mail() {
            let Ok(raw) = std::fs::read(&path) else {
                continue;
            };
            let header_end = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n" || w.starts_with(b"\n\n"))
                .unwrap_or(raw.len());
            let headers = String::from_utf8_lossy(&raw[..header_end]).to_ascii_lowercase();
            if headers.contains(&format!("to: {to}")) {
                found.push(raw);
            }
        }
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{count} message(s) to {to} never arrived");
}

/// How many events the notifiers registered in `registry` handled with
/// `outcome`.
fn handled(registry: &prometheus::Registry, outcome: &str) -> f64 {
    registry
        .gather()
        .iter()
        // The service's registry prefixes every name with `marquee_`.
        .filter(|family| family.name().ends_with("notifications_total"))
        .flat_map(|family| family.get_metric().to_vec())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|label| label.name() == "outcome" && label.value() == outcome)
        })
        .map(|metric| metric.get_counter().get_value())
        .sum()
}

/// A confirmed order of two seats by a guest; the order's JSON.
async fn booked(app: &TestApp, email: &str) -> Value {
    let (showtime, _) = show(app, 4, 8).await;
    let (hold, token) = held(app, showtime, email, &["B-3", "B-4"]).await;
    let paid = pay(app, &hold, &token, &Uuid::new_v4().to_string(), "tok_visa").await;
    assert_eq!(paid.status().as_u16(), 201);
    paid.json().await.expect("order")
}

/// The text a QR image encodes.
fn scan(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a png");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("a frame");
    let (width, height) = (frame.width as usize, frame.height as usize);
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code per image");
    let (_, text) = grids[0].decode().expect("a readable QR code");
    text
}

#[tokio::test]
async fn a_confirmed_booking_mails_a_scannable_qr_per_ticket_and_a_valid_calendar_entry() {
    let app = spawn_app().await;
    let email = unique_email("tickets");
    let order = booked(&app, &email).await;

    let raw = messages_to(&email, 1).await;

    assert_eq!(raw.len(), 1);
    let message = mail_parser::MessageParser::default()
        .parse(&raw[0])
        .expect("a MIME message");
    assert!(message
        .subject()
        .expect("subject")
        .starts_with("Your tickets: Heat"));
    let text = message.body_text(0).expect("a text part");
    assert!(text.contains("Seats: B-3, B-4"), "{text}");
    assert!(text.contains(order["id"].as_str().expect("id")), "{text}");
    let mut codes: Vec<String> = Vec::new();
    let mut calendar = None;
    for attachment in message.attachments() {
        match attachment.attachment_name() {
            Some(name) if name.ends_with(".png") => codes.push(scan(attachment.contents())),
            Some("showtime.ics") => {
                calendar = Some(String::from_utf8(attachment.contents().to_vec()).expect("utf-8"));
            }
            other => panic!("unexpected attachment {other:?}"),
        }
    }
    let mut issued: Vec<String> = order["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .map(|ticket| ticket["code"].as_str().expect("code").to_owned())
        .collect();
    codes.sort();
    issued.sort();
    assert_eq!(codes, issued, "each QR carries its ticket's signed code");
    let calendar: Calendar = calendar
        .expect("a calendar file")
        .parse()
        .expect("a valid iCalendar file");
    let events: Vec<_> = calendar
        .components
        .iter()
        .filter_map(|component| match component {
            CalendarComponent::Event(event) => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1);
    let event = events[0];
    let showtime = app
        .state
        .storage
        .showtime(
            order["showtime_id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("uuid"),
        )
        .await
        .expect("read")
        .expect("showtime");
    assert_eq!(
        event.property_value("DTSTART"),
        Some(
            showtime
                .schedule
                .starts_at
                .format("%Y%m%dT%H%M%SZ")
                .to_string()
                .as_str()
        )
    );
    assert!(event
        .get_location()
        .is_some_and(|place| place.contains("Marquee Boston")));
    assert_eq!(event.property_value("STATUS"), Some("CONFIRMED"));
}

#[tokio::test]
async fn a_stream_replayed_from_the_start_sends_nothing_twice() {
    let app = spawn_app().await;
    let email = unique_email("replayed");
    booked(&app, &email).await;
    messages_to(&email, 1).await;

    // A consumer group with no committed offsets reads the topic from its
    // start: what a consumer that crashed before committing, or one whose
    // broker lost its offsets, is handed again.
    let registry = prometheus::Registry::new();
    let replaying = Arc::new(
        Notifier::new(
            app.state.storage.clone(),
            app.state.auth.mailer.clone(),
            Arc::clone(&app.state.sms),
            Arc::clone(&app.state.inbox) as Arc<dyn marquee_notifications::Bell>,
            &app.schema.settings.broker.bootstrap_servers,
            Settings {
                group_id: format!("replay-{}", Uuid::new_v4().simple()),
                ..Settings::default()
            },
            &registry,
        )
        .expect("notifier"),
    );
    let task = Arc::clone(&replaying).spawn();
    let duplicates = || handled(&registry, "duplicate");
    for _ in 0..600 {
        if duplicates() >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();

    assert!(duplicates() >= 1.0, "the replay reached the confirmation");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        messages_to(&email, 1).await.len(),
        1,
        "the customer got one confirmation"
    );
}

#[tokio::test]
async fn a_receipt_left_by_a_consumer_that_died_mid_send_is_taken_over_after_the_timeout() {
    let app = spawn_app().await;
    let storage = &app.state.storage;
    let node = NodeId::new("shard-0");
    let seq = 41;
    let minute = Duration::from_secs(60);

    let first = storage
        .claim_receipt(&node, seq, "email", minute)
        .await
        .expect("claim");
    let while_sending = storage
        .claim_receipt(&node, seq, "email", minute)
        .await
        .expect("claim");
    let after_timeout = storage
        .claim_receipt(&node, seq, "email", Duration::ZERO)
        .await
        .expect("claim");
    storage.mark_sent(&node, seq, "email").await.expect("sent");
    let after_sending = storage
        .claim_receipt(&node, seq, "email", Duration::ZERO)
        .await
        .expect("claim");

    assert_eq!(first, Claim::Claimed);
    assert_eq!(while_sending, Claim::InFlight);
    assert_eq!(after_timeout, Claim::Claimed);
    assert_eq!(after_sending, Claim::Sent);
}

#[tokio::test]
async fn another_deployments_events_and_malformed_ones_are_not_sent() {
    let app = spawn_app().await;
    let notifier = Notifier::new(
        app.state.storage.clone(),
        app.state.auth.mailer.clone(),
        Arc::clone(&app.state.sms),
        Arc::clone(&app.state.inbox) as Arc<dyn marquee_notifications::Bell>,
        &app.schema.settings.broker.bootstrap_servers,
        Settings::default(),
        &prometheus::Registry::new(),
    )
    .expect("notifier");
    let foreign = json!({
        "deployment": "elsewhere",
        "node": "shard-0",
        "seq": 1,
        "aggregate": "order",
        "aggregate_id": Uuid::now_v7(),
        "event": "order.confirmed",
        "payload": {},
        "created_at": "2026-11-26T10:00:00Z",
    });

    let skipped = notifier
        .handle(foreign.to_string().as_bytes())
        .await
        .expect("handled");
    let malformed = notifier.handle(b"{\"not\": \"an event\"}").await;

    assert_eq!(skipped, marquee_notifications::Handled::Skipped);
    assert!(matches!(
        malformed,
        Err(marquee_notifications::Error::Malformed(_))
    ));
}

#[tokio::test]
async fn a_broker_restarted_mid_stream_loses_no_confirmation_and_sends_none_twice() {
    let mut broker = PrivateBroker::start().await;
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.broker.bootstrap_servers = bootstrap;
    })
    .await;
    let before: Vec<String> = (0..3).map(|_| unique_email("before")).collect();
    for email in &before {
        booked(&app, email).await;
    }
    for email in &before {
        messages_to(email, 1).await;
    }

    // The broker dies and comes back empty; bookings go on meanwhile.
    broker.stop();
    let during: Vec<String> = (0..3).map(|_| unique_email("during")).collect();
    for email in &during {
        booked(&app, email).await;
    }
    broker.restart().await;

    for email in before.iter().chain(&during) {
        messages_to(email, 1).await;
    }
    // The relay saw offsets go backwards and sent the retained outbox
    // again; the notifier, its group's offsets gone too, read it all.
    let registry = app.state.metrics.registry();
    for _ in 0..600 {
        if handled(registry, "duplicate") >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        handled(registry, "duplicate") >= 3.0,
        "the confirmations sent before the restart were delivered again"
    );
    for email in before.iter().chain(&during) {
        assert_eq!(
            messages_to(email, 1).await.len(),
            1,
            "{email} got its confirmation once"
        );
    }
}
