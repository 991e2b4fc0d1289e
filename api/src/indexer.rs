//! Builds this instance's search index from the shards and keeps it fresh.
//!
//! Every change to the catalogue writes an event to its shard's outbox in
//! the same transaction. The indexer tails each shard's outbox by sequence
//! and re-reads what changed, so an update is searchable within one refresh
//! interval on every instance, whichever instance made it. Applying an
//! event twice is harmless: it re-reads the current state.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Datelike;
use marquee_search::{MovieDoc, MovieIndex, ShowtimeDoc};
use marquee_sharding::NodeId;
use marquee_storage::movies::Movie;
use marquee_storage::showtimes::Showtime;
use marquee_storage::theaters::Theater;
use marquee_storage::Storage;
use uuid::Uuid;

use crate::cache::{Cache, Entry};
use crate::metrics::Metrics;

/// A sequence gap younger than this may be a transaction still committing;
/// an older one was rolled back.
const GAP_WAIT_SECONDS: f64 = 5.0;
const BATCH: i64 = 1_000;
const LOAD_PAGE: i64 = 10_000;

pub struct Indexer {
    storage: Storage,
    index: Arc<MovieIndex>,
    theaters: RwLock<HashMap<Uuid, Theater>>,
    cursors: Mutex<HashMap<NodeId, i64>>,
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
    /// Reads the whole catalogue into a new index. The outbox positions are
    /// taken first, so a change made during the load is applied again by
    /// the first refresh rather than lost.
    pub async fn build(
        storage: Storage,
        metrics: Metrics,
    ) -> Result<Arc<Self>, crate::startup::StartupError> {
        let mut cursors = HashMap::new();
        for shard in storage.cluster().shards() {
            cursors.insert(shard.id().clone(), storage.outbox_head(shard).await?);
        }
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
            cursors: Mutex::new(cursors),
            metrics,
        }))
    }

    pub fn index(&self) -> Arc<MovieIndex> {
        Arc::clone(&self.index)
    }

    /// Refreshes forever, every `every`; failures are logged and retried.
    pub fn spawn(
        self: &Arc<Self>,
        every: Duration,
        cache: Arc<Cache>,
    ) -> tokio::task::JoinHandle<()> {
        let indexer = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(err) = indexer.refresh(&cache).await {
                    tracing::warn!(error = %err, "search index refresh failed; retrying");
                }
            }
        })
    }

    /// Applies every committed change since the last refresh; returns the
    /// events applied.
    pub async fn refresh(&self, cache: &Cache) -> anyhow::Result<usize> {
        let mut movies = BTreeSet::new();
        let mut showtimes = BTreeSet::new();
        let mut theaters = BTreeSet::new();
        let mut applied = 0;
        let mut positions = Vec::new();
        for shard in self.storage.cluster().shards() {
            let mut cursor = self
                .cursors
                .lock()
                .map(|cursors| cursors.get(shard.id()).copied().unwrap_or(0))
                .unwrap_or(0);
            let events = self.storage.outbox_after(shard, cursor, BATCH).await?;
            for event in events {
                if event.seq != cursor + 1 && event.age_seconds < GAP_WAIT_SECONDS {
                    break;
                }
                cursor = event.seq;
                applied += 1;
                self.metrics
                    .index_events
                    .with_label_values(&[event.aggregate.as_str()])
                    .inc();
                // Orders change seats, which their showtime's own event
                // already reports.
                match event.aggregate.as_str() {
                    "movie" => movies.insert(event.aggregate_id),
                    "showtime" => showtimes.insert(event.aggregate_id),
                    "theater" => theaters.insert(event.aggregate_id),
                    _ => false,
                };
            }
            positions.push((shard.id().clone(), cursor));
        }
        self.apply(&movies, &showtimes, &theaters, cache).await?;
        // Positions advance only once the changes are in the index, so a
        // failed refresh is retried from where it started.
        if let Ok(mut cursors) = self.cursors.lock() {
            cursors.extend(positions);
        }
        Ok(applied)
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
