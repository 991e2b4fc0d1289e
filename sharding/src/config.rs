//! How shard nodes are addressed. Deserialized as part of the service's
//! settings, so the field names are the configuration file's keys.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_postgres::config::TargetSessionAttrs;

/// One PostgreSQL server, or the members of one replication group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The other members of the same replication group, as `host:port`,
    /// tried after `host` and `port`. With them the service connects to
    /// whichever member holds the role it needs (the primary for writes, a
    /// standby for reads), so it follows a failover without a restart.
    #[serde(default)]
    pub failover: Vec<String>,
    pub user: String,
    pub dbname: String,
    #[serde(default)]
    pub password: Option<SecretString>,
}

/// What a connection is for, which picks the member when an endpoint lists
/// several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The primary: a server that accepts writes.
    Writes,
    /// A standby, which spares the primary.
    Reads,
}

impl Endpoint {
    /// `host:port[,host:port...]/dbname`, for messages; never includes the
    /// password.
    pub fn describe(&self) -> String {
        let mut hosts = format!("{}:{}", self.host, self.port);
        for member in &self.failover {
            hosts.push(',');
            hosts.push_str(member);
        }
        format!("{hosts}/{}", self.dbname)
    }

    /// The failover members that are not `host:port` with a port number.
    pub fn malformed_members(&self) -> Vec<&str> {
        self.failover
            .iter()
            .filter(|member| parse_member(member).is_none())
            .map(String::as_str)
            .collect()
    }

    /// A connection to the member that serves `session`: any PostgreSQL
    /// client that reads the catalog or a shard directly (migrations, tools,
    /// tests) reaches the same server the service would.
    pub fn connect_config(&self, session: Session) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("marquee")
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        for (host, port) in self.failover.iter().filter_map(|m| parse_member(m)) {
            config.host(host).port(port);
        }
        if !self.failover.is_empty() {
            // A member that has just been demoted still answers; asking
            // each for its role is what keeps writes off it.
            config.target_session_attrs(match session {
                Session::Writes => TargetSessionAttrs::ReadWrite,
                Session::Reads => TargetSessionAttrs::ReadOnly,
            });
        }
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        config
    }

    pub(crate) fn pg_config(
        &self,
        schema: &str,
        pool: &PoolConfig,
        session: Session,
    ) -> tokio_postgres::Config {
        let mut config = self.connect_config(session);
        config
            .connect_timeout(pool.connect_timeout())
            // Every statement runs inside the configured schema, which is how
            // tests get a private copy of every table on every node.
            .options(format!("-c search_path={schema}"));
        config
    }
}

fn parse_member(member: &str) -> Option<(&str, u16)> {
    let (host, port) = member.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
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
        let endpoints =
            std::iter::once(("database.catalog".to_owned(), &self.catalog)).chain(
                self.shards.iter().enumerate().flat_map(|(index, shard)| {
                    std::iter::once((format!("database.shards[{index}].primary"), &shard.primary))
                        .chain(shard.replica.iter().map(move |replica| {
                            (format!("database.shards[{index}].replica"), replica)
                        }))
                }),
            );
        for (key, endpoint) in endpoints {
            for member in endpoint.malformed_members() {
                problems.push(format!(
                    "{key}.failover lists `{member}`; each member is host:port"
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(failover: &[&str]) -> Endpoint {
        Endpoint {
            host: "10.0.0.1".to_owned(),
            port: 5432,
            failover: failover.iter().map(|m| (*m).to_owned()).collect(),
            user: "marquee".to_owned(),
            dbname: "marquee".to_owned(),
            password: None,
        }
    }

    #[test]
    fn failover_members_are_tried_after_the_first_and_pick_the_role_asked_for() {
        let endpoint = endpoint(&["10.0.0.2:5433"]);

        let writes = endpoint.connect_config(Session::Writes);
        let reads = endpoint.connect_config(Session::Reads);

        assert_eq!(writes.get_ports(), &[5432, 5433]);
        assert_eq!(writes.get_hosts().len(), 2);
        assert_eq!(
            writes.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            reads.get_target_session_attrs(),
            TargetSessionAttrs::ReadOnly
        );
        assert_eq!(endpoint.describe(), "10.0.0.1:5432,10.0.0.2:5433/marquee");
    }

    #[test]
    fn a_single_server_is_reached_whatever_its_role() {
        let config = endpoint(&[]).connect_config(Session::Writes);

        assert_eq!(config.get_target_session_attrs(), TargetSessionAttrs::Any);
    }

    #[test]
    fn failover_members_without_a_port_are_named_as_problems() {
        let endpoint = endpoint(&["10.0.0.2:5433", "10.0.0.3", ":5432", "h:port"]);

        assert_eq!(
            endpoint.malformed_members(),
            vec!["10.0.0.3", ":5432", "h:port"]
        );
    }
}
