//! Sending text messages, through any carrier behind one trait.
//!
//! - [`provider`]: [`SmsProvider`], which senders hold as
//!   `Arc<dyn SmsProvider>`, and the values it exchanges.
//! - [`SmsError`]: why a message was not sent, split into permanent refusals
//!   and transient failures, so that a caller retries only what may succeed.
//! - [`segments`]: how many SMS parts a body costs, GSM-7 or UCS-2.
//! - [`sandbox`]: [`SandboxCarrier`], an SMS carrier that behaves like a
//!   real carrier's test mode, served over HTTP with an outbox of its own,
//!   and [`HttpSmsProvider`], the client of its Twilio-shaped API.
//!
//! Every message carries an idempotency key, sent as the `Idempotency-Key`
//! header: a message repeated with its key after a timeout is sent at most
//! once, and the repeat gets the first answer.
//!
//! # Test numbers
//!
//! The sandbox carrier answers by the `To` number, with the HTTP status and
//! error code a real carrier would give:
//!
//! | `To` | outcome | [`SmsError`] |
//! | --- | --- | --- |
//! | `+15005550001` | 400, code 21211: invalid number | [`InvalidNumber`](SmsError::InvalidNumber), permanent |
//! | `+15005550002` | 400, code 21612: the carrier cannot route to it | [`Unroutable`](SmsError::Unroutable), permanent |
//! | `+15005550004` | 400, code 21610: the recipient blocked the sender or opted out | [`OptedOut`](SmsError::OptedOut), permanent |
//! | `+15005550009` | 400, code 21614: not a mobile number, cannot receive SMS | [`CannotReceiveSms`](SmsError::CannotReceiveSms), permanent |
//! | `+15005550006` | 503, code 30001: carrier unavailable | [`CarrierUnavailable`](SmsError::CarrierUnavailable), transient |
//! | `+15005550007` | 429, code 20429: rate limited | [`RateLimited`](SmsError::RateLimited), transient |
//! | `+15005550008` | accepted, but answered only after [`CarrierConfig::late_answer_delay`] (30 s by default): the client times out without knowing the message was sent | [`Timeout`](SmsError::Timeout), transient |
//! | not E.164 (`+` and up to 15 digits) | 400, code 21211 | [`InvalidNumber`](SmsError::InvalidNumber), permanent |
//! | any other E.164 number | 201, accepted and recorded | none |
//!
//! Whatever the number, an empty body is refused with 400, code 21602
//! ([`Rejected`](SmsError::Rejected)); a body over 1600 characters with
//! 400, code 21617 ([`BodyTooLong`](SmsError::BodyTooLong)); wrong
//! credentials with 401, code 20003
//! ([`AuthenticationRefused`](SmsError::AuthenticationRefused)); and an
//! idempotency key reused for another message with 422, code 20422
//! ([`Rejected`](SmsError::Rejected)). Refused messages are not recorded.

mod error;
pub mod provider;
pub mod sandbox;
pub mod segments;

pub use error::SmsError;
pub use provider::{SmsMessage, SmsProvider, SmsReceipt};
pub use sandbox::{
    CarrierConfig, HttpSmsConfig, HttpSmsProvider, RunningCarrier, SandboxCarrier, SentMessage,
};
