//! How the carrier says no: a status code and a Twilio-shaped error body.

use poem::http::StatusCode;

use super::bodies::ErrorBody;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    code: u32,
    message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request breaks a rule of the API.
    pub fn invalid(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            20003,
            "authenticate with HTTP basic auth, the account SID and its auth token",
        )
    }

    /// Does not repeat the account SID: it came from the caller and may be
    /// anything.
    pub fn no_such_account() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            20404,
            "the requested resource was not found",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            more_info: format!("https://www.twilio.com/docs/errors/{}", self.code),
            status: self.status.as_u16(),
        }
    }
}
