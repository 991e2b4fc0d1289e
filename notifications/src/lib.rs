//! The notification service: reads booking events from the change stream
//! and tells customers by email, with the tickets as QR images and the
//! showtime as a calendar entry, and account holders in their in-app inbox
//! too, ringing their [`Bell`] so waiting clients hear of it at once.
//!
//! Delivery is at least once from the broker; the service makes it once
//! for the customer. It consumes in a consumer group (`group_id` plus the
//! deployment) in batches, handles different aggregates' events at once and
//! one aggregate's in order, commits offsets only after a batch is handled, and
//! claims a receipt per event and channel (`storage::receipts`) before
//! sending, so an event delivered again (after a crash, a rebalance of the
//! group, or a broker that lost its offsets and had the outbox replayed)
//! finds its receipt and sends nothing. An event that keeps failing is
//! retried with growing waits, then parked on the dead-letter topic with
//! its error so the partition moves on.

mod compose;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use marquee_notify::Mailer;
use marquee_sharding::NodeId;
use marquee_sms::{SmsMessage, SmsProvider};
use marquee_storage::accounts::user_of_customer;
use marquee_storage::inbox::{notice_id, NewNotice};
use marquee_storage::receipts::Claim;
use marquee_storage::Storage;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Deserialize;
use uuid::Uuid;

pub use compose::{alert_mail, cancellation, confirmation, notice, Booking};

/// Wakes whoever waits on a user's in-app inbox, on any instance.
#[async_trait::async_trait]
pub trait Bell: Send + Sync {
    async fn ring(&self, user: Uuid);
}

/// The topic booking events arrive on.
pub const ORDERS_TOPIC: &str = "marquee.orders";
/// The topic account events, subscription alerts among them, arrive on.
pub const ACCOUNTS_TOPIC: &str = "marquee.accounts";

/// The channels' names in receipts and metrics.
const EMAIL: &str = "email";
const SMS: &str = "sms";
const IN_APP: &str = "in_app";
/// The longest SMS body sent: three concatenated parts of GSM-7 text (an
/// accented letter makes it UCS-2, and the same text bills more parts).
const SMS_MAX_CHARS: usize = 459;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The consumer group; the deployment's name is appended, so
    /// deployments sharing a broker each get every event.
    pub group_id: String,
    /// Events taken from the broker at once; their offsets are committed
    /// together once every one is handled.
    pub batch: usize,
    /// Aggregates handled at once within a batch; one aggregate's events
    /// are handled in order.
    pub concurrency: usize,
    /// Tries per event before it is dead-lettered.
    pub max_attempts: u32,
    /// The wait before the second try; it doubles for each after.
    pub retry_base_ms: u64,
    /// A receipt claimed this long ago and never marked sent belongs to a
    /// consumer that died mid-send; the event may be sent again.
    pub claim_timeout_seconds: u64,
    pub dead_letter_topic: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            group_id: "marquee-notifications".to_owned(),
            batch: 64,
            concurrency: 16,
            max_attempts: 5,
            retry_base_ms: 200,
            claim_timeout_seconds: 60,
            dead_letter_topic: "marquee.notifications.dead-letter".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] marquee_storage::Error),
    #[error(transparent)]
    Mail(#[from] marquee_notify::Error),
    #[error(transparent)]
    Sms(#[from] marquee_sms::SmsError),
    #[error("the broker failed: {0}")]
    Broker(#[from] KafkaError),
    #[error("notification metrics could not be registered: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the event is malformed: {0}")]
    Malformed(String),
    #[error("another consumer is sending this notification now")]
    InFlight,
}

impl Error {
    /// Whether trying again can help: a malformed event stays malformed.
    fn is_transient(&self) -> bool {
        match self {
            Error::Malformed(_) => false,
            Error::Sms(err) => !err.is_permanent(),
            _ => true,
        }
    }
}

/// An event as the outbox relay publishes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub deployment: Option<String>,
    pub node: String,
    pub seq: i64,
    pub aggregate: String,
    pub aggregate_id: Uuid,
    pub event: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// What handling one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Sent,
    /// Sent before: a redelivery.
    Duplicate,
    /// Not for this service, or for nobody it can reach (another
    /// deployment's event, an erased account, an order it does not hold).
    Skipped,
}

impl Handled {
    fn label(self) -> &'static str {
        match self {
            Handled::Sent => "sent",
            Handled::Duplicate => "duplicate",
            Handled::Skipped => "skipped",
        }
    }
}

