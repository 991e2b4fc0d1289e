//! `spawn_app()`: the real application on port 0, in a private schema on
//! every node of the local cluster, torn down when the test ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use marquee::settings::Settings;
use marquee::startup::Application;
use marquee::state::AppState;
use marquee_sharding::{Cluster, Endpoint, Session};
use marquee_storage::Storage;
use secrecy::ExposeSecret;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub fn root() -> PathBuf {
    // Read at run time: one target directory may serve several checkouts,
    // and a path compiled in names whichever built the binary last.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    PathBuf::from(manifest).join("..")
}

/// Messages the SMTP sink received since this test began, in no order. The
/// sink keeps every message of every earlier run, so reading them all on
/// each poll would make a test slower with every run on the same cluster.
pub fn recent_mail() -> Vec<PathBuf> {
    static STARTED: OnceLock<SystemTime> = OnceLock::new();
    // The slack covers coarse file times; one test process runs one test.
    let since = *STARTED.get_or_init(|| SystemTime::now() - Duration::from_secs(5));
    let dir = root().join("var/mail/new");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified >= since)
        })
        .map(|entry| entry.path())
        .collect()
}

/// A schema of its own on the catalog and on every shard node (replicas
/// receive it by streaming), plus a scratch directory; both removed on drop.
pub struct TestSchema {
    pub name: String,
    pub settings: Settings,
    pub dir: PathBuf,
    /// The primaries as configured on disk: tests may point `settings` at
    /// proxies that are gone by the time the schema is dropped.
    cleanup: Vec<(String, Endpoint)>,
}

impl TestSchema {
    /// Settings for the local cluster, pointed at a fresh schema.
    pub fn new() -> Self {
        let name = format!("t_{}", Uuid::now_v7().simple());
        let dir = std::env::temp_dir().join(format!("marquee-{name}"));
        let env: HashMap<String, String> = [
            ("MARQUEE__DATABASE__SCHEMA", name.clone()),
            ("MARQUEE__DATABASE__POOL__MAX_SIZE", "4".to_owned()),
            ("MARQUEE__HTTP__PORT", "0".to_owned()),
            ("MARQUEE__HTTP__SHUTDOWN_GRACE_SECONDS", "5".to_owned()),
            (
                "MARQUEE__HTTP__TLS__CERT_PATH",
                dir.join("cert.pem").display().to_string(),
            ),
            (
                "MARQUEE__HTTP__TLS__KEY_PATH",
                dir.join("key.pem").display().to_string(),
            ),
            ("MARQUEE__REDIS__KEY_PREFIX", format!("{name}:")),
            ("MARQUEE__LOG__FILTER", "warn".to_owned()),
            (
                "MARQUEE__JOBS__RELEASES_DIR",
                dir.join("releases").display().to_string(),
            ),
            // Every test client shares one address, and tests race
            // hundreds of buyers, who would turn a waiting room on: the
            // tests of those limits and of rooms set them themselves.
            (
                "MARQUEE__BOOKING__FAIRNESS__MAX_UNPAID_SEATS_PER_DEVICE",
                "100000".to_owned(),
            ),
            (
                "MARQUEE__BOOKING__FAIRNESS__MAX_UNPAID_SEATS_PER_ADDRESS",
                "100000".to_owned(),
            ),
            (
                "MARQUEE__BOOKING__FAIRNESS__MAX_LIVE_HOLDS_PER_DEVICE",
                "100000".to_owned(),
            ),
            (
                "MARQUEE__BOOKING__FAIRNESS__MAX_LIVE_HOLDS_PER_ADDRESS",
                "100000".to_owned(),
            ),
            ("MARQUEE__BOOKING__WAITING_ROOM__AUTO", "false".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let settings = Settings::load(&root(), None, env)
            .expect("settings load; is the local cluster up (`make cluster`)?");
        let mut schema = Self {
            name,
            settings,
            dir,
            cleanup: Vec::new(),
        };
        schema.cleanup = schema.primaries();
        schema
    }

    pub fn storage(&self) -> Storage {
        let cluster = Cluster::new(&self.settings.database).expect("cluster");
        Storage::new(Arc::new(cluster), self.name.clone())
    }

    /// Every primary of the cluster: the catalog and each shard's.
    pub fn primaries(&self) -> Vec<(String, Endpoint)> {
        let mut servers = vec![("catalog".to_owned(), self.settings.database.catalog.clone())];
        for shard in &self.settings.database.shards {
            servers.push((format!("{}/primary", shard.name), shard.primary.clone()));
        }
        servers
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (name, servers) = (self.name.clone(), std::mem::take(&mut self.cleanup));
        // Drop runs inside the test's runtime, which cannot be blocked on, so
        // the clean-up gets a thread and a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                for (_, endpoint) in servers {
                    if let Ok(client) = connect(&endpoint).await {
                        let _ = client
                            .batch_execute(&format!(
                                "set lock_timeout = '10s'; drop schema if exists {name} cascade"
                            ))
                            .await;
                    }
                }
            });
        });
        let _ = cleanup.join();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A direct connection to one server, bypassing the application.
pub async fn connect(endpoint: &Endpoint) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_for(endpoint, Session::Writes).await
}

