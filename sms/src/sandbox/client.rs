//! The client of the carrier's Twilio-shaped API, written as the client of
//! a real carrier would be: every answer and every failure of the network
//! is classified by whether sending again can help.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};

use super::bodies::{CreateMessage, ErrorBody, MessageResource};
use crate::{SmsError, SmsMessage, SmsProvider, SmsReceipt};

/// Where the carrier is, which account sends, and how long to wait.
#[derive(Debug, Clone)]
pub struct HttpSmsConfig {
    /// Such as `http://127.0.0.1:4010`; [`RunningCarrier::url`] gives it for
    /// a carrier started in-process. The API's paths go below it.
    ///
    /// [`RunningCarrier::url`]: super::RunningCarrier::url
    pub base_url: String,
    /// The account the messages are sent from, such as `AC` and 32 hex
    /// digits.
    pub account_sid: String,
    pub auth_token: SecretString,
    /// The sender number, in E.164 form.
    pub from: String,
    /// How long to wait for each answer before reporting
    /// [`SmsError::Timeout`].
    pub timeout: Duration,
}

/// Text messages through a carrier with a Twilio-shaped Messages API, such
/// as the sandbox carrier.
#[derive(Debug)]
pub struct HttpSmsProvider {
    client: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
}

impl HttpSmsProvider {
    pub fn new(config: HttpSmsConfig) -> Self {
        Self {
            client: http_client(config.timeout),
            base_url: config.base_url,
            account_sid: config.account_sid,
            auth_token: config.auth_token,
            from: config.from,
        }
    }

    /// Built as segments, so that an account SID holding `/` or `?` stays
    /// one segment of the path instead of changing it.
    fn messages_url(&self) -> Result<Url, SmsError> {
        let mut url = Url::parse(&self.base_url)
            .map_err(|err| SmsError::InvalidRequest(format!("invalid base URL: {err}")))?;
        url.path_segments_mut()
            .map_err(|()| SmsError::InvalidRequest("the base URL cannot take a path".to_owned()))?
            .pop_if_empty()
            .extend([
                "2010-04-01",
                "Accounts",
                self.account_sid.as_str(),
                "Messages.json",
            ]);
        Ok(url)
    }
}

#[async_trait]
impl SmsProvider for HttpSmsProvider {
    #[tracing::instrument(skip_all, fields(idempotency_key = %message.idempotency_key))]
    async fn send(&self, message: &SmsMessage) -> Result<SmsReceipt, SmsError> {
        let form = CreateMessage {
            to: message.to.clone(),
            from: self.from.clone(),
            body: message.body.clone(),
        };
        let response = self
            .client
            .post(self.messages_url()?)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .header("Idempotency-Key", &message.idempotency_key)
            .form(&form)
            .send()
            .await
            .map_err(lost)?;
        let status = response.status();
        let body = response.bytes().await.map_err(lost)?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        let message: MessageResource = serde_json::from_slice(&body).map_err(|err| {
            SmsError::Transport(format!("unreadable answer from the carrier: {err}"))
        })?;
        let segments = message.num_segments.parse().map_err(|err| {
            SmsError::Transport(format!(
                "unreadable segment count {:?} from the carrier: {err}",
                message.num_segments
            ))
        })?;
        Ok(SmsReceipt {
            id: message.sid,
            status: message.status,
            segments,
        })
    }
}

/// Sorts a refusal by status first, since only the status is certain to be
/// there, then by the carrier's code for what was wrong with the message.
fn refusal(status: StatusCode, body: &[u8]) -> SmsError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => (Some(error.code), error.message),
        Err(_) => (None, status.to_string()),
    };
    match (status, code) {
        (StatusCode::UNAUTHORIZED, code) => SmsError::AuthenticationRefused { code, message },
        (StatusCode::TOO_MANY_REQUESTS, code) => SmsError::RateLimited { code, message },
        (status, code) if status.is_server_error() => {
            SmsError::CarrierUnavailable { code, message }
        }
        (_, Some(code @ 21211)) => SmsError::InvalidNumber { code, message },
        (_, Some(code @ 21612)) => SmsError::Unroutable { code, message },
        (_, Some(code @ 21614)) => SmsError::CannotReceiveSms { code, message },
        (_, Some(code @ 21610)) => SmsError::OptedOut { code, message },
        (_, Some(code @ 21617)) => SmsError::BodyTooLong { code, message },
        (status, code) => SmsError::Rejected {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

/// reqwest is built with rustls but no default crypto provider, so a plain
/// client only builds once a provider is installed process-wide. Giving the
/// client a TLS configuration of its own makes `HttpSmsProvider` usable in
/// any process, test or binary. The sandbox speaks plain HTTP, so the
/// client trusts no certificate authority: an `https://` URL fails as a
/// transport error. Proxies are skipped because the sandbox runs beside the
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

/// Only a failure to connect proves the request never arrived; once it may
/// have been sent, a lost answer leaves unknown whether the message went.
fn lost(err: reqwest::Error) -> SmsError {
    let cause = causes(&err);
    if err.is_connect() {
        SmsError::Transport(format!("cannot reach the carrier: {cause}"))
    } else if err.is_builder() {
        SmsError::InvalidRequest(cause)
    } else {
        // `Timeout` carries no detail, so this is the only place the cause
        // can be seen.
        tracing::warn!(error = %cause, "no answer from the carrier");
        SmsError::Timeout
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
