//! The carrier's HTTP server. Each carrier owns its outbox, so any number
//! can run side by side, one per test.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use poem::http::{header, HeaderMap, HeaderValue, StatusCode};
use poem::listener::TcpAcceptor;
use poem::web::{Data, Form, Json, Path};
use poem::{get, handler, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;

use super::bodies::{CreateMessage, MessageList};
use super::numbers::{self, Behaviour, INVALID_NUMBER};
use super::outbox::{Accepted, Outbox, SentMessage};
use super::refusal::Refusal;

/// The longest body the carrier takes, in characters, however many
/// segments it makes.
const MAX_BODY_CHARS: usize = 1600;

/// How a sandbox carrier behaves.
#[derive(Debug, Clone)]
pub struct CarrierConfig {
    /// The account clients send messages from, such as `AC` and 32 hex
    /// digits; the user name of HTTP basic auth and part of every path.
    pub account_sid: String,
    /// The password of HTTP basic auth.
    pub auth_token: SecretString,
    /// How long a message to `+15005550008` waits before being answered;
    /// longer than the client's timeout, so the client gives up first.
    pub late_answer_delay: Duration,
}

impl CarrierConfig {
    /// A carrier whose late answers take 30 seconds, beyond any sensible
    /// client timeout.
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: SecretString::from(auth_token.into()),
            late_answer_delay: Duration::from_secs(30),
        }
    }
}

/// An SMS carrier in test mode: a Twilio-shaped HTTP API over an in-memory
/// outbox. Nothing reaches a phone.
///
/// ```
/// # async fn example() -> std::io::Result<()> {
/// use std::time::Duration;
///
/// use marquee_sms::{CarrierConfig, HttpSmsConfig, HttpSmsProvider, SandboxCarrier};
/// use secrecy::SecretString;
///
/// const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
///
/// let carrier = SandboxCarrier::new(CarrierConfig::new(ACCOUNT_SID, "test_token"))
///     .start("127.0.0.1:0")
///     .await?;
/// let provider = HttpSmsProvider::new(HttpSmsConfig {
///     base_url: carrier.url(),
///     account_sid: ACCOUNT_SID.to_owned(),
///     auth_token: SecretString::from("test_token".to_owned()),
///     from: "+15005550006".to_owned(),
///     timeout: Duration::from_secs(2),
/// });
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SandboxCarrier {
    config: CarrierConfig,
    outbox: Mutex<Outbox>,
}

/// A carrier serving in the background; dropping the handle stops it.
#[derive(Debug)]
#[must_use = "the carrier stops when this handle is dropped"]
pub struct RunningCarrier {
    addr: SocketAddr,
    carrier: Arc<SandboxCarrier>,
    /// Dropping the sender is the carrier's shutdown signal.
    _stop: oneshot::Sender<()>,
}

impl RunningCarrier {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL for [`HttpSmsConfig`](super::HttpSmsConfig).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.carrier.outbox().messages(None)
    }

    /// The messages accepted for `number`, oldest first.
    pub fn messages_to(&self, number: &str) -> Vec<SentMessage> {
        self.carrier.outbox().messages(Some(number))
    }
}

impl SandboxCarrier {
    pub fn new(config: CarrierConfig) -> Self {
        Self {
            config,
            outbox: Mutex::new(Outbox::default()),
        }
    }

