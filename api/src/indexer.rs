//! Builds this instance's search index from the shards and keeps it, and
//! the caches, fresh from the change stream.
//!
//! Every change to the catalogue writes an event to its shard's outbox in
//! the same transaction, and the relay publishes it to the catalog topic.
//! Each instance reads every partition of that topic itself (every index
//! needs every change, so there is no group to share) and re-reads what
//! changed, so an update is
//! searchable, and stale cache entries dropped, on every instance within
//! moments, whichever instance made it. The index lives in memory and is
//! rebuilt from the shards at start, so the consumer starts where the
//! topic stood just before that snapshot was read: the partitions' ends
//! when the broker answers at start, else the first events published after
//! the snapshot began, looked up by time once it does. Applying an event
//! twice is harmless: it re-reads the current state.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Datelike;
use marquee_search::{MovieDoc, MovieIndex, ShowtimeDoc};
use marquee_storage::movies::Movie;
use marquee_storage::showtimes::Showtime;
use marquee_storage::theaters::Theater;
use marquee_storage::Storage;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Deserialize;
use uuid::Uuid;

use crate::cache::{Cache, Entry};
use crate::metrics::Metrics;

/// The topic catalogue changes are published to.
const CATALOG_TOPIC: &str = "marquee.catalog";
/// Events applied together: their aggregates are re-read once.
const BATCH: usize = 1_000;
const LOAD_PAGE: i64 = 10_000;
/// How long the broker may take to say where the topic stands.
const BROKER_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the consumer (re)starts.
#[derive(Debug, Clone)]
enum Start {
    /// The next offset to read, per partition.
    Offsets(Vec<(i32, i64)>),
    /// The first events published at or after this time, in milliseconds
    /// since the epoch.
    Since(i64),
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    deployment: Option<String>,
    aggregate: String,
    aggregate_id: Uuid,
}

pub struct Indexer {
    storage: Storage,
    index: Arc<MovieIndex>,
    theaters: RwLock<HashMap<Uuid, Theater>>,
    /// Created before the snapshot is read, so that asking where the
    /// topic stands needs no client of its own.
    consumer: Arc<StreamConsumer>,
    start: Mutex<Start>,
    metrics: Metrics,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer").finish_non_exhaustive()
    }
}

/// What the search index holds of a stored movie.
pub fn movie_document(movie: &Movie) -> MovieDoc {
    MovieDoc {
        id: movie.id,
        title: movie.title.clone(),
        director: movie.director.clone(),
        cast: movie.cast.clone(),
        synopsis: movie.synopsis.clone(),
        genres: movie.genres.clone(),
        release_year: movie.release_date.map(|date| date.year()),
        rating: movie.imdb_rating,
        votes: movie.imdb_votes.map(i64::from),
    }
}

