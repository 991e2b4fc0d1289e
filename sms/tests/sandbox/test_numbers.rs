//! What each test number makes the carrier do, and how the provider
//! reports it.

use marquee_sms::SmsError;

use crate::helpers::{key, message, spawn_carrier, FROM};

#[tokio::test]
async fn the_invalid_test_number_is_refused_permanently_as_invalid() {
    let app = spawn_carrier().await;

    let err = app
        .provider
        .send(&message("+15005550001", "hello"))
        .await
        .unwrap_err();

    assert!(
        matches!(err, SmsError::InvalidNumber { code: 21211, .. }),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn the_unroutable_test_number_is_refused_permanently() {
    let app = spawn_carrier().await;

    let err = app
        .provider
        .send(&message("+15005550002", "hello"))
        .await
        .unwrap_err();

    assert!(
        matches!(err, SmsError::Unroutable { code: 21612, .. }),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn the_opted_out_test_number_is_refused_permanently() {
    let app = spawn_carrier().await;

    let err = app
        .provider
        .send(&message("+15005550004", "hello"))
        .await
        .unwrap_err();

    assert!(
        matches!(err, SmsError::OptedOut { code: 21610, .. }),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn the_test_number_that_cannot_receive_sms_is_refused_permanently() {
    let app = spawn_carrier().await;

    let err = app
        .provider
        .send(&message("+15005550009", "hello"))
        .await
        .unwrap_err();

    assert!(
        matches!(err, SmsError::CannotReceiveSms { code: 21614, .. }),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn the_unavailable_test_number_is_a_transient_carrier_outage() {
    let app = spawn_carrier().await;

    let err = app
        .provider
        .send(&message("+15005550006", "hello"))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            SmsError::CarrierUnavailable {
                code: Some(30001),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn the_rate_limited_test_number_is_a_transient_refusal() {
    let app = spawn_carrier().await;

    let err = app
        .provider
        .send(&message("+15005550007", "hello"))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            SmsError::RateLimited {
                code: Some(20429),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_permanent());
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn test_numbers_answer_with_the_status_and_error_body_of_a_real_carrier() {
    let app = spawn_carrier().await;

    for (to, status, code) in [
        ("+15005550001", 400, 21211),
        ("+15005550002", 400, 21612),
        ("+15005550004", 400, 21610),
        ("+15005550009", 400, 21614),
        ("+15005550006", 503, 30001),
        ("+15005550007", 429, 20429),
    ] {
        let response = app
            .post(Some(&key()), &[("To", to), ("From", FROM), ("Body", "hi")])
            .await;

        assert_eq!(response.status(), status, "{to}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{to}");
        assert_eq!(body["status"], status, "{to}");
        assert!(!body["message"].as_str().unwrap().is_empty(), "{to}");
        assert_eq!(
            body["more_info"],
            format!("https://www.twilio.com/docs/errors/{code}"),
            "{to}"
        );
    }
    assert!(app.carrier.messages().is_empty());
}

#[tokio::test]
async fn a_number_beside_the_test_numbers_is_accepted() {
    let app = spawn_carrier().await;

    let receipt = app
        .provider
        .send(&message("+15005550003", "hello"))
        .await
        .unwrap();

    assert_eq!(app.carrier.messages_to("+15005550003")[0].sid, receipt.id);
}
