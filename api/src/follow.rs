//! Following a topic in a consumer group, for the consumers that keep this
//! service's own views (the search index, the cache, live seat maps, the
//! users' bookings index): messages come in batches, the group's offsets
//! are committed only after a batch is applied, and a consumer whose batch
//! could not be applied is replaced by one that resumes from the last
//! committed offsets, so the batch is read again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::ClientConfig;
use serde::Deserialize;
use uuid::Uuid;

/// A batch also ends when nothing more arrives within this.
const GATHER: Duration = Duration::from_millis(5);
/// Pause before a failed consumer is replaced.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// The part of the relay's envelope these consumers read.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub deployment: Option<String>,
    pub aggregate: String,
    pub aggregate_id: Uuid,
    pub event: String,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Envelope {
    /// The message's envelope if it is well formed and `deployment` wrote
    /// it; deployments sharing a broker ignore each other's events.
    pub fn of(message: &OwnedMessage, deployment: &str) -> Option<Self> {
        use rdkafka::Message;
        message
            .payload()
            .and_then(|bytes| serde_json::from_slice::<Self>(bytes).ok())
            .filter(|envelope| envelope.deployment.as_deref() == Some(deployment))
    }
}

pub fn consumer(bootstrap: &str, group: &str) -> Result<StreamConsumer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
}

/// A topic, its consumer group, and how many messages a batch holds.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub bootstrap: String,
    pub group: String,
    pub topic: &'static str,
    pub batch: usize,
}

/// Applies batches from the topic until the task is aborted. `first` is a
/// consumer already created for the group, if any.
pub async fn follow<F, Fut>(
    subscription: Subscription,
    first: Option<Arc<StreamConsumer>>,
    apply: F,
) where
    F: Fn(Vec<OwnedMessage>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut next = first;
    loop {
        let created = match next.take() {
            Some(consumer) => Ok(consumer),
            None => consumer(&subscription.bootstrap, &subscription.group).map(Arc::new),
        };
        match created {
            Ok(consumer) => {
                let current = Closing(Some(consumer));
                if let Some(consumer) = current.0.as_deref() {
                    if let Err(err) = run(consumer, &subscription, &apply).await {
                        tracing::warn!(
                            error = %err,
                            group = %subscription.group,
                            "consumer stopped; resuming from the last applied batch"
                        );
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "consumer could not be created"),
        }
        tokio::time::sleep(RESTART_AFTER).await;
    }
}

async fn run<F, Fut>(
    consumer: &StreamConsumer,
    subscription: &Subscription,
    apply: &F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<OwnedMessage>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    consumer.subscribe(&[subscription.topic])?;
    loop {
        let batch = next_batch(consumer, subscription.batch).await;
        apply(batch).await?;
        // A commit that fails is made good by the next batch's.
        if let Err(err) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!(error = %err, "commit failed");
        }
    }
}

/// Waits for a message, then takes what else has arrived, up to `max`.
async fn next_batch(consumer: &StreamConsumer, max: usize) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    while batch.is_empty() {
        match consumer.recv().await {
            Ok(message) => batch.push(message.detach()),
            // Brokers coming and going are reported here; the client
            // reconnects and rejoins by itself.
            Err(err) => tracing::debug!(error = %err, "broker client error"),
        }
    }
    while batch.len() < max {
        match tokio::time::timeout(GATHER, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    batch
}

/// A consumer that is closed off the async runtime when dropped: closing
/// waits for the broker, and an instance shutting down while the broker is
/// away must not wait with it.
struct Closing(Option<Arc<StreamConsumer>>);

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            std::thread::spawn(move || drop(consumer));
        }
    }
}
