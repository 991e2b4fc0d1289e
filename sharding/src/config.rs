//! How shard nodes are addressed. Deserialized as part of the service's
//! settings, so the field names are the configuration file's keys.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// One PostgreSQL server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    #[serde(default)]
    pub password: Option<SecretString>,
}

impl Endpoint {
    /// `host:port/dbname`, for messages; never includes the password.
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }

    pub(crate) fn pg_config(&self, schema: &str, pool: &PoolConfig) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("marquee")
            .connect_timeout(pool.connect_timeout())
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            // Every statement runs inside the configured schema, which is how
            // tests get a private copy of every table on every node.
            .options(format!("-c search_path={schema}"));
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        config
    }
}

/// A shard node: a primary and, optionally, a streaming replica for reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    pub name: String,
    pub primary: Endpoint,
    #[serde(default)]
    pub replica: Option<Endpoint>,
}

/// Pool sizing and timeouts, the same for every node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub max_size: usize,
    pub connect_timeout_ms: u64,
    pub wait_timeout_ms: u64,
}

impl PoolConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_timeout_ms)
    }
}

/// The catalog node and every shard node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Schema that holds Marquee's tables on every node.
    pub schema: String,
    pub pool: PoolConfig,
    pub catalog: Endpoint,
    pub shards: Vec<ShardConfig>,
    /// A replica further behind its primary than this is reported not ready.
    pub max_replica_lag_bytes: u64,
}

impl ClusterConfig {
    /// Problems a person must fix before the service can start, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_identifier(&self.schema) {
            problems.push(format!(
                "database.schema `{}` must be a lowercase SQL identifier (a-z, 0-9, _)",
                self.schema
            ));
        }
        if self.pool.max_size == 0 {
            problems.push("database.pool.max_size must be at least 1".to_owned());
        }
        if self.shards.is_empty() {
            problems.push(
                "database.shards is empty: start the local cluster (`make cluster`) or list shard nodes in your config file"
                    .to_owned(),
            );
        }
        let mut names: Vec<&str> = self.shards.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        for pair in names.windows(2) {
            if pair[0] == pair[1] {
                problems.push(format!("database.shards names `{}` twice", pair[0]));
            }
        }
        for (index, shard) in self.shards.iter().enumerate() {
            if !is_node_name(&shard.name) {
                problems.push(format!(
                    "database.shards[{index}].name `{}` must be letters, digits and dashes",
                    shard.name
                ));
            }
        }
        problems
    }
}

/// Node names appear in logs, metrics labels and URLs: letters, digits and
/// dashes, at most 63 characters.
pub fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Lowercase identifiers only, so a schema name can be spliced into SQL safely.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}
