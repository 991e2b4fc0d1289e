use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::{AdminToken, ApiTags};
use crate::body::{JsonBody, Validate};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use marquee_search::MovieDoc;
use marquee_storage::movies::{Movie as StoredMovie, NewMovie};

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
    fn slug(self) -> String {
        poem_openapi::types::ToJSON::to_json(&self)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A movie and everything the details page shows about it.
#[derive(Debug, Object)]
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
    #[serde(default, deserialize_with = "present")]
    director: Option<String>,
    #[oai(validator(max_length = 5000, pattern = r"^[^\u0000]*$"))]
    #[serde(default, deserialize_with = "present")]
    synopsis: Option<String>,
    #[oai(default, validator(max_items = 100, pattern = r"^[^\u0000]*$"))]
    #[serde(default)]
    cast: Vec<String>,
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    #[serde(default, deserialize_with = "present")]
    runtime_minutes: Option<i32>,
    #[oai(validator(max_length = 16, pattern = r"^[^\u0000]*$"))]
    #[serde(default, deserialize_with = "present")]
    certificate: Option<String>,
    #[serde(default, deserialize_with = "present")]
    release_date: Option<NaiveDate>,
    #[oai(validator(max_length = 2048, pattern = r"^https://[^\u0000]+$"))]
    #[serde(default, deserialize_with = "present")]
    poster_url: Option<String>,
}

/// An optional field may be left out but not sent as `null`: the schema
/// does not declare it nullable, and a client sending `null` most likely
/// meant something this API would otherwise silently ignore.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
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

#[OpenApi(tag = "ApiTags::Movies")]
impl MoviesApi {
    /// A movie's details.
    #[oai(path = "/v1/movies/:id", method = "get")]
    async fn movie(
        &self,
        state: Data<&Arc<AppState>>,
        id: Path<Uuid>,
    ) -> Result<Json<Movie>, ApiError> {
        state
            .storage
            .movie(id.0)
            .await?
            .map(|movie| Json(movie.into()))
            .ok_or_else(|| ApiError::not_found(format!("no movie has id {}", id.0)))
    }

    /// Adds a movie to the catalogue. It is searchable as soon as this returns.
    #[oai(path = "/v1/admin/movies", method = "post", tag = "ApiTags::Admin")]
    async fn create_movie(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AdminToken,
        body: JsonBody<CreateMovie>,
    ) -> Result<Created, ApiError> {
        auth.check(&state)?;
        let body = body.0;
        let new = NewMovie {
            id: Uuid::now_v7(),
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
        };
        let stored = state.storage.create_movie(&new).await?;
        let document = search_document(&stored);
        let index = Arc::clone(&state.search);
        tokio::task::spawn_blocking(move || index.upsert(&[document])).await??;
        let location = format!("/v1/movies/{}", stored.id);
        Ok(Created::Movie(Json(stored.into()), location))
    }
}

/// What the search index holds of a stored movie.
pub fn search_document(movie: &StoredMovie) -> MovieDoc {
    MovieDoc {
        id: movie.id,
        title: movie.title.clone(),
        director: movie.director.clone(),
        genres: movie.genres.clone(),
        release_year: movie.release_date.map(|date| chrono::Datelike::year(&date)),
    }
}
