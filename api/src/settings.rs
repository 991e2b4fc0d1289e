//! Typed, layered configuration, read once at start-up.
//!
//! Layers, later ones winning:
//! 1. `config/base.yaml`: defaults shipped with the code.
//! 2. `var/cluster.yaml`: addresses of the local cluster, written by
//!    `scripts/cluster up` (absent in production). `MARQUEE_VAR` names
//!    another directory for it and the next file, as it does for the
//!    scripts.
//! 3. `var/secrets.yaml`: secrets generated for the local cluster.
//! 4. The file named by `--config` or `MARQUEE_CONFIG`.
//! 5. Environment variables `MARQUEE__SECTION__KEY`, e.g. `MARQUEE__HTTP__PORT=9443`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment as EnvironmentSource, File, FileFormat};
use marquee_sharding::ClusterConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `production` unless the configuration says otherwise; only a
    /// `development` environment may run the in-process sandboxes and the
    /// keys that ship with the code.
    pub environment: Environment,
    pub http: HttpSettings,
    pub database: ClusterConfig,
    pub redis: RedisSettings,
    pub broker: BrokerSettings,
    pub readiness: ReadinessSettings,
    pub admin: AdminSettings,
    pub log: LogSettings,
    pub seed: SeedSettings,
    pub catalog: CatalogSettings,
    #[serde(default)]
    pub booking: marquee_booking::Settings,
    pub payments: PaymentsSettings,
    pub auth: AuthSettings,
    pub mail: marquee_notify::MailSettings,
    pub sms: SmsSettings,
    #[serde(default)]
    pub relay: marquee_relay::Settings,
    #[serde(default)]
    pub notifications: marquee_notifications::Settings,
    #[serde(default)]
    pub jobs: marquee_jobs::Settings,
}

/// Where the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    /// The local cluster and the test suite.
    Development,
}

