/// Failures of the authentication primitives.
///
/// A wrong password or a refused token is not an `Error`: those are ordinary
/// outcomes and are reported by the return values of the functions concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The argon2 parameters or the concurrency bound are unusable.
    #[error("invalid password hashing parameters: {0}")]
    InvalidHashParams(String),
    /// Signing keys for access tokens are missing or unsuitable.
    #[error("invalid access token keys: {0}")]
    InvalidSigningKeys(&'static str),
    /// A stored password hash is not a PHC string argon2 can read.
    #[error("stored password hash is unreadable: {0}")]
    StoredHash(argon2::password_hash::Error),
    /// Argon2 failed while hashing or verifying.
    #[error("password hashing failed: {0}")]
    Hashing(argon2::password_hash::Error),
    /// The blocking task that ran argon2 panicked or was cancelled.
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The hasher no longer hands out permits.
    #[error("password hasher is closed")]
    HasherClosed(#[from] tokio::sync::AcquireError),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A role name that is not one of the known roles.
    #[error("unknown role {0:?}")]
    UnknownRole(String),
}
