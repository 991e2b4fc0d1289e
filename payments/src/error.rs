/// Why a payment operation did not complete.
///
/// The variants differ in what the caller knows afterwards: a decline and a
/// rejection are final answers, an unavailable gateway did not act, and a
/// timeout leaves the outcome unknown until [`find`] says otherwise.
///
/// [`find`]: crate::PaymentProvider::find
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The issuer refused the card; the customer has to pay another way.
    #[error("the card was declined ({code}): {message}")]
    Declined { code: String, message: String },
    /// The request may have reached the gateway but no answer came back, so
    /// money may be held. Look the payment up with `find`, or repeat the
    /// request with the same idempotency key, before telling the customer
    /// anything.
    #[error("the payment gateway did not answer; the outcome is unknown")]
    Timeout,
    /// The gateway could not be reached or reported a failure of its own.
    #[error("the payment gateway is unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused the request itself; sending it again cannot
    /// succeed.
    #[error("the payment gateway refused the request: {0}")]
    Rejected(String),
}

impl PaymentError {
    /// Whether repeating the request with the same idempotency key may
    /// succeed; the key makes the repeat safe even if the first attempt went
    /// through.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::Unavailable(_))
    }
}
