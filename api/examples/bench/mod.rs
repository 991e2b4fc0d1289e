//! What the benchmark examples share: the application served in-process
//! over plain HTTP against the local cluster and broker, in a schema of its
//! own that is dropped at the end, and a screen to schedule on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use marquee::settings::Settings;
use marquee::startup::Application;
use marquee::state::AppState;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use uuid::Uuid;

/// Row labels, as a cinema letters them (no I).
pub const ROWS: [&str; 10] = ["A", "B", "C", "D", "E", "F", "G", "H", "J", "K"];

/// The median, 90th and 99th percentiles and the largest of `values`.
pub fn percentiles(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        values
            .get(((values.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    json!({"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)})
}

pub struct Bench {
    pub base: String,
    pub http: reqwest::Client,
    pub state: Arc<AppState>,
    token: String,
    schema: String,
    scratch: PathBuf,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Bench {
    /// Serves the application in schema `bench_<name>_<pid>`, with `env`
    /// on top of the benchmark's own settings.
    pub async fn start(name: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let schema = format!("bench_{name}_{}", std::process::id());
        let scratch = std::env::temp_dir().join(&schema);
        let mut settings_env: HashMap<String, String> = [
            ("MARQUEE__DATABASE__SCHEMA", schema.clone()),
            ("MARQUEE__HTTP__PORT", "0".to_owned()),
            ("MARQUEE__HTTP__TLS__ENABLED", "false".to_owned()),
            ("MARQUEE__REDIS__KEY_PREFIX", format!("{schema}:")),
            ("MARQUEE__LOG__FILTER", "warn".to_owned()),
            ("MARQUEE__JOBS__RELEASES_DIR", scratch.display().to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        settings_env.extend(
            env.iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        let settings = Settings::load(&root, None, settings_env)?;
        let token = settings.admin.token.expose_secret().to_owned();
        let storage = marquee_storage::Storage::new(
            Arc::new(marquee_sharding::Cluster::new(&settings.database)?),
            schema.clone(),
        );
        storage.migrate().await?;
        storage.load_placement().await?;
        let app = Application::build(settings).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = Arc::clone(app.state());
        let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Ok(Self {
            base,
            http: reqwest::Client::new(),
            state,
            token,
            schema,
            scratch,
            server,
        })
    }

    async fn admin(&self, path: &str, body: Value) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?)
    }

    /// Creates through an admin route; the new id.
    pub async fn create(&self, path: &str, body: Value) -> anyhow::Result<Uuid> {
        let created: Value = self.admin(path, body).await?.json().await?;
        Ok(created["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no id in {created}"))?
            .parse()?)
    }

    /// A theater in Boston with one screen of `rows` rows of `seats`
    /// standard seats; the theater and the screen.
    pub async fn venue(&self, rows: usize, seats: usize) -> anyhow::Result<(Uuid, Uuid)> {
        let theater = self
            .create(
                "/v1/admin/theaters",
                json!({"name": "Bench Cinema", "country": "US", "region": "MA", "city": "Boston",
                       "street": "1 Main St", "postcode": "02108", "latitude": 42.36, "longitude": -71.06,
                       "timezone": "America/New_York", "opening_hours": []}),
            )
            .await?;
        let rows: Vec<Value> = ROWS
            .iter()
            .take(rows)
            .map(|label| {
                let seats: Vec<Value> = (1..=seats)
                    .map(|n| json!({"number": n.to_string(), "column": n, "kind": "standard"}))
                    .collect();
                json!({"label": label, "seats": seats})
            })
            .collect();
        let screen = self
            .create(
                &format!("/v1/admin/theaters/{theater}/screens"),
                json!({"name": "One", "layout": {"rows": rows}}),
            )
            .await?;
        Ok((theater, screen))
    }

    /// Schedules `movie` two days from now at 12.00 a seat; the showtime.
    pub async fn schedule(
        &self,
        movie: Uuid,
        (theater, screen): (Uuid, Uuid),
    ) -> anyhow::Result<Uuid> {
        let starts = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
        self.create(
            "/v1/admin/showtimes",
            json!({"movie_id": movie, "theater_id": theater, "screen_id": screen, "starts_at": starts,
                   "format": "2d", "language": "en", "currency": "USD",
                   "prices": [{"kind": "standard", "amount_minor": 1200}]}),
        )
        .await
    }

    /// Stops serving and drops the schema everywhere.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.server.abort();
        let cluster = self.state.storage.cluster();
        for server in std::iter::once(cluster.catalog())
            .chain(cluster.shards().iter().map(|shard| &shard.primary))
        {
            server
                .get()
                .await?
                .batch_execute(&format!("drop schema {} cascade", self.schema))
                .await?;
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
        Ok(())
    }
}
