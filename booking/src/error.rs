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
    /// A key of the client (its canonical address, network address or
    /// device) already holds as many unpaid seats of the showtime as it
    /// may; one of its holds lapses after `retry_after` at the latest.
    #[error(
        "this {limit} already holds {used} unpaid seats of this showtime, and may hold {allowed}"
    )]
    UnpaidSeats {
        limit: String,
        allowed: usize,
        used: usize,
        retry_after: std::time::Duration,
    },
    /// The client already has as many live holds as it may, across every
    /// showtime; one lapses after `retry_after` at the latest.
    #[error("this client already has {allowed} holds open, the most it may; pay for or release one, or wait for one to lapse")]
    LiveHolds {
        allowed: usize,
        retry_after: std::time::Duration,
    },
    /// A waiting-room pass that is not genuine, is someone else's or
    /// another showtime's, or has lapsed.
    #[error("the Queue-Pass is not a live pass of yours for this showtime; look at your place in line for a new one")]
    BadPass,
    /// The client's network address already has as many places in the
    /// line as it may.
    #[error("this network address already has {allowed} places in this line, the most it may")]
    TooManyPlaces { allowed: usize },
    /// The showtime sold out: its line takes nobody more.
    #[error("showtime {0} is sold out; join its waiting list to be offered seats that free up")]
    SoldOut(uuid::Uuid),
    /// A ticket code that does not verify.
    #[error("the ticket code is refused: {0}")]
    BadCode(#[from] crate::tickets::CodeError),
    /// A genuine ticket shown at the door of another showtime.
    #[error("the ticket is for showtime {ticket_showtime}, not {door_showtime}")]
    OtherShowtime {
        ticket_showtime: uuid::Uuid,
        door_showtime: uuid::Uuid,
    },
}
