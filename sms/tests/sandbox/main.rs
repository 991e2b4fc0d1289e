//! The sandbox carrier and its provider, over real HTTP: a carrier of its
//! own per test, on a port the system picks.

mod delivery;
mod helpers;
mod idempotency;
mod outages;
mod refusals;
mod test_numbers;
