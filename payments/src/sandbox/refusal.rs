//! How the gateway says no: a status code and a Stripe-shaped error body.

use poem::http::StatusCode;

use super::bodies::{ErrorBody, ErrorDetail};

#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
}

impl Refusal {
    /// 400: the request breaks a rule of the API or of the payment's state.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    /// 402: the card was refused, as an issuer would.
    pub fn card(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYMENT_REQUIRED, "card_error", code, message)
    }

    /// Does not repeat the id: it came from the caller and may be anything.
    pub fn no_such_intent() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "resource_missing",
            "no such payment intent",
        )
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "api_key_invalid",
            "missing or invalid secret key; send `Authorization: Bearer sk_test_...`",
        )
    }

    pub fn idempotency(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "idempotency_error", code, message)
    }

    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_owned(),
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        }
    }
}
