//! The outbox relay: every change is recorded as an event in its shard's
//! outbox in the transaction that makes it; the relay publishes those
//! events to the broker, keyed by aggregate id, and marks them published.
//!
//! - One relay per shard is active across all instances: it holds the
//!   shard's `relay_lease` row and renews it while it works; another
//!   instance takes over once it lapses.
//! - Delivery is at least once: events are marked published only after
//!   the broker acknowledged them, so a crash or a broker outage leaves
//!   them in the outbox to be sent again. Consumers skip what they applied
//!   by `(node, seq)`.
//! - Order per key: a shard's events go out in sequence order through an
//!   idempotent producer, so an aggregate's events reach its partition in
//!   the order they were committed.
//! - A broker that restarts without its data (the local broker keeps
//!   topics in memory) is noticed when an acknowledged offset goes
//!   backwards: the retained window of published events is queued again.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use marquee_sharding::ShardNode;
use marquee_storage::outbox::Outgoing;
use marquee_storage::Storage;
use prometheus::{IntCounterVec, Opts, Registry};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde::Deserialize;
use uuid::Uuid;

/// How the relay runs; every key has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Pause between rounds when the outbox is empty.
    pub poll_ms: u64,
    /// Events published per shard and round.
    pub batch: i64,
    /// How long a relay's hold on a shard lasts without renewal.
    pub lease_seconds: u64,
    /// How long published events stay in the outbox, to be sent again if
    /// the broker loses them.
    pub retention_hours: u64,
    /// How long the broker may take to acknowledge an event.
    pub delivery_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_ms: 200,
            batch: 2000,
            lease_seconds: 10,
            retention_hours: 24,
            delivery_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] marquee_storage::Error),
    #[error("the broker refused or did not acknowledge an event: {0}")]
    Broker(#[from] KafkaError),
    #[error("relay metrics could not be registered: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The topic an aggregate's events go to.
pub fn topic_of(aggregate: &str) -> &'static str {
    match aggregate {
        "movie" | "showtime" | "theater" | "screen" => "marquee.catalog",
        "seats" | "hold" => "marquee.inventory",
        "payment" => "marquee.payments",
        "user" | "account" => "marquee.accounts",
        _ => "marquee.orders",
    }
}

/// What consumers receive: the event and where it came from, so that
/// `(node, seq)` identifies it across redeliveries, and which deployment
/// (its database schema) wrote it, so deployments sharing a broker ignore
/// each other's events.
fn message(deployment: &str, node: &str, event: &Outgoing) -> String {
    serde_json::json!({
        "deployment": deployment,
        "node": node,
        "seq": event.seq,
        "aggregate": event.aggregate,
        "aggregate_id": event.aggregate_id,
        "event": event.event,
        "payload": event.payload,
        "created_at": event.created_at,
    })
    .to_string()
}

