use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;

use super::movies::Genre;
use super::showtimes::Format;
use super::ApiTags;
use crate::problem::ApiError;
use crate::state::AppState;
use marquee_search::{Cursor, FacetCount, GeoFilter, SearchQuery};

#[derive(Debug)]
pub struct SearchApi;

/// A showtime of a matching movie.
#[derive(Debug, Object)]
struct ShowtimeHit {
    id: Uuid,
    theater_id: Uuid,
    theater_name: String,
    city: String,
    starts_at: DateTime<Utc>,
    format: String,
    language: String,
    /// The cheapest seat, in minor units.
    from_price_minor: i64,
    seats_available: i32,
    /// Kilometres from the point searched around.
    #[oai(skip_serializing_if_is_none)]
    distance_km: Option<f64>,
}

/// A movie matching the query, with its earliest matching showtimes.
#[derive(Debug, Object)]
struct SearchHit {
    id: Uuid,
    title: String,
    #[oai(skip_serializing_if_is_none)]
    release_year: Option<i32>,
    genres: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    rating: Option<f64>,
    /// Relevance blended with popularity; comparable only within one query.
    score: f32,
    /// Showtimes matching the filters, of which `showtimes` lists the
    /// earliest.
    showtime_count: u64,
    showtimes: Vec<ShowtimeHit>,
}

#[derive(Debug, Object)]
struct Facet {
    value: String,
    count: u64,
}

/// Counts over every match, not only this page, for refining the query.
#[derive(Debug, Object)]
struct Facets {
    genres: Vec<Facet>,
    formats: Vec<Facet>,
    languages: Vec<Facet>,
    cities: Vec<Facet>,
}

#[derive(Debug, Object)]
struct SearchResults {
    /// Movies matching in all.
    total: u64,
    hits: Vec<SearchHit>,
    facets: Facets,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    next_cursor: Option<String>,
}

#[derive(Debug, Object)]
struct Suggestion {
    id: Uuid,
    title: String,
    #[oai(skip_serializing_if_is_none)]
    release_year: Option<i32>,
}

#[derive(Debug, Object)]
struct Suggestions {
    suggestions: Vec<Suggestion>,
}

fn facets(counts: Vec<FacetCount>) -> Vec<Facet> {
    counts
        .into_iter()
        .map(|facet| Facet {
            value: facet.value,
            count: facet.count,
        })
        .collect()
}

