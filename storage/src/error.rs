/// Failures of reading or writing Marquee's data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Shard(#[from] marquee_sharding::Error),
    #[error("{component} refused the change: {message}")]
    Rejected { component: String, message: String },
    /// The database gave the transaction up because of a concurrent one
    /// (a deadlock or a serialization failure); running it again may
    /// succeed.
    #[error("{component} gave the change up under contention: {message}")]
    Contended { component: String, message: String },
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
    #[error("{component} no longer holds {key}: it moved to {moved_to}; the shard map was reloaded and the request retried")]
    StaleMap {
        component: String,
        /// What moved: "movie <id>", "theater <id>", "account <id>"...
        key: String,
        moved_to: String,
    },
    #[error("movie {0} does not exist")]
    MovieNotFound(uuid::Uuid),
    #[error("node {0} is not an active node of the shard map")]
    NodeNotActive(String),
    #[error("node {node} cannot take data now: {reason}")]
    NodeUnreachable { node: String, reason: String },
    #[error("movie {movie} already lives on {node}")]
    AlreadyPlaced { movie: uuid::Uuid, node: String },
    #[error("the shard map is being rebalanced; new movies wait until it finishes")]
    Rebalancing,
    #[error("a rebalance is already running")]
    RebalanceInProgress,
    #[error("movie {0} is already being moved")]
    MoveInProgress(uuid::Uuid),
    #[error("movie {movie} differs between {source_node} and {target} after copying; the move was rolled back")]
    MoveVerification {
        movie: uuid::Uuid,
        source_node: String,
        target: String,
    },
    #[error("{keys} theaters and accounts differ between {source_node} and {target} after copying; the move was rolled back")]
    KeyMoveVerification {
        keys: usize,
        source_node: String,
        target: String,
    },
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: uuid::Uuid },
    /// The request breaks a rule of the catalogue; each entry names the
    /// offending field and the rule.
    #[error("{detail}")]
    Invalid {
        detail: String,
        fields: Vec<(String, String)>,
    },
    #[error("{0}")]
    Conflict(String),
    /// The showtime's waiting room is on and the hold brought no pass, or
    /// one that was spent or lapsed.
    #[error("a waiting room is on for showtime {showtime}: join the line and hold with the pass it gives")]
    WaitingRoom {
        showtime: uuid::Uuid,
        had_pass: bool,
    },
    /// The caller may not touch this booking.
    #[error("{0}")]
    Forbidden(String),
    #[error("demo data in {path} is unreadable: {reason}")]
    DemoData { path: String, reason: String },
}
