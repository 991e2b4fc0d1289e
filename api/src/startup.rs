//! Builds the application from settings: checks every dependency it cannot
//! serve without, binds the listener and assembles the endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use marquee_booking::{Booking, ClientKeys};
use marquee_jobs::releases::ReleaseImporter;
use marquee_jobs::scanner::Scanner;
use marquee_jobs::Supervisor;
use marquee_payments::{
    GatewayConfig, PaymentProvider, RunningGateway, SandboxCardConfig, SandboxCardProvider,
    SandboxGateway,
};
use marquee_sharding::Cluster;
use marquee_storage::Storage;
use poem::listener::{
    Acceptor, AcceptorExt, BoxAcceptor, IntoTlsConfigStream, Listener, TcpListener,
};
use poem::{EndpointExt, IntoEndpoint, Route, Server};
use secrecy::ExposeSecret;

use crate::auth::{AuthState, Gatekeeper};
use crate::body::BodyLimit;
use crate::bookings_index::BookingsIndex;
use crate::cache::Cache;
use crate::catalog_stream::{CatalogStream, StartPositions};
use crate::edge::{self, Edge, Limits, RouteTable};
use crate::health::Readiness;
use crate::inbox::InboxHub;
use crate::indexer::Indexer;
use crate::listener::NoDelay;
use crate::metrics::Metrics;
use crate::pages;
use crate::routes;
use crate::seat_feed::SeatFeed;
use crate::settings::{
    AuthSettings, PaymentsSettings, RateLimitSettings, RedisSettings, Settings, SmsSettings,
};
use crate::state::AppState;
use crate::sweeper;
use marquee_auth::password::PasswordHasher;
use marquee_ratelimit::{Limit, LimiterSettings, RateLimiter, Slots, SlotsSettings};
use marquee_sms::{
    CarrierConfig, HttpSmsConfig, HttpSmsProvider, RunningCarrier, SandboxCarrier, SmsProvider,
};
use redis::aio::ConnectionManager;

