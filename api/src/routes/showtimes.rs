//! Showtimes: scheduling by admins, details and live seat maps for
//! everyone.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::theaters::Kind;
use super::ApiTags;
use crate::auth::AdminOnly;
use crate::body::{JsonBody, Validate};
use crate::cache::Entry;
use crate::problem::{ApiError, FieldError};
use crate::rendered::JsonBytes;
use crate::seat_feed::SeatStates;
use crate::state::AppState;
use marquee_storage::layout::{Prices, SeatKind};
use marquee_storage::showtimes::Showtime as StoredShowtime;
use marquee_storage::{NewShowtimeRequest, ShowtimeChange};

#[derive(Debug)]
pub struct ShowtimesApi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
pub enum Format {
    #[oai(rename = "2d")]
    #[serde(rename = "2d")]
    TwoD,
    #[oai(rename = "3d")]
    #[serde(rename = "3d")]
    ThreeD,
    #[oai(rename = "imax")]
    #[serde(rename = "imax")]
    Imax,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::TwoD => "2d",
            Format::ThreeD => "3d",
            Format::Imax => "imax",
        }
    }
}

/// The price of one seat kind, in minor units of the showtime's currency.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct Price {
    kind: Kind,
    #[oai(validator(minimum(value = "0"), maximum(value = "10000000")))]
    amount_minor: i64,
}

fn prices_of(prices: &[Price]) -> Prices {
    prices
        .iter()
        .map(|price| (SeatKind::from(price.kind), price.amount_minor))
        .collect()
}

fn duplicate_kinds(prices: &[Price]) -> Vec<FieldError> {
    prices
        .iter()
        .enumerate()
        .filter(|(index, price)| prices[..*index].iter().any(|p| p.kind == price.kind))
        .map(|(index, _)| FieldError::new(format!("prices[{index}].kind"), "is priced twice"))
        .collect()
}

/// A showtime to schedule. Its end is derived: the movie's runtime plus
/// the configured turnaround for cleaning and admission.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ShowtimeBody {
    movie_id: Uuid,
    theater_id: Uuid,
    screen_id: Uuid,
    starts_at: DateTime<Utc>,
    format: Format,
    /// ISO 639-1 or 639-2 language code of the soundtrack, such as `en`.
    #[oai(validator(pattern = r"^[a-z]{2,3}$"))]
    language: String,
    /// ISO 4217 currency code, such as `USD`.
    #[oai(validator(pattern = r"^[A-Z]{3}$"))]
    currency: String,
    /// One price per seat kind the screen has.
    #[oai(validator(min_items = 1, max_items = 4))]
    prices: Vec<Price>,
    /// Seats not for sale at this showtime, such as `F-12`.
    #[oai(
        default,
        validator(max_items = 500, pattern = r"^[A-Za-z0-9]{1,4}-[A-Za-z0-9]{1,4}$")
    )]
    #[serde(default)]
    blocked_seats: Vec<String>,
}

impl Validate for ShowtimeBody {
    fn validate(&self) -> Vec<FieldError> {
        duplicate_kinds(&self.prices)
    }
}

/// A new schedule for a showtime; its screen and movie stay.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ShowtimeChangeBody {
    starts_at: DateTime<Utc>,
    format: Format,
    #[oai(validator(pattern = r"^[a-z]{2,3}$"))]
    language: String,
    #[oai(validator(pattern = r"^[A-Z]{3}$"))]
    currency: String,
    #[oai(validator(min_items = 1, max_items = 4))]
    prices: Vec<Price>,
}

impl Validate for ShowtimeChangeBody {
    fn validate(&self) -> Vec<FieldError> {
        duplicate_kinds(&self.prices)
    }
}

/// A showtime.
#[derive(Debug, Clone, Object)]
pub struct Showtime {
    id: Uuid,
    movie_id: Uuid,
    theater_id: Uuid,
    screen_id: Uuid,
    starts_at: DateTime<Utc>,
    /// Runtime plus turnaround; the screen is busy until then.
    ends_at: DateTime<Utc>,
    format: String,
    language: String,
    currency: String,
    prices: Vec<PriceView>,
    capacity: i32,
    seats_available: i32,
    /// The show has started; seats can no longer be bought.
    in_progress: bool,
    /// Seats can be bought now.
    bookable: bool,
    /// A waiting room is on: join its line (`POST .../queue`) for a pass
    /// to hold seats with.
    waiting_room: bool,
    /// Set when an in-progress showtime was asked for explicitly.
    #[oai(skip_serializing_if_is_none)]
    warning: Option<String>,
    version: i64,
}

