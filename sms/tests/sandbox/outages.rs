//! A carrier that answers too late or not at all.

use std::time::{Duration, Instant};

use marquee_sms::{CarrierConfig, SmsError, SmsProvider};

use crate::helpers::{
    message, provider, spawn_carrier, spawn_carrier_with, ACCOUNT_SID, AUTH_TOKEN, VALID,
};

const LATE: &str = "+15005550008";

fn slow_carrier() -> CarrierConfig {
    CarrierConfig {
        late_answer_delay: Duration::from_secs(3),
        ..CarrierConfig::new(ACCOUNT_SID, AUTH_TOKEN)
    }
}

#[tokio::test]
async fn the_late_number_makes_the_client_time_out_with_the_message_sent() {
    let app = spawn_carrier_with(slow_carrier(), Duration::from_millis(300)).await;

    let started = Instant::now();
    let err = app
        .provider
        .send(&message(LATE, "Your tickets"))
        .await
        .unwrap_err();

    assert!(matches!(err, SmsError::Timeout), "{err:?}");
    assert!(!err.is_permanent());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(app.carrier.messages_to(LATE).len(), 1);
}

#[tokio::test]
async fn retrying_after_a_timeout_with_the_key_returns_the_sent_message_at_once() {
    let app = spawn_carrier_with(slow_carrier(), Duration::from_millis(300)).await;
    let sms = message(LATE, "Your tickets");
    app.provider.send(&sms).await.unwrap_err();

    let started = Instant::now();
    let receipt = app.provider.send(&sms).await.unwrap();

    assert!(started.elapsed() < Duration::from_millis(300));
    let sent = app.carrier.messages_to(LATE);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sid, receipt.id);
}

#[tokio::test]
async fn a_carrier_that_is_not_listening_is_a_transient_transport_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let provider = provider(&url, ACCOUNT_SID, AUTH_TOKEN, Duration::from_secs(2));

    let err = provider.send(&message(VALID, "hello")).await.unwrap_err();

    assert!(matches!(err, SmsError::Transport(_)), "{err:?}");
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn a_base_url_that_does_not_parse_is_a_permanent_invalid_request() {
    let provider = provider("not a url", ACCOUNT_SID, AUTH_TOKEN, Duration::from_secs(2));

    let err = provider.send(&message(VALID, "hello")).await.unwrap_err();

    assert!(matches!(err, SmsError::InvalidRequest(_)), "{err:?}");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn dropping_the_carrier_handle_stops_the_carrier() {
    let app = spawn_carrier().await;
    let addr = app.carrier.addr();
    let url = app.carrier.url();

    drop(app);

    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the carrier still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let provider = provider(&url, ACCOUNT_SID, AUTH_TOKEN, Duration::from_secs(2));
    let err = provider.send(&message(VALID, "hello")).await.unwrap_err();
    assert!(matches!(err, SmsError::Transport(_)), "{err:?}");
}
