//! The users' bookings index, kept current from the orders topic.
//!
//! A signed-in customer's hold is entered in their index, on their own
//! shard, before it can be ordered, so "my bookings" never misses one. What
//! the index knows of the order (its status, when its showtime starts),
//! which lets a customer list upcoming, past or cancelled bookings with one
//! read of their shard, comes from the stream: every confirmation and
//! cancellation writes an order event, and this consumer re-reads the order
//! and its showtime and writes the summary into the entry.
//!
//! The instances share one consumer group per deployment, so each event is
//! applied once by whichever instance holds its partition, and offsets are
//! committed after each batch: a restarted instance resumes from them.
//! Applying an event twice or out of order is harmless, since a summary
//! carries the order's `updated_at` and an older one never replaces a
//! newer.

use std::collections::BTreeSet;
use std::sync::Arc;

use marquee_storage::accounts::{user_of_customer, BookingSummary};
use marquee_storage::Storage;
use rdkafka::message::OwnedMessage;
use uuid::Uuid;

use crate::follow::{follow, Envelope, Subscription};

const ORDERS_TOPIC: &str = "marquee.orders";
/// Orders summarized together.
const BATCH: usize = 100;

#[derive(Debug)]
pub struct BookingsIndex {
    storage: Storage,
    bootstrap: String,
}

impl BookingsIndex {
    pub fn new(storage: Storage, bootstrap: &str) -> Self {
        Self {
            storage,
            bootstrap: bootstrap.to_owned(),
        }
    }

    /// Follows the orders topic until the task is aborted.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let subscription = Subscription {
            bootstrap: self.bootstrap.clone(),
            group: format!("marquee-bookings.{}", self.storage.schema()),
            topic: ORDERS_TOPIC,
            batch: BATCH,
        };
        tokio::spawn(async move {
            let index = Arc::clone(&self);
            follow(subscription, None, move |messages| {
                let index = Arc::clone(&index);
                async move { index.apply(&messages).await }
            })
            .await;
        })
    }

    async fn apply(&self, messages: &[OwnedMessage]) -> anyhow::Result<()> {
        let orders: BTreeSet<Uuid> = messages
            .iter()
            .filter_map(|message| Envelope::of(message, self.storage.schema()))
            .filter(|envelope| envelope.aggregate == "order")
            .map(|envelope| envelope.aggregate_id)
            .collect();
        for id in orders {
            self.summarize(id).await?;
        }
        Ok(())
    }

    async fn summarize(&self, order: Uuid) -> Result<(), marquee_storage::Error> {
        let Some(order) = self.storage.order(order).await? else {
            return Ok(());
        };
        // A guest's booking has no index.
        let Some(Ok(user)) = user_of_customer(&order.customer) else {
            return Ok(());
        };
        let Some(showtime) = self.storage.showtime(order.showtime_id).await? else {
            return Ok(());
        };
        self.storage
            .summarize_booking(&BookingSummary {
                user_id: user,
                hold_id: order.hold_id,
                order_id: order.id,
                status: order.status,
                starts_at: showtime.schedule.starts_at,
                as_of: order.updated_at,
            })
            .await
    }
}
