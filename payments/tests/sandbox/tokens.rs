//! What each test token makes the gateway do.

use marquee_payments::{PaymentError, PaymentState};

use crate::helpers::{order, spawn_gateway};

#[tokio::test]
async fn visa_mastercard_and_amex_tokens_are_authorized() {
    let app = spawn_gateway().await;

    for token in ["tok_visa", "tok_mastercard", "tok_amex"] {
        let request = order(token);
        let authorization = app.provider.authorize(&request).await.unwrap();

        assert!(authorization.id.starts_with("pi_"), "{token}");
        assert_eq!(authorization.amount, 2500);
        assert_eq!(authorization.currency, "USD");
        let record = app
            .provider
            .find(&request.reference)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.id, authorization.id);
        assert_eq!(record.state, PaymentState::Authorized);
        assert_eq!((record.captured, record.refunded), (0, 0));
    }
}

#[tokio::test]
async fn a_declined_card_is_reported_as_declined() {
    let app = spawn_gateway().await;
    let request = order("tok_chargeDeclined");

    let err = app.provider.authorize(&request).await.unwrap_err();

    assert!(
        matches!(&err, PaymentError::Declined { code, .. } if code == "card_declined"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let record = app
        .provider
        .find(&request.reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, PaymentState::Declined);
    assert_eq!(record.amount, 2500);
}

#[tokio::test]
async fn insufficient_funds_is_a_decline_with_its_own_code() {
    let app = spawn_gateway().await;

    let err = app
        .provider
        .authorize(&order("tok_chargeDeclinedInsufficientFunds"))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, PaymentError::Declined { code, .. } if code == "insufficient_funds"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unknown_token_is_rejected_and_nothing_is_recorded() {
    let app = spawn_gateway().await;
    let request = order("tok_discover");

    let err = app.provider.authorize(&request).await.unwrap_err();

    assert!(
        matches!(&err, PaymentError::Rejected(message) if message.starts_with("token_unknown")),
        "{err:?}"
    );
    assert_eq!(app.provider.find(&request.reference).await.unwrap(), None);
}

#[tokio::test]
async fn a_payment_method_that_is_not_a_token_is_rejected() {
    let app = spawn_gateway().await;

    let err = app
        .provider
        .authorize(&order("pm_card_visa"))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, PaymentError::Rejected(message) if message.starts_with("token_invalid")),
        "{err:?}"
    );
}
