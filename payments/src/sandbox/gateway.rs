//! The gateway's HTTP server. Each gateway owns its ledger, so any number
//! can run side by side, one per test.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use poem::http::{header, HeaderMap, HeaderValue};
use poem::listener::TcpAcceptor;
use poem::web::{Data, Json, Path};
use poem::{
    get, handler, post, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server,
};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;

use super::bodies::{CaptureIntent, CreateIntent, CreateRefund};
use super::ledger::{self, Answer, Ledger, Reply, Request as LedgerRequest};
use super::refusal::Refusal;
use super::tokens::{self, Behaviour};

/// How a sandbox gateway behaves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// What clients must send as `Authorization: Bearer <key>`.
    pub secret_key: SecretString,
    /// How long an authorization with `tok_timeout` waits before answering;
    /// longer than the client's timeout, so the client gives up first.
    pub late_answer_delay: Duration,
}

impl GatewayConfig {
    /// A gateway whose late answers take 30 seconds, beyond any sensible
    /// client timeout.
    pub fn new(secret_key: impl Into<String>) -> Self {
        Self {
            secret_key: SecretString::from(secret_key.into()),
            late_answer_delay: Duration::from_secs(30),
        }
    }
}

/// A card gateway in test mode: a Stripe-shaped HTTP API over an in-memory
/// ledger.
///
/// ```
/// # async fn example() -> std::io::Result<()> {
/// use std::time::Duration;
///
/// use marquee_payments::{GatewayConfig, SandboxCardConfig, SandboxCardProvider, SandboxGateway};
/// use secrecy::SecretString;
///
/// let gateway = SandboxGateway::new(GatewayConfig::new("sk_test_marquee"))
///     .start("127.0.0.1:0")
///     .await?;
/// let provider = SandboxCardProvider::new(SandboxCardConfig {
///     base_url: gateway.url(),
///     secret_key: SecretString::from("sk_test_marquee".to_owned()),
///     timeout: Duration::from_secs(2),
/// });
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SandboxGateway {
    config: GatewayConfig,
    ledger: Mutex<Ledger>,
}

/// A gateway serving in the background; dropping the handle stops it.
#[derive(Debug)]
#[must_use = "the gateway stops when this handle is dropped"]
pub struct RunningGateway {
    addr: SocketAddr,
    /// Dropping the sender is the gateway's shutdown signal.
    _stop: oneshot::Sender<()>,
}

impl RunningGateway {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL for [`SandboxCardConfig`](super::SandboxCardConfig).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl SandboxGateway {
    pub fn new(config: GatewayConfig) -> Self {
        Self {
            config,
            ledger: Mutex::new(Ledger::default()),
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
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        Server::new_with_acceptor(acceptor)
            .name("sandbox-gateway")
            .run_with_graceful_shutdown(routes(Arc::new(self)), shutdown, Some(Duration::ZERO))
            .await
    }

    /// Binds `addr` (port 0 picks a free port) and serves in a background
    /// task until the returned handle is dropped.
    pub async fn start(self, addr: impl ToSocketAddrs) -> io::Result<RunningGateway> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = self.serve(listener, shutdown).await {
                tracing::error!(%addr, error = %err, "sandbox gateway stopped");
            }
        });
        Ok(RunningGateway { addr, _stop: stop })
    }

    async fn create_intent(&self, headers: &HeaderMap, body: &[u8]) -> Result<Answer, Refusal> {
        self.authenticate(headers)?;
        let key = idempotency_key(headers)?;
        let intent: CreateIntent = parse(body)?;
        let behaviour = ledger::validate(&intent)?;
        let answer = self
            .ledger()
            .execute(key, LedgerRequest::Authorize { intent, behaviour })?;
        // The payment is already in the ledger: a client that gives up now
        // does not know it exists.
        if behaviour == Behaviour::ApproveLate && !answer.replayed {
            tokio::time::sleep(self.config.late_answer_delay).await;
        }
        Ok(answer)
    }

    fn capture_intent(
        &self,
        headers: &HeaderMap,
        intent: String,
        body: &[u8],
    ) -> Result<Answer, Refusal> {
        self.authenticate(headers)?;
        let key = idempotency_key(headers)?;
        let CaptureIntent { amount_to_capture } = parse(body)?;
        ledger::positive(amount_to_capture)?;
        self.ledger().execute(
            key,
            LedgerRequest::Capture {
                intent,
                amount: amount_to_capture,
            },
        )
    }

    fn cancel_intent(&self, headers: &HeaderMap, intent: String) -> Result<Answer, Refusal> {
        self.authenticate(headers)?;
        let key = idempotency_key(headers)?;
        self.ledger().execute(key, LedgerRequest::Cancel { intent })
    }

    fn create_refund(&self, headers: &HeaderMap, body: &[u8]) -> Result<Answer, Refusal> {
        self.authenticate(headers)?;
        let key = idempotency_key(headers)?;
        let refund: CreateRefund = parse(body)?;
        ledger::positive(refund.amount)?;
        self.ledger().execute(key, LedgerRequest::Refund(refund))
    }

    fn list_intents(&self, request: &Request) -> Result<Answer, Refusal> {
        self.authenticate(request.headers())?;
        let ListQuery { reference } = request.params().map_err(|_| {
            Refusal::invalid(
                "reference_missing",
                "payment intents are listed by `?reference=<order id>`",
            )
        })?;
        Ok(Answer {
            reply: Ok(Reply::List(self.ledger().list(&reference))),
            replayed: false,
        })
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if presented == Some(self.config.secret_key.expose_secret()) {
            Ok(())
        } else {
            Err(Refusal::unauthenticated())
        }
    }

    /// Every operation leaves the ledger whole before it could panic, so a
    /// poisoned lock still guards a consistent ledger.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    reference: String,
}

