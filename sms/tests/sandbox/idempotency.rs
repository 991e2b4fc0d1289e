//! A message repeated with its idempotency key is sent once and answered
//! the same; the key cannot be reused for another message.

use marquee_sms::{SmsError, SmsMessage};

use crate::helpers::{key, message, spawn_carrier, FROM, VALID};

#[tokio::test]
async fn repeating_a_message_with_its_key_sends_it_once() {
    let app = spawn_carrier().await;
    let sms = message(VALID, "Your booking is confirmed");

    let first = app.provider.send(&sms).await.unwrap();
    let again = app.provider.send(&sms).await.unwrap();

    assert_eq!(first, again);
    let sent = app.carrier.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sid, first.id);
}

#[tokio::test]
async fn concurrent_sends_with_one_key_record_one_message() {
    let app = spawn_carrier().await;
    let sms = message(VALID, "Your booking is confirmed");

    let (a, b, c) = tokio::join!(
        app.provider.send(&sms),
        app.provider.send(&sms),
        app.provider.send(&sms),
    );

    let ids = [a.unwrap().id, b.unwrap().id, c.unwrap().id];
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(app.carrier.messages().len(), 1);
}

#[tokio::test]
async fn reusing_a_key_for_another_body_is_refused_permanently() {
    let app = spawn_carrier().await;
    let sms = message(VALID, "Your booking is confirmed");
    app.provider.send(&sms).await.unwrap();
    let changed = SmsMessage {
        body: "Your booking is cancelled".to_owned(),
        ..sms
    };

    let err = app.provider.send(&changed).await.unwrap_err();

    assert!(
        matches!(
            err,
            SmsError::Rejected {
                status: 422,
                code: Some(20422),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_permanent());
    let sent = app.carrier.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, "Your booking is confirmed");
}

#[tokio::test]
async fn reusing_a_key_for_another_number_is_refused() {
    let app = spawn_carrier().await;
    let sms = message(VALID, "Your booking is confirmed");
    app.provider.send(&sms).await.unwrap();
    let changed = SmsMessage {
        to: "+447700900123".to_owned(),
        ..sms
    };

    let err = app.provider.send(&changed).await.unwrap_err();

    assert!(
        matches!(err, SmsError::Rejected { status: 422, .. }),
        "{err:?}"
    );
    assert!(app.carrier.messages_to("+447700900123").is_empty());
}

#[tokio::test]
async fn a_refused_message_leaves_its_key_free_for_the_corrected_one() {
    let app = spawn_carrier().await;
    let empty = message(VALID, "");
    app.provider.send(&empty).await.unwrap_err();
    let corrected = SmsMessage {
        body: "Your booking is confirmed".to_owned(),
        ..empty
    };

    let receipt = app.provider.send(&corrected).await.unwrap();

    let sent = app.carrier.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sid, receipt.id);
}

#[tokio::test]
async fn a_replayed_answer_is_the_first_answer_byte_for_byte() {
    let app = spawn_carrier().await;
    let idempotency_key = key();
    let form = [
        ("To", VALID),
        ("From", FROM),
        ("Body", "Doors open at 19:00"),
    ];

    let first = app.post(Some(&idempotency_key), &form).await;
    let again = app.post(Some(&idempotency_key), &form).await;

    assert_eq!(first.status(), 201);
    assert_eq!(again.status(), 201);
    assert_eq!(first.text().await.unwrap(), again.text().await.unwrap());
    assert_eq!(app.carrier.messages().len(), 1);
}

#[tokio::test]
async fn sends_without_a_key_are_each_recorded() {
    let app = spawn_carrier().await;
    let form = [
        ("To", VALID),
        ("From", FROM),
        ("Body", "Doors open at 19:00"),
    ];

    let first = app.post(None, &form).await;
    let again = app.post(None, &form).await;

    assert_eq!(first.status(), 201);
    assert_eq!(again.status(), 201);
    let sent = app.carrier.messages();
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[0].sid, sent[1].sid);
}
