/// Failures of booking operations, mapped to HTTP once at the API edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Includes the rule breaks the storage layer decides inside its
    /// transactions: invalid seats, taken seats, expired holds, another
    /// customer's booking.
    #[error(transparent)]
    Storage(#[from] marquee_storage::Error),
    #[error("booking is misconfigured: {0}")]
    Settings(String),
    #[error("idempotency key {0:?} was already used with a different request")]
    KeyReused(String),
    #[error("the first request with idempotency key {0:?} is still being processed; retry shortly to get its response")]
    KeyInFlight(String),
    #[error("the payment provider did not answer ({0}); nothing was charged, so the same request may be retried with the same Idempotency-Key")]
    PaymentUnavailable(String),
}
