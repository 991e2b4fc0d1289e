//! Taking payment for bookings, through any gateway behind one trait.
//!
//! - [`provider`]: [`PaymentProvider`], which the booking layer holds as
//!   `Arc<dyn PaymentProvider>`, and the values it exchanges: authorize,
//!   then capture or void, then refund.
//! - [`sandbox`]: [`SandboxGateway`], a card gateway that behaves like a
//!   real gateway's test mode, served over HTTP with a ledger of its own,
//!   and [`SandboxCardProvider`], its client.
//!
//! Marquee never handles card numbers: the payment form exchanges the card
//! for a token, and only the token reaches the API. The sandbox gateway
//! refuses a payment method shaped like a card number (12 to 19 digits,
//! with or without spaces and dashes) and never repeats one in an answer.
//!
//! # Test tokens
//!
//! | token | outcome |
//! | --- | --- |
//! | `tok_visa`, `tok_mastercard`, `tok_amex` | authorized |
//! | `tok_visa_<label>`, and the same for the other two brands | authorized, as a test card of its own with its own fingerprint |
//! | `tok_chargeDeclined` | declined, `card_declined` |
//! | `tok_chargeDeclinedInsufficientFunds` | declined, `insufficient_funds` |
//! | `tok_timeout` | authorized, but answered only after [`GatewayConfig::late_answer_delay`] (30 s by default): the client times out without knowing the payment exists |
//! | any other `tok_...` | refused as an unknown token |
//!
//! Declined payments are recorded, so [`PaymentProvider::find`] sees them.

mod error;
pub mod provider;
pub mod sandbox;

pub use error::PaymentError;
pub use provider::{
    Authorization, AuthorizeRequest, Capture, PaymentProvider, PaymentRecord, PaymentState, Refund,
};
pub use sandbox::{
    GatewayConfig, RunningGateway, SandboxCardConfig, SandboxCardProvider, SandboxGateway,
};