pub struct Notifier {
    storage: Storage,
    mailer: Mailer,
    sms: Arc<dyn SmsProvider>,
    bell: Arc<dyn Bell>,
    bootstrap: String,
    producer: FutureProducer,
    settings: Settings,
    handled: IntCounterVec,
    delay: HistogramVec,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("bootstrap", &self.bootstrap)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier for this instance, registering its metrics in `registry`,
    /// which prefixes their names with `marquee_`.
    pub fn new(
        storage: Storage,
        mailer: Mailer,
        sms: Arc<dyn SmsProvider>,
        bell: Arc<dyn Bell>,
        bootstrap: &str,
        settings: Settings,
        registry: &Registry,
    ) -> Result<Self, Error> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .create()?;
        let handled = IntCounterVec::new(
            Opts::new(
                "notifications_total",
                "Deliveries of booking notices and alerts, by channel and outcome",
            ),
            &["channel", "outcome"],
        )?;
        let delay = HistogramVec::new(
            HistogramOpts::new(
                "notification_delay_seconds",
                "From the change's commit to the notification leaving, by channel",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["channel"],
        )?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(delay.clone()))?;
        Ok(Self {
            storage,
            mailer,
            sms,
            bell,
            bootstrap: bootstrap.to_owned(),
            producer,
            settings,
            handled,
            delay,
        })
    }

    /// The consumer group this deployment's notifiers share.
    pub fn group(&self) -> String {
        format!("{}.{}", self.settings.group_id, self.storage.schema())
    }

    /// Consumes until the task is aborted. A broker that cannot be reached
    /// is waited for; librdkafka reconnects on its own.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(err) = self.consume().await {
                    tracing::warn!(error = %err, "notification consumer stopped; restarting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }

    async fn consume(&self) -> Result<(), Error> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", self.group())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A fetch waits at most this long for new events: the default
            // half second would be most of a notice's delay.
            .set("fetch.wait.max.ms", "50")
            .create()?;
        consumer.subscribe(&[ORDERS_TOPIC, ACCOUNTS_TOPIC])?;
        loop {
            let mut batch = vec![consumer.recv().await?];
            while batch.len() < self.settings.batch.max(1) {
                match tokio::time::timeout(Duration::from_millis(5), consumer.recv()).await {
                    Ok(message) => batch.push(message?),
                    Err(_) => break,
                }
            }
            // One aggregate's events in order; different aggregates at once.
            let mut groups: Vec<(Option<&[u8]>, Vec<&BorrowedMessage<'_>>)> = Vec::new();
            for message in &batch {
                match groups.iter_mut().find(|(key, _)| *key == message.key()) {
                    Some((_, group)) => group.push(message),
                    None => groups.push((message.key(), vec![message])),
                }
            }
            let work: Vec<futures::future::BoxFuture<'_, Result<(), Error>>> = groups
                .into_iter()
                .map(|(_, group)| Box::pin(self.handle_in_order(group)) as _)
                .collect();
            futures::stream::iter(work)
                .buffer_unordered(self.settings.concurrency.max(1))
                .try_collect::<Vec<()>>()
                .await?;
            let mut next: Vec<(&str, i32, i64)> = Vec::new();
            for message in &batch {
                let offset = message.offset() + 1;
                match next.iter_mut().find(|(topic, partition, _)| {
                    *topic == message.topic() && *partition == message.partition()
                }) {
                    Some(entry) => entry.2 = entry.2.max(offset),
                    None => next.push((message.topic(), message.partition(), offset)),
                }
            }
            let mut offsets = TopicPartitionList::new();
            for (topic, partition, offset) in next {
                offsets.add_partition_offset(topic, partition, Offset::Offset(offset))?;
            }
            consumer.commit(&offsets, CommitMode::Async)?;
        }
    }

    async fn handle_in_order(&self, group: Vec<&BorrowedMessage<'_>>) -> Result<(), Error> {
        for message in group {
            self.handle_with_retries(message).await?;
        }
        Ok(())
    }

    /// Handles one message, retrying transient failures with doubling
    /// waits; one that still fails is dead-lettered, so the partition is
    /// not held up by it. Errs only when even the dead-letter topic is
    /// unreachable, and then the offset is not committed.
    async fn handle_with_retries(&self, message: &BorrowedMessage<'_>) -> Result<(), Error> {
        let payload = message.payload().unwrap_or_default();
        let mut attempt = 1;
        loop {
            match self.handle(payload).await {
                Ok(_) => return Ok(()),
                Err(err) if err.is_transient() && attempt < self.settings.max_attempts => {
                    tracing::warn!(error = %err, attempt, "notification failed; retrying");
                    let wait = self.settings.retry_base_ms << (attempt - 1).min(10);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    attempt += 1;
                }
                Err(err) => {
                    tracing::error!(error = %err, attempt, "notification dead-lettered");
                    self.dead_letter(message, &err).await?;
                    self.handled
                        .with_label_values(&["event", "dead_lettered"])
                        .inc();
                    return Ok(());
                }
            }
        }
    }

    async fn dead_letter(&self, message: &BorrowedMessage<'_>, err: &Error) -> Result<(), Error> {
        let reason = err.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(reason.as_bytes()),
            })
            .insert(Header {
                key: "topic",
                value: Some(message.topic().as_bytes()),
            });
        let mut record = FutureRecord::to(&self.settings.dead_letter_topic)
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(err, _)| Error::Broker(err))?;
        Ok(())
    }

    /// Handles one event, once per customer and channel however often it
    /// arrives: sent if any channel sent, a duplicate if every channel had
    /// sent before.
    pub async fn handle(&self, payload: &[u8]) -> Result<Handled, Error> {
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|err| Error::Malformed(err.to_string()))?;
        if envelope.deployment.as_deref() != Some(self.storage.schema()) {
            return Ok(Handled::Skipped);
        }
        match envelope.event.as_str() {
            "order.confirmed" | "order.cancelled" => self.notify_booking(&envelope).await,
            "alert.raised" => self.notify_alert(&envelope).await,
            _ => Ok(Handled::Skipped),
        }
    }

    /// Sends on `channel` unless this event's receipt says it was sent.
    /// The receipt is claimed first and marked after, so a consumer dying
    /// in between leaves a claim that goes stale and is taken over. An SMS
    /// the carrier refuses for good (a number that cannot receive texts)
    /// is marked too, and counted `refused`: trying again cannot help, and
    /// the other channels still tell the customer.
    async fn once(
        &self,
        envelope: &Envelope,
        channel: &'static str,
        send: impl std::future::Future<Output = Result<(), Error>>,
    ) -> Result<Handled, Error> {
        let node = NodeId::new(&envelope.node);
        let stale = Duration::from_secs(self.settings.claim_timeout_seconds);
        match self
            .storage
            .claim_receipt(&node, envelope.seq, channel, stale)
            .await?
        {
            Claim::Sent => {
                self.count(channel, Handled::Duplicate.label());
                return Ok(Handled::Duplicate);
            }
            Claim::InFlight => return Err(Error::InFlight),
            Claim::Claimed => {}
        }
        match send.await {
            Ok(()) => {}
            Err(Error::Sms(err)) if err.is_permanent() => {
                tracing::warn!(error = %err, seq = envelope.seq, "the carrier refused an SMS for good");
                self.storage.mark_sent(&node, envelope.seq, channel).await?;
                self.count(channel, "refused");
                return Ok(Handled::Skipped);
            }
            Err(err) => {
                self.storage
                    .release_receipt(&node, envelope.seq, channel)
                    .await?;
                return Err(err);
            }
        }
        self.storage.mark_sent(&node, envelope.seq, channel).await?;
        self.count(channel, Handled::Sent.label());
        let age = (Utc::now() - envelope.created_at).num_milliseconds().max(0);
        self.delay
            .with_label_values(&[channel])
            .observe(age as f64 / 1000.0);
        Ok(Handled::Sent)
    }

    fn count(&self, channel: &str, outcome: &str) {
        self.handled.with_label_values(&[channel, outcome]).inc();
    }

    /// Files a notice in the user's inbox and rings their bell; the
    /// notice's id comes from the event, so a redelivery files nothing.
    async fn file(
        &self,
        envelope: &Envelope,
        user: Uuid,
        notice: NewNotice<'_>,
    ) -> Result<Handled, Error> {
        let id = notice_id(user, &format!("{}:{}", envelope.node, envelope.seq));
        if !self.storage.file_notice(id, &notice).await? {
            self.count(IN_APP, Handled::Duplicate.label());
            return Ok(Handled::Duplicate);
        }
        self.bell.ring(user).await;
        self.count(IN_APP, Handled::Sent.label());
        Ok(Handled::Sent)
    }

    async fn text(
        &self,
        envelope: &Envelope,
        to: &str,
        title: &str,
        body: &str,
    ) -> Result<Handled, Error> {
        let mut text = format!("Marquee: {title}. {body}");
        if text.chars().count() > SMS_MAX_CHARS {
            text = text.chars().take(SMS_MAX_CHARS - 3).collect::<String>() + "...";
        }
        let message = SmsMessage {
            to: to.to_owned(),
            body: text,
            idempotency_key: format!(
                "{}:{}:{}",
                self.storage.schema(),
                envelope.node,
                envelope.seq
            ),
        };
        self.once(envelope, SMS, async {
            self.sms.send(&message).await?;
            Ok(())
        })
        .await
    }

    /// An alert a subscription raised, on the channels the user chose.
    async fn notify_alert(&self, envelope: &Envelope) -> Result<Handled, Error> {
        let user = envelope.aggregate_id;
        let field = |name: &str| {
            envelope
                .payload
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| Error::Malformed(format!("an alert without {name}")))
        };
        let (kind, title, body) = (field("kind")?, field("title")?, field("body")?);
        let subject_id = envelope
            .payload
            .get("subject_id")
            .and_then(|id| serde_json::from_value::<Uuid>(id.clone()).ok());
        let Some(account) = self
            .storage
            .account(user)
            .await?
            .filter(|account| account.is_active())
        else {
            return Ok(Handled::Skipped);
        };
        let preferences = self.storage.preferences(user).await?;
        let mut outcomes = Vec::new();
        if preferences.in_app {
            let notice = NewNotice {
                user_id: user,
                kind: &kind,
                title: &title,
                body: &body,
                subject_id,
            };
            outcomes.push(self.file(envelope, user, notice).await?);
        }
        // Alerts go only to a confirmed address: anyone can type someone
        // else's into a registration.
        let confirmed = preferences.email && account.email_verified;
        if let (true, Some(to)) = (confirmed, account.email.as_deref()) {
            let mail = alert_mail(to, &title, &body);
            outcomes.push(
                self.once(envelope, EMAIL, async {
                    self.mailer.send(&mail).await?;
                    Ok(())
                })
                .await?,
            );
        }
        if let (true, Some(phone)) = (preferences.sms, preferences.phone.as_deref()) {
            outcomes.push(self.text(envelope, phone, &title, &body).await?);
        }
        Ok(overall(&outcomes))
    }

    async fn notify_booking(&self, envelope: &Envelope) -> Result<Handled, Error> {
        let Some(order) = self.storage.order(envelope.aggregate_id).await? else {
            return Ok(Handled::Skipped);
        };
        let (to, user) = self.recipient(&order.customer).await?;
        let Some(to) = to else {
            return Ok(Handled::Skipped);
        };
        let (Some(showtime), Some(movie)) = (
            self.storage.showtime(order.showtime_id).await?,
            self.storage.movie(order.movie_id).await?,
        ) else {
            return Ok(Handled::Skipped);
        };
        let Some(theater) = self.storage.theater(showtime.theater_id).await? else {
            return Ok(Handled::Skipped);
        };
        let booking = Booking {
            to: &to,
            order: &order,
            showtime: &showtime,
            movie: &movie,
            theater: &theater,
        };
        let now = Utc::now();
        let mail = if envelope.event == "order.confirmed" {
            confirmation(&booking, now)?
        } else {
            let seats: Vec<String> = envelope
                .payload
                .get("seats")
                .and_then(|seats| serde_json::from_value(seats.clone()).ok())
                .ok_or_else(|| Error::Malformed("a cancellation without seats".to_owned()))?;
            let refund = envelope
                .payload
                .get("refund")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            cancellation(&booking, &seats, refund, now)
        };
        let mut outcomes = Vec::new();
        let (kind, title, body) = notice(&booking, &envelope.event, &envelope.payload);
        let preferences = match user {
            Some(user) => Some((user, self.storage.preferences(user).await?)),
            None => None,
        };
        if let Some((user, preferences)) = &preferences {
            if preferences.in_app {
                let notice = NewNotice {
                    user_id: *user,
                    kind,
                    title: &title,
                    body: &body,
                    subject_id: Some(order.id),
                };
                outcomes.push(self.file(envelope, *user, notice).await?);
            }
        }
        // The confirmation carries the tickets: it goes to the booking's
        // address whatever the account's preferences.
        outcomes.push(
            self.once(envelope, EMAIL, async {
                self.mailer.send(&mail).await?;
                Ok(())
            })
            .await?,
        );
        if let Some((_, preferences)) = &preferences {
            if let (true, Some(phone)) = (preferences.sms, preferences.phone.as_deref()) {
                outcomes.push(self.text(envelope, phone, &title, &body).await?);
            }
        }
        Ok(overall(&outcomes))
    }

    /// Where a customer's notices go: a guest's address as given; an
    /// account's current address and its inbox; nowhere for an erased
    /// account.
    async fn recipient(&self, customer: &str) -> Result<(Option<String>, Option<Uuid>), Error> {
        let user = match user_of_customer(customer) {
            None => return Ok((Some(customer.to_owned()), None)),
            Some(Ok(user)) => user,
            Some(Err(_)) => return Err(Error::Malformed(format!("customer {customer:?}"))),
        };
        let email = self
            .storage
            .account(user)
            .await?
            .filter(|account| account.is_active())
            .and_then(|account| account.email);
        Ok(match email {
            Some(email) => (Some(email), Some(user)),
            None => (None, None),
        })
    }
}

/// One event's outcome from its channels'.
fn overall(outcomes: &[Handled]) -> Handled {
    if outcomes.contains(&Handled::Sent) {
        Handled::Sent
    } else if outcomes.contains(&Handled::Duplicate) {
        Handled::Duplicate
    } else {
        Handled::Skipped
    }
}