#[derive(Debug, Clone, Object)]
pub struct PriceView {
    kind: Kind,
    amount_minor: i64,
}

impl From<StoredShowtime> for Showtime {
    fn from(showtime: StoredShowtime) -> Self {
        let schedule = showtime.schedule;
        Self {
            id: showtime.id,
            movie_id: showtime.movie_id,
            theater_id: showtime.theater_id,
            screen_id: showtime.screen_id,
            starts_at: schedule.starts_at,
            ends_at: schedule.ends_at,
            format: schedule.format,
            language: schedule.language,
            currency: schedule.currency,
            prices: schedule
                .prices
                .iter()
                .map(|(kind, amount)| PriceView {
                    kind: (*kind).into(),
                    amount_minor: *amount,
                })
                .collect(),
            capacity: showtime.capacity,
            seats_available: showtime.seats_available,
            in_progress: false,
            bookable: false,
            waiting_room: showtime.waiting_room,
            warning: None,
            version: showtime.version,
        }
    }
}

impl Showtime {
    /// Sets the flags that depend on the clock, which cached copies must
    /// not carry over.
    fn at(mut self, now: DateTime<Utc>) -> Self {
        self.in_progress = self.starts_at <= now && now < self.ends_at;
        self.bookable = now < self.starts_at && self.seats_available > 0;
        self.warning = self.in_progress.then(|| IN_PROGRESS_WARNING.to_owned());
        self
    }
}

/// Whether a seat can be bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SeatStatus {
    Free,
    Held,
    Sold,
    Blocked,
}

#[derive(Debug, Clone, Object)]
pub struct MapSeat {
    /// Row label and seat number, such as `F-12`.
    id: String,
    number: String,
    column: u16,
    kind: Kind,
    status: SeatStatus,
    price_minor: i64,
}

#[derive(Debug, Clone, Object)]
pub struct MapRow {
    label: String,
    seats: Vec<MapSeat>,
}

#[derive(Debug, Clone, Object)]
pub struct SeatCounts {
    free: u32,
    held: u32,
    sold: u32,
    blocked: u32,
}

/// A showtime's seats with live availability, rows listed from the screen
/// backwards.
#[derive(Debug, Clone, Object)]
pub struct SeatMap {
    showtime_id: Uuid,
    starts_at: DateTime<Utc>,
    currency: String,
    in_progress: bool,
    bookable: bool,
    #[oai(skip_serializing_if_is_none)]
    warning: Option<String>,
    counts: SeatCounts,
    rows: Vec<MapRow>,
}

