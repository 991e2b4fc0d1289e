use std::time::Duration;

/// Failures of reaching or describing shard nodes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{node} {role} ({endpoint}) is unreachable: {reason}")]
    Unreachable {
        node: String,
        role: &'static str,
        endpoint: String,
        reason: String,
    },
    #[error("{node} {role} did not hand out a connection within {waited:?}: pool exhausted")]
    PoolExhausted {
        node: String,
        role: &'static str,
        waited: Duration,
    },
    #[error("shard node {0} is not part of the cluster")]
    UnknownNode(String),
    #[error("the cluster has no shard nodes")]
    NoNodes,
    #[error("query on {node} {role} failed: {source}")]
    Query {
        node: String,
        role: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}
