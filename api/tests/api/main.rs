//! Integration tests: the real application on port 0 against the local
//! cluster, each test in its own schema on every node.

mod accounts;
mod auth_fuzz;
mod booking;
mod catalog;
mod door;
mod fairness;
mod health;
mod helpers;
mod inbox;
mod isolation;
mod jobs;
mod key_moves;
mod metrics;
mod migrations;
mod moves;
mod movies;
mod notifications;
mod openapi;
mod pages;
mod problems;
mod queue;
mod recovery;
mod relay;
mod search;
mod seat_stream;
mod seed;
mod shards;
mod shutdown;
mod startup;
mod subscriptions;
mod tls;
mod waitlist;
