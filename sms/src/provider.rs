//! The contract between whatever sends texts and the carrier that delivers
//! them.
//!
//! A message carries an idempotency key, so that a send repeated after a
//! timeout or a crash reaches the recipient at most once.

use async_trait::async_trait;

use crate::SmsError;

/// An SMS carrier, held by senders as `Arc<dyn SmsProvider>` so that the
/// sandbox and a real carrier are interchangeable.
#[async_trait]
pub trait SmsProvider: Send + Sync + std::fmt::Debug {
    /// Hands the message to the carrier. On a transient error (see
    /// [`SmsError::is_permanent`]) send it again with the same idempotency
    /// key: the carrier then sends it once, whatever became of the first
    /// attempt.
    async fn send(&self, message: &SmsMessage) -> Result<SmsReceipt, SmsError>;
}

/// A text to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    /// The recipient in E.164 form, such as `+14155550123`.
    pub to: String,
    /// Long bodies are split into several SMS by the carrier; see
    /// [`segments`](crate::segments).
    pub body: String,
    /// Sending again with the same key returns the first answer instead of
    /// sending again.
    pub idempotency_key: String,
}

/// The carrier's acknowledgement: the message is accepted for delivery,
/// not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsReceipt {
    /// The carrier's id for the message, such as `SM` and 32 hex digits.
    pub id: String,
    /// The carrier's word for where the message stands, such as `queued`.
    pub status: String,
    /// How many SMS the carrier sends, and bills, for the body.
    pub segments: u32,
}
