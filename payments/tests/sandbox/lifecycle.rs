//! Authorize, then capture or void, then refund: what each state allows.

use marquee_payments::{PaymentError, PaymentState};

use crate::helpers::{key, order, spawn_gateway};

fn rejected_with(err: &PaymentError, code: &str) -> bool {
    matches!(err, PaymentError::Rejected(message) if message.starts_with(code))
}

#[tokio::test]
async fn a_captured_payment_is_refunded_in_parts_up_to_the_captured_amount() {
    let app = spawn_gateway().await;
    let request = order("tok_visa");
    let authorization = app.provider.authorize(&request).await.unwrap();

    let capture = app
        .provider
        .capture(&authorization.id, 2000, &key())
        .await
        .unwrap();
    let first = app
        .provider
        .refund(&authorization.id, 500, &key())
        .await
        .unwrap();
    let beyond = app
        .provider
        .refund(&authorization.id, 1600, &key())
        .await
        .unwrap_err();
    let rest = app
        .provider
        .refund(&authorization.id, 1500, &key())
        .await
        .unwrap();

    assert_eq!(
        (capture.id.as_str(), capture.amount),
        (authorization.id.as_str(), 2000)
    );
    assert!(first.id.starts_with("re_"));
    assert_eq!(first.amount, 500);
    assert!(rejected_with(&beyond, "amount_too_large"), "{beyond:?}");
    assert_ne!(rest.id, first.id);
    let record = app
        .provider
        .find(&request.reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, PaymentState::Refunded);
    assert_eq!(
        (record.amount, record.captured, record.refunded),
        (2500, 2000, 2000)
    );
}

#[tokio::test]
async fn a_partly_refunded_payment_is_still_captured() {
    let app = spawn_gateway().await;
    let request = order("tok_mastercard");
    let authorization = app.provider.authorize(&request).await.unwrap();
    app.provider
        .capture(&authorization.id, 2500, &key())
        .await
        .unwrap();

    app.provider
        .refund(&authorization.id, 1000, &key())
        .await
        .unwrap();

    let record = app
        .provider
        .find(&request.reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, PaymentState::Captured);
    assert_eq!((record.captured, record.refunded), (2500, 1000));
}

#[tokio::test]
async fn a_voided_authorization_cannot_be_captured() {
    let app = spawn_gateway().await;
    let request = order("tok_visa");
    let authorization = app.provider.authorize(&request).await.unwrap();

    app.provider.void(&authorization.id, &key()).await.unwrap();
    let err = app
        .provider
        .capture(&authorization.id, 2500, &key())
        .await
        .unwrap_err();

    assert!(
        rejected_with(&err, "payment_intent_unexpected_state"),
        "{err:?}"
    );
    let record = app
        .provider
        .find(&request.reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, PaymentState::Voided);
    assert_eq!(record.captured, 0);
}

#[tokio::test]
async fn voiding_twice_succeeds_so_a_caller_that_lost_its_key_can_finish() {
    let app = spawn_gateway().await;
    let authorization = app.provider.authorize(&order("tok_visa")).await.unwrap();

    app.provider.void(&authorization.id, &key()).await.unwrap();
    app.provider.void(&authorization.id, &key()).await.unwrap();
}

