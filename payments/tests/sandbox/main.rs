//! The sandbox gateway and its provider, over real HTTP: a gateway of its
//! own per test, on a port the system picks.

mod helpers;
mod idempotency;
mod lifecycle;
mod outages;
mod refusals;
mod tokens;
