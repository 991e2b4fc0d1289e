//! The embedded search index each API instance holds over the catalogue and
//! its showtimes.
//!
//! The index lives in memory and is rebuilt from the shards at start-up, so an
//! instance never serves results from a stale file. Every call here blocks on
//! tantivy; async callers run it in `spawn_blocking`.
//!
//! Movies and showtimes sit in two tantivy indexes: movies carry the text
//! that relevance is computed on, showtimes carry the fast fields that
//! filters and grouping read. Keeping them apart keeps text statistics free
//! of showtime documents and lets a showtime batch commit without touching
//! the movies.

mod cursor;
mod geo;
mod movies;
mod search;
mod showtimes;
#[doc(hidden)]
pub mod synthetic;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tantivy::directory::{WatchCallback, WatchHandle};
use tantivy::query::{Query, TermSetQuery};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Directory, Index, IndexReader, IndexWriter, ReloadPolicy};
use uuid::Uuid;

pub use cursor::Cursor;
pub use geo::haversine_km;

use movies::{MovieFields, MovieTable};
use showtimes::{Registry, ShowtimeFields, Showtimes};

/// Failures of the search index.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tantivy failed to index, commit or search.
    #[error("search index failure: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// Reading the in-memory index files failed.
    #[error("search index read failure: {0}")]
    Io(#[from] std::io::Error),
    /// More distinct values of a kind than the index can number.
    #[error("search index cannot hold more {0}")]
    TooMany(&'static str),
    /// An earlier panic left a lock of the index poisoned.
    #[error("search index lock is poisoned by an earlier panic")]
    Poisoned,
}

/// What the index knows of a movie.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieDoc {
    /// Catalogue id; upserts replace the movie with the same id.
    pub id: Uuid,
    /// Display title, searched with the highest weight.
    pub title: String,
    /// Director's name, searched like the cast.
    pub director: Option<String>,
    /// Names of the leading cast.
    pub cast: Vec<String>,
    /// Plot summary, searched with the lowest weight.
    pub synopsis: Option<String>,
    /// Lowercase genre slugs such as `drama` or `sci-fi`.
    pub genres: Vec<String>,
    /// Year of first release.
    pub release_year: Option<i32>,
    /// Average audience rating from 0 to 10.
    pub rating: Option<f64>,
    /// Number of audience ratings behind `rating`.
    pub votes: Option<i64>,
}

/// What the index knows of one screening.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowtimeDoc {
    /// Showtime id; upserts replace the showtime with the same id.
    pub id: Uuid,
    /// The movie screened.
    pub movie_id: Uuid,
    /// The theater screening it.
    pub theater_id: Uuid,
    /// The theater's display name.
    pub theater_name: String,
    /// Display name of the theater's city, such as `Boston, MA`.
    pub city: String,
    /// The theater's latitude in degrees.
    pub latitude: f64,
    /// The theater's longitude in degrees.
    pub longitude: f64,
    /// Start time, kept to the microsecond.
    pub starts_at: DateTime<Utc>,
    /// Projection format: `2d`, `3d` or `imax`.
    pub format: String,
    /// Spoken language code such as `en`.
    pub language: String,
    /// Cheapest ticket price in cents.
    pub min_price_cents: i64,
    /// Seats still for sale.
    pub seats_available: i32,
}

/// Showtimes within a distance of a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoFilter {
    /// Latitude of the centre in degrees.
    pub latitude: f64,
    /// Longitude of the centre in degrees.
    pub longitude: f64,
    /// Great-circle radius in kilometres.
    pub radius_km: f64,
}

/// A search over movies and their showtimes. Every field narrows the
/// results; empty lists and `None` leave that dimension open.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// Free text; every word must match a title, cast member, director or
    /// synopsis. Punctuation is ignored, so no input is a syntax error.
    pub text: Option<String>,
    /// Movies in any of these genre slugs.
    pub genres: Vec<String>,
    /// Showtimes in this city, by display name, ignoring case.
    pub city: Option<String>,
    /// Showtimes within a radius of a point.
    pub near: Option<GeoFilter>,
    /// Showtimes at this theater.
    pub theater: Option<Uuid>,
    /// Showtimes starting at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Showtimes starting before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Showtimes in any of these formats.
    pub formats: Vec<String>,
    /// Showtimes in any of these languages.
    pub languages: Vec<String>,
    /// Showtimes whose cheapest ticket costs at most this.
    pub max_price_cents: Option<i64>,
    /// Showtimes with at least this many seats left.
    pub min_seats: Option<u32>,
    /// Continue after this position of an earlier page.
    pub after: Option<Cursor>,
    /// Hits per page; 0 returns only the total and facets.
    pub limit: usize,
    /// Showtimes listed per hit.
    pub showtimes_per_hit: usize,
}