pub struct Relay {
    storage: Storage,
    /// Replaced after a failed send (see `run_once`).
    producer: RwLock<FutureProducer>,
    bootstrap: String,
    settings: Settings,
    holder: Uuid,
    published: IntCounterVec,
    /// The highest offset acknowledged per topic and partition; one going
    /// backwards means the broker lost what it had.
    offsets: Mutex<HashMap<(String, i32), i64>>,
    /// Until when this relay surely holds each shard's lease: renewed only
    /// once half of it is gone, not with a write every round.
    held: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("holder", &self.holder)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay for this instance, registering its metrics in `registry`,
    /// which prefixes their names with `marquee_`.
    pub fn new(
        storage: Storage,
        bootstrap_servers: &str,
        settings: Settings,
        registry: &Registry,
    ) -> Result<Self, Error> {
        let producer = producer(bootstrap_servers, &settings)?;
        let published = IntCounterVec::new(
            Opts::new(
                "outbox_published_total",
                "Outbox events the broker acknowledged, by shard node",
            ),
            &["node"],
        )?;
        registry.register(Box::new(published.clone()))?;
        Ok(Self {
            storage,
            producer: RwLock::new(producer),
            bootstrap: bootstrap_servers.to_owned(),
            settings,
            holder: Uuid::new_v4(),
            published,
            offsets: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// Relays until the task is aborted. A failed round (a shard or the
    /// broker unreachable) is logged and retried; its events stay in the
    /// outbox.
    pub fn spawn(self: std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut rounds: u64 = 0;
            loop {
                let sent = match self.run_once().await {
                    Ok(sent) => sent,
                    Err(err) => {
                        tracing::warn!(error = %err, "outbox relay round failed; retrying");
                        0
                    }
                };
                rounds += 1;
                // Pruning is cheap but needs no hurry: about once a minute.
                if rounds.is_multiple_of(300) {
                    self.prune().await;
                }
                if sent == 0 {
                    tokio::time::sleep(Duration::from_millis(self.settings.poll_ms)).await;
                }
            }
        })
    }

    /// One round: publishes a batch from every shard this relay holds the
    /// lease of; how many events the broker acknowledged.
    pub async fn run_once(&self) -> Result<usize, Error> {
        let lease = Duration::from_secs(self.settings.lease_seconds);
        let mut sent = 0;
        for shard in self.storage.cluster().shards() {
            if !self.holds(shard, lease).await? {
                continue;
            }
            let events = self.storage.unpublished(shard, self.settings.batch).await?;
            if events.is_empty() {
                continue;
            }
            let node = shard.id().to_string();
            let producer = self
                .producer
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            // Polled together, in sequence order: each is queued on its first
            // poll, so the producer sends them in that order.
            let deliveries = events.iter().map(|event| {
                let payload = message(self.storage.schema(), &node, event);
                let key = event.aggregate_id.to_string();
                let topic = topic_of(&event.aggregate);
                let producer = &producer;
                async move {
                    let record = FutureRecord::to(topic).key(&key).payload(&payload);
                    producer
                        .send(
                            record,
                            Duration::from_millis(self.settings.delivery_timeout_ms),
                        )
                        .await
                        .map(|delivery| (topic, delivery.partition, delivery.offset))
                        .map_err(|(err, _)| err)
                }
            });
            let mut acknowledged = Vec::with_capacity(events.len());
            let mut failure = None;
            for (event, outcome) in events
                .iter()
                .zip(futures::future::join_all(deliveries).await)
            {
                match outcome {
                    Ok((topic, partition, offset)) => {
                        self.observe_offset(topic, partition, offset).await?;
                        acknowledged.push(event.seq);
                    }
                    Err(err) => {
                        failure.get_or_insert(err);
                    }
                }
            }
            self.storage.mark_published(shard, &acknowledged).await?;
            self.published
                .with_label_values(&[node.as_str()])
                .inc_by(acknowledged.len() as u64);
            sent += acknowledged.len();
            if let Some(err) = failure {
                // An idempotent producer whose sends timed out must get a new
                // epoch from the broker before it may send again, and a
                // broker that restarted empty cannot give one: the producer
                // would stall for good. A new producer starts clean; what it
                // resends is deduplicated by consumers like any redelivery.
                tracing::warn!(error = %err, fatal = ?producer.client().fatal_error(), "a send failed; starting a new producer");
                let fresh = self::producer(&self.bootstrap, &self.settings)?;
                *self
                    .producer
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                return Err(err.into());
            }
        }
        Ok(sent)
    }

    /// Whether this relay holds `shard`'s lease, renewing it once half of
    /// it has passed. The local deadline is counted from before the
    /// renewal was asked for, so it never outlasts the stored one.
    async fn holds(&self, shard: &ShardNode, lease: Duration) -> Result<bool, Error> {
        let node = shard.id().to_string();
        let asked = Instant::now();
        let fresh = lock(&self.held)
            .get(&node)
            .is_some_and(|until| *until > asked + lease / 2);
        if fresh {
            return Ok(true);
        }
        let held = self
            .storage
            .hold_relay_lease(shard, self.holder, lease)
            .await?;
        let mut leases = lock(&self.held);
        if held {
            leases.insert(node, asked + lease);
        } else {
            leases.remove(&node);
        }
        Ok(held)
    }

    /// Notices a broker that lost its data, and queues the retained window
    /// again on every shard.
    async fn observe_offset(&self, topic: &str, partition: i32, offset: i64) -> Result<(), Error> {
        let regressed = {
            let mut offsets = lock(&self.offsets);
            let highest = offsets
                .entry((topic.to_owned(), partition))
                .or_insert(offset);
            let regressed = offset < *highest;
            if regressed {
                offsets.clear();
                offsets.insert((topic.to_owned(), partition), offset);
            } else {
                *highest = offset;
            }
            regressed
        };
        if regressed {
            let window = Duration::from_secs(self.settings.retention_hours * 3600);
            for shard in self.storage.cluster().shards() {
                let queued = self.storage.republish_window(shard, window).await?;
                tracing::warn!(node = %shard.id(), queued, "the broker lost published events; sending the retained window again");
            }
        }
        Ok(())
    }

    async fn prune(&self) {
        let retention = Duration::from_secs(self.settings.retention_hours * 3600);
        for shard in self.storage.cluster().shards() {
            if let Err(err) = self.storage.prune_published(shard, retention).await {
                tracing::warn!(node = %shard.id(), error = %err, "could not prune the outbox");
            }
        }
    }
}

/// An idempotent producer: sends are acknowledged by every in-sync replica
/// and never duplicated or reordered by the producer's own retries.
fn producer(bootstrap_servers: &str, settings: &Settings) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            settings.delivery_timeout_ms.to_string(),
        )
        .create()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
