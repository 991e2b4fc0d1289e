//! Connection pools for the catalog and every shard node, and their health.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Client, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use futures::future::join_all;
use tokio_postgres::NoTls;

use crate::config::{ClusterConfig, Endpoint, PoolConfig, Session};
use crate::placement::{hash_key, NodeId, Placement};
use crate::Error;

/// What a server is for; appears in health reports, metrics and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Catalog,
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Catalog => "catalog",
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// One PostgreSQL server and its pool.
#[derive(Debug)]
pub struct Server {
    node: NodeId,
    role: Role,
    endpoint: Endpoint,
    pool: Pool,
    wait_timeout: Duration,
}

impl Server {
    fn new(
        node: NodeId,
        role: Role,
        endpoint: Endpoint,
        schema: &str,
        config: &PoolConfig,
    ) -> Self {
        let session = match role {
            Role::Replica => Session::Reads,
            Role::Catalog | Role::Primary => Session::Writes,
        };
        let manager = Manager::from_config(
            endpoint.pg_config(schema, config, session),
            NoTls,
            ManagerConfig {
                // A connection whose socket has closed is replaced; a round
                // trip per checkout would add a network hop to every query.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.wait_timeout()))
            .create_timeout(Some(config.connect_timeout()))
            .recycle_timeout(Some(config.connect_timeout()))
            .build()
            .unwrap_or_else(|err| unreachable!("a pool with a runtime always builds: {err}"));
        Self {
            node,
            role,
            endpoint,
            pool,
            wait_timeout: config.wait_timeout(),
        }
    }

    /// `shard-0/primary`, `catalog`: the name health reports and metrics use.
    pub fn component(&self) -> String {
        match self.role {
            Role::Catalog => self.node.to_string(),
            role => format!("{}/{}", self.node, role.as_str()),
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// A pooled connection, or an error that says which server failed and why.
    pub async fn get(&self) -> Result<Client, Error> {
        self.pool.get().await.map_err(|err| self.pool_error(err))
    }

    pub fn query_error(&self, source: tokio_postgres::Error) -> Error {
        Error::Query {
            node: self.node.to_string(),
            role: self.role.as_str(),
            source,
        }
    }

    fn pool_error(&self, err: PoolError) -> Error {
        match err {
            PoolError::Timeout(TimeoutType::Wait) => Error::PoolExhausted {
                node: self.node.to_string(),
                role: self.role.as_str(),
                waited: self.wait_timeout,
            },
            PoolError::Timeout(_) => self.unreachable("timed out connecting".to_owned()),
            PoolError::Backend(err) => self.unreachable(root_cause(&err)),
            other => self.unreachable(other.to_string()),
        }
    }

    fn unreachable(&self, reason: String) -> Error {
        Error::Unreachable {
            node: self.node.to_string(),
            role: self.role.as_str(),
            endpoint: self.endpoint.describe(),
            reason,
        }
    }

    fn stats(&self) -> PoolStats {
        let status = self.pool.status();
        PoolStats {
            component: self.component(),
            size: status.size,
            available: status.available,
            waiting: status.waiting,
            max_size: status.max_size,
        }
    }

    /// Whether the server answers, whether it is in recovery, and its WAL
    /// position (write position on a primary, replay position on a replica).
    async fn probe(&self) -> Result<(bool, Option<u64>), Error> {
        let client = self.get().await?;
        let row = client
            .query_one(
                "select pg_is_in_recovery(), \
                 case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end::text",
                &[],
            )
            .await
            .map_err(|err| self.query_error(err))?;
        let in_recovery: bool = row.get(0);
        let lsn: Option<String> = row.get(1);
        if !self.endpoint.failover.is_empty() && in_recovery != (self.role == Role::Replica) {
            // The member these connections reach changed role (a failover
            // or switchover): they are dropped, so that new ones find the
            // member that holds this role now.
            drop(deadpool_postgres::Object::take(client));
            self.pool.retain(|_, _| false);
        }
        Ok((in_recovery, lsn.as_deref().and_then(parse_lsn)))
    }
}

/// The innermost message of an error chain: "Connection refused (os error 111)"
/// says more to an operator than "error connecting to server".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Parses PostgreSQL's `XXXXXXXX/YYYYYYYY` log sequence number.
fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    Some((high << 32) | low)
}

/// A shard node: its primary for writes and its replica, if any, for reads.
#[derive(Debug)]
pub struct ShardNode {
    pub primary: Server,
    pub replica: Option<Server>,
}

impl ShardNode {
    pub fn id(&self) -> &NodeId {
        self.primary.node()
    }
}

/// Pool occupancy of one server, for metrics.
#[derive(Debug, Clone)]
pub struct PoolStats {
    pub component: String,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
    pub max_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Up,
    Down,
}

/// The outcome of probing one server.
#[derive(Debug, Clone)]
pub struct NodeHealth {
    pub component: String,
    pub endpoint: String,
    pub state: HealthState,
    pub latency: Duration,
    pub detail: Option<String>,
    pub replica_lag_bytes: Option<u64>,
}

/// Where keys live under one version of the shard map: hashed placement,
/// and overrides that pin single keys (hot movies) to dedicated nodes.
/// Overrides are keyed by the key's hash, so an id that carries its
/// parent's hash (see [`crate::ids`]) follows its parent onto a dedicated
/// node without knowing the parent's id.
#[derive(Debug, Clone)]
pub struct Routing {
    pub version: i64,
    pub placement: Placement,
    pub overrides: HashMap<u64, NodeId>,
}

impl Routing {
    pub fn route(&self, key: &[u8]) -> Option<&NodeId> {
        self.route_hash(hash_key(key))
    }

    pub fn route_hash(&self, hash: u64) -> Option<&NodeId> {
        self.overrides
            .get(&hash)
            .or_else(|| self.placement.route_hash(hash))
    }
}

/// The catalog and every shard node, with the placement of keys on them.
#[derive(Debug)]
pub struct Cluster {
    catalog: Server,
    shards: Vec<ShardNode>,
    routing: RwLock<Arc<Routing>>,
    max_replica_lag_bytes: u64,
}

impl Cluster {
    /// Builds a pool per server. Connections are opened lazily, so this never
    /// fails on an unreachable node; call [`Cluster::verify_primaries`] for that.
    pub fn new(config: &ClusterConfig) -> Result<Self, Error> {
        if config.shards.is_empty() {
            return Err(Error::NoNodes);
        }
        let schema = config.schema.as_str();
        let catalog = Server::new(
            NodeId::new("catalog"),
            Role::Catalog,
            config.catalog.clone(),
            schema,
            &config.pool,
        );
        let shards: Vec<ShardNode> = config
            .shards
            .iter()
            .map(|shard| {
                let node = NodeId::new(&shard.name);
                ShardNode {
                    primary: Server::new(
                        node.clone(),
                        Role::Primary,
                        shard.primary.clone(),
                        schema,
                        &config.pool,
                    ),
                    replica: shard.replica.clone().map(|endpoint| {
                        Server::new(node, Role::Replica, endpoint, schema, &config.pool)
                    }),
                }
            })
            .collect();
        let placement = Placement::new(shards.iter().map(|shard| (shard.id().clone(), 1)));
        Ok(Self {
            catalog,
            shards,
            routing: RwLock::new(Arc::new(Routing {
                version: 0,
                placement,
                overrides: HashMap::new(),
            })),
            max_replica_lag_bytes: config.max_replica_lag_bytes,
        })
    }

    pub fn catalog(&self) -> &Server {
        &self.catalog
    }

    pub fn shards(&self) -> &[ShardNode] {
        &self.shards
    }

    pub fn shard(&self, node: &NodeId) -> Result<&ShardNode, Error> {
        self.shards
            .iter()
            .find(|shard| shard.id() == node)
            .ok_or_else(|| Error::UnknownNode(node.to_string()))
    }

    /// The routing currently in force.
    pub fn routing(&self) -> Arc<Routing> {
        Arc::clone(
            &self
                .routing
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Replaces routing, built from a version of the catalog's shard map.
    /// Every node it names must have pools in this cluster.
    pub fn set_routing(&self, routing: Routing) -> Result<(), Error> {
        for node in routing
            .placement
            .nodes()
            .iter()
            .chain(routing.overrides.values())
        {
            self.shard(node)?;
        }
        *self
            .routing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routing);
        Ok(())
    }

    /// The shard node that owns a routing key.
    pub fn route(&self, key: &[u8]) -> Result<&ShardNode, Error> {
        self.route_hash(hash_key(key))
    }

    /// The shard node that owns a hashed routing key.
    pub fn route_hash(&self, hash: u64) -> Result<&ShardNode, Error> {
        let routing = self.routing();
        let node = routing.route_hash(hash).ok_or(Error::NoNodes)?;
        self.shard(node)
    }

    /// Every primary (and the catalog), each reached once; the errors name
    /// every server that could not be reached.
    pub async fn verify_primaries(&self) -> Result<(), Vec<Error>> {
        let servers = std::iter::once(&self.catalog).chain(self.shards.iter().map(|s| &s.primary));
        let errors: Vec<Error> =
            join_all(servers.map(|server| async move { server.probe().await }))
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Probes every server concurrently, each bounded by `timeout`.
    pub async fn health(&self, timeout: Duration) -> Vec<NodeHealth> {
        let catalog = probe_server(&self.catalog, timeout);
        let shards = join_all(
            self.shards
                .iter()
                .map(|shard| self.shard_health(shard, timeout)),
        );
        let (catalog, shards) = futures::join!(catalog, shards);
        let mut report = vec![catalog.0];
        report.extend(shards.into_iter().flatten());
        report
    }

    async fn shard_health(&self, shard: &ShardNode, timeout: Duration) -> Vec<NodeHealth> {
        let primary = probe_server(&shard.primary, timeout);
        let Some(replica) = &shard.replica else {
            return vec![primary.await.0];
        };
        let ((mut primary, primary_lsn), (mut replica_health, replica_lsn)) =
            futures::join!(primary, probe_server(replica, timeout));
        if primary.state == HealthState::Up
            && primary_lsn.is_some_and(|(in_recovery, _)| in_recovery)
        {
            primary.state = HealthState::Down;
            primary.detail = Some("in recovery: this server is not accepting writes".to_owned());
        }
        if replica_health.state == HealthState::Up {
            match replica_lsn {
                Some((false, _)) => {
                    replica_health.detail =
                        Some("not in recovery: the replica was promoted and no longer follows its primary".to_owned());
                    replica_health.state = HealthState::Down;
                }
                Some((true, Some(replayed))) => {
                    if let Some((_, Some(written))) = primary_lsn {
                        let lag = written.saturating_sub(replayed);
                        replica_health.replica_lag_bytes = Some(lag);
                        if lag > self.max_replica_lag_bytes {
                            replica_health.state = HealthState::Down;
                            replica_health.detail = Some(format!(
                                "replica is {lag} bytes behind its primary (limit {})",
                                self.max_replica_lag_bytes
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        vec![primary, replica_health]
    }

    /// Pool occupancy of every server.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        std::iter::once(&self.catalog)
            .chain(
                self.shards
                    .iter()
                    .flat_map(|s| std::iter::once(&s.primary).chain(s.replica.as_ref())),
            )
            .map(Server::stats)
            .collect()
    }
}

type Position = Option<(bool, Option<u64>)>;

async fn probe_server(server: &Server, timeout: Duration) -> (NodeHealth, Position) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, server.probe()).await;
    let latency = started.elapsed();
    let (state, detail, position) = match outcome {
        Ok(Ok(position)) => (HealthState::Up, None, Some(position)),
        Ok(Err(err)) => (HealthState::Down, Some(err.to_string()), None),
        Err(_) => (
            HealthState::Down,
            Some(format!(
                "{} did not answer within {timeout:?}",
                server.component()
            )),
            None,
        ),
    };
    (
        NodeHealth {
            component: server.component(),
            endpoint: server.endpoint.describe(),
            state,
            latency,
            detail,
            replica_lag_bytes: None,
        },
        position,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sequence_numbers_parse_as_byte_positions() {
        assert_eq!(parse_lsn("0/3000148"), Some(0x300_0148));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("nonsense"), None);
    }
}