impl Default for SearchQuery {
    /// Everything, a page of 20 movies with their next 5 showtimes each.
    fn default() -> Self {
        Self {
            text: None,
            genres: Vec::new(),
            city: None,
            near: None,
            theater: None,
            from: None,
            to: None,
            formats: Vec::new(),
            languages: Vec::new(),
            max_price_cents: None,
            min_seats: None,
            after: None,
            limit: 20,
            showtimes_per_hit: 5,
        }
    }
}

/// A showtime listed under a movie hit.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowtimeHit {
    /// Showtime id.
    pub id: Uuid,
    /// The theater screening it.
    pub theater_id: Uuid,
    /// The theater's display name.
    pub theater_name: String,
    /// Display name of the theater's city.
    pub city: String,
    /// Start time.
    pub starts_at: DateTime<Utc>,
    /// Projection format, lowercase.
    pub format: String,
    /// Spoken language code, lowercase.
    pub language: String,
    /// Cheapest ticket price in cents.
    pub min_price_cents: i64,
    /// Seats still for sale.
    pub seats_available: i32,
    /// Distance from the query's point, when it had one.
    pub distance_km: Option<f64>,
}

/// One movie in the results.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieHit {
    /// Catalogue id.
    pub id: Uuid,
    /// Display title.
    pub title: String,
    /// Year of first release.
    pub release_year: Option<i32>,
    /// Genre slugs, lowercase.
    pub genres: Vec<String>,
    /// Average audience rating from 0 to 10.
    pub rating: Option<f64>,
    /// Relevance blended with popularity; higher ranks first.
    pub score: f32,
    /// Showtimes matching the query's showtime filters, or all of the movie's
    /// showtimes without any.
    pub showtime_count: u64,
    /// The earliest of those showtimes, at most `showtimes_per_hit`.
    pub showtimes: Vec<ShowtimeHit>,
}

/// How many results share one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetCount {
    /// The value.
    pub value: String,
    /// Matching movies (genres) or showtimes (everything else).
    pub count: u64,
}

/// Counts over the whole result set, not only the page, each sorted by count
/// descending, then value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facets {
    /// Genres of matching movies.
    pub genres: Vec<FacetCount>,
    /// Formats of matching showtimes.
    pub formats: Vec<FacetCount>,
    /// Languages of matching showtimes.
    pub languages: Vec<FacetCount>,
    /// Cities of matching showtimes, the 20 most common.
    pub cities: Vec<FacetCount>,
}

/// One page of results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchResults {
    /// Matching movies across all pages.
    pub total: u64,
    /// This page, best first.
    pub hits: Vec<MovieHit>,
    /// Counts over all matching movies and showtimes.
    pub facets: Facets,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
}

/// A title completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// Catalogue id.
    pub id: Uuid,
    /// Display title.
    pub title: String,
    /// Year of first release, to tell remakes apart.
    pub release_year: Option<i32>,
}

/// What every search reads: the movie table and showtime segments as of one
/// commit. Searches clone the `Arc` and never wait for a write to finish.
struct Snapshot {
    movies: Arc<MovieTable>,
    showtimes: Showtimes,
}

struct Writers {
    movies: IndexWriter,
    showtimes: IndexWriter,
}

/// The movie writer's arena; 15 MB is tantivy's minimum and ample for the
/// catalogue.
const MOVIE_ARENA_BYTES: usize = 15_000_000;

/// The showtime writer's arena: large enough that a batch of ten thousand
/// showtimes becomes one segment rather than several.
const SHOWTIME_ARENA_BYTES: usize = 64_000_000;

/// What both writers and the background refresh need to publish snapshots.
struct Shared {
    showtime_fields: ShowtimeFields,
    showtime_reader: IndexReader,
    /// Numbers every indexed showtime's values; writers extend it before
    /// committing, so any snapshot taken after a commit can read it.
    registry: RwLock<Arc<Registry>>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Held while a snapshot is built, so snapshots succeed one another.
    publishing: Mutex<()>,
}

impl Shared {
    fn current(&self) -> Result<Arc<Snapshot>, Error> {
        Ok(Arc::clone(
            &*self.snapshot.read().map_err(|_| Error::Poisoned)?,
        ))
    }

    fn registry(&self) -> Result<Arc<Registry>, Error> {
        Ok(Arc::clone(
            &*self.registry.read().map_err(|_| Error::Poisoned)?,
        ))
    }

