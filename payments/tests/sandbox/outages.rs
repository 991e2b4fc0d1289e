//! A gateway that answers too late or not at all.

use std::time::{Duration, Instant};

use marquee_payments::{GatewayConfig, PaymentError, PaymentProvider, PaymentState};

use crate::helpers::{order, provider, spawn_gateway, spawn_gateway_with, SECRET_KEY};

fn slow_gateway() -> GatewayConfig {
    GatewayConfig {
        late_answer_delay: Duration::from_secs(3),
        ..GatewayConfig::new(SECRET_KEY)
    }
}

#[tokio::test]
async fn a_lost_answer_is_a_timeout_and_find_then_shows_the_authorization() {
    let app = spawn_gateway_with(slow_gateway(), Duration::from_millis(500)).await;
    let request = order("tok_timeout");

    let started = Instant::now();
    let err = app.provider.authorize(&request).await.unwrap_err();

    assert!(matches!(err, PaymentError::Timeout), "{err:?}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2));
    let record = app
        .provider
        .find(&request.reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, PaymentState::Authorized);
    assert_eq!(record.amount, 2500);
}

#[tokio::test]
async fn retrying_a_lost_answer_with_its_key_returns_the_authorization_at_once() {
    let app = spawn_gateway_with(slow_gateway(), Duration::from_millis(500)).await;
    let request = order("tok_timeout");
    app.provider.authorize(&request).await.unwrap_err();

    let authorization = app.provider.authorize(&request).await.unwrap();

    let record = app
        .provider
        .find(&request.reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(authorization.id, record.id);
    assert_eq!(app.intents(&request.reference).await.len(), 1);
}

#[tokio::test]
async fn a_gateway_that_is_not_listening_is_unavailable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let provider = provider(&url, SECRET_KEY, Duration::from_secs(2));

    let err = provider.authorize(&order("tok_visa")).await.unwrap_err();

    assert!(matches!(err, PaymentError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn dropping_the_gateway_handle_stops_the_gateway() {
    let app = spawn_gateway().await;
    let addr = app.gateway.addr();
    let url = app.gateway.url();

    drop(app);

    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the gateway still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let provider = provider(&url, SECRET_KEY, Duration::from_secs(2));
    let err = provider.find("ord_1").await.unwrap_err();
    assert!(matches!(err, PaymentError::Unavailable(_)), "{err:?}");
}
