//! Marquee's schema and queries.
//!
//! - [`migrations`]: versioned SQL files for the catalog and for every shard,
//!   embedded in the binary and applied to primaries only.
//! - [`movies`]: movie rows, which live on the shard of their id.
//! - [`moves`]: moving one movie's data to another node while it serves.
//! - [`rebalance`]: executing a change to the node registry.
//! - [`demo`]: the demo catalogue built from the real data in `data/`.
//! - [`Storage`]: the entry point that routes each query to its shard.

pub mod demo;
mod error;
pub mod migrations;
pub mod moves;
pub mod movies;
pub mod rebalance;
mod store;

pub use error::Error;
pub use store::{MigrationReport, NodeRecord, ShardMap, Storage};
