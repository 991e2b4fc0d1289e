//! The contract between the booking layer and whatever takes the money.
//!
//! Payment is two-phase: an authorization holds the amount on the card while
//! seats are held, and the booking captures it once confirmed or voids it if
//! the hold lapses. Every call that changes money carries an idempotency
//! key, so that a call repeated after a timeout or a crash acts at most once.

use async_trait::async_trait;

use crate::PaymentError;

/// A payment gateway, held by the booking layer as `Arc<dyn PaymentProvider>`
/// so that the sandbox and a real gateway are interchangeable.
#[async_trait]
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// Names the provider in logs, metrics and stored payments.
    fn name(&self) -> &'static str;

    /// Holds `request.amount` on the card without taking it yet.
    async fn authorize(&self, request: &AuthorizeRequest) -> Result<Authorization, PaymentError>;

    /// Takes up to the authorized amount; the rest of the hold is released.
    async fn capture(
        &self,
        authorization: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<Capture, PaymentError>;

    /// Releases an authorization that was never captured.
    async fn void(&self, authorization: &str, idempotency_key: &str) -> Result<(), PaymentError>;

    /// Returns part or all of a captured amount; refunds of one payment may
    /// not add up to more than was captured.
    async fn refund(
        &self,
        authorization: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<Refund, PaymentError>;

    /// Tells what really happened to an order's payment after a timeout or a
    /// crash. When the order was tried more than once, the latest attempt
    /// that holds or took money wins over any other, so that money is never
    /// hidden behind a later decline; otherwise the latest attempt is
    /// returned.
    async fn find(&self, reference: &str) -> Result<Option<PaymentRecord>, PaymentError>;
}

/// What to authorize. The card arrives as a token from the gateway's
/// payment form, so no card number ever passes through Marquee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// Our order id; `find` looks payments up by it.
    pub reference: String,
    /// The tokenized payment method, such as `tok_visa`.
    pub token: String,
    /// In minor units: cents for USD, yen for JPY.
    pub amount: i64,
    /// ISO 4217, uppercase.
    pub currency: String,
    /// Repeating a request with the same key returns the first answer
    /// instead of authorizing again.
    pub idempotency_key: String,
}

/// An amount held on the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The provider's id, which later calls refer to.
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// What identifies the card, the same for every token of it (never the
    /// card's number), when the provider gives one.
    pub fingerprint: Option<String>,
}

/// A captured authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The authorization's id: a capture has no id of its own.
    pub id: String,
    pub amount: i64,
}

/// Money returned to the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
}

/// A payment as the provider records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub id: String,
    pub reference: String,
    pub state: PaymentState,
    /// The amount authorized, or attempted for a declined payment.
    pub amount: i64,
    pub currency: String,
    pub captured: i64,
    pub refunded: i64,
    /// The card's fingerprint, when the provider gives one.
    pub fingerprint: Option<String>,
}

/// Where a payment stands, which decides what may still be done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// Held on the card: capture or void it.
    Authorized,
    /// Taken; refunds may return part of it.
    Captured,
    /// Taken and since returned in full.
    Refunded,
    /// Released before capture.
    Voided,
    /// Refused by the issuer; nothing is held.
    Declined,
}

impl PaymentState {
    /// Whether the customer's money is held or taken by this payment.
    pub fn holds_money(self) -> bool {
        matches!(self, Self::Authorized | Self::Captured)
    }
}
