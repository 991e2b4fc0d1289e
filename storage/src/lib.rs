//! Marquee's schema and queries.
//!
//! - [`migrations`]: versioned SQL files for the catalog and for every shard,
//!   embedded in the binary and applied to primaries only.
//! - [`accounts`]: accounts, sessions, mail tokens and the user's bookings
//!   index, on the shard of the user's id; the email index by address.
//! - [`inbox`]: the in-app inbox of a signed-in user, on the user's node.
//! - [`subscriptions`]: what users asked to hear about, the alerts raised,
//!   and each user's channel preferences, on the user's node.
//! - [`jobs`]: leases, heartbeats and cursors of periodic jobs, on the catalog.
//! - [`audit`]: the append-only audit log on the catalog node.
//! - [`movies`]: movie rows, which live on the shard of their id.
//! - [`theaters`]: theaters, screens and each screen's timetable, on the
//!   shard of the theater's id.
//! - [`showtimes`]: showtimes and seat states, with their movie.
//! - [`layout`]: seat layouts and their validation.
//! - [`seating`]: choosing the best adjacent seats.
//! - [`holds`]: seat holds under optimistic or pessimistic locking.
//! - [`orders`]: orders, payments, tickets and idempotency keys.
//! - [`door`]: admissions at the door and the lists of voided tickets.
//! - [`queue`]: showtimes' waiting rooms, their lines and passes.
//! - [`waitlist`]: the waiting lists of sold-out showtimes.
//! - [`outbox`]: domain events written with each change.
//! - [`movie_data`]: all of one movie's rows, as a unit that moves.
//! - [`key_data`]: theaters' and accounts' rows, in batches that move.
//! - [`moves`]: moving one movie's data to another node while it serves.
//! - `key_moves`: moving batches of theaters and accounts the same way.
//! - [`rebalance`]: executing a change to the node registry.
//! - [`receipts`]: which notifications each outbox event already caused.
//! - [`retry`]: running a transaction again after a deadlock or a
//!   serialization failure.
//! - [`demo`]: the demo catalogue built from the real data in `data/`.
//! - [`Storage`]: the entry point that routes each query to its shard.

pub mod accounts;
pub mod audit;
mod catalog;
pub mod demo;
pub mod demo_places;
pub mod door;
mod error;
pub mod holds;
pub mod inbox;
pub mod jobs;
pub mod key_data;
mod key_moves;
pub mod layout;
pub mod migrations;
pub mod moves;
pub mod movie_data;
pub mod movies;
pub mod orders;
pub mod outbox;
pub mod queue;
pub mod rebalance;
pub mod receipts;
pub mod retry;
pub mod seating;
pub mod showtimes;
mod store;
pub mod subscriptions;
pub mod theaters;
pub mod waitlist;

pub use catalog::{MovieFilter, MoviePage, NewShowtimeRequest, ShowtimeChange};
pub use error::Error;
pub use store::{MigrationReport, NodeLoad, NodeRecord, ShardMap, Storage};