    /// Reloads the showtimes and publishes a snapshot of them, with a new
    /// movie table when given. Segments the previous snapshot already had
    /// keep their decoded columns.
    fn publish(&self, movies: Option<Arc<MovieTable>>) -> Result<(), Error> {
        let _publishing = self.publishing.lock().map_err(|_| Error::Poisoned)?;
        self.showtime_reader.reload()?;
        let previous = self.current()?;
        let movies = movies.unwrap_or_else(|| Arc::clone(&previous.movies));
        let showtimes = Showtimes::build(
            self.showtime_reader.searcher(),
            &self.showtime_fields,
            &movies,
            self.registry()?,
            Some(&previous.showtimes),
        )?;
        *self.snapshot.write().map_err(|_| Error::Poisoned)? =
            Arc::new(Snapshot { movies, showtimes });
        Ok(())
    }
}

/// An in-memory index of movies and showtimes. Writes are serialized and
/// each ends by publishing a snapshot; searches read the latest snapshot and
/// never wait for a write to finish.
pub struct MovieIndex {
    movie_fields: MovieFields,
    movie_reader: IndexReader,
    analyzer: TextAnalyzer,
    writers: Mutex<Writers>,
    shared: Arc<Shared>,
    /// Keeps the background refresh registered while the index lives.
    _refresh: WatchHandle,
}

impl std::fmt::Debug for MovieIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let segments = self.shared.current().map_or_else(
            |_| Vec::new(),
            |snapshot| {
                snapshot
                    .showtimes
                    .searcher
                    .segment_readers()
                    .iter()
                    .map(|reader| reader.num_docs())
                    .collect()
            },
        );
        f.debug_struct("MovieIndex")
            .field("movies", &self.movie_count())
            .field("showtimes", &self.showtime_count())
            .field("showtime_segments", &segments)
            .finish()
    }
}

/// The last occurrence of each id, in order, so a batch that mentions an id
/// twice behaves like two upserts in a row.
fn last_of_each<T>(items: &[T], id: impl Fn(&T) -> Uuid) -> Vec<&T> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut unique: Vec<&T> = items
        .iter()
        .rev()
        .filter(|item| seen.insert(id(item)))
        .collect();
    unique.reverse();
    unique
}

impl MovieIndex {
    /// An empty index.
    pub fn new() -> Result<Self, Error> {
        let (movie_schema, movie_fields) = MovieFields::schema();
        let (showtime_schema, showtime_fields) = ShowtimeFields::schema();
        let movie_index = Index::create_in_ram(movie_schema);
        let analyzer = movies::analyzer();
        movie_index
            .tokenizers()
            .register(movies::TOKENIZER, analyzer.clone());
        let showtime_index = Index::create_in_ram(showtime_schema);
        let writers = Writers {
            movies: movie_index.writer_with_num_threads(1, MOVIE_ARENA_BYTES)?,
            showtimes: showtime_index.writer_with_num_threads(1, SHOWTIME_ARENA_BYTES)?,
        };
        let reader = |index: &Index| {
            index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()
        };
        let movie_reader: IndexReader = reader(&movie_index)?;
        let showtime_reader: IndexReader = reader(&showtime_index)?;
        let movies = Arc::new(MovieTable::load(movie_reader.searcher(), &movie_fields)?);
        let registry = Arc::<Registry>::default();
        let showtimes = Showtimes::build(
            showtime_reader.searcher(),
            &showtime_fields,
            &movies,
            Arc::clone(&registry),
            None,
        )?;
        let shared = Arc::new(Shared {
            showtime_fields,
            showtime_reader,
            registry: RwLock::new(registry),
            snapshot: RwLock::new(Arc::new(Snapshot { movies, showtimes })),
            publishing: Mutex::new(()),
        });
        // Merges finish in the background after the commit that started
        // them; publishing when the index's metadata changes lets searches
        // use merged segments without waiting for the next write. A failed
        // refresh leaves the previous snapshot, and the next write or merge
        // publishes again, reporting any persistent error to its caller.
        let refresh = Arc::downgrade(&shared);
        let _refresh = showtime_index
            .directory()
            .watch(WatchCallback::new(move || {
                if let Some(shared) = refresh.upgrade() {
                    let _ = shared.publish(None);
                }
            }))?;
        Ok(Self {
            movie_fields,
            movie_reader,
            analyzer,
            writers: Mutex::new(writers),
            shared,
            _refresh,
        })
    }

    fn current(&self) -> Result<Arc<Snapshot>, Error> {
        self.shared.current()
    }

    /// Reloads the movies and publishes a snapshot with them.
    fn publish_movies(&self) -> Result<(), Error> {
        self.movie_reader.reload()?;
        let movies = MovieTable::load(self.movie_reader.searcher(), &self.movie_fields)?;
        self.shared.publish(Some(Arc::new(movies)))
    }

