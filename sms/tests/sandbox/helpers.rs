//! `spawn_carrier()`: a sandbox carrier on port 0 with a provider pointed
//! at it, stopped when the test ends.

use std::sync::Arc;
use std::time::Duration;

use marquee_sms::{
    CarrierConfig, HttpSmsConfig, HttpSmsProvider, RunningCarrier, SandboxCarrier, SmsMessage,
    SmsProvider,
};
use secrecy::SecretString;
use uuid::Uuid;

pub const ACCOUNT_SID: &str = "AC1f0e3a7c9b2d4e6f8a0b1c2d3e4f5a6b";
pub const AUTH_TOKEN: &str = "4c1f9e2b7a3d5c8e0f6a2b9d1c7e3f5a";
pub const FROM: &str = "+15005550006";
/// A number with no test behaviour: the carrier accepts it.
pub const VALID: &str = "+14155550123";

pub struct TestCarrier {
    pub provider: Arc<dyn SmsProvider>,
    /// For what the provider never sends: other credentials, raw forms,
    /// listing.
    pub http: reqwest::Client,
    pub carrier: RunningCarrier,
}

pub async fn spawn_carrier() -> TestCarrier {
    spawn_carrier_with(
        CarrierConfig::new(ACCOUNT_SID, AUTH_TOKEN),
        Duration::from_secs(2),
    )
    .await
}

pub async fn spawn_carrier_with(config: CarrierConfig, client_timeout: Duration) -> TestCarrier {
    let carrier = SandboxCarrier::new(config)
        .start("127.0.0.1:0")
        .await
        .expect("bind the sandbox carrier");
    let provider = provider(&carrier.url(), ACCOUNT_SID, AUTH_TOKEN, client_timeout);
    TestCarrier {
        provider: Arc::new(provider),
        http: http_client(),
        carrier,
    }
}

pub fn provider(
    base_url: &str,
    account_sid: &str,
    auth_token: &str,
    timeout: Duration,
) -> HttpSmsProvider {
    HttpSmsProvider::new(HttpSmsConfig {
        base_url: base_url.to_owned(),
        account_sid: account_sid.to_owned(),
        auth_token: SecretString::from(auth_token.to_owned()),
        from: FROM.to_owned(),
        timeout,
    })
}

/// A plain client, built the way the API binary's clients are: with the
/// process-wide crypto provider installed first.
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("build the HTTP client")
}

impl TestCarrier {
    /// The account's Messages resource on this carrier.
    pub fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            self.carrier.url()
        )
    }

    /// A send with the right credentials and the given idempotency key.
    pub async fn post(
        &self,
        idempotency_key: Option<&str>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.messages_url())
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.form(form).send().await.expect("reach the carrier")
    }

    /// The carrier's own list of messages to `to`, newest first.
    pub async fn listed(&self, to: &str) -> Vec<serde_json::Value> {
        let list: serde_json::Value = self
            .http
            .get(self.messages_url())
            .query(&[("To", to)])
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
            .send()
            .await
            .expect("reach the carrier")
            .json()
            .await
            .expect("a JSON list");
        list["messages"]
            .as_array()
            .expect("messages is a list")
            .clone()
    }
}

/// A message to `to` with a new idempotency key.
pub fn message(to: &str, body: &str) -> SmsMessage {
    SmsMessage {
        to: to.to_owned(),
        body: body.to_owned(),
        idempotency_key: key(),
    }
}

pub fn key() -> String {
    Uuid::new_v4().to_string()
}