fn showtime_document(showtime: &Showtime, theater: &Theater) -> ShowtimeDoc {
    let info = &theater.info;
    ShowtimeDoc {
        id: showtime.id,
        movie_id: showtime.movie_id,
        theater_id: theater.id,
        theater_name: info.name.clone(),
        city: match &info.region {
            Some(region) => format!("{}, {region}", info.city),
            None => info.city.clone(),
        },
        latitude: info.latitude,
        longitude: info.longitude,
        starts_at: showtime.schedule.starts_at,
        format: showtime.schedule.format.clone(),
        language: showtime.schedule.language.clone(),
        min_price_cents: showtime
            .schedule
            .prices
            .values()
            .copied()
            .min()
            .unwrap_or_default(),
        seats_available: showtime.seats_available,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, marquee_search::Error> + Send + 'static,
) -> Result<T, crate::startup::StartupError> {
    Ok(tokio::task::spawn_blocking(work).await??)
}

impl Indexer {
    /// Reads the whole catalogue into a new index. Where the topic stands
    /// is asked first, so a change made during the load is applied again
    /// rather than lost.
    pub async fn build(
        storage: Storage,
        metrics: Metrics,
        bootstrap: &str,
    ) -> Result<Arc<Self>, crate::startup::StartupError> {
        let began = chrono::Utc::now().timestamp_millis();
        let consumer: Arc<StreamConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                // Never joined or committed: the partitions are assigned.
                .set(
                    "group.id",
                    format!(
                        "marquee-index.{}.{}",
                        storage.schema(),
                        Uuid::new_v4().simple()
                    ),
                )
                .set("enable.auto.commit", "false")
                // A broker that restarted empty has its offsets start again
                // from zero: read from its start, which the relay refills.
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", "50")
                .create()?,
        );
        let asked = tokio::time::timeout(BROKER_TIMEOUT, topic_ends(Arc::clone(&consumer))).await;
        let start = match asked {
            Ok(Ok(ends)) => Start::Offsets(ends),
            failed => {
                let reason = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                tracing::warn!(%reason, "the broker did not say where the catalog topic stands; changes will be read from the snapshot's time");
                // A second of slack for timestamps taken on another clock.
                Start::Since(began - 1_000)
            }
        };
        let index = Arc::new(blocking(MovieIndex::new).await?);
        let theaters: HashMap<Uuid, Theater> = storage
            .all_theaters()
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let movies: Vec<MovieDoc> = storage
            .all_movies()
            .await?
            .iter()
            .map(movie_document)
            .collect();
        let target = Arc::clone(&index);
        blocking(move || target.upsert_movies(&movies)).await?;
        for shard in storage.cluster().shards() {
            let mut after = Uuid::nil();
            loop {
                let page = storage.showtime_page(shard, after, LOAD_PAGE).await?;
                let Some(last) = page.last() else {
                    break;
                };
                after = last.id;
                let documents: Vec<ShowtimeDoc> = page
                    .iter()
                    .filter_map(|s| theaters.get(&s.theater_id).map(|t| showtime_document(s, t)))
                    .collect();
                let target = Arc::clone(&index);
                blocking(move || target.upsert_showtimes(&documents)).await?;
            }
        }
        tracing::info!(
            movies = index.movie_count(),
            showtimes = index.showtime_count(),
            "search index built"
        );
        Ok(Arc::new(Self {
            storage,
            index,
            theaters: RwLock::new(theaters),
            consumer,
            start: Mutex::new(start),
            metrics,
        }))
    }

    pub fn index(&self) -> Arc<MovieIndex> {
        Arc::clone(&self.index)
    }

    /// Follows the catalog topic until the task is aborted; after a
    /// failure it resumes from the last change applied.
    pub fn spawn(self: &Arc<Self>, cache: Arc<Cache>) -> tokio::task::JoinHandle<()> {
        let indexer = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(err) = indexer.follow(&cache).await {
                    tracing::warn!(error = %err, "search index consumer stopped; resuming");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }

    async fn follow(&self, cache: &Cache) -> anyhow::Result<()> {
        let consumer = &self.consumer;
        let start = self
            .start
            .lock()
            .map(|start| start.clone())
            .unwrap_or(Start::Since(0));
        let offsets = match start {
            Start::Offsets(offsets) => offsets,
            Start::Since(millis) => {
                let asking = Arc::clone(consumer);
                tokio::task::spawn_blocking(move || offsets_since(asking.as_ref(), millis))
                    .await??
            }
        };
        let mut assignment = TopicPartitionList::new();
        for (partition, offset) in &offsets {
            assignment.add_partition_offset(CATALOG_TOPIC, *partition, Offset::Offset(*offset))?;
        }
        consumer.assign(&assignment)?;
        let mut next: HashMap<i32, i64> = offsets.into_iter().collect();
        loop {
            let mut changed = Changed::default();
            // Errors from the consumer (a broker down, a connection reset)
            // are reports: the client reconnects and resumes on its own.
            match consumer.recv().await {
                Ok(first) => self.note(&first, &mut changed, &mut next),
                Err(err) => {
                    tracing::debug!(error = %err, "catalog topic unreadable for now");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            while changed.events < BATCH {
                match tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await {
                    Ok(Ok(message)) => self.note(&message, &mut changed, &mut next),
                    Ok(Err(_)) | Err(_) => break,
                }
            }
            self.apply(
                &changed.movies,
                &changed.showtimes,
                &changed.theaters,
                cache,
            )
            .await?;
            // The position advances only once the changes are in the index,
            // so a failed batch is read again.
            if let Ok(mut start) = self.start.lock() {
                *start = Start::Offsets(next.iter().map(|(p, o)| (*p, *o)).collect());
            }
        }
    }

    fn note(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        changed: &mut Changed,
        next: &mut HashMap<i32, i64>,
    ) {
        next.insert(message.partition(), message.offset() + 1);
        changed.events += 1;
        let Some(envelope) = message
            .payload()
            .and_then(|bytes| serde_json::from_slice::<Envelope>(bytes).ok())
        else {
            return;
        };
        if envelope.deployment.as_deref() != Some(self.storage.schema()) {
            return;
        }
        self.metrics
            .index_events
            .with_label_values(&[envelope.aggregate.as_str()])
            .inc();
        match envelope.aggregate.as_str() {
            "movie" => changed.movies.insert(envelope.aggregate_id),
            "showtime" => changed.showtimes.insert(envelope.aggregate_id),
            "theater" => changed.theaters.insert(envelope.aggregate_id),
            _ => false,
        };
    }

    async fn apply(
        &self,
        movies: &BTreeSet<Uuid>,
        showtimes: &BTreeSet<Uuid>,
        theaters: &BTreeSet<Uuid>,
        cache: &Cache,
    ) -> anyhow::Result<()> {
        let mut stale = Vec::new();
        let mut showtime_docs = Vec::new();
        let mut gone_showtimes = Vec::new();
        for id in theaters {
            match self.storage.theater(*id).await? {
                Some(theater) => {
                    if let Ok(mut map) = self.theaters.write() {
                        map.insert(*id, theater.clone());
                    }
                    for showtime in self.storage.theater_showtimes(*id).await? {
                        stale.push(Entry::Movie(showtime.movie_id));
                        showtime_docs.push(showtime_document(&showtime, &theater));
                    }
                }
                None => {
                    if let Ok(mut map) = self.theaters.write() {
                        map.remove(id);
                    }
                }
            }
        }
        for id in showtimes {
            stale.extend([Entry::Showtime(*id), Entry::SeatMap(*id)]);
            match self.storage.showtime(*id).await? {
                Some(showtime) => {
                    stale.push(Entry::Movie(showtime.movie_id));
                    let theater = self.theater(showtime.theater_id).await?;
                    if let Some(theater) = theater {
                        showtime_docs.push(showtime_document(&showtime, &theater));
                    }
                }
                None => gone_showtimes.push(*id),
            }
        }
        let mut movie_docs = Vec::new();
        let mut gone_movies = Vec::new();
        for id in movies {
            stale.push(Entry::Movie(*id));
            match self.storage.movie(*id).await? {
                Some(movie) => movie_docs.push(movie_document(&movie)),
                None => gone_movies.push(*id),
            }
        }
        let index = Arc::clone(&self.index);
        tokio::task::spawn_blocking(move || {
            if !movie_docs.is_empty() {
                index.upsert_movies(&movie_docs)?;
            }
            if !gone_movies.is_empty() {
                index.remove_movies(&gone_movies)?;
            }
            if !showtime_docs.is_empty() {
                index.upsert_showtimes(&showtime_docs)?;
            }
            if !gone_showtimes.is_empty() {
                index.remove_showtimes(&gone_showtimes)?;
            }
            Ok::<_, marquee_search::Error>(())
        })
        .await??;
        // Another instance may have made the change: its own invalidation
        // covers the shared cache, and this one covers a missed one.
        cache.invalidate(&stale).await;
        Ok(())
    }

    async fn theater(&self, id: Uuid) -> Result<Option<Theater>, marquee_storage::Error> {
        if let Some(theater) = self
            .theaters
            .read()
            .ok()
            .and_then(|map| map.get(&id).cloned())
        {
            return Ok(Some(theater));
        }
        let theater = self.storage.theater(id).await?;
        if let (Some(theater), Ok(mut map)) = (&theater, self.theaters.write()) {
            map.insert(id, theater.clone());
        }
        Ok(theater)
    }
}

/// What a batch of events changed.
#[derive(Debug, Default)]
struct Changed {
    events: usize,
    movies: BTreeSet<Uuid>,
    showtimes: BTreeSet<Uuid>,
    theaters: BTreeSet<Uuid>,
}

/// The end of each partition of the catalog topic.
async fn topic_ends(consumer: Arc<StreamConsumer>) -> anyhow::Result<Vec<(i32, i64)>> {
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(CATALOG_TOPIC), BROKER_TIMEOUT)?;
        let topic = metadata
            .topics()
            .first()
            .filter(|topic| !topic.partitions().is_empty())
            .ok_or_else(|| anyhow::anyhow!("the broker has no topic {CATALOG_TOPIC}"))?;
        topic
            .partitions()
            .iter()
            .map(|partition| {
                let (_, high) =
                    consumer.fetch_watermarks(CATALOG_TOPIC, partition.id(), BROKER_TIMEOUT)?;
                Ok((partition.id(), high))
            })
            .collect()
    })
    .await?
}

