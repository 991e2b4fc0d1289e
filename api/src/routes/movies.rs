use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::showtimes::IN_PROGRESS_WARNING;
use super::ApiTags;
use crate::auth::AdminOnly;
use crate::body::{JsonBody, Validate};
use crate::cache::Entry;
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use marquee_storage::movies::{Movie as StoredMovie, NewMovie};
use marquee_storage::theaters::Theater as StoredTheater;
use marquee_storage::MovieFilter;

#[derive(Debug)]
pub struct MoviesApi;

/// Genres Marquee files movies under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Genre {
    Action,
    Adventure,
    Animation,
    Comedy,
    Concert,
    Crime,
    Documentary,
    Drama,
    Family,
    Fantasy,
    Horror,
    Musical,
    Mystery,
    Romance,
    #[oai(rename = "sci-fi")]
    #[serde(rename = "sci-fi")]
    SciFi,
    Thriller,
    War,
    Western,
}

impl Genre {
    pub(crate) fn slug(self) -> String {
        poem_openapi::types::ToJSON::to_json(&self)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A movie and everything the details page shows about it.
#[derive(Debug, Clone, Object)]
struct Movie {
    id: Uuid,
    title: String,
    genres: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    director: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    synopsis: Option<String>,
    cast: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    runtime_minutes: Option<i32>,
    /// Age certificate, such as `PG-13`.
    #[oai(skip_serializing_if_is_none)]
    certificate: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    release_date: Option<NaiveDate>,
    #[oai(skip_serializing_if_is_none)]
    poster_url: Option<String>,
    /// Average IMDb rating, 0 to 10.
    #[oai(skip_serializing_if_is_none)]
    imdb_rating: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    imdb_votes: Option<i32>,
    /// True when any field was generated for the demo catalogue.
    demo_generated: bool,
    /// Incremented by every change; use it to detect concurrent edits.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<StoredMovie> for Movie {
    fn from(movie: StoredMovie) -> Self {
        Self {
            id: movie.id,
            title: movie.title,
            genres: movie.genres,
            director: movie.director,
            synopsis: movie.synopsis,
            cast: movie.cast,
            runtime_minutes: movie.runtime_minutes,
            certificate: movie.certificate,
            release_date: movie.release_date,
            poster_url: movie.poster_url,
            imdb_rating: movie.imdb_rating,
            imdb_votes: movie.imdb_votes,
            demo_generated: movie.demo_generated,
            version: movie.version,
            created_at: movie.created_at,
            updated_at: movie.updated_at,
        }
    }
}

/// A new movie. Unknown fields are rejected, so a misspelt field is never
/// silently dropped.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CreateMovie {
    #[oai(validator(
        min_length = 1,
        max_length = 300,
        pattern = r"^[^\u0000]*\S[^\u0000]*$"
    ))]
    title: String,
    #[oai(validator(min_items = 1, max_items = 5, unique_items))]
    genres: Vec<Genre>,
    #[oai(validator(max_length = 200, pattern = r"^[^\u0000]*$"))]
    #[serde(default, deserialize_with = "super::present")]
    director: Option<String>,
    #[oai(validator(max_length = 5000, pattern = r"^[^\u0000]*$"))]
    #[serde(default, deserialize_with = "super::present")]
    synopsis: Option<String>,
    #[oai(default, validator(max_items = 100, pattern = r"^[^\u0000]*$"))]
    #[serde(default)]
    cast: Vec<String>,
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    #[serde(default, deserialize_with = "super::present")]
    runtime_minutes: Option<i32>,
    #[oai(validator(max_length = 16, pattern = r"^[^\u0000]*$"))]
    #[serde(default, deserialize_with = "super::present")]
    certificate: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    release_date: Option<NaiveDate>,
    #[oai(validator(max_length = 2048, pattern = r"^https://[^\u0000]+$"))]
    #[serde(default, deserialize_with = "super::present")]
    poster_url: Option<String>,
}

fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

