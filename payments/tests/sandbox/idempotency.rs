//! A request repeated with its idempotency key acts once and answers the
//! same; the key cannot be reused for another request.

use marquee_payments::{AuthorizeRequest, PaymentError};
use serde_json::json;

use crate::helpers::{key, order, spawn_gateway};

#[tokio::test]
async fn repeating_an_authorization_with_its_key_returns_the_same_payment() {
    let app = spawn_gateway().await;
    let request = order("tok_visa");

    let first = app.provider.authorize(&request).await.unwrap();
    let again = app.provider.authorize(&request).await.unwrap();

    assert_eq!(first, again);
    assert_eq!(app.intents(&request.reference).await.len(), 1);
    let record = app
        .provider
        .find(&request.reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.id, first.id);
}

#[tokio::test]
async fn concurrent_authorizations_with_one_key_create_one_payment() {
    let app = spawn_gateway().await;
    let request = order("tok_amex");

    let (a, b, c) = tokio::join!(
        app.provider.authorize(&request),
        app.provider.authorize(&request),
        app.provider.authorize(&request),
    );

    let ids = [a.unwrap().id, b.unwrap().id, c.unwrap().id];
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(app.intents(&request.reference).await.len(), 1);
}

#[tokio::test]
async fn a_repeated_decline_is_the_same_decline_and_is_recorded_once() {
    let app = spawn_gateway().await;
    let request = order("tok_chargeDeclined");

    let first = app.provider.authorize(&request).await.unwrap_err();
    let again = app.provider.authorize(&request).await.unwrap_err();

    assert!(matches!(first, PaymentError::Declined { .. }), "{first:?}");
    assert!(matches!(again, PaymentError::Declined { .. }), "{again:?}");
    assert_eq!(app.intents(&request.reference).await.len(), 1);
}

#[tokio::test]
async fn reusing_a_key_with_another_amount_is_refused() {
    let app = spawn_gateway().await;
    let request = order("tok_visa");
    app.provider.authorize(&request).await.unwrap();
    let changed = AuthorizeRequest {
        amount: 9900,
        ..request.clone()
    };

    let err = app.provider.authorize(&changed).await.unwrap_err();

    assert!(
        matches!(&err, PaymentError::Rejected(message) if message.starts_with("idempotency_key_in_use")),
        "{err:?}"
    );
    assert_eq!(app.intents(&request.reference).await.len(), 1);
}

#[tokio::test]
async fn reusing_a_key_on_another_endpoint_is_refused() {
    let app = spawn_gateway().await;
    let request = order("tok_visa");
    let authorization = app.provider.authorize(&request).await.unwrap();

    let err = app
        .provider
        .capture(&authorization.id, 2500, &request.idempotency_key)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, PaymentError::Rejected(message) if message.starts_with("idempotency_key_in_use")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_replayed_answer_is_marked_as_replayed() {
    let app = spawn_gateway().await;
    let body = json!({
        "amount": 1200,
        "currency": "EUR",
        "payment_method": "tok_visa",
        "reference": "ord_replay",
        "capture_method": "manual",
    });
    let idempotency_key = key();

    let first = app
        .post("/v1/payment_intents", Some(&idempotency_key), body.clone())
        .await;
    let again = app
        .post("/v1/payment_intents", Some(&idempotency_key), body)
        .await;

    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let (first, again): (serde_json::Value, serde_json::Value) =
        (first.json().await.unwrap(), again.json().await.unwrap());
    assert_eq!(first, again);
    assert_eq!(first["status"], "requires_capture");
    assert_eq!(first["amount_captured"], 0);
}

#[tokio::test]
async fn a_post_without_an_idempotency_key_is_refused() {
    let app = spawn_gateway().await;

    let response = app
        .post(
            "/v1/payment_intents",
            None,
            json!({
                "amount": 1200,
                "currency": "EUR",
                "payment_method": "tok_visa",
                "reference": "ord_no_key",
                "capture_method": "manual",
            }),
        )
        .await;

    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_key_missing");
    assert!(app.intents("ord_no_key").await.is_empty());
}