#[tokio::test]
async fn a_captured_payment_cannot_be_voided() {
    let app = spawn_gateway().await;
    let authorization = app.provider.authorize(&order("tok_visa")).await.unwrap();
    app.provider
        .capture(&authorization.id, 2500, &key())
        .await
        .unwrap();

    let err = app
        .provider
        .void(&authorization.id, &key())
        .await
        .unwrap_err();

    assert!(
        rejected_with(&err, "payment_intent_unexpected_state"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_uncaptured_authorization_cannot_be_refunded() {
    let app = spawn_gateway().await;
    let authorization = app.provider.authorize(&order("tok_visa")).await.unwrap();

    let err = app
        .provider
        .refund(&authorization.id, 100, &key())
        .await
        .unwrap_err();

    assert!(
        rejected_with(&err, "payment_intent_unexpected_state"),
        "{err:?}"
    );
}

#[tokio::test]
async fn capturing_more_than_was_authorized_is_rejected() {
    let app = spawn_gateway().await;
    let authorization = app.provider.authorize(&order("tok_visa")).await.unwrap();

    let err = app
        .provider
        .capture(&authorization.id, 2501, &key())
        .await
        .unwrap_err();

    assert!(rejected_with(&err, "amount_too_large"), "{err:?}");
}

#[tokio::test]
async fn a_second_capture_succeeds_only_for_the_amount_already_captured() {
    let app = spawn_gateway().await;
    let authorization = app.provider.authorize(&order("tok_visa")).await.unwrap();
    let capture_key = key();
    app.provider
        .capture(&authorization.id, 2000, &capture_key)
        .await
        .unwrap();

    let replayed = app
        .provider
        .capture(&authorization.id, 2000, &capture_key)
        .await
        .unwrap();
    let same_amount = app
        .provider
        .capture(&authorization.id, 2000, &key())
        .await
        .unwrap();
    let other_amount = app
        .provider
        .capture(&authorization.id, 2500, &key())
        .await
        .unwrap_err();

    assert_eq!(replayed.amount, 2000);
    assert_eq!(same_amount.amount, 2000);
    assert!(
        rejected_with(&other_amount, "payment_intent_unexpected_state"),
        "{other_amount:?}"
    );
}

#[tokio::test]
async fn a_declined_payment_can_be_neither_captured_nor_voided() {
    let app = spawn_gateway().await;
    let request = order("tok_chargeDeclined");
    app.provider.authorize(&request).await.unwrap_err();
    let declined = app
        .provider
        .find(&request.reference)
        .await
        .unwrap()
        .unwrap();

    let capture = app
        .provider
        .capture(&declined.id, 2500, &key())
        .await
        .unwrap_err();
    let void = app.provider.void(&declined.id, &key()).await.unwrap_err();

    assert!(
        rejected_with(&capture, "payment_intent_unexpected_state"),
        "{capture:?}"
    );
    assert!(
        rejected_with(&void, "payment_intent_unexpected_state"),
        "{void:?}"
    );
}

#[tokio::test]
async fn an_unknown_authorization_is_rejected() {
    let app = spawn_gateway().await;

    let capture = app
        .provider
        .capture("pi_doesnotexist", 100, &key())
        .await
        .unwrap_err();
    let refund = app
        .provider
        .refund("pi_doesnotexist", 100, &key())
        .await
        .unwrap_err();

    assert!(rejected_with(&capture, "resource_missing"), "{capture:?}");
    assert!(rejected_with(&refund, "resource_missing"), "{refund:?}");
}

#[tokio::test]
async fn an_authorization_id_that_could_change_the_url_is_rejected_before_sending() {
    let app = spawn_gateway().await;

    let err = app
        .provider
        .capture("pi_1/../../refunds", 100, &key())
        .await
        .unwrap_err();

    assert!(matches!(err, PaymentError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn find_prefers_the_attempt_that_holds_money_over_a_later_decline() {
    let app = spawn_gateway().await;
    let first = order("tok_visa");
    let authorization = app.provider.authorize(&first).await.unwrap();
    let retry = marquee_payments::AuthorizeRequest {
        token: "tok_chargeDeclined".to_owned(),
        idempotency_key: key(),
        ..first.clone()
    };
    app.provider.authorize(&retry).await.unwrap_err();

    let record = app.provider.find(&first.reference).await.unwrap().unwrap();

    assert_eq!(record.id, authorization.id);
    assert_eq!(record.state, PaymentState::Authorized);
    assert_eq!(app.intents(&first.reference).await.len(), 2);
}

#[tokio::test]
async fn find_returns_the_latest_attempt_when_none_holds_money() {
    let app = spawn_gateway().await;
    let first = order("tok_chargeDeclinedInsufficientFunds");
    app.provider.authorize(&first).await.unwrap_err();
    let retry = marquee_payments::AuthorizeRequest {
        token: "tok_visa".to_owned(),
        idempotency_key: key(),
        ..first.clone()
    };
    let authorization = app.provider.authorize(&retry).await.unwrap();
    app.provider.void(&authorization.id, &key()).await.unwrap();

    let record = app.provider.find(&first.reference).await.unwrap().unwrap();

    assert_eq!(record.id, authorization.id);
    assert_eq!(record.state, PaymentState::Voided);
}

#[tokio::test]
async fn find_returns_nothing_for_an_order_never_paid() {
    let app = spawn_gateway().await;

    let record = app.provider.find("ord_never_paid").await.unwrap();

    assert_eq!(record, None);
}