impl Validate for CreateMovie {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let chars = self.title.chars().count();
        if self.title.trim().is_empty() || chars > 300 || has_nul(&self.title) {
            errors.push(FieldError::new(
                "title",
                "must be 1 to 300 characters, not only spaces, without NUL",
            ));
        }
        if self.genres.is_empty() || self.genres.len() > 5 {
            errors.push(FieldError::new("genres", "must list 1 to 5 genres"));
        }
        for (index, genre) in self.genres.iter().enumerate() {
            if self.genres[..index].contains(genre) {
                errors.push(FieldError::new(
                    format!("genres[{index}]"),
                    "is listed twice",
                ));
            }
        }
        for (field, value, max) in [
            ("director", &self.director, 200),
            ("synopsis", &self.synopsis, 5000),
            ("certificate", &self.certificate, 16),
        ] {
            if let Some(value) = value {
                if value.chars().count() > max || has_nul(value) {
                    errors.push(FieldError::new(
                        field,
                        format!("must be at most {max} characters, without NUL"),
                    ));
                }
            }
        }
        if self.cast.len() > 100 {
            errors.push(FieldError::new("cast", "must list at most 100 people"));
        }
        for (index, person) in self.cast.iter().enumerate() {
            if has_nul(person) {
                errors.push(FieldError::new(
                    format!("cast[{index}]"),
                    "must not contain NUL",
                ));
            }
        }
        if let Some(minutes) = self.runtime_minutes {
            if !(1..=1000).contains(&minutes) {
                errors.push(FieldError::new(
                    "runtime_minutes",
                    "must be between 1 and 1000",
                ));
            }
        }
        if let Some(url) = &self.poster_url {
            if !url.starts_with("https://")
                || url.len() <= "https://".len()
                || url.chars().count() > 2048
                || has_nul(url)
            {
                errors.push(FieldError::new(
                    "poster_url",
                    "must be an https:// URL of at most 2048 characters",
                ));
            }
        }
        errors
    }
}