fn routes(gateway: Arc<SandboxGateway>) -> impl Endpoint {
    Route::new()
        .at("/v1/payment_intents", get(list_intents).post(create_intent))
        .at("/v1/payment_intents/:id/capture", post(capture_intent))
        .at("/v1/payment_intents/:id/cancel", post(cancel_intent))
        .at("/v1/refunds", post(create_refund))
        .data(gateway)
}

#[handler]
async fn create_intent(
    Data(gateway): Data<&Arc<SandboxGateway>>,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Response {
    respond(gateway.create_intent(headers, &body).await)
}

#[handler]
fn capture_intent(
    Data(gateway): Data<&Arc<SandboxGateway>>,
    headers: &HeaderMap,
    Path(id): Path<String>,
    body: Vec<u8>,
) -> Response {
    respond(gateway.capture_intent(headers, id, &body))
}

#[handler]
fn cancel_intent(
    Data(gateway): Data<&Arc<SandboxGateway>>,
    headers: &HeaderMap,
    Path(id): Path<String>,
) -> Response {
    respond(gateway.cancel_intent(headers, id))
}

#[handler]
fn create_refund(
    Data(gateway): Data<&Arc<SandboxGateway>>,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Response {
    respond(gateway.create_refund(headers, &body))
}

#[handler]
fn list_intents(Data(gateway): Data<&Arc<SandboxGateway>>, request: &Request) -> Response {
    respond(gateway.list_intents(request))
}

/// Replays carry `Idempotent-Replayed: true`, as Stripe's do, so that a
/// retry can be told from a first answer in logs.
fn respond(answer: Result<Answer, Refusal>) -> Response {
    let (reply, replayed) = match answer {
        Ok(answer) => (answer.reply, answer.replayed),
        Err(refusal) => (Err(refusal), false),
    };
    let mut response = match reply {
        Ok(reply) => Json(reply).into_response(),
        Err(refusal) => Json(refusal.body())
            .with_status(refusal.status)
            .into_response(),
    };
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Every POST needs a key: without one a retried request could move money
/// twice.
fn idempotency_key(headers: &HeaderMap) -> Result<&str, Refusal> {
    headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            Refusal::invalid(
                "idempotency_key_missing",
                "send an `Idempotency-Key` header with every POST, so that retrying it is safe",
            )
        })
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|err| {
        Refusal::invalid(
            "parameter_invalid",
            tokens::redact_card_numbers(&format!("invalid request body: {err}")),
        )
    })
}
