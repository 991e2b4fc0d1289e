/// Failures of reading or writing Marquee's data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Shard(#[from] marquee_sharding::Error),
    #[error("{component} refused the change: {message}")]
    Rejected { component: String, message: String },
    #[error(
        "migration {version} ({name}) on {component} differs from the one this binary ships; \
         migrations are immutable once applied, add a new one instead"
    )]
    MigrationDrift {
        component: String,
        version: i32,
        name: String,
    },
    #[error("{component} is a read-only replica; migrations run on primaries only")]
    ReadOnly { component: String },
    #[error("{component} is missing migrations {pending:?}: run `marquee migrate` before serving")]
    Pending {
        component: String,
        pending: Vec<i32>,
    },
    #[error(
        "the catalog places data on {node}, but the configuration has no connection details for it"
    )]
    UnconfiguredNode { node: String },
    #[error("demo data in {path} is unreadable: {reason}")]
    DemoData { path: String, reason: String },
}