    /// Adds or replaces movies by id, then makes them visible to searches.
    pub fn upsert_movies(&self, movies: &[MovieDoc]) -> Result<(), Error> {
        let mut writers = self.writers.lock().map_err(|_| Error::Poisoned)?;
        let movies = last_of_each(movies, |movie| movie.id);
        let ids = movies
            .iter()
            .map(|movie| self.movie_fields.id_term(&movie.id));
        delete(&writers.movies, TermSetQuery::new(ids))?;
        for movie in movies {
            writers
                .movies
                .add_document(self.movie_fields.document(movie))?;
        }
        writers.movies.commit()?;
        self.publish_movies()
    }

    /// Removes movies and every showtime of them.
    pub fn remove_movies(&self, ids: &[Uuid]) -> Result<(), Error> {
        let mut writers = self.writers.lock().map_err(|_| Error::Poisoned)?;
        let fields = &self.shared.showtime_fields;
        let movie_ids = ids.iter().map(|id| self.movie_fields.id_term(id));
        delete(&writers.movies, TermSetQuery::new(movie_ids))?;
        let showtime_movies = ids.iter().map(|id| fields.movie_term(id));
        delete(&writers.showtimes, TermSetQuery::new(showtime_movies))?;
        writers.movies.commit()?;
        writers.showtimes.commit()?;
        self.publish_movies()
    }

    /// Adds or replaces showtimes by id, then makes them visible to searches.
    /// A showtime of a movie not yet indexed is kept and shows up once the
    /// movie does.
    pub fn upsert_showtimes(&self, showtimes: &[ShowtimeDoc]) -> Result<(), Error> {
        let mut writers = self.writers.lock().map_err(|_| Error::Poisoned)?;
        let fields = &self.shared.showtime_fields;
        let mut showtimes = last_of_each(showtimes, |showtime| showtime.id);
        // A batch becomes a run of consecutive documents; in start-time
        // order, a time window's showtimes sit together, so searches for
        // tonight or tomorrow read their columns almost sequentially.
        showtimes.sort_by_key(|showtime| (showtime.starts_at, showtime.id));
        let ids: Vec<Uuid> = showtimes.iter().map(|showtime| showtime.id).collect();
        delete(&writers.showtimes, fields.ids_query(&ids))?;
        let mut registry = self.shared.registry()?;
        let numbering = Arc::make_mut(&mut registry);
        for showtime in showtimes {
            let document = fields.document(showtime, numbering)?;
            writers.showtimes.add_document(document)?;
        }
        *self.shared.registry.write().map_err(|_| Error::Poisoned)? = registry;
        writers.showtimes.commit()?;
        self.shared.publish(None)
    }

    /// Removes showtimes by id.
    pub fn remove_showtimes(&self, ids: &[Uuid]) -> Result<(), Error> {
        let mut writers = self.writers.lock().map_err(|_| Error::Poisoned)?;
        delete(
            &writers.showtimes,
            self.shared.showtime_fields.ids_query(ids),
        )?;
        writers.showtimes.commit()?;
        self.shared.publish(None)
    }

    /// Movies matching the query, best first, with their matching showtimes
    /// and facet counts over the whole result set.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchResults, Error> {
        let snapshot = self.current()?;
        search::search(&snapshot, &self.movie_fields, &self.analyzer, query)
    }

    /// Title completions for what a person has typed so far, best match
    /// first and the more popular movie first among equal matches. The last
    /// word may be incomplete and have a typo.
    pub fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<Suggestion>, Error> {
        let snapshot = self.current()?;
        search::suggest(&snapshot, &self.movie_fields, &self.analyzer, prefix, limit)
    }

    /// Documents visible to searches, movies and showtimes together.
    pub fn len(&self) -> u64 {
        self.current().map_or(0, |snapshot| {
            snapshot.movies.searcher.num_docs() + snapshot.showtimes.searcher.num_docs()
        })
    }

    /// Whether no movie or showtime is visible.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Movies visible to searches.
    pub fn movie_count(&self) -> u64 {
        self.current()
            .map_or(0, |snapshot| snapshot.movies.searcher.num_docs())
    }

    /// Showtimes visible to searches, including those of movies not indexed.
    pub fn showtime_count(&self) -> u64 {
        self.current()
            .map_or(0, |snapshot| snapshot.showtimes.searcher.num_docs())
    }
}

/// Queues the deletion of every document matching `query` as one operation:
/// tantivy applies each queued delete to every segment at commit, so one
/// operation per batch instead of one per id keeps large batches cheap.
fn delete(writer: &IndexWriter, query: impl Query) -> Result<(), Error> {
    writer.delete_query(Box::new(query))?;
    Ok(())
}

#[cfg(test)]
mod tests;