#[derive(Debug, ApiResponse)]
enum Created {
    /// The movie was created; `Location` is its URL.
    #[oai(status = 201)]
    Movie(Json<Movie>, #[oai(header = "Location")] String),
}

#[derive(Debug, ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

/// A movie in a listing.
#[derive(Debug, Object)]
struct MovieSummary {
    id: Uuid,
    title: String,
    genres: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    release_date: Option<NaiveDate>,
    #[oai(skip_serializing_if_is_none)]
    runtime_minutes: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    certificate: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    imdb_rating: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    poster_url: Option<String>,
}

#[derive(Debug, Object)]
struct MoviePage {
    movies: Vec<MovieSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    next_cursor: Option<String>,
}

/// One showtime in a movie's details.
#[derive(Debug, Clone, Object)]
struct ShowtimeSlot {
    id: Uuid,
    screen_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    format: String,
    language: String,
    currency: String,
    /// The cheapest seat, in minor units.
    from_price_minor: i64,
    seats_available: i32,
    in_progress: bool,
    bookable: bool,
    #[oai(skip_serializing_if_is_none)]
    warning: Option<String>,
}

/// A theater's showtimes on one local day.
#[derive(Debug, Clone, Object)]
struct DayShowtimes {
    /// The day in the theater's time zone.
    date: NaiveDate,
    showtimes: Vec<ShowtimeSlot>,
}

#[derive(Debug, Clone, Object)]
struct TheaterShowtimes {
    theater_id: Uuid,
    theater_name: String,
    city: String,
    timezone: String,
    days: Vec<DayShowtimes>,
}

/// A movie with its rating and upcoming showtimes, grouped by theater and
/// local day.
#[derive(Debug, Clone, Object)]
struct MovieDetails {
    #[oai(flatten)]
    movie: Movie,
    /// Average rating out of 10, when the movie has ratings.
    #[oai(skip_serializing_if_is_none)]
    average_rating: Option<f64>,
    rating_count: i64,
    theaters: Vec<TheaterShowtimes>,
}

impl MovieDetails {
    /// Applies the clock: drops finished showtimes, flags those under way,
    /// and drops those too unless asked to keep them.
    fn at(mut self, now: DateTime<Utc>, include_in_progress: bool) -> Self {
        for theater in &mut self.theaters {
            for day in &mut theater.days {
                day.showtimes.retain_mut(|slot| {
                    slot.in_progress = slot.starts_at <= now && now < slot.ends_at;
                    slot.bookable = now < slot.starts_at && slot.seats_available > 0;
                    slot.warning = slot.in_progress.then(|| IN_PROGRESS_WARNING.to_owned());
                    slot.ends_at > now && (include_in_progress || !slot.in_progress)
                });
            }
            theater.days.retain(|day| !day.showtimes.is_empty());
        }
        self.theaters.retain(|theater| !theater.days.is_empty());
        self
    }
}

/// An opaque listing position: the hex of the sort key, a dot, the id.
fn encode_cursor(key: &str, id: Uuid) -> String {
    format!("{}.{id}", super::hex(key.as_bytes()))
}

fn decode_cursor(cursor: &str) -> Option<(String, Uuid)> {
    let (hex, id) = cursor.split_once('.')?;
    if hex.len() % 2 != 0 || hex.len() > 1200 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((String::from_utf8(bytes).ok()?, Uuid::parse_str(id).ok()?))
}

impl MoviesApi {
    async fn details(state: &AppState, id: Uuid) -> Result<MovieDetails, ApiError> {
        if let Some(cached) = state.cache.get::<MovieDetails>(Entry::Movie(id)).await {
            return Ok(cached);
        }
        let movie = state
            .storage
            .movie(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no movie has id {id}")))?;
        let now = Utc::now();
        let horizon = now + chrono::Duration::days(i64::from(state.horizon_days));
        let showtimes = state.storage.movie_showtimes(id, now, horizon).await?;
        let theater_ids: Vec<Uuid> = showtimes
            .iter()
            .map(|s| s.theater_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let theaters: BTreeMap<Uuid, StoredTheater> = state
            .storage
            .theaters_by_id(&theater_ids)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let mut grouped: BTreeMap<(String, Uuid), BTreeMap<NaiveDate, Vec<ShowtimeSlot>>> =
            BTreeMap::new();
        for showtime in showtimes {
            let Some(theater) = theaters.get(&showtime.theater_id) else {
                continue;
            };
            let zone: chrono_tz::Tz = theater.info.timezone.parse().unwrap_or(chrono_tz::UTC);
            let date = showtime
                .schedule
                .starts_at
                .with_timezone(&zone)
                .date_naive();
            let schedule = &showtime.schedule;
            grouped
                .entry((theater.info.name.clone(), theater.id))
                .or_default()
                .entry(date)
                .or_default()
                .push(ShowtimeSlot {
                    id: showtime.id,
                    screen_id: showtime.screen_id,
                    starts_at: schedule.starts_at,
                    ends_at: schedule.ends_at,
                    format: schedule.format.clone(),
                    language: schedule.language.clone(),
                    currency: schedule.currency.clone(),
                    from_price_minor: schedule.prices.values().copied().min().unwrap_or_default(),
                    seats_available: showtime.seats_available,
                    in_progress: false,
                    bookable: false,
                    warning: None,
                });
        }
        let theaters = grouped
            .into_iter()
            .filter_map(|((_, theater_id), days)| {
                let theater = theaters.get(&theater_id)?;
                Some(TheaterShowtimes {
                    theater_id,
                    theater_name: theater.info.name.clone(),
                    city: theater.info.city.clone(),
                    timezone: theater.info.timezone.clone(),
                    days: days
                        .into_iter()
                        .map(|(date, showtimes)| DayShowtimes { date, showtimes })
                        .collect(),
                })
            })
            .collect();
        let details = MovieDetails {
            average_rating: movie.imdb_rating,
            rating_count: movie.imdb_votes.map_or(0, i64::from),
            movie: movie.into(),
            theaters,
        };
        state.cache.put(Entry::Movie(id), &details).await;
        Ok(details)
    }

    fn new_movie(id: Uuid, body: CreateMovie) -> NewMovie {
        NewMovie {
            id,
            title: body.title.trim().to_owned(),
            genres: body.genres.iter().map(|genre| genre.slug()).collect(),
            director: body.director,
            synopsis: body.synopsis,
            cast: body.cast,
            runtime_minutes: body.runtime_minutes,
            certificate: body.certificate,
            release_date: body.release_date,
            poster_url: body.poster_url,
            imdb_rating: None,
            imdb_votes: None,
            demo_generated: false,
        }
    }
}

#[OpenApi(tag = "ApiTags::Movies")]
impl MoviesApi {
    /// Movies in title order, filtered, a page at a time.
    #[oai(path = "/v1/movies", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn movies(
        &self,
        state: Data<&Arc<AppState>>,
        /// Only movies of this genre.
        genre: Query<Option<Genre>>,
        /// Only titles starting with this text, case-insensitive.
        #[oai(validator(min_length = 1, max_length = 100))]
        title: Query<Option<String>>,
        /// Only movies released on or after this day.
        released_from: Query<Option<NaiveDate>>,
        /// Only movies released on or before this day.
        released_to: Query<Option<NaiveDate>>,
        /// Movies per page, 1 to 100.
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
        /// `next_cursor` of the previous page.
        #[oai(validator(max_length = 1300))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<MoviePage>, ApiError> {
        if let (Some(from), Some(to)) = (released_from.0, released_to.0) {
            if from > to {
                return Err(super::invalid_parameter(
                    "released_to",
                    "released_from is after released_to; the range is empty",
                ));
            }
        }
        let after = match cursor.0.as_deref() {
            None => None,
            Some(text) => Some(decode_cursor(text).ok_or_else(super::malformed_cursor)?),
        };
        let page = state
            .storage
            .list_movies(&MovieFilter {
                genre: genre.0.map(Genre::slug),
                title_prefix: title.0,
                released_from: released_from.0,
                released_to: released_to.0,
                after,
                limit: limit.0 as usize,
            })
            .await?;
        Ok(Json(MoviePage {
            movies: page
                .movies
                .into_iter()
                .map(|movie| MovieSummary {
                    id: movie.id,
                    title: movie.title,
                    genres: movie.genres,
                    release_date: movie.release_date,
                    runtime_minutes: movie.runtime_minutes,
                    certificate: movie.certificate,
                    imdb_rating: movie.imdb_rating,
                    poster_url: movie.poster_url,
                })
                .collect(),
            next_cursor: page.next.map(|(key, id)| encode_cursor(&key, id)),
        }))
    }

    /// A movie's details: synopsis, cast, rating, and showtimes of the
    /// coming days grouped by theater and local day. Showtimes under way
    /// are left out unless `include_in_progress` is set; then they carry a
    /// warning and cannot be bought.
    #[oai(path = "/v1/movies/:id", method = "get")]
    async fn movie(
        &self,
        state: Data<&Arc<AppState>>,
        id: Path<Uuid>,
        /// Keep showtimes that have already started.
        #[oai(default)]
        include_in_progress: Query<bool>,
    ) -> Result<Json<MovieDetails>, ApiError> {
        let details = Self::details(&state, id.0).await?;
        Ok(Json(details.at(Utc::now(), include_in_progress.0)))
    }

    /// Adds a movie to the catalogue. It is searchable within a couple of
    /// seconds on every instance.
    #[oai(path = "/v1/admin/movies", method = "post", tag = "ApiTags::Admin")]
    async fn create_movie(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        body: JsonBody<CreateMovie>,
    ) -> Result<Created, ApiError> {
        let new = Self::new_movie(Uuid::now_v7(), body.0);
        let stored = state.storage.create_movie(&new).await?;
        let location = format!("/v1/movies/{}", stored.id);
        Ok(Created::Movie(Json(stored.into()), location))
    }

    /// Rewrites a movie.
    #[oai(path = "/v1/admin/movies/:id", method = "put", tag = "ApiTags::Admin")]
    async fn update_movie(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        body: JsonBody<CreateMovie>,
    ) -> Result<Json<Movie>, ApiError> {
        let Some(current) = state.storage.movie(id.0).await? else {
            return Err(ApiError::not_found(format!("no movie has id {}", id.0)));
        };
        let mut new = Self::new_movie(id.0, body.0);
        // Ratings come from the ratings source, not from editors.
        new.imdb_rating = current.imdb_rating;
        new.imdb_votes = current.imdb_votes;
        let stored = state.storage.upsert_movie(&new).await?;
        state.cache.invalidate(&[Entry::Movie(id.0)]).await;
        Ok(Json(stored.into()))
    }

    /// Deletes a movie that has no showtimes.
    #[oai(
        path = "/v1/admin/movies/:id",
        method = "delete",
        tag = "ApiTags::Admin"
    )]
    async fn delete_movie(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        state.storage.delete_movie(id.0).await?;
        state.cache.invalidate(&[Entry::Movie(id.0)]).await;
        Ok(Deleted::Deleted)
    }
}

fn default_page() -> u32 {
    20
}
