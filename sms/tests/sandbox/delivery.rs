//! Messages to ordinary numbers: accepted, counted in segments, recorded
//! and listed.

use crate::helpers::{key, message, spawn_carrier, ACCOUNT_SID, FROM, VALID};

#[tokio::test]
async fn a_message_to_a_valid_number_is_recorded_once() {
    let app = spawn_carrier().await;

    let receipt = app
        .provider
        .send(&message(VALID, "Your tickets for Dune: row H, seats 7-8"))
        .await
        .unwrap();

    assert_eq!(receipt.status, "queued");
    assert_eq!(receipt.segments, 1);
    let hex = receipt.id.strip_prefix("SM").expect("an SM sid");
    assert_eq!(hex.len(), 32, "{}", receipt.id);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{}", receipt.id);
    let sent = app.carrier.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sid, receipt.id);
    assert_eq!(sent[0].to, VALID);
    assert_eq!(sent[0].from, FROM);
    assert_eq!(sent[0].body, "Your tickets for Dune: row H, seats 7-8");
    assert_eq!(sent[0].segments, 1);
}

#[tokio::test]
async fn a_long_gsm7_message_is_sent_in_153_character_segments() {
    let app = spawn_carrier().await;

    let receipt = app
        .provider
        .send(&message(VALID, &"a".repeat(307)))
        .await
        .unwrap();

    assert_eq!(receipt.segments, 3);
    assert_eq!(app.carrier.messages_to(VALID)[0].segments, 3);
}

#[tokio::test]
async fn an_emoji_makes_the_message_ucs2_with_70_units_to_a_segment() {
    let app = spawn_carrier().await;

    let fits = app
        .provider
        .send(&message(VALID, &format!("🎬{}", "a".repeat(68))))
        .await
        .unwrap();
    let overflows = app
        .provider
        .send(&message(VALID, &format!("🎬{}", "a".repeat(69))))
        .await
        .unwrap();

    assert_eq!(fits.segments, 1);
    assert_eq!(overflows.segments, 2);
}

#[tokio::test]
async fn a_body_of_exactly_1600_characters_is_accepted_in_11_segments() {
    let app = spawn_carrier().await;

    let receipt = app
        .provider
        .send(&message(VALID, &"a".repeat(1600)))
        .await
        .unwrap();

    assert_eq!(receipt.segments, 11);
    assert_eq!(app.carrier.messages().len(), 1);
}

#[tokio::test]
async fn the_carrier_answers_a_send_with_a_twilio_shaped_201() {
    let app = spawn_carrier().await;

    let response = app
        .post(
            Some(&key()),
            &[
                ("To", VALID),
                ("From", FROM),
                ("Body", "Doors open at 19:00"),
            ],
        )
        .await;

    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["sid"].as_str().unwrap().starts_with("SM"), "{body}");
    assert_eq!(body["account_sid"], ACCOUNT_SID);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["to"], VALID);
    assert_eq!(body["from"], FROM);
    assert_eq!(body["body"], "Doors open at 19:00");
    assert_eq!(body["num_segments"], "1");
    assert_eq!(body["direction"], "outbound-api");
    let created = body["date_created"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc2822(created).expect("an RFC 2822 date");
}

#[tokio::test]
async fn sent_messages_are_listed_by_number_newest_first() {
    let app = spawn_carrier().await;
    let other = "+447700900123";
    let first = app.provider.send(&message(VALID, "first")).await.unwrap();
    app.provider
        .send(&message(other, "elsewhere"))
        .await
        .unwrap();
    let second = app.provider.send(&message(VALID, "second")).await.unwrap();

    let listed = app.listed(VALID).await;

    let listed: Vec<&str> = listed.iter().map(|m| m["sid"].as_str().unwrap()).collect();
    assert_eq!(listed, [second.id.as_str(), first.id.as_str()]);
    let recorded: Vec<String> = app
        .carrier
        .messages_to(VALID)
        .into_iter()
        .map(|m| m.sid)
        .collect();
    assert_eq!(recorded, [first.id, second.id]);
    assert_eq!(app.carrier.messages().len(), 3);
    assert_eq!(app.carrier.messages_to(other)[0].body, "elsewhere");
}