    /// Serves on `listener` until `shutdown` completes. Open connections are
    /// then dropped at once, late answers included: a sandbox holds nothing
    /// worth finishing.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        Arc::new(self).serve_shared(listener, shutdown).await
    }

    /// Binds `addr` (port 0 picks a free port) and serves in a background
    /// task until the returned handle is dropped; the handle also shows
    /// the messages accepted.
    pub async fn start(self, addr: impl ToSocketAddrs) -> io::Result<RunningCarrier> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let carrier = Arc::new(self);
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = Arc::clone(&carrier);
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = serving.serve_shared(listener, shutdown).await {
                tracing::error!(%addr, error = %err, "sandbox carrier stopped");
            }
        });
        Ok(RunningCarrier {
            addr,
            carrier,
            _stop: stop,
        })
    }

    async fn serve_shared(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        Server::new_with_acceptor(acceptor)
            .name("sandbox-carrier")
            .run_with_graceful_shutdown(routes(self), shutdown, Some(Duration::ZERO))
            .await
    }

    async fn send_message(
        &self,
        headers: &HeaderMap,
        account: &str,
        form: poem::Result<Form<CreateMessage>>,
    ) -> Result<Accepted, Refusal> {
        self.authenticate(headers, account)?;
        let Form(request) = form.map_err(|err| {
            Refusal::invalid(
                70002,
                format!("send the message as application/x-www-form-urlencoded: {err}"),
            )
        })?;
        validate(&request)?;
        let behaviour = numbers::behaviour(&request.to);
        let accepted = self.outbox().send(
            &self.config.account_sid,
            idempotency_key(headers),
            request,
            behaviour,
        )?;
        // The message is already in the outbox: a client that gives up now
        // does not know it was sent.
        if behaviour == Behaviour::AcceptLate && !accepted.replayed {
            tokio::time::sleep(self.config.late_answer_delay).await;
        }
        Ok(accepted)
    }

    fn list_messages(&self, request: &Request, account: &str) -> Result<MessageList, Refusal> {
        self.authenticate(request.headers(), account)?;
        let ListQuery { to } = request
            .params()
            .map_err(|err| Refusal::invalid(70002, format!("unreadable query string: {err}")))?;
        Ok(MessageList {
            messages: self
                .outbox()
                .resources(&self.config.account_sid, to.as_deref()),
        })
    }

    /// Credentials are checked before the account in the path, so that a
    /// caller without them learns nothing about which accounts exist.
    fn authenticate(&self, headers: &HeaderMap, account: &str) -> Result<(), Refusal> {
        let expected = (
            self.config.account_sid.as_str(),
            self.config.auth_token.expose_secret(),
        );
        let credentials = basic_credentials(headers).ok_or_else(Refusal::unauthenticated)?;
        if (credentials.0.as_str(), credentials.1.as_str()) != expected {
            return Err(Refusal::unauthenticated());
        }
        if account != self.config.account_sid {
            return Err(Refusal::no_such_account());
        }
        Ok(())
    }

    /// Every change leaves the outbox whole before it could panic, so a
    /// poisoned lock still guards a consistent outbox.
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "To")]
    to: Option<String>,
}

/// Refusals here come before the outbox, so they claim no idempotency key.
fn validate(request: &CreateMessage) -> Result<(), Refusal> {
    if request.to.is_empty() {
        return Err(Refusal::invalid(21604, "a 'To' phone number is required"));
    }
    if !numbers::is_e164(&request.to) {
        return Err(Refusal::invalid(
            INVALID_NUMBER,
            "the 'To' number is not a valid phone number in E.164 form, such as +14155550123",
        ));
    }
    if request.from.is_empty() {
        return Err(Refusal::invalid(21603, "a 'From' phone number is required"));
    }
    if !numbers::is_e164(&request.from) {
        return Err(Refusal::invalid(
            21212,
            "the 'From' number is not a valid phone number in E.164 form",
        ));
    }
    if request.body.is_empty() {
        return Err(Refusal::invalid(21602, "a message body is required"));
    }
    if request.body.chars().count() > MAX_BODY_CHARS {
        return Err(Refusal::invalid(
            21617,
            format!("the message body exceeds the {MAX_BODY_CHARS} character limit"),
        ));
    }
    Ok(())
}

/// The user name and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// An empty key counts as none, so that every send records a message.
fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
}

fn routes(carrier: Arc<SandboxCarrier>) -> impl Endpoint {
    Route::new()
        .at(
            "/2010-04-01/Accounts/:account/Messages.json",
            get(list_messages).post(send_message),
        )
        .data(carrier)
}

#[handler]
async fn send_message(
    Data(carrier): Data<&Arc<SandboxCarrier>>,
    headers: &HeaderMap,
    Path(account): Path<String>,
    form: poem::Result<Form<CreateMessage>>,
) -> Response {
    match carrier.send_message(headers, &account, form).await {
        Ok(accepted) => Json(accepted.message)
            .with_status(StatusCode::CREATED)
            .into_response(),
        Err(refusal) => refuse(&refusal),
    }
}

#[handler]
fn list_messages(
    Data(carrier): Data<&Arc<SandboxCarrier>>,
    request: &Request,
    Path(account): Path<String>,
) -> Response {
    match carrier.list_messages(request, &account) {
        Ok(list) => Json(list).into_response(),
        Err(refusal) => refuse(&refusal),
    }
}

/// A 401 names the scheme, as HTTP requires, so that a client knows to
/// send basic auth.
fn refuse(refusal: &Refusal) -> Response {
    let mut response = Json(refusal.body())
        .with_status(refusal.status)
        .into_response();
    if refusal.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sandbox carrier\""),
        );
    }
    response
}