#[OpenApi(tag = "ApiTags::Search")]
impl SearchApi {
    /// Movies and their showtimes: free text over title, cast, director and
    /// synopsis (typos and partial words tolerated), filtered by genre,
    /// place, theater, time, format, language, price and free seats. Any
    /// showtime filter limits results to movies with a matching showtime,
    /// from now on unless `from` says otherwise.
    #[oai(path = "/v1/search", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        state: Data<&Arc<AppState>>,
        /// Free text, such as `godfather` or `scorsese`.
        #[oai(validator(min_length = 1, max_length = 200))]
        q: Query<Option<String>>,
        /// Any of these genres.
        #[oai(validator(max_items = 10))]
        genre: Query<Vec<Genre>>,
        /// A city as facets name it, such as `Boston, MA`.
        #[oai(validator(min_length = 1, max_length = 100))]
        city: Query<Option<String>>,
        /// Latitude of the point to search around; needs `lon`.
        #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
        lat: Query<Option<f64>>,
        /// Longitude of the point to search around; needs `lat`.
        #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
        lon: Query<Option<f64>>,
        /// Radius around the point, 0.1 to 500 km.
        #[oai(
            default = "default_radius",
            validator(minimum(value = "0.1"), maximum(value = "500"))
        )]
        radius_km: Query<f64>,
        theater: Query<Option<Uuid>>,
        /// Showtimes starting at or after this instant.
        from: Query<Option<DateTime<Utc>>>,
        /// Showtimes starting before this instant.
        to: Query<Option<DateTime<Utc>>>,
        /// Any of these formats.
        #[oai(validator(max_items = 3))]
        format: Query<Vec<Format>>,
        /// Any of these soundtrack languages, such as `en`.
        #[oai(validator(max_items = 10))]
        language: Query<Vec<String>>,
        /// Showtimes whose cheapest seat costs at most this, in minor units.
        #[oai(validator(minimum(value = "0"), maximum(value = "10000000")))]
        max_price_minor: Query<Option<i64>>,
        /// Showtimes with at least this many free seats.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        min_seats: Query<Option<u32>>,
        /// Movies per page, 1 to 50.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "50"))
        )]
        limit: Query<u32>,
        /// `next_cursor` of the previous page.
        #[oai(validator(max_length = 200))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<SearchResults>, ApiError> {
        let near = match (lat.0, lon.0) {
            (Some(latitude), Some(longitude)) => Some(GeoFilter {
                latitude,
                longitude,
                radius_km: radius_km.0,
            }),
            (None, None) => None,
            _ => {
                return Err(super::invalid_parameter(
                    "lon",
                    "lat and lon go together; give both or neither",
                ))
            }
        };
        if let (Some(from), Some(to)) = (from.0, to.0) {
            if from >= to {
                return Err(super::invalid_parameter(
                    "to",
                    "from must be before to; the range is empty",
                ));
            }
        }
        if let Some(bad) = language.0.iter().find(|code| {
            !(2..=3).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_lowercase())
        }) {
            return Err(super::invalid_parameter(
                "language",
                format!("{bad:?} is not an ISO 639 code such as en"),
            ));
        }
        let after = match cursor.0.as_deref() {
            None => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(super::malformed_cursor)?),
        };
        let filters_showtimes = city.0.is_some()
            || near.is_some()
            || theater.0.is_some()
            || from.0.is_some()
            || to.0.is_some()
            || !format.0.is_empty()
            || !language.0.is_empty()
            || max_price_minor.0.is_some()
            || min_seats.0.is_some();
        let query = SearchQuery {
            text: q.0,
            genres: genre.0.iter().map(|genre| genre.slug()).collect(),
            city: city.0,
            near,
            theater: theater.0,
            from: from.0.or_else(|| filters_showtimes.then(Utc::now)),
            to: to.0,
            formats: format.0.iter().map(|f| f.as_str().to_owned()).collect(),
            languages: language.0,
            max_price_cents: max_price_minor.0,
            min_seats: min_seats.0,
            after,
            limit: limit.0 as usize,
            showtimes_per_hit: 5,
        };
        let index = Arc::clone(&state.search);
        let results = tokio::task::spawn_blocking(move || index.search(&query)).await??;
        Ok(Json(SearchResults {
            total: results.total,
            hits: results
                .hits
                .into_iter()
                .map(|hit| SearchHit {
                    id: hit.id,
                    title: hit.title,
                    release_year: hit.release_year,
                    genres: hit.genres,
                    rating: hit.rating,
                    score: hit.score,
                    showtime_count: hit.showtime_count,
                    showtimes: hit
                        .showtimes
                        .into_iter()
                        .map(|s| ShowtimeHit {
                            id: s.id,
                            theater_id: s.theater_id,
                            theater_name: s.theater_name,
                            city: s.city,
                            starts_at: s.starts_at,
                            format: s.format,
                            language: s.language,
                            from_price_minor: s.min_price_cents,
                            seats_available: s.seats_available,
                            distance_km: s.distance_km,
                        })
                        .collect(),
                })
                .collect(),
            facets: Facets {
                genres: facets(results.facets.genres),
                formats: facets(results.facets.formats),
                languages: facets(results.facets.languages),
                cities: facets(results.facets.cities),
            },
            next_cursor: results.next.map(|cursor| cursor.encode()),
        }))
    }

    /// Title suggestions as a person types, tolerating a typo in the last
    /// word.
    #[oai(path = "/v1/search/suggest", method = "get")]
    async fn suggest(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(validator(min_length = 1, max_length = 100))] q: Query<String>,
        /// Suggestions to return, 1 to 20.
        #[oai(
            default = "default_suggestions",
            validator(minimum(value = "1"), maximum(value = "20"))
        )]
        limit: Query<u32>,
    ) -> Result<Json<Suggestions>, ApiError> {
        let (index, text, limit) = (Arc::clone(&state.search), q.0, limit.0 as usize);
        let found = tokio::task::spawn_blocking(move || index.suggest(&text, limit)).await??;
        Ok(Json(Suggestions {
            suggestions: found
                .into_iter()
                .map(|s| Suggestion {
                    id: s.id,
                    title: s.title,
                    release_year: s.release_year,
                })
                .collect(),
        }))
    }
}

fn default_limit() -> u32 {
    10
}

fn default_suggestions() -> u32 {
    8
}

fn default_radius() -> f64 {
    25.0
}
