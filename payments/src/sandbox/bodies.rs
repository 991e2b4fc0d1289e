//! The JSON bodies of the gateway's HTTP API, shared by the gateway and its
//! client so that the two cannot drift apart. Field names follow Stripe's.

use serde::{Deserialize, Serialize};

/// `POST /v1/payment_intents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateIntent {
    pub amount: i64,
    pub currency: String,
    pub payment_method: String,
    pub reference: String,
    pub capture_method: CaptureMethod,
}

/// Only manual capture exists: seats are paid for once the booking is
/// confirmed, never at authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CaptureMethod {
    Manual,
}

/// `POST /v1/payment_intents/{id}/capture`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaptureIntent {
    pub amount_to_capture: i64,
}

/// `POST /v1/refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRefund {
    pub payment_intent: String,
    pub amount: i64,
}

/// A payment intent, as every intent endpoint answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Intent {
    pub id: String,
    pub status: IntentStatus,
    pub amount: i64,
    pub currency: String,
    pub reference: String,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    /// The card's fingerprint: the same for every token of one card.
    #[serde(default)]
    pub card_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IntentStatus {
    RequiresCapture,
    Succeeded,
    Canceled,
    Declined,
}

/// `GET /v1/payment_intents?reference=...`, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IntentList {
    pub data: Vec<Intent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RefundBody {
    pub id: String,
    pub status: RefundStatus,
    pub amount: i64,
    pub payment_intent: String,
}

/// Sandbox refunds settle at once; a real gateway may answer `pending`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RefundStatus {
    Succeeded,
}

/// Every refusal, whatever its status code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ErrorDetail {
    /// `card_error`, `invalid_request_error`, `idempotency_error` or
    /// `authentication_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub message: String,
}
