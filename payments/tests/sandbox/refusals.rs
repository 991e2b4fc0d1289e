//! What the gateway refuses outright: card numbers, wrong keys, malformed
//! requests.

use std::time::Duration;

use marquee_payments::{AuthorizeRequest, PaymentError, PaymentProvider};
use serde_json::json;

use crate::helpers::{key, order, provider, spawn_gateway, SECRET_KEY};

#[tokio::test]
async fn a_raw_card_number_is_refused_and_nothing_is_recorded() {
    let app = spawn_gateway().await;

    for number in [
        "4242424242424242",
        "4000 0566 5566 5556",
        "5555-5555-5555-4444",
    ] {
        let request = order(number);

        let err = app.provider.authorize(&request).await.unwrap_err();

        assert!(
            matches!(&err, PaymentError::Rejected(message)
                if message.starts_with("raw_card_number") && !message.contains("5556")),
            "{err:?}"
        );
        assert_eq!(app.provider.find(&request.reference).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_card_number_sent_as_a_number_is_not_repeated_in_the_answer() {
    let app = spawn_gateway().await;

    let response = app
        .post(
            "/v1/payment_intents",
            Some(&key()),
            json!({
                "amount": 1200,
                "currency": "USD",
                "payment_method": 4242424242424242_u64,
                "reference": "ord_pan",
                "capture_method": "manual",
            }),
        )
        .await;

    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(!text.contains("4242424242424242"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(app.intents("ord_pan").await.is_empty());
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused() {
    let app = spawn_gateway().await;
    let intruder = provider(&app.gateway.url(), "sk_test_wrong", Duration::from_secs(2));
    let request = order("tok_visa");

    let err = intruder.authorize(&request).await.unwrap_err();

    assert!(
        matches!(&err, PaymentError::Rejected(message) if message.starts_with("api_key_invalid")),
        "{err:?}"
    );
    assert_eq!(app.provider.find(&request.reference).await.unwrap(), None);
}

#[tokio::test]
async fn a_request_without_a_secret_key_gets_a_401_json_error() {
    let app = spawn_gateway().await;

    let response = app
        .http
        .get(app.url("/v1/payment_intents?reference=ord_1"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn an_unknown_payment_intent_gets_a_404_json_error() {
    let app = spawn_gateway().await;

    let response = app
        .post(
            "/v1/payment_intents/pi_missing/capture",
            Some(&key()),
            json!({ "amount_to_capture": 100 }),
        )
        .await;

    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn amounts_must_be_positive_and_currencies_uppercase_iso_codes() {
    let app = spawn_gateway().await;
    let base = order("tok_visa");
    let invalid = [
        (
            AuthorizeRequest {
                amount: 0,
                ..base.clone()
            },
            "amount_invalid",
        ),
        (
            AuthorizeRequest {
                amount: -5,
                ..base.clone()
            },
            "amount_invalid",
        ),
        (
            AuthorizeRequest {
                currency: "usd".to_owned(),
                ..base.clone()
            },
            "currency_invalid",
        ),
        (
            AuthorizeRequest {
                currency: "EURO".to_owned(),
                ..base.clone()
            },
            "currency_invalid",
        ),
        (
            AuthorizeRequest {
                reference: " ".to_owned(),
                ..base.clone()
            },
            "reference_missing",
        ),
    ];

    for (request, code) in invalid {
        let request = AuthorizeRequest {
            idempotency_key: key(),
            ..request
        };

        let err = app.provider.authorize(&request).await.unwrap_err();

        assert!(
            matches!(&err, PaymentError::Rejected(message) if message.starts_with(code)),
            "{request:?}: {err:?}"
        );
    }
    assert_eq!(app.provider.find(&base.reference).await.unwrap(), None);
}

#[tokio::test]
async fn a_refused_request_does_not_use_up_its_key() {
    let app = spawn_gateway().await;
    let request = order("tok_visa");
    let invalid = AuthorizeRequest {
        amount: 0,
        ..request.clone()
    };
    app.provider.authorize(&invalid).await.unwrap_err();

    let authorization = app.provider.authorize(&request).await.unwrap();

    assert_eq!(authorization.amount, 2500);
}

#[tokio::test]
async fn refunds_must_be_positive() {
    let app = spawn_gateway().await;
    let authorization = app.provider.authorize(&order("tok_visa")).await.unwrap();
    app.provider
        .capture(&authorization.id, 2500, &key())
        .await
        .unwrap();

    let err = app
        .provider
        .refund(&authorization.id, 0, &key())
        .await
        .unwrap_err();

    assert!(
        matches!(&err, PaymentError::Rejected(message) if message.starts_with("amount_invalid")),
        "{err:?}"
    );
}

#[test]
fn the_secret_key_stays_out_of_debug_output() {
    let provider = provider("http://127.0.0.1:1", SECRET_KEY, Duration::from_secs(1));

    let debug = format!("{provider:?}");

    assert!(!debug.contains(SECRET_KEY), "{debug}");
}
