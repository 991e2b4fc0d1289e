/// Why a message was not sent.
///
/// Refusals are answers about the message or the account: sending it again
/// cannot succeed, so [`is_permanent`](Self::is_permanent) is true and the
/// carrier's numeric error code is kept. The other variants are failures of
/// the moment, worth retrying with the same idempotency key.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The number is not a phone number, or not in E.164 form.
    #[error("the carrier refused the number as invalid ({code}): {message}")]
    InvalidNumber { code: u32, message: String },
    /// The number exists but the carrier has no route to it by SMS.
    #[error("the carrier cannot route to the number ({code}): {message}")]
    Unroutable { code: u32, message: String },
    /// The number cannot receive text messages, such as a landline.
    #[error("the number cannot receive SMS ({code}): {message}")]
    CannotReceiveSms { code: u32, message: String },
    /// The recipient blocked the sender or opted out; sending again would
    /// break their wish as well as fail.
    #[error("the recipient has opted out ({code}): {message}")]
    OptedOut { code: u32, message: String },
    /// The body is longer than the carrier takes, even split into segments.
    #[error("the message body is too long ({code}): {message}")]
    BodyTooLong { code: u32, message: String },
    /// The carrier refused the credentials; no message can be sent until the
    /// configuration is fixed. `code` is absent when the answer had no
    /// carrier error body, as from a proxy.
    #[error("the carrier refused the credentials ({}): {message}", code_or_none(*.code))]
    AuthenticationRefused { code: Option<u32>, message: String },
    /// Any other refusal, such as an empty body or an idempotency key reused
    /// for another message.
    #[error("the carrier refused the message (HTTP {status}, {}): {message}", code_or_none(*.code))]
    Rejected {
        status: u16,
        code: Option<u32>,
        message: String,
    },
    /// The request could not be built, such as from a base URL that does not
    /// parse or an idempotency key that cannot be a header; it never left.
    #[error("the request to the carrier could not be built: {0}")]
    InvalidRequest(String),
    /// The carrier could not take the message just now and did not send it.
    #[error("the carrier is unavailable ({}): {message}", code_or_none(*.code))]
    CarrierUnavailable { code: Option<u32>, message: String },
    /// The account sent more than the carrier accepts for now; the message
    /// was not sent.
    #[error("the carrier is rate limiting ({}): {message}", code_or_none(*.code))]
    RateLimited { code: Option<u32>, message: String },
    /// No answer came in time, or the connection broke once the request may
    /// have arrived: the message may have been sent. Repeat it with the same
    /// idempotency key, which cannot send it twice.
    #[error("the carrier did not answer; the message may have been sent")]
    Timeout,
    /// The carrier could not be reached, so nothing was sent, or its answer
    /// could not be read.
    #[error("cannot talk to the carrier: {0}")]
    Transport(String),
}

impl SmsError {
    /// Whether sending again is bound to fail the same way; when false, a
    /// retry with the same idempotency key may succeed and cannot send the
    /// message twice.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::InvalidNumber { .. }
            | Self::Unroutable { .. }
            | Self::CannotReceiveSms { .. }
            | Self::OptedOut { .. }
            | Self::BodyTooLong { .. }
            | Self::AuthenticationRefused { .. }
            | Self::Rejected { .. }
            | Self::InvalidRequest(_) => true,
            Self::CarrierUnavailable { .. }
            | Self::RateLimited { .. }
            | Self::Timeout
            | Self::Transport(_) => false,
        }
    }

    /// The carrier's numeric error code, when its answer carried one.
    pub fn code(&self) -> Option<u32> {
        match self {
            Self::InvalidNumber { code, .. }
            | Self::Unroutable { code, .. }
            | Self::CannotReceiveSms { code, .. }
            | Self::OptedOut { code, .. }
            | Self::BodyTooLong { code, .. } => Some(*code),
            Self::AuthenticationRefused { code, .. }
            | Self::Rejected { code, .. }
            | Self::CarrierUnavailable { code, .. }
            | Self::RateLimited { code, .. } => *code,
            Self::InvalidRequest(_) | Self::Timeout | Self::Transport(_) => None,
        }
    }
}

fn code_or_none(code: Option<u32>) -> String {
    code.map_or_else(|| "no code".to_owned(), |code| code.to_string())
}