/// Values that ship with the code for local use. They are public, so a
/// production start-up refuses each one, naming the key to set.
const DEVELOPMENT_DEFAULTS: &[(&str, &str)] = &[
    ("PAYMENTS__SECRET_KEY", "sk_test_marquee_local"),
    ("SMS__AUTH_TOKEN", "sandbox_auth_token"),
    ("SMS__ACCOUNT_SID", "AC00000000000000000000000000000000"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub host: String,
    /// 0 picks a free port, which tests use.
    pub port: u16,
    pub tls: TlsSettings,
    pub max_body_bytes: usize,
    pub shutdown_grace_seconds: u64,
    pub rate_limit: RateLimitSettings,
    /// Browser origins allowed to call the API, such as
    /// `https://tickets.example.com`; empty allows none.
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub enabled: bool,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Creates a self-signed certificate for localhost when the files are
    /// missing; for local development only.
    pub generate_dev_certificate: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sustained requests per second from one client address.
    pub per_second: u32,
    /// Requests a client may send in a burst above the sustained rate.
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: SecretString,
    /// Prefix of every key this deployment writes, so deployments (and
    /// tests) can share a Redis.
    pub key_prefix: String,
    /// Whether to cache at all; benchmarks turn it off to measure the
    /// database path.
    pub cache_enabled: bool,
    /// How long a cached movie or showtime may be served; changes also
    /// invalidate it at once, so this only bounds a missed invalidation.
    pub cache_ttl_seconds: u64,
    /// The same for seat maps, which change with every hold.
    pub seat_map_ttl_seconds: u64,
    /// How long this instance keeps an entry in memory in front of Redis;
    /// 0 turns the in-process tier off.
    pub local_ttl_ms: u64,
    /// A cache call slower than this is abandoned and the database asked.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    pub bootstrap_servers: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessSettings {
    pub timeout_ms: u64,
}

impl ReadinessSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// The operator token: an admin credential for automation and for
    /// making the first admin account; every use is audited.
    pub token: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info,marquee=debug`; `RUST_LOG` wins.
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSettings {
    pub movies_path: PathBuf,
    pub places_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    /// Cleaning and admission time after a showtime's runtime; the screen
    /// is busy until it ends.
    pub turnaround_minutes: u32,
    /// How far ahead movie details list showtimes.
    pub horizon_days: u32,
}

/// Where card payments go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsSettings {
    /// The card gateway's base URL. Empty runs the sandbox gateway inside
    /// the service, on a loopback port of its own, for local use and tests.
    pub gateway_url: String,
    pub secret_key: SecretString,
    /// How long one gateway call may take before its outcome counts as
    /// unknown and is looked up.
    pub timeout_ms: u64,
    /// How late the in-process sandbox answers the `tok_timeout` test card.
    pub sandbox_late_answer_ms: u64,
}

/// Where text messages go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// The carrier's base URL (a Twilio-shaped Messages API). Empty runs
    /// the sandbox carrier inside the service, on a loopback port of its
    /// own, for local use and tests.
    pub carrier_url: String,
    pub account_sid: String,
    pub auth_token: SecretString,
    /// The sender number, E.164.
    pub from: String,
    pub timeout_ms: u64,
    /// How late the in-process sandbox answers its late test number.
    pub sandbox_late_answer_ms: u64,
}

/// Accounts, tokens and the limits that protect sign-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Signs access tokens; generated into `var/secrets.yaml` by
    /// `scripts/cluster`.
    pub signing_secret: SecretString,
    /// Secrets that signed access tokens before the last rotation; tokens
    /// they signed verify until they lapse. Drop one after
    /// `access_ttl_seconds`.
    #[serde(default)]
    pub previous_signing_secrets: Vec<SecretString>,
    /// Derives the booking key of each account's holds and orders. It never
    /// rotates: a new one would orphan every signed-in customer's bookings.
    pub owner_secret: SecretString,
    /// Lifetime of an access token, and so the longest a revoked session
    /// can still act.
    pub access_ttl_seconds: u64,
    pub refresh_ttl_days: u64,
    pub verification_ttl_hours: u64,
    pub reset_ttl_minutes: u64,
    pub hashing: marquee_auth::password::HashParams,
    /// Password hashes computed at once; each takes `hashing.memory_kib`.
    pub max_concurrent_hashes: usize,
    pub lockout: LockoutConfig,
    /// Password and code checks per account, whatever the address: caps
    /// guesses sent in parallel, which all pass the lockout before any of
    /// them has failed.
    pub account_attempts: AttemptLimit,
    /// Per client address, on the routes that take credentials.
    pub credential_rate_limit: RateLimitSettings,
    /// Per signed-in user, on every route.
    pub user_rate_limit: RateLimitSettings,
    pub totp_issuer: String,
    /// Where links in account mail point.
    pub public_url: String,
    /// Off only for plain-HTTP development setups.
    pub secure_cookies: bool,
}

impl AuthSettings {
    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_ttl_days * 86_400)
    }

    pub fn verification_ttl(&self) -> Duration {
        Duration::from_secs(self.verification_ttl_hours * 3_600)
    }

    pub fn reset_ttl(&self) -> Duration {
        Duration::from_secs(self.reset_ttl_minutes * 60)
    }
}

/// A token bucket counted per minute, for limits slower than one a second.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// Sign-in lockout: after `free_attempts` failures for one address within
/// `window_seconds`, each further failure locks it for twice as long, from
/// `base_delay_ms` up to `max_delay_seconds`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutConfig {
    pub free_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_seconds: u64,
    pub window_seconds: u64,
}

/// Why configuration could not be used; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration could not be read: {0}\n  hint: start the local cluster with `make cluster` (it writes var/cluster.yaml) or pass a complete file with --config")]
    Load(#[from] config::ConfigError),
    #[error("configuration is invalid:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

/// The minimum length of the operator token and of secrets; shorter ones
/// are guessable.
const MIN_ADMIN_TOKEN_LEN: usize = 32;

impl Settings {
    /// Loads every layer from `root` (the repository or install directory),
    /// then validates. `env` is passed in rather than read here so that tests
    /// can load settings without touching the process environment.
    pub fn load(
        root: &Path,
        file: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        // The local cluster's directory moves with MARQUEE_VAR, as it does
        // for the scripts that write it.
        let var = env
            .get("MARQUEE_VAR")
            .map_or_else(|| root.join("var"), |dir| root.join(dir));
        let mut builder = Config::builder()
            .add_source(File::from(root.join("config/base.yaml")).format(FileFormat::Yaml))
            .add_source(
                File::from(var.join("cluster.yaml"))
                    .format(FileFormat::Yaml)
                    .required(false),
            )
            .add_source(
                File::from(var.join("secrets.yaml"))
                    .format(FileFormat::Yaml)
                    .required(false),
            );
        if let Some(file) = file {
            builder = builder.add_source(File::from(file).format(FileFormat::Yaml));
        }
        let settings: Settings = builder
            .add_source(
                EnvironmentSource::with_prefix("MARQUEE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()?
            .try_deserialize()?;
        settings.resolve(root).validated()
    }

    /// Relative paths in configuration are relative to the root directory,
    /// not to wherever the binary happens to be started from.
    fn resolve(mut self, root: &Path) -> Self {
        for path in [
            &mut self.http.tls.cert_path,
            &mut self.http.tls.key_path,
            &mut self.seed.movies_path,
            &mut self.seed.places_path,
        ] {
            if path.is_relative() {
                *path = root.join(&*path);
            }
        }
        self
    }

    fn validated(self) -> Result<Self, SettingsError> {
        let mut problems = self.database.problems();
        if self.http.max_body_bytes < 1024 {
            problems.push("http.max_body_bytes must be at least 1024".to_owned());
        }
        if self.http.rate_limit.per_second == 0 || self.http.rate_limit.burst == 0 {
            problems.push("http.rate_limit.per_second and burst must be at least 1".to_owned());
        }
        if self.admin.token.expose_secret().len() < MIN_ADMIN_TOKEN_LEN {
            problems.push(format!(
                "admin.token must be at least {MIN_ADMIN_TOKEN_LEN} characters (set MARQUEE__ADMIN__TOKEN; `make cluster` generates one in var/secrets.yaml)"
            ));
        }
        if self.http.tls.enabled && !self.http.tls.generate_dev_certificate {
            for (key, path) in [
                ("cert_path", &self.http.tls.cert_path),
                ("key_path", &self.http.tls.key_path),
            ] {
                if !path.is_file() {
                    problems.push(format!("http.tls.{key} {} does not exist", path.display()));
                }
            }
        }
        if self.payments.timeout_ms == 0 {
            problems.push("payments.timeout_ms must be at least 1".to_owned());
        }
        if self.booking.hold_ttl_seconds == 0 || self.booking.max_seats_per_hold == 0 {
            problems.push(
                "booking.hold_ttl_seconds and booking.max_seats_per_hold must be at least 1"
                    .to_owned(),
            );
        }
        for (key, secret) in [
            ("signing_secret", &self.auth.signing_secret),
            ("owner_secret", &self.auth.owner_secret),
        ] {
            if secret.expose_secret().len() < MIN_ADMIN_TOKEN_LEN {
                problems.push(format!(
                    "auth.{key} must be at least {MIN_ADMIN_TOKEN_LEN} characters (set MARQUEE__AUTH__{}; `make cluster` generates one in var/secrets.yaml)",
                    key.to_uppercase()
                ));
            }
        }
        if self.auth.access_ttl_seconds == 0 || self.auth.max_concurrent_hashes == 0 {
            problems.push(
                "auth.access_ttl_seconds and auth.max_concurrent_hashes must be at least 1"
                    .to_owned(),
            );
        }
        for origin in &self.http.cors_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://localhost")) {
                problems.push(format!(
                    "http.cors_origins: {origin:?} is not an https:// origin"
                ));
            }
        }
        if self.broker.bootstrap_servers.trim().is_empty() {
            problems.push("broker.bootstrap_servers is empty".to_owned());
        }
        problems.extend(self.ticket_key_problems());
        if self.environment == Environment::Production {
            problems.extend(self.production_problems());
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }
}

impl Settings {
    fn ticket_key_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let secrets = std::iter::once((
            "booking.ticket_signing_secret".to_owned(),
            self.booking.ticket_signing_secret.as_str(),
        ))
        .chain(self.booking.previous_ticket_keys.iter().enumerate().map(
            |(index, key)| {
                (
                    format!("booking.previous_ticket_keys[{index}].secret"),
                    key.secret.as_str(),
                )
            },
        ));
        for (key, secret) in secrets {
            if secret.len() < MIN_ADMIN_TOKEN_LEN {
                problems.push(format!(
                    "{key} must be at least {MIN_ADMIN_TOKEN_LEN} characters (set MARQUEE__BOOKING__TICKET_SIGNING_SECRET for the current key; `make cluster` generates one in var/secrets.yaml)"
                ));
            } else if self.environment == Environment::Production
                && marquee_booking::tickets::is_public_default(secret)
            {
                problems.push(format!(
                    "{key} is the development default, which anyone can read; set a secret of your own"
                ));
            }
        }
        problems
    }

    /// What may run locally but never in production: the in-process
    /// sandboxes, which pay with test cards, and the keys that ship with
    /// the code.
    fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.payments.gateway_url.trim().is_empty() {
            problems.push(
                "payments.gateway_url is empty, which serves the sandbox card gateway; set the gateway's URL (MARQUEE__PAYMENTS__GATEWAY_URL), or environment: development for local use".to_owned(),
            );
        }
        if self.sms.carrier_url.trim().is_empty() {
            problems.push(
                "sms.carrier_url is empty, which serves the sandbox carrier; set the carrier's URL (MARQUEE__SMS__CARRIER_URL), or environment: development for local use".to_owned(),
            );
        }
        let configured = [
            self.payments.secret_key.expose_secret(),
            self.sms.auth_token.expose_secret(),
            self.sms.account_sid.as_str(),
        ];
        for ((key, default), value) in DEVELOPMENT_DEFAULTS.iter().zip(configured) {
            if value == *default {
                problems.push(format!(
                    "{} is the development default, which anyone can read; set MARQUEE__{key}",
                    key.to_lowercase().replace("__", ".")
                ));
            }
        }
        problems
    }
}

/// Topics the broker must carry, one per line in `config/topics.txt`, which
/// `scripts/cluster` also reads to create them.
pub fn topics() -> Vec<String> {
    include_str!("../../config/topics.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}
