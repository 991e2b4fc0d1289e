//! Where Marquee's data lives and how to reach it.
//!
//! - [`placement`]: consistent hashing over fixed slots; the same key lands on
//!   the same node in every process and every release.
//! - [`simulate`]: balance and movement of placement at any scale.
//! - [`config`]: how a shard node (primary plus optional streaming replica) is
//!   addressed.
//! - [`ids`]: ids that carry their parent's routing hash, so children of a
//!   movie are routed without a lookup.
//! - [`cluster`]: the connection pools for the catalog and every shard node,
//!   with health probes that report replica lag.

pub mod cluster;
pub mod config;
mod error;
pub mod ids;
pub mod placement;
pub mod simulate;

pub use cluster::{Cluster, HealthState, NodeHealth, PoolStats, Role, Routing, Server, ShardNode};
pub use config::{ClusterConfig, Endpoint, PoolConfig, Session, ShardConfig};
pub use error::Error;
pub use placement::{NodeId, Placement};