/// A direct connection to the member of an endpoint that serves `session`.
pub async fn connect_for(
    endpoint: &Endpoint,
    session: Session,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = endpoint.connect_config(session);
    config.connect_timeout(std::time::Duration::from_secs(5));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Where an endpoint's primary is now: after a failover it may be any
/// member the endpoint lists.
pub async fn primary_address(endpoint: &Endpoint) -> std::net::SocketAddr {
    member_address(endpoint, Session::Writes).await
}

/// Where the member of an endpoint that serves `session` is now.
pub async fn member_address(endpoint: &Endpoint, session: Session) -> std::net::SocketAddr {
    let client = connect_for(endpoint, session)
        .await
        .expect("the member answers");
    let row = client
        .query_one("select host(inet_server_addr()), inet_server_port()", &[])
        .await
        .expect("address");
    let (host, port): (String, i32) = (row.get(0), row.get(1));
    format!("{host}:{port}").parse().expect("address")
}

pub struct TestApp {
    pub address: String,
    /// The in-process sandbox SMS carrier, whose message list tests read
    /// over its HTTP API.
    pub sms_url: Option<String>,
    pub client: reqwest::Client,
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    // Dropped last, after the server has stopped using the schema.
    pub schema: TestSchema,
}

pub fn https_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the application after `configure` has adjusted its settings.
/// `TEST_LOG` (an `EnvFilter`, such as `marquee=debug`) shows the service's
/// logs in a failing test's output.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
        .with_test_writer()
        .try_init();
    let mut schema = TestSchema::new();
    configure(&mut schema.settings);
    schema.storage().migrate().await.expect("migrations apply");
    let app = Application::build(schema.settings.clone())
        .await
        .expect("application builds");
    let address = format!("https://127.0.0.1:{}", app.port());
    let sms_url = app.sms_carrier().map(marquee_sms::RunningCarrier::url);
    let state = Arc::clone(app.state());
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop.await;
    }));
    TestApp {
        address,
        sms_url,
        client: https_client(),
        state,
        shutdown: Some(shutdown),
        server: Some(server),
        schema,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request is answered")
    }

    pub fn admin_token(&self) -> String {
        self.schema.settings.admin.token.expose_secret().to_owned()
    }

    /// POSTs raw bytes with the operator token.
    pub async fn post_admin(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(self.admin_token())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request is answered")
    }

    pub async fn create_movie(&self, body: serde_json::Value) -> reqwest::Response {
        self.post_admin("/v1/admin/movies", "application/json", body.to_string())
            .await
    }

    /// Stops accepting connections; the handle resolves once in-flight
    /// requests have finished.
    pub fn begin_shutdown(&mut self) -> Option<JoinHandle<std::io::Result<()>>> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.server.take()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Asserts an RFC 9457 answer and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type}"
    );
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["type"].is_string() && body["detail"].is_string());
    assert_eq!(
        body["request_id"].as_str(),
        request_id.as_deref(),
        "body and header carry the same id"
    );
    body
}

/// Count of movies in the test's schema across all shards.
pub async fn movie_count(app: &TestApp) -> usize {
    app.state
        .storage
        .all_movies()
        .await
        .expect("movies readable")
        .len()
}

/// The shard nodes whose primary holds the movie's row, read directly.
pub async fn holders(app: &TestApp, id: Uuid) -> Vec<String> {
    let mut nodes = Vec::new();
    for shard in &app.schema.settings.database.shards {
        let client = connect(&shard.primary).await.expect("connect");
        let rows = client
            .query(
                &format!("select 1 from {}.movies where id = $1", app.schema.name),
                &[&id],
            )
            .await
            .expect("query");
        if !rows.is_empty() {
            nodes.push(shard.name.clone());
        }
    }
    nodes
}

/// The node the application routes a movie to.
pub fn home_of(app: &TestApp, id: Uuid) -> String {
    app.state
        .storage
        .movie_node(id)
        .expect("routable")
        .to_string()
}

/// An application whose connection to one shard's primary runs through a
/// chaos proxy, so the test can cut or slow that node alone.
pub async fn spawn_app_behind_proxy(shard: usize) -> (marquee_chaos::Proxy, TestApp) {
    let upstream =
        primary_address(&TestSchema::new().settings.database.shards[shard].primary).await;
    let proxy = marquee_chaos::Proxy::start(upstream).await.expect("proxy");
    let port = proxy.addr().port();
    let app = spawn_app_with(|settings| {
        let primary = &mut settings.database.shards[shard].primary;
        primary.port = port;
        // Only the proxy: a failover member would route around its faults.
        primary.failover.clear();
    })
    .await;
    (proxy, app)
}

/// A broker of the test's own, so that stopping it disturbs no other test:
/// the same binary and flags as the local cluster's, with its topics.
pub struct PrivateBroker {
    pub port: u16,
    process: Option<std::process::Child>,
}

impl PrivateBroker {
    fn tansu() -> std::path::PathBuf {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .chain(
                std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo/bin")),
            )
            .map(|dir| dir.join("tansu"))
            .find(|path| path.is_file())
            .expect("tansu is installed (scripts/bootstrap)")
    }

    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        let mut broker = Self {
            port,
            process: None,
        };
        broker.restart().await;
        broker
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Starts the broker (empty: it keeps everything in memory) and
    /// creates the change stream's topics.
    pub async fn restart(&mut self) {
        self.stop();
        let url = self.url();
        let child = std::process::Command::new(Self::tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the broker starts");
        self.process = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let topics = std::fs::read_to_string(root().join("config/topics.txt")).expect("topics");
        for topic in topics
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
        {
            let created = std::process::Command::new(Self::tansu())
                .args([
                    "topic",
                    "create",
                    topic,
                    "--broker",
                    &url,
                    "--partitions",
                    "3",
                ])
                .output()
                .expect("tansu topic create");
            assert!(created.status.success(), "topic {topic}: {created:?}");
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
