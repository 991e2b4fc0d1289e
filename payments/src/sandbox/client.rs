//! The sandbox gateway's client, written as the client of a real gateway
//! would be: every failure of the network is classified by what the caller
//! can still know about the payment.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::bodies::{
    CaptureIntent, CaptureMethod, CreateIntent, CreateRefund, ErrorBody, Intent, IntentList,
    IntentStatus, RefundBody,
};
use crate::{
    Authorization, AuthorizeRequest, Capture, PaymentError, PaymentProvider, PaymentRecord,
    PaymentState, Refund,
};

/// Where the sandbox gateway is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct SandboxCardConfig {
    /// Such as `http://127.0.0.1:4242`; [`RunningGateway::url`] gives it for
    /// a gateway started in-process.
    ///
    /// [`RunningGateway::url`]: super::RunningGateway::url
    pub base_url: String,
    pub secret_key: SecretString,
    /// How long to wait for each answer before reporting
    /// [`PaymentError::Timeout`].
    pub timeout: Duration,
}

/// Card payments through the sandbox gateway.
#[derive(Debug)]
pub struct SandboxCardProvider {
    client: reqwest::Client,
    base_url: String,
    secret_key: SecretString,
}

impl SandboxCardProvider {
    pub fn new(config: SandboxCardConfig) -> Self {
        Self {
            client: http_client(config.timeout),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            secret_key: config.secret_key,
        }
    }

    fn post(&self, path: &str, idempotency_key: &str) -> RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base_url))
            .header("Idempotency-Key", idempotency_key)
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, PaymentError> {
        let response = request
            .bearer_auth(self.secret_key.expose_secret())
            .send()
            .await
            .map_err(lost)?;
        let status = response.status();
        let body = response.bytes().await.map_err(lost)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|err| {
                PaymentError::Unavailable(format!("unreadable answer from the gateway: {err}"))
            });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => (error.code, error.message),
            Err(_) => (status.as_str().to_owned(), status.to_string()),
        };
        Err(match status {
            StatusCode::PAYMENT_REQUIRED => PaymentError::Declined { code, message },
            StatusCode::TOO_MANY_REQUESTS => PaymentError::Unavailable(message),
            status if status.is_server_error() => {
                PaymentError::Unavailable(format!("{status}: {message}"))
            }
            _ => PaymentError::Rejected(format!("{code}: {message}")),
        })
    }
}

#[async_trait]
impl PaymentProvider for SandboxCardProvider {
    fn name(&self) -> &'static str {
        "sandbox-card"
    }

    #[tracing::instrument(skip_all, fields(reference = %request.reference, amount = request.amount))]
    async fn authorize(&self, request: &AuthorizeRequest) -> Result<Authorization, PaymentError> {
        let body = CreateIntent {
            amount: request.amount,
            currency: request.currency.clone(),
            payment_method: request.token.clone(),
            reference: request.reference.clone(),
            capture_method: CaptureMethod::Manual,
        };
        let intent: Intent = self
            .send(
                self.post("/v1/payment_intents", &request.idempotency_key)
                    .json(&body),
            )
            .await?;
        Ok(Authorization {
            id: intent.id,
            amount: intent.amount,
            currency: intent.currency,
            fingerprint: intent.card_fingerprint,
        })
    }

    #[tracing::instrument(skip(self, idempotency_key))]
    async fn capture(
        &self,
        authorization: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<Capture, PaymentError> {
        let path = intent_path(authorization, "capture")?;
        let body = CaptureIntent {
            amount_to_capture: amount,
        };
        let intent: Intent = self
            .send(self.post(&path, idempotency_key).json(&body))
            .await?;
        Ok(Capture {
            id: intent.id,
            amount: intent.amount_captured,
        })
    }

    #[tracing::instrument(skip(self, idempotency_key))]
    async fn void(&self, authorization: &str, idempotency_key: &str) -> Result<(), PaymentError> {
        let path = intent_path(authorization, "cancel")?;
        let _: Intent = self.send(self.post(&path, idempotency_key)).await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, idempotency_key))]
    async fn refund(
        &self,
        authorization: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<Refund, PaymentError> {
        let body = CreateRefund {
            payment_intent: authorization.to_owned(),
            amount,
        };
        let refund: RefundBody = self
            .send(self.post("/v1/refunds", idempotency_key).json(&body))
            .await?;
        Ok(Refund {
            id: refund.id,
            amount: refund.amount,
        })
    }

    #[tracing::instrument(skip(self))]
    async fn find(&self, reference: &str) -> Result<Option<PaymentRecord>, PaymentError> {
        let request = self
            .client
            .get(format!("{}/v1/payment_intents", self.base_url))
            .query(&[("reference", reference)]);
        let list: IntentList = self.send(request).await?;
        // The list is oldest first and `max_by_key` keeps the last of equal
        // keys: the latest attempt holding money, else the latest attempt.
        Ok(list
            .data
            .into_iter()
            .map(record)
            .max_by_key(|record| record.state.holds_money()))
    }
}

/// reqwest is built with rustls but no default crypto provider, so a plain
/// client only builds once a provider is installed process-wide. Giving the
/// client a TLS configuration of its own makes `SandboxCardProvider` usable
/// in any process, test or binary. The gateway speaks plain HTTP, so the
/// client trusts no certificate authority: an `https://` URL fails as
/// unavailable. Proxies are skipped because the sandbox runs beside the
/// service, not across an egress proxy.
fn http_client(timeout: Duration) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|err| unreachable!("aws-lc-rs supports the default TLS versions: {err}"))
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .no_proxy()
        .build()
        .unwrap_or_else(|err| unreachable!("a client with its own TLS configuration builds: {err}"))
}

/// Ids go into the URL path, so anything but a payment intent id is
/// refused before it could change the path.
fn intent_path(authorization: &str, action: &str) -> Result<String, PaymentError> {
    let valid = authorization
        .strip_prefix("pi_")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()));
    if valid {
        Ok(format!("/v1/payment_intents/{authorization}/{action}"))
    } else {
        Err(PaymentError::Rejected(
            "the authorization is not a payment intent id (pi_...)".to_owned(),
        ))
    }
}

/// Only a failure to connect proves the request never arrived; once it may
/// have been sent, a lost answer leaves the outcome unknown.
fn lost(err: reqwest::Error) -> PaymentError {
    let cause = causes(&err);
    if err.is_connect() {
        PaymentError::Unavailable(format!("cannot reach the payment gateway: {cause}"))
    } else if err.is_builder() {
        PaymentError::Rejected(format!("the request could not be built: {cause}"))
    } else {
        // `Timeout` carries no detail, so this is the only place the cause
        // can be seen.
        tracing::warn!(error = %cause, "no answer from the payment gateway");
        PaymentError::Timeout
    }
}

/// reqwest's message names the URL only; the reason is in its sources.
fn causes(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn record(intent: Intent) -> PaymentRecord {
    let state = match intent.status {
        IntentStatus::RequiresCapture => PaymentState::Authorized,
        IntentStatus::Succeeded if intent.amount_refunded == intent.amount_captured => {
            PaymentState::Refunded
        }
        IntentStatus::Succeeded => PaymentState::Captured,
        IntentStatus::Canceled => PaymentState::Voided,
        IntentStatus::Declined => PaymentState::Declined,
    };
    PaymentRecord {
        id: intent.id,
        reference: intent.reference,
        state,
        amount: intent.amount,
        currency: intent.currency,
        captured: intent.amount_captured,
        refunded: intent.amount_refunded,
        fingerprint: intent.card_fingerprint,
    }
}