#[derive(Debug, ApiResponse)]
enum Created {
    /// Scheduled; `Location` is its URL.
    #[oai(status = 201)]
    Showtime(Json<Showtime>, #[oai(header = "Location")] String),
}

#[derive(Debug, ApiResponse)]
enum SeatMapResponse {
    /// The seat map.
    #[oai(status = 200)]
    Ok(JsonBytes<SeatMap>),
}

#[derive(Debug, ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

impl ShowtimesApi {
    async fn load(state: &AppState, id: Uuid) -> Result<Showtime, ApiError> {
        if let Some(cached) = state.cache.get::<Showtime>(Entry::Showtime(id)).await {
            return Ok(cached);
        }
        let stored = state
            .storage
            .showtime(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no showtime has id {id}")))?;
        let view = Showtime::from(stored);
        state.cache.put(Entry::Showtime(id), &view).await;
        Ok(view)
    }

    /// Builds a seat map from the database; the caller caches what it
    /// renders.
    async fn load_map(state: &AppState, id: Uuid) -> Result<SeatMap, ApiError> {
        let (showtime, layout, states) = state
            .storage
            .seat_map(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no showtime has id {id}")))?;
        let mut counts = SeatCounts {
            free: 0,
            held: 0,
            sold: 0,
            blocked: 0,
        };
        let rows = layout
            .rows
            .iter()
            .map(|row| MapRow {
                label: row.label.clone(),
                seats: row
                    .seats
                    .iter()
                    .map(|seat| {
                        let seat_id = marquee_storage::layout::seat_id(&row.label, &seat.number);
                        let status = match states.get(&seat_id).map(String::as_str) {
                            Some("held") => SeatStatus::Held,
                            Some("sold") => SeatStatus::Sold,
                            Some(_) => SeatStatus::Blocked,
                            None => SeatStatus::Free,
                        };
                        match status {
                            SeatStatus::Free => counts.free += 1,
                            SeatStatus::Held => counts.held += 1,
                            SeatStatus::Sold => counts.sold += 1,
                            SeatStatus::Blocked => counts.blocked += 1,
                        }
                        MapSeat {
                            id: seat_id,
                            number: seat.number.clone(),
                            column: seat.column,
                            kind: seat.kind.into(),
                            status,
                            price_minor: showtime
                                .schedule
                                .prices
                                .get(&seat.kind)
                                .copied()
                                .unwrap_or_default(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let map = SeatMap {
            showtime_id: id,
            starts_at: showtime.schedule.starts_at,
            currency: showtime.schedule.currency.clone(),
            in_progress: false,
            bookable: false,
            warning: None,
            counts,
            rows,
        };
        Ok(map)
    }

    async fn invalidate(state: &AppState, showtime: Uuid, movie: Uuid) {
        state
            .cache
            .invalidate(&[
                Entry::Showtime(showtime),
                Entry::SeatMap(showtime),
                Entry::Movie(movie),
            ])
            .await;
    }
}

fn past_start() -> ApiError {
    ApiError::unprocessable(
        "a showtime cannot be scheduled in the past",
        vec![FieldError::new("starts_at", "must be in the future")],
    )
}

pub const IN_PROGRESS_WARNING: &str =
    "this showtime has already started; seats can no longer be bought";

fn in_progress_refused(id: Uuid) -> ApiError {
    ApiError::conflict(format!(
        "showtime {id} is in progress and can no longer be booked; \
         pass include_in_progress=true to view it anyway"
    ))
}

#[OpenApi(tag = "ApiTags::Showtimes")]
impl ShowtimesApi {
    /// A showtime's details. A showtime already under way answers 409
    /// unless `include_in_progress` is set.
    #[oai(path = "/v1/showtimes/:id", method = "get")]
    async fn showtime(
        &self,
        state: Data<&Arc<AppState>>,
        id: Path<Uuid>,
        /// Show a showtime that has already started.
        #[oai(default)]
        include_in_progress: Query<bool>,
    ) -> Result<Json<Showtime>, ApiError> {
        let view = Self::load(&state, id.0).await?.at(Utc::now());
        if view.in_progress && !include_in_progress.0 {
            return Err(in_progress_refused(id.0));
        }
        Ok(Json(view))
    }

    /// Live seat states
    ///
    /// A server-sent event stream of the showtime's taken seats: the
    /// current states first, then the new states after every hold, sale
    /// or release, within a second of its commit. The layout and prices
    /// come from the seat map; a comment every 15 s keeps proxies from
    /// closing an idle stream.
    #[oai(path = "/v1/showtimes/:id/seats/stream", method = "get")]
    async fn seat_stream(
        &self,
        state: Data<&Arc<AppState>>,
        id: Path<Uuid>,
    ) -> Result<EventStream<BoxStream<'static, SeatStates>>, ApiError> {
        // Watching before reading: a change in between is still sent.
        let changes = state.seats.watch(id.0);
        let current = state
            .seats
            .states(id.0)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no showtime has id {}", id.0)))?;
        let later = futures::stream::unfold(changes, |mut changes| async move {
            loop {
                match changes.recv().await {
                    Ok(states) => return Some(((*states).clone(), changes)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let stream = futures::stream::once(std::future::ready(current)).chain(later);
        Ok(
            EventStream::new(Box::pin(stream) as BoxStream<'static, SeatStates>)
                .keep_alive(std::time::Duration::from_secs(15))
                .to_event(|states| {
                    use poem_openapi::types::ToJSON;
                    poem::web::sse::Event::message(states.to_json_string()).event_type("seats")
                }),
        )
    }

    /// A showtime's seat map with live availability and prices.
    #[oai(path = "/v1/showtimes/:id/seats", method = "get")]
    async fn seats(
        &self,
        state: Data<&Arc<AppState>>,
        id: Path<Uuid>,
        /// Show the map of a showtime that has already started.
        #[oai(default)]
        include_in_progress: Query<bool>,
    ) -> Result<SeatMapResponse, ApiError> {
        let now = Utc::now();
        let entry = Entry::RenderedSeatMap(id.0);
        if let Some((until, body)) = state.cache.get_rendered(entry).await {
            if now < until {
                return Ok(SeatMapResponse::Ok(JsonBytes::from_bytes(body)));
            }
        }
        let mut map = Self::load_map(&state, id.0).await?;
        let showtime = Self::load(&state, id.0).await?.at(now);
        if showtime.in_progress && !include_in_progress.0 {
            return Err(in_progress_refused(id.0));
        }
        map.in_progress = showtime.in_progress;
        map.warning = showtime.warning;
        map.bookable = showtime.bookable && map.counts.free > 0;
        let body = JsonBytes::render(&map);
        if now < showtime.starts_at {
            // Until the show starts, the flags above cannot change without
            // a change to the seats, which drops this entry.
            state
                .cache
                .put_rendered(entry, showtime.starts_at, body.bytes())
                .await;
        }
        Ok(SeatMapResponse::Ok(body))
    }

    /// Schedules a showtime. Refused when the screen is busy, the movie is
    /// not yet released, a seat kind has no price, or a blocked seat is not
    /// in the layout.
    #[oai(path = "/v1/admin/showtimes", method = "post", tag = "ApiTags::Admin")]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        body: JsonBody<ShowtimeBody>,
    ) -> Result<Created, ApiError> {
        let body = body.0;
        if body.starts_at <= Utc::now() {
            return Err(past_start());
        }
        let request = NewShowtimeRequest {
            movie_id: body.movie_id,
            theater_id: body.theater_id,
            screen_id: body.screen_id,
            starts_at: body.starts_at,
            format: body.format.as_str().to_owned(),
            language: body.language,
            currency: body.currency,
            prices: prices_of(&body.prices),
            blocked_seats: body.blocked_seats,
            turnaround: Duration::minutes(i64::from(state.turnaround_minutes)),
        };
        let stored = state.storage.create_showtime(&request).await?;
        Self::invalidate(&state, stored.id, stored.movie_id).await;
        let location = format!("/v1/showtimes/{}", stored.id);
        Ok(Created::Showtime(
            Json(Showtime::from(stored).at(Utc::now())),
            location,
        ))
    }

    /// Reschedules a showtime on its screen.
    #[oai(
        path = "/v1/admin/showtimes/:id",
        method = "put",
        tag = "ApiTags::Admin"
    )]
    async fn update(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        body: JsonBody<ShowtimeChangeBody>,
    ) -> Result<Json<Showtime>, ApiError> {
        let body = body.0;
        if body.starts_at <= Utc::now() {
            return Err(past_start());
        }
        let change = ShowtimeChange {
            starts_at: body.starts_at,
            format: body.format.as_str().to_owned(),
            language: body.language,
            currency: body.currency,
            prices: prices_of(&body.prices),
            turnaround: Duration::minutes(i64::from(state.turnaround_minutes)),
        };
        let stored = state.storage.change_showtime(id.0, &change).await?;
        Self::invalidate(&state, stored.id, stored.movie_id).await;
        Ok(Json(Showtime::from(stored).at(Utc::now())))
    }

    /// Deletes a showtime that has no seats held or sold.
    #[oai(
        path = "/v1/admin/showtimes/:id",
        method = "delete",
        tag = "ApiTags::Admin"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        let movie = state.storage.showtime(id.0).await?.map(|s| s.movie_id);
        state.storage.delete_showtime(id.0).await?;
        if let Some(movie) = movie {
            Self::invalidate(&state, id.0, movie).await;
        }
        Ok(Deleted::Deleted)
    }
}
