//! The bodies of the carrier's HTTP API, shared by the carrier and its
//! client so that the two cannot drift apart. Names and shapes follow
//! Twilio's Messages API.

use serde::{Deserialize, Serialize};

/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded.
///
/// A missing field reads as empty, so that the carrier can name the field
/// in its refusal rather than fail to parse the form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CreateMessage {
    pub to: String,
    pub from: String,
    pub body: String,
}

/// A message, as the carrier answers a send and lists sent messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MessageResource {
    pub sid: String,
    pub account_sid: String,
    /// Always `queued` from the sandbox; a real carrier may also answer
    /// `accepted` or a later status, hence a string.
    pub status: String,
    pub to: String,
    pub from: String,
    pub body: String,
    /// A decimal number in a string, as Twilio sends it.
    pub num_segments: String,
    pub direction: String,
    /// RFC 2822, such as `Thu, 30 Jul 2015 20:12:31 +0000`.
    pub date_created: String,
}

/// `GET /2010-04-01/Accounts/{AccountSid}/Messages.json`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MessageList {
    pub messages: Vec<MessageResource>,
}

/// Every refusal, whatever its status code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub code: u32,
    pub message: String,
    pub more_info: String,
    /// The HTTP status again, as Twilio repeats it in the body.
    pub status: u16,
}
