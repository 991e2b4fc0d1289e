//! A card gateway's test mode over real HTTP, and its client.
//!
//! - `gateway`: [`SandboxGateway`], the HTTP server, one ledger per gateway.
//! - `ledger`: payment intents and idempotent answers, and the rules of
//!   capture, cancellation and refund.
//! - `tokens`: the test tokens, and the refusal of card numbers.
//! - `bodies`: the JSON bodies, shared by server and client.
//! - `client`: [`SandboxCardProvider`], the [`PaymentProvider`] that calls
//!   the gateway.
//!
//! [`PaymentProvider`]: crate::PaymentProvider

mod bodies;
mod client;
mod gateway;
mod ledger;
mod refusal;
mod tokens;

pub use client::{SandboxCardConfig, SandboxCardProvider};
pub use gateway::{GatewayConfig, RunningGateway, SandboxGateway};