/// Per partition, the first offset published at or after `millis`.
fn offsets_since(consumer: &StreamConsumer, millis: i64) -> anyhow::Result<Vec<(i32, i64)>> {
    let metadata = consumer.fetch_metadata(Some(CATALOG_TOPIC), BROKER_TIMEOUT)?;
    let mut query = TopicPartitionList::new();
    let partitions: Vec<_> = metadata
        .topics()
        .iter()
        .flat_map(|topic| topic.partitions())
        .collect();
    // A broker that restarted empty has no topics until they are created
    // again; waiting on no partitions would wait forever.
    anyhow::ensure!(
        !partitions.is_empty(),
        "the broker has no topic {CATALOG_TOPIC} yet"
    );
    for partition in partitions {
        query.add_partition_offset(CATALOG_TOPIC, partition.id(), Offset::Offset(millis))?;
    }
    let found = consumer.offsets_for_times(query, BROKER_TIMEOUT)?;
    found
        .elements()
        .iter()
        .map(|element| {
            let offset = match element.offset() {
                Offset::Offset(offset) => offset,
                // Nothing published since: read what comes next.
                _ => {
                    consumer
                        .fetch_watermarks(CATALOG_TOPIC, element.partition(), BROKER_TIMEOUT)?
                        .1
                }
            };
            Ok((element.partition(), offset))
        })
        .collect()
}
