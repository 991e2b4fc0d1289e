//! Live seat maps: whoever watches a showtime hears of each change to its
//! seats within a second, on whichever instance they reached.
//!
//! Every hold, sale and release writes a `seats.*` event on the showtime
//! in the same transaction, and the relay publishes it to the catalog
//! topic. Each instance reads that topic in a consumer group of its own
//! (every instance needs every change), from the newest offset: a watcher
//! gets the current states when it connects, so nothing older matters.
//! Changes to a showtime nobody watches here are skipped; for one that is
//! watched, the states are read once, however many watch it, and fanned
//! out. A change lost with a broker restart is made good by the next one
//! or by reconnecting, which always starts with the current states.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use marquee_storage::Storage;
use poem_openapi::Object;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use serde::Deserialize;
use tokio::sync::broadcast;
use uuid::Uuid;

/// The topic the relay publishes showtime events to.
const CATALOG_TOPIC: &str = "marquee.catalog";
/// Changes a slow watcher may fall behind by; past that it loses the
/// oldest and goes on from the oldest it still has.
const BACKLOG: usize = 16;

/// Which seats of a showtime are taken, and how many are free.
#[derive(Debug, Clone, Object)]
pub struct SeatStates {
    pub showtime_id: Uuid,
    pub seats_available: i32,
    /// Seat id (`B-7`) to `held`, `sold` or `blocked`; a seat not listed
    /// is free.
    pub taken: BTreeMap<String, String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    deployment: Option<String>,
    aggregate: String,
    aggregate_id: Uuid,
    event: String,
}

pub struct SeatFeed {
    storage: Storage,
    bootstrap: String,
    watched: Mutex<HashMap<Uuid, broadcast::Sender<Arc<SeatStates>>>>,
}

impl std::fmt::Debug for SeatFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeatFeed")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl SeatFeed {
    pub fn new(storage: Storage, bootstrap: &str) -> Self {
        Self {
            storage,
            bootstrap: bootstrap.to_owned(),
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// The showtime's current states, read from its shard.
    pub async fn states(
        &self,
        showtime: Uuid,
    ) -> Result<Option<SeatStates>, marquee_storage::Error> {
        Ok(self
            .storage
            .seat_map(showtime)
            .await?
            .map(|(showtime, _, taken)| SeatStates {
                showtime_id: showtime.id,
                seats_available: showtime.seats_available,
                taken,
                at: Utc::now(),
            }))
    }

    /// Subscribes to the showtime's changes; dropping the receiver stops
    /// watching.
    pub fn watch(&self, showtime: Uuid) -> broadcast::Receiver<Arc<SeatStates>> {
        let mut watched = lock(&self.watched);
        watched.retain(|_, sender| sender.receiver_count() > 0);
        watched
            .entry(showtime)
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe()
    }

    /// Follows the topic until the task is aborted, reconnecting after a
    /// failure.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(err) = self.follow().await {
                    tracing::warn!(error = %err, "seat feed stopped; restarting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }

    async fn follow(&self) -> Result<(), rdkafka::error::KafkaError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set(
                "group.id",
                format!(
                    "marquee-seats.{}.{}",
                    self.storage.schema(),
                    Uuid::new_v4().simple()
                ),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "50")
            .create()?;
        consumer.subscribe(&[CATALOG_TOPIC])?;
        loop {
            let mut changed = HashSet::new();
            let first = consumer.recv().await?;
            self.note(first.payload(), &mut changed);
            // Changes arriving together are read once per showtime.
            while let Ok(next) =
                tokio::time::timeout(Duration::from_millis(5), consumer.recv()).await
            {
                self.note(next?.payload(), &mut changed);
            }
            for showtime in changed {
                self.publish(showtime).await;
            }
        }
    }

    /// Adds the event's showtime to `changed` if it is this deployment's
    /// seat change and someone here watches it.
    fn note(&self, payload: Option<&[u8]>, changed: &mut HashSet<Uuid>) {
        let Some(envelope) =
            payload.and_then(|bytes| serde_json::from_slice::<Envelope>(bytes).ok())
        else {
            return;
        };
        if envelope.deployment.as_deref() == Some(self.storage.schema())
            && envelope.aggregate == "showtime"
            && envelope.event.starts_with("seats.")
            && lock(&self.watched)
                .get(&envelope.aggregate_id)
                .is_some_and(|sender| sender.receiver_count() > 0)
        {
            changed.insert(envelope.aggregate_id);
        }
    }

    async fn publish(&self, showtime: Uuid) {
        match self.states(showtime).await {
            Ok(Some(states)) => {
                if let Some(sender) = lock(&self.watched).get(&showtime) {
                    let _ = sender.send(Arc::new(states));
                }
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, %showtime, "seat states unreadable; the next change retries")
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
