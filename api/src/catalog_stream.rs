//! Every instance follows the catalog topic: its search index, the shared
//! cache and its live seat maps are kept fresh from it, whichever instance
//! or job made the change.
//!
//! Each instance reads the topic in a consumer group of its own, since
//! every instance needs every change. Its search index is built in memory
//! at start-up, so the group is new with the index: the topic's ends are
//! read before the index reads the shards, and committed as the group's
//! first offsets once the index is built. A change published before those
//! ends is already in the index; every later one is applied. After each
//! batch is applied, the group's offsets are committed, so a consumer that
//! fails mid-batch is replaced by one that resumes from the last applied
//! batch. When the broker has lost the offsets (a broker restarted empty),
//! the consumer reads from the oldest change it retains, which the relay
//! has published again. Applying a change twice is harmless: the indexer
//! re-reads what the change names.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

use crate::cache::Cache;
use crate::follow::{consumer, follow, Envelope, Subscription};
use crate::indexer::{Changes, Indexer};
use crate::seat_feed::SeatFeed;

/// The topic the relay publishes movie, showtime, theater and screen
/// events to.
const CATALOG_TOPIC: &str = "marquee.catalog";
/// How long start-up waits for the broker to tell the topic's ends.
const ENDS_TIMEOUT: Duration = Duration::from_secs(2);
/// Changes applied together.
const BATCH: usize = 500;

pub struct CatalogStream {
    bootstrap: String,
    group: String,
    deployment: String,
    indexer: Arc<Indexer>,
    seats: Arc<SeatFeed>,
    cache: Arc<Cache>,
}

impl std::fmt::Debug for CatalogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogStream")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// Where a new index starts reading: the topic's ends, read before the
/// index was built, or nothing when the broker could not tell them.
pub struct StartPositions {
    consumer: Arc<StreamConsumer>,
    group: String,
    ends: Option<TopicPartitionList>,
}

impl std::fmt::Debug for StartPositions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartPositions")
            .field("group", &self.group)
            .field("ends", &self.ends)
            .finish_non_exhaustive()
    }
}

impl StartPositions {
    /// Reads the topic's ends for a new consumer group. Call it before the
    /// index reads the shards. A broker that does not answer in time is
    /// not fatal: the group then starts from the oldest retained change.
    pub async fn take(bootstrap: &str, deployment: &str) -> Result<Self, KafkaError> {
        let group = format!("marquee-index.{deployment}.{}", Uuid::new_v4().simple());
        let consumer = Arc::new(consumer(bootstrap, &group)?);
        let reader = Arc::clone(&consumer);
        let ends = tokio::task::spawn_blocking(move || topic_ends(&reader))
            .await
            .map_err(|_| KafkaError::Canceled)
            .and_then(|ends| ends);
        let ends = match ends {
            Ok(ends) => Some(ends),
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "the broker did not tell where the catalog topic ends; \
                     the search index will read every retained change"
                );
                None
            }
        };
        Ok(Self {
            consumer,
            group,
            ends,
        })
    }
}

fn topic_ends(consumer: &StreamConsumer) -> Result<TopicPartitionList, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(CATALOG_TOPIC), ENDS_TIMEOUT)?;
    let mut ends = TopicPartitionList::new();
    for topic in metadata.topics() {
        if let Some(err) = topic.error() {
            return Err(KafkaError::MetadataFetch(err.into()));
        }
        for partition in topic.partitions() {
            let (_, high) =
                consumer.fetch_watermarks(CATALOG_TOPIC, partition.id(), ENDS_TIMEOUT)?;
            ends.add_partition_offset(CATALOG_TOPIC, partition.id(), Offset::Offset(high))?;
        }
    }
    Ok(ends)
}

impl CatalogStream {
    /// The stream for the index `start` was taken for.
    pub fn new(
        start: &StartPositions,
        bootstrap: &str,
        deployment: &str,
        indexer: Arc<Indexer>,
        seats: Arc<SeatFeed>,
        cache: Arc<Cache>,
    ) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            group: start.group.clone(),
            deployment: deployment.to_owned(),
            indexer,
            seats,
            cache,
        }
    }

    /// Commits the start positions as the group's first offsets, then
    /// follows the topic until the task is aborted.
    pub fn spawn(self: Arc<Self>, start: StartPositions) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Some(ends) = start.ends {
                let committer = Arc::clone(&start.consumer);
                let committed =
                    tokio::task::spawn_blocking(move || committer.commit(&ends, CommitMode::Sync))
                        .await;
                if !matches!(committed, Ok(Ok(()))) {
                    tracing::warn!(
                        "could not commit where the search index starts; it reads every retained change"
                    );
                }
            }
            let subscription = Subscription {
                bootstrap: self.bootstrap.clone(),
                group: self.group.clone(),
                topic: CATALOG_TOPIC,
                batch: BATCH,
            };
            let stream = Arc::clone(&self);
            follow(subscription, Some(start.consumer), move |messages| {
                let stream = Arc::clone(&stream);
                async move { stream.apply(&messages).await }
            })
            .await;
        })
    }

    async fn apply(&self, messages: &[OwnedMessage]) -> anyhow::Result<()> {
        let mut batch = Batch::default();
        for message in messages {
            if let Some(envelope) = Envelope::of(message, &self.deployment) {
                self.note(envelope, &mut batch);
            }
        }
        // Watchers first: a seat map is what someone is looking at.
        for showtime in &batch.seats {
            self.seats.publish(*showtime).await;
        }
        if !batch.changes.is_empty() {
            self.indexer.apply(&batch.changes, &self.cache).await?;
            self.indexer.applied(&batch.changes, batch.oldest);
        }
        Ok(())
    }

    fn note(&self, envelope: Envelope, batch: &mut Batch) {
        let id = envelope.aggregate_id;
        let target = match envelope.aggregate.as_str() {
            "movie" => &mut batch.changes.movies,
            "showtime" => &mut batch.changes.showtimes,
            "theater" => &mut batch.changes.theaters,
            _ => return,
        };
        target.insert(id);
        if envelope.aggregate == "showtime"
            && envelope.event.starts_with("seats.")
            && self.seats.is_watched(id)
        {
            batch.seats.insert(id);
        }
        batch.oldest = match (batch.oldest, envelope.created_at) {
            (Some(oldest), Some(at)) => Some(oldest.min(at)),
            (oldest, at) => oldest.or(at),
        };
    }
}

#[derive(Default)]
struct Batch {
    changes: Changes,
    seats: BTreeSet<Uuid>,
    oldest: Option<DateTime<Utc>>,
}
