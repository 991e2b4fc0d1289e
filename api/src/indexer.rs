//! Builds this instance's search index from the shards and applies the
//! catalog changes the stream brings (`catalog_stream`).
//!
//! Applying a change re-reads the current state of what it names, so a
//! change applied twice, or out of order with another, leaves the index
//! right.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Datelike, Utc};
use marquee_search::{MovieDoc, MovieIndex, ShowtimeDoc};
use marquee_storage::movies::Movie;
use marquee_storage::showtimes::Showtime;
use marquee_storage::theaters::Theater;
use marquee_storage::Storage;
use uuid::Uuid;

use crate::cache::{Cache, Entry};
use crate::metrics::Metrics;

const LOAD_PAGE: i64 = 10_000;

/// What a batch of catalog events changed.
#[derive(Debug, Default)]
pub struct Changes {
    pub movies: BTreeSet<Uuid>,
    pub showtimes: BTreeSet<Uuid>,
    pub theaters: BTreeSet<Uuid>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.movies.is_empty() && self.showtimes.is_empty() && self.theaters.is_empty()
    }
}

pub struct Indexer {
    storage: Storage,
    index: Arc<MovieIndex>,
    theaters: RwLock<HashMap<Uuid, Theater>>,
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
    /// Reads the whole catalogue into a new index. Take the stream's start
    /// positions first, so a change made during the load is applied again
    /// from the stream rather than lost.
    pub async fn build(
        storage: Storage,
        metrics: Metrics,
    ) -> Result<Arc<Self>, crate::startup::StartupError> {
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
            metrics,
        }))
    }

    pub fn index(&self) -> Arc<MovieIndex> {
        Arc::clone(&self.index)
    }

    /// Brings the index and the shared cache up to date with what the
    /// changes name. Orders change seats, which their showtime's own event
    /// already reports.
    pub async fn apply(&self, changes: &Changes, cache: &Cache) -> anyhow::Result<()> {
        let Changes {
            movies,
            showtimes,
            theaters,
        } = changes;
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
        // Another instance may have made the change: the instance that made
        // it dropped the shared entries at once, for whoever made it; this
        // covers every instance's own copies and a drop that was missed.
        cache.invalidate(&stale).await;
        Ok(())
    }

    /// Counts an applied batch; `oldest` is when its oldest change was
    /// committed.
    pub fn applied(&self, changes: &Changes, oldest: Option<DateTime<Utc>>) {
        for (aggregate, count) in [
            ("movie", changes.movies.len()),
            ("showtime", changes.showtimes.len()),
            ("theater", changes.theaters.len()),
        ] {
            self.metrics
                .index_events
                .with_label_values(&[aggregate])
                .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
        if let Some(oldest) = oldest {
            let delay = (Utc::now() - oldest).num_milliseconds().max(0);
            self.metrics.index_delay.observe(delay as f64 / 1_000.0);
        }
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
