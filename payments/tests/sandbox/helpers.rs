//! `spawn_gateway()`: a sandbox gateway on port 0 with a provider pointed at
//! it, stopped when the test ends.

use std::sync::Arc;
use std::time::Duration;

use marquee_payments::{
    AuthorizeRequest, GatewayConfig, PaymentProvider, RunningGateway, SandboxCardConfig,
    SandboxCardProvider, SandboxGateway,
};
use secrecy::SecretString;
use uuid::Uuid;

pub const SECRET_KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";

pub struct TestGateway {
    pub provider: Arc<dyn PaymentProvider>,
    /// For what the provider never sends: missing headers, raw bodies.
    pub http: reqwest::Client,
    pub gateway: RunningGateway,
}

pub async fn spawn_gateway() -> TestGateway {
    spawn_gateway_with(GatewayConfig::new(SECRET_KEY), Duration::from_secs(2)).await
}

pub async fn spawn_gateway_with(config: GatewayConfig, client_timeout: Duration) -> TestGateway {
    let gateway = SandboxGateway::new(config)
        .start("127.0.0.1:0")
        .await
        .expect("bind the sandbox gateway");
    let provider = provider(&gateway.url(), SECRET_KEY, client_timeout);
    TestGateway {
        provider: Arc::new(provider),
        http: http_client(),
        gateway,
    }
}

pub fn provider(base_url: &str, secret_key: &str, timeout: Duration) -> SandboxCardProvider {
    SandboxCardProvider::new(SandboxCardConfig {
        base_url: base_url.to_owned(),
        secret_key: SecretString::from(secret_key.to_owned()),
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

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url())
    }

    /// A POST with the right secret key and the given idempotency key.
    pub async fn post(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).bearer_auth(SECRET_KEY);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.json(&body).send().await.expect("reach the gateway")
    }

    /// The gateway's own list of the order's payments, declined ones included.
    pub async fn intents(&self, reference: &str) -> Vec<serde_json::Value> {
        let list: serde_json::Value = self
            .http
            .get(self.url("/v1/payment_intents"))
            .query(&[("reference", reference)])
            .bearer_auth(SECRET_KEY)
            .send()
            .await
            .expect("reach the gateway")
            .json()
            .await
            .expect("a JSON list");
        list["data"].as_array().expect("data is a list").clone()
    }
}

/// 25.00 USD for a new order, with a new idempotency key.
pub fn order(token: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        reference: format!("ord_{}", Uuid::now_v7().simple()),
        token: token.to_owned(),
        amount: 2500,
        currency: "USD".to_owned(),
        idempotency_key: key(),
    }
}

pub fn key() -> String {
    Uuid::new_v4().to_string()
}
