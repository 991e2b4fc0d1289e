//! The Marquee API service.
//!
//! - [`settings`]: typed, layered configuration.
//! - [`startup`]: builds the application from settings.
//! - [`routes`]: the HTTP API, described by the OpenAPI spec.
//! - [`edge`]: the gateway: request ids, tracing, authentication, rate
//!   limits, problem rendering, security headers, audit of admin changes
//!   and metrics around every request.
//! - [`auth`]: who is calling, and the security schemes routes declare.
//! - [`problem`] and [`body`]: RFC 9457 errors and strict JSON bodies.
//! - [`health`]: readiness of every dependency.
//! - [`pages`]: the HTML pages account mail links open.
//! - [`cache`]: Redis cache-aside that never stands between a request and
//!   the database.
//! - [`indexer`] and [`catalog_stream`]: the search index, built from the
//!   shards and kept fresh, with the cache and live seat maps, from the
//!   catalog topic.
//! - [`bookings_index`]: what the users' bookings index knows of each
//!   order, from the orders topic.
//! - [`sweeper`]: returns lapsed holds' seats and settles orders left
//!   pending with the payment provider.

pub mod auth;
pub mod body;
pub mod bookings_index;
pub mod cache;
pub mod catalog_stream;
pub mod cli;
pub mod edge;
pub mod follow;
pub mod health;
pub mod inbox;
pub mod indexer;
pub mod listener;
pub mod metrics;
pub mod pages;
pub mod problem;
pub mod rendered;
pub mod routes;
pub mod seat_feed;
pub mod seed;
pub mod settings;
pub mod simulate;
pub mod startup;
pub mod state;
pub mod sweeper;
pub mod telemetry;
pub mod tls;
