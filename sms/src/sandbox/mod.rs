//! An SMS carrier's test mode over real HTTP, and its client.
//!
//! - `carrier`: [`SandboxCarrier`], the HTTP server, one outbox per carrier.
//! - `outbox`: the accepted messages and the answer given to each
//!   idempotency key.
//! - `numbers`: the test numbers, and what makes a number E.164.
//! - `bodies`: the form and JSON bodies, shared by server and client.
//! - `refusal`: the carrier's error answers.
//! - `client`: [`HttpSmsProvider`], the [`SmsProvider`] that calls the
//!   carrier.
//!
//! [`SmsProvider`]: crate::SmsProvider

mod bodies;
mod carrier;
mod client;
mod numbers;
mod outbox;
mod refusal;

pub use carrier::{CarrierConfig, RunningCarrier, SandboxCarrier};
pub use client::{HttpSmsConfig, HttpSmsProvider};
pub use outbox::SentMessage;