/// Why the service could not start, phrased for the person starting it.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot reach the database:\n{}\n  hint: start the local cluster with `make cluster`, or fix database.* in your configuration", list(.0))]
    Unreachable(Vec<marquee_sharding::Error>),
    #[error(transparent)]
    Storage(#[from] marquee_storage::Error),
    #[error(transparent)]
    Sharding(#[from] marquee_sharding::Error),
    #[error("search index could not be built: {0}")]
    Search(#[from] marquee_search::Error),
    #[error("broker client could not be created: {0}\n  hint: check broker.bootstrap_servers")]
    Broker(#[from] rdkafka::error::KafkaError),
    #[error("TLS is misconfigured: {0}")]
    Tls(std::io::Error),
    #[error("cannot listen on {addr}: {source}\n  hint: another process may hold the port; set http.port or MARQUEE__HTTP__PORT")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the sandbox SMS carrier could not start: {0}")]
    Carrier(std::io::Error),
    #[error("the sandbox payment gateway could not start: {0}")]
    Gateway(std::io::Error),
    #[error(transparent)]
    Booking(#[from] marquee_booking::Error),
    #[error(transparent)]
    Mail(#[from] marquee_notify::Error),
    #[error("accounts could not start: {0}")]
    Auth(#[from] marquee_auth::Error),
    #[error("the periodic jobs could not start: {0}")]
    Jobs(#[from] marquee_jobs::Error),
    #[error("the outbox relay could not start: {0}")]
    Relay(#[from] marquee_relay::Error),
    #[error("the notification service could not start: {0}")]
    Notifications(#[from] marquee_notifications::Error),
    #[error("index build task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn list(errors: &[marquee_sharding::Error]) -> String {
    errors
        .iter()
        .map(|err| format!("  - {err}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Connects to the cluster and checks it is usable: every primary reachable,
/// every migration applied, placement loaded from the catalog, and any move
/// a crash interrupted finished or rolled back.
pub async fn connect_storage(settings: &Settings) -> Result<Storage, StartupError> {
    let cluster = Arc::new(Cluster::new(&settings.database)?);
    cluster
        .verify_primaries()
        .await
        .map_err(StartupError::Unreachable)?;
    let storage = Storage::new(cluster, settings.database.schema.clone());
    storage.check_migrated().await?;
    storage.load_placement().await?;
    storage.resume_moves().await?;
    Ok(storage)
}

/// The card provider, and the sandbox gateway it talks to when none is
/// configured.
async fn payment_provider(
    settings: &PaymentsSettings,
) -> Result<(Arc<dyn PaymentProvider>, Option<RunningGateway>), StartupError> {
    let mut gateway = None;
    let base_url = if settings.gateway_url.trim().is_empty() {
        let running = SandboxGateway::new(GatewayConfig {
            late_answer_delay: Duration::from_millis(settings.sandbox_late_answer_ms),
            ..GatewayConfig::new(settings.secret_key.expose_secret())
        })
        .start("127.0.0.1:0")
        .await
        .map_err(StartupError::Gateway)?;
        let url = running.url();
        gateway = Some(running);
        url
    } else {
        settings.gateway_url.clone()
    };
    let provider = SandboxCardProvider::new(SandboxCardConfig {
        base_url,
        secret_key: settings.secret_key.clone(),
        timeout: Duration::from_millis(settings.timeout_ms),
    });
    Ok((Arc::new(provider), gateway))
}

/// The SMS carrier, and the sandbox carrier it talks to when none is
/// configured.
async fn sms_provider(
    settings: &SmsSettings,
) -> Result<(Arc<dyn SmsProvider>, Option<RunningCarrier>), StartupError> {
    let mut carrier = None;
    let base_url = if settings.carrier_url.trim().is_empty() {
        let running = SandboxCarrier::new(CarrierConfig {
            late_answer_delay: Duration::from_millis(settings.sandbox_late_answer_ms),
            ..CarrierConfig::new(
                settings.account_sid.clone(),
                settings.auth_token.expose_secret().to_owned(),
            )
        })
        .start("127.0.0.1:0")
        .await
        .map_err(StartupError::Carrier)?;
        let url = running.url();
        carrier = Some(running);
        url
    } else {
        settings.carrier_url.clone()
    };
    let provider = HttpSmsProvider::new(HttpSmsConfig {
        base_url,
        account_sid: settings.account_sid.clone(),
        auth_token: settings.auth_token.clone(),
        from: settings.from.clone(),
        timeout: Duration::from_millis(settings.timeout_ms),
    });
    Ok((Arc::new(provider), carrier))
}

/// A Redis connection for the shared rate limits and lockouts, or `None`
/// when Redis cannot be reached at start-up: each instance then enforces
/// them on its own, as it does during a Redis outage.
async fn limits_connection(settings: &RedisSettings) -> Option<ConnectionManager> {
    let client = redis::Client::open(settings.url.expose_secret()).ok()?;
    let timeout = Duration::from_millis(settings.timeout_ms.max(1) * 20);
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout);
    match tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config)).await {
        Ok(Ok(connection)) => Some(connection),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "Redis unreachable: rate limits and lockouts are per instance");
            None
        }
        Err(_) => {
            tracing::warn!("Redis did not answer: rate limits and lockouts are per instance");
            None
        }
    }
}

/// The key that hashes clients' addresses and signs device ids: derived
/// from the owner secret, which never rotates, so keys stored with live
/// holds keep matching.
fn client_keys(auth: &AuthSettings) -> ClientKeys {
    let seed = format!("client keys\0{}", auth.owner_secret.expose_secret());
    ClientKeys::new(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes()).as_ref())
}

fn auth_state(
    settings: &Settings,
    redis: Option<ConnectionManager>,
) -> Result<AuthState, StartupError> {
    let auth = &settings.auth;
    let attempts = RateLimiter::new(
        redis.clone(),
        format!("{}attempts", settings.redis.key_prefix),
        LimiterSettings::default(),
    );
    let lockout = marquee_ratelimit::Lockout::new(
        redis,
        format!("{}lockout", settings.redis.key_prefix),
        marquee_ratelimit::LockoutSettings {
            free_attempts: auth.lockout.free_attempts,
            base_delay: Duration::from_millis(auth.lockout.base_delay_ms),
            max_delay: Duration::from_secs(auth.lockout.max_delay_seconds),
            window: Duration::from_secs(auth.lockout.window_seconds),
            ..marquee_ratelimit::LockoutSettings::default()
        },
    );
    Ok(AuthState {
        gatekeeper: Gatekeeper::new(auth, settings.admin.token.clone())?,
        hasher: PasswordHasher::new(auth.hashing.clone(), auth.max_concurrent_hashes)?,
        settings: auth.clone(),
        mailer: marquee_notify::Mailer::new(&settings.mail)?,
        lockout,
        attempts,
    })
}

fn limit(settings: &RateLimitSettings) -> Limit {
    Limit {
        per_second: f64::from(settings.per_second),
        burst: settings.burst,
    }
}

/// Browsers may call the API from the configured origins only, with
/// credentials (the refresh cookie) and the headers the API reads.
fn cors(origins: &[String]) -> poem::middleware::Cors {
    origins
        .iter()
        .fold(poem::middleware::Cors::new(), |cors, origin| {
            cors.allow_origin(origin.as_str())
        })
        .allow_credentials(true)
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers([
            "authorization",
            "content-type",
            "idempotency-key",
            "booking-token",
            "x-request-id",
        ])
        .expose_headers([
            "x-request-id",
            "location",
            "retry-after",
            "idempotent-replayed",
        ])
        .max_age(600)
}

/// A bound, ready-to-run service.
pub struct Application {
    addr: SocketAddr,
    acceptor: BoxAcceptor,
    endpoint: poem::endpoint::BoxEndpoint<'static>,
    grace: Duration,
    state: Arc<AppState>,
    catalog: tokio::task::JoinHandle<()>,
    bookings_index: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
    relay: tokio::task::JoinHandle<()>,
    notifier: tokio::task::JoinHandle<()>,
    bells: tokio::task::JoinHandle<()>,
    jobs: Arc<Supervisor>,
    monitor: tokio::task::JoinHandle<()>,
    /// The in-process sandbox gateway, when no real one is configured; it
    /// stops when the application is dropped.
    _gateway: Option<RunningGateway>,
    /// The in-process sandbox SMS carrier, when no real one is configured;
    /// tests read the texts it accepted.
    carrier: Option<RunningCarrier>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let storage = connect_storage(&settings).await?;
        let metrics = Metrics::new();
        let start =
            StartPositions::take(&settings.broker.bootstrap_servers, storage.schema()).await?;
        let indexer = Indexer::build(storage.clone(), metrics.clone()).await?;
        let cache = Arc::new(Cache::new(&settings.redis, metrics.cache_lookups.clone()));
        let search = indexer.index();
        let readiness = Readiness::new(&settings, Arc::clone(storage.cluster()))?;
        let (provider, gateway) = payment_provider(&settings.payments).await?;
        let (sms, carrier) = sms_provider(&settings.sms).await?;
        let redis = limits_connection(&settings.redis).await;
        let booking = Arc::new(Booking::new(
            storage.clone(),
            provider,
            settings.booking.clone(),
            metrics.registry(),
            client_keys(&settings.auth),
            Slots::new(
                redis.clone(),
                format!("{}live-holds", settings.redis.key_prefix),
                SlotsSettings::default(),
            ),
        )?);
        let auth = Arc::new(auth_state(&settings, redis.clone())?);
        let inbox = Arc::new(InboxHub::new(
            redis::Client::open(settings.redis.url.expose_secret()).ok(),
            &settings.redis.key_prefix,
            Duration::from_millis(settings.redis.timeout_ms.max(1) * 20),
        ));
        let seats = Arc::new(SeatFeed::new(storage.clone()));
        let catalog = Arc::new(CatalogStream::new(
            &start,
            &settings.broker.bootstrap_servers,
            storage.schema(),
            indexer,
            Arc::clone(&seats),
            Arc::clone(&cache),
        ))
        .spawn(start);
        let state = Arc::new(AppState {
            storage,
            search,
            readiness,
            metrics: metrics.clone(),
            cache,
            booking,
            auth: Arc::clone(&auth),
            inbox: Arc::clone(&inbox),
            seats,
            sms: Arc::clone(&sms),
            turnaround_minutes: settings.catalog.turnaround_minutes,
            horizon_days: settings.catalog.horizon_days,
            max_subscriptions: settings.jobs.max_subscriptions,
        });

        let http = &settings.http;
        let addr = format!("{}:{}", http.host, http.port);
        let bind_error = |source| StartupError::Bind {
            addr: addr.clone(),
            source,
        };
        let tcp = NoDelay(
            TcpListener::bind(addr.as_str())
                .into_acceptor()
                .await
                .map_err(bind_error)?,
        );
        let acceptor = if http.tls.enabled {
            let tls = crate::tls::rustls_config(&http.tls).map_err(StartupError::Tls)?;
            tcp.rustls(tls.into_stream().map_err(StartupError::Tls)?)
                .boxed()
        } else {
            tcp.boxed()
        };
        let bound = acceptor
            .local_addr()
            .into_iter()
            .find_map(|local| local.as_socket_addr().copied())
            .ok_or_else(|| bind_error(std::io::Error::other("listener has no socket address")))?;

        let service = routes::service("/");
        let spec = routes::spec(&service);
        let docs = routes::docs_html(&service, &spec);
        let spec_value: serde_json::Value = serde_json::from_str(&spec).unwrap_or_default();
        let edge = Arc::new(Edge {
            routes: RouteTable::from_spec(
                &spec_value,
                &[
                    &[("/docs", &["GET"][..]), ("/openapi.json", &["GET"][..])][..],
                    pages::ROUTES,
                ]
                .concat(),
            ),
            limiter: RateLimiter::new(
                redis,
                format!("{}rate", settings.redis.key_prefix),
                LimiterSettings::default(),
            ),
            limits: Limits {
                per_address: limit(&http.rate_limit),
                per_user: limit(&settings.auth.user_rate_limit),
                credentials: limit(&settings.auth.credential_rate_limit),
            },
            auth,
            storage: state.storage.clone(),
            metrics,
            hsts: http.tls.enabled,
            max_body_bytes: http.max_body_bytes,
        });
        let app = pages::mount(Route::new())
            .at(
                "/openapi.json",
                poem::endpoint::make_sync(move |_| {
                    poem::Response::builder()
                        .content_type("application/json")
                        .body(spec.clone())
                }),
            )
            .at(
                "/docs",
                poem::endpoint::make_sync(move |_| poem::web::Html(docs.clone())),
            )
            .nest("/", service)
            .data(Arc::clone(&state))
            .data(BodyLimit(http.max_body_bytes));
        // CORS sits outside the gateway, so the gateway's own answers (401,
        // 413, 429) reach a browser app too; with no origins configured
        // there is no CORS layer at all, and browsers refuse every
        // cross-origin read.
        let wrapped = edge::wrap(app.into_endpoint(), edge);
        let endpoint = if http.cors_origins.is_empty() {
            wrapped.boxed()
        } else {
            wrapped.with(cors(&http.cors_origins)).boxed()
        };
        let sweeper = sweeper::spawn(Arc::clone(&state));
        let relay = Arc::new(marquee_relay::Relay::new(
            state.storage.clone(),
            &settings.broker.bootstrap_servers,
            settings.relay.clone(),
            state.metrics.registry(),
        )?)
        .spawn();
        let bells = Arc::clone(&state.inbox).spawn_listener();
        let bookings_index = Arc::new(BookingsIndex::new(
            state.storage.clone(),
            &settings.broker.bootstrap_servers,
        ))
        .spawn();
        let notifier = Arc::new(marquee_notifications::Notifier::new(
            state.storage.clone(),
            state.auth.mailer.clone(),
            Arc::clone(&state.sms),
            Arc::clone(&state.inbox) as Arc<dyn marquee_notifications::Bell>,
            &settings.broker.bootstrap_servers,
            settings.notifications.clone(),
            state.metrics.registry(),
        )?)
        .spawn();
        let jobs = Arc::new(Supervisor::new(
            state.storage.clone(),
            settings.jobs.clone(),
            state.metrics.registry(),
        )?);
        jobs.start(Arc::new(Scanner::new(
            state.storage.clone(),
            Duration::from_millis(settings.jobs.scan_every_ms),
        )));
        jobs.start(Arc::new(ReleaseImporter::new(
            state.storage.clone(),
            &settings.jobs.releases_dir,
            Duration::from_millis(settings.jobs.import_every_ms),
        )));
        let monitor = jobs.spawn_monitor();

        Ok(Self {
            addr: bound,
            acceptor,
            endpoint,
            grace: Duration::from_secs(http.shutdown_grace_seconds),
            state,
            catalog,
            bookings_index,
            sweeper,
            relay,
            notifier,
            bells,
            jobs,
            monitor,
            _gateway: gateway,
            carrier,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The in-process sandbox carrier, if it runs.
    pub fn sms_carrier(&self) -> Option<&RunningCarrier> {
        self.carrier.as_ref()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets
    /// in-flight requests finish for up to the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.addr, "serving");
        let served = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(self.endpoint, shutdown, Some(self.grace))
            .await;
        self.catalog.abort();
        self.bookings_index.abort();
        self.sweeper.abort();
        self.relay.abort();
        self.notifier.abort();
        self.bells.abort();
        self.monitor.abort();
        self.jobs.shutdown();
        served
    }
}
