//! Theaters and screens: admin writes, public lookups by city or distance.

use std::sync::Arc;

use chrono::NaiveTime;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::AdminOnly;
use crate::body::{JsonBody, Validate};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use marquee_storage::layout::{Seat, SeatKind, SeatLayout, SeatRow};
use marquee_storage::theaters::{
    OpeningHours, Screen as StoredScreen, Theater as StoredTheater, TheaterInfo,
};

#[derive(Debug)]
pub struct TheatersApi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "mon" => Weekday::Mon,
            "tue" => Weekday::Tue,
            "wed" => Weekday::Wed,
            "thu" => Weekday::Thu,
            "fri" => Weekday::Fri,
            "sat" => Weekday::Sat,
            _ => Weekday::Sun,
        }
    }
}

/// Opening hours for one day; `closes` earlier than `opens` means after
/// midnight.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    day: Weekday,
    /// `HH:MM`, local time.
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    opens: String,
    /// `HH:MM`, local time.
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    closes: String,
}

/// A theater as an operator writes it.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct TheaterBody {
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*\S[^\u0000]*$"
    ))]
    name: String,
    /// ISO 3166-1 alpha-2 country code, such as `US`.
    #[oai(validator(pattern = r"^[A-Z]{2}$"))]
    country: String,
    /// State or province.
    #[oai(validator(max_length = 100, pattern = r"^[^\u0000]*$"))]
    #[serde(default, deserialize_with = "super::present")]
    region: Option<String>,
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*\S[^\u0000]*$"
    ))]
    city: String,
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*\S[^\u0000]*$"
    ))]
    street: String,
    #[oai(validator(
        min_length = 1,
        max_length = 16,
        pattern = r"^[A-Za-z0-9][A-Za-z0-9 -]*$"
    ))]
    postcode: String,
    #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
    latitude: f64,
    #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
    longitude: f64,
    /// IANA time zone, such as `America/New_York`; showtimes are grouped by
    /// the theater's local day.
    #[oai(validator(max_length = 64))]
    timezone: String,
    /// At most one entry per day; a day without an entry is closed.
    #[oai(validator(max_items = 7))]
    opening_hours: Vec<Hours>,
}

impl Validate for TheaterBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            errors.push(FieldError::new(
                "timezone",
                "is not an IANA time zone such as America/New_York",
            ));
        }
        for (index, hours) in self.opening_hours.iter().enumerate() {
            if self.opening_hours[..index]
                .iter()
                .any(|h| h.day == hours.day)
            {
                errors.push(FieldError::new(
                    format!("opening_hours[{index}].day"),
                    "is listed twice",
                ));
            }
            if hours.opens == hours.closes {
                errors.push(FieldError::new(
                    format!("opening_hours[{index}]"),
                    "opens and closes at the same time",
                ));
            }
        }
        errors
    }
}

impl TheaterBody {
    fn into_info(self) -> TheaterInfo {
        let time = |text: &str| NaiveTime::parse_from_str(text, "%H:%M").unwrap_or_default();
        TheaterInfo {
            name: self.name.trim().to_owned(),
            country: self.country,
            region: self.region,
            city: self.city.trim().to_owned(),
            street: self.street.trim().to_owned(),
            postcode: self.postcode,
            latitude: self.latitude,
            longitude: self.longitude,
            timezone: self.timezone,
            opening_hours: self
                .opening_hours
                .iter()
                .map(|hours| OpeningHours {
                    day: hours.day.as_str().to_owned(),
                    opens: time(&hours.opens),
                    closes: time(&hours.closes),
                })
                .collect(),
            demo_generated: false,
        }
    }
}

/// A theater.
#[derive(Debug, Clone, Object)]
pub struct Theater {
    id: Uuid,
    name: String,
    country: String,
    #[oai(skip_serializing_if_is_none)]
    region: Option<String>,
    city: String,
    street: String,
    postcode: String,
    latitude: f64,
    longitude: f64,
    timezone: String,
    opening_hours: Vec<Hours>,
    /// True when the address or hours were generated for the demo catalogue.
    demo_generated: bool,
    version: i64,
    /// Kilometres from the point searched around, when one was given.
    #[oai(skip_serializing_if_is_none)]
    distance_km: Option<f64>,
}

impl From<StoredTheater> for Theater {
    fn from(theater: StoredTheater) -> Self {
        let info = theater.info;
        Self {
            id: theater.id,
            name: info.name,
            country: info.country,
            region: info.region,
            city: info.city,
            street: info.street,
            postcode: info.postcode,
            latitude: info.latitude,
            longitude: info.longitude,
            timezone: info.timezone,
            opening_hours: info
                .opening_hours
                .iter()
                .map(|hours| Hours {
                    day: Weekday::parse(&hours.day),
                    opens: hours.opens.format("%H:%M").to_string(),
                    closes: hours.closes.format("%H:%M").to_string(),
                })
                .collect(),
            demo_generated: info.demo_generated,
            version: theater.version,
            distance_km: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Standard,
    Premium,
    Wheelchair,
    Companion,
}

impl From<Kind> for SeatKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Standard => SeatKind::Standard,
            Kind::Premium => SeatKind::Premium,
            Kind::Wheelchair => SeatKind::Wheelchair,
            Kind::Companion => SeatKind::Companion,
        }
    }
}

impl From<SeatKind> for Kind {
    fn from(kind: SeatKind) -> Self {
        match kind {
            SeatKind::Standard => Kind::Standard,
            SeatKind::Premium => Kind::Premium,
            SeatKind::Wheelchair => Kind::Wheelchair,
            SeatKind::Companion => Kind::Companion,
        }
    }
}

/// A seat in a row of a layout.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct LayoutSeat {
    /// 1 to 4 letters or digits, unique in its row.
    #[oai(validator(pattern = r"^[A-Za-z0-9]{1,4}$"))]
    number: String,
    /// Position across the screen from 1; skipped columns are aisles or gaps.
    #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
    column: u16,
    kind: Kind,
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct LayoutRow {
    /// 1 to 4 letters or digits, unique in the layout; rows are listed from
    /// the screen backwards.
    #[oai(validator(pattern = r"^[A-Za-z0-9]{1,4}$"))]
    label: String,
    #[oai(validator(min_items = 1, max_items = 120))]
    seats: Vec<LayoutSeat>,
}

/// Rows of seats. Every wheelchair space needs a companion seat directly
/// beside it.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[oai(validator(min_items = 1, max_items = 60))]
    rows: Vec<LayoutRow>,
}

impl From<&Layout> for SeatLayout {
    fn from(layout: &Layout) -> Self {
        SeatLayout {
            rows: layout
                .rows
                .iter()
                .map(|row| SeatRow {
                    label: row.label.clone(),
                    seats: row
                        .seats
                        .iter()
                        .map(|seat| Seat {
                            number: seat.number.clone(),
                            column: seat.column,
                            kind: seat.kind.into(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<&SeatLayout> for Layout {
    fn from(layout: &SeatLayout) -> Self {
        Layout {
            rows: layout
                .rows
                .iter()
                .map(|row| LayoutRow {
                    label: row.label.clone(),
                    seats: row
                        .seats
                        .iter()
                        .map(|seat| LayoutSeat {
                            number: seat.number.clone(),
                            column: seat.column,
                            kind: seat.kind.into(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct ScreenBody {
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*\S[^\u0000]*$"
    ))]
    name: String,
    layout: Layout,
}

impl Validate for ScreenBody {
    fn validate(&self) -> Vec<FieldError> {
        SeatLayout::from(&self.layout)
            .problems()
            .into_iter()
            .map(|(field, message)| FieldError::new(field, message))
            .collect()
    }
}

/// A screen and its seat layout.
#[derive(Debug, Clone, Object)]
pub struct Screen {
    id: Uuid,
    theater_id: Uuid,
    name: String,
    capacity: i32,
    /// Content hash of the layout; showtimes record the one they were
    /// scheduled with.
    layout_id: String,
    layout: Layout,
    version: i64,
}

impl From<StoredScreen> for Screen {
    fn from(screen: StoredScreen) -> Self {
        Self {
            id: screen.id,
            theater_id: screen.theater_id,
            name: screen.name,
            capacity: screen.capacity,
            layout_id: screen.layout_id,
            layout: Layout::from(&screen.layout),
            version: screen.version,
        }
    }
}

#[derive(Debug, Object)]
struct TheaterList {
    theaters: Vec<Theater>,
}

#[derive(Debug, Object)]
struct ScreenList {
    screens: Vec<Screen>,
}

#[derive(Debug, ApiResponse)]
enum TheaterCreated {
    /// Created; `Location` is its URL.
    #[oai(status = 201)]
    Created(Json<Theater>, #[oai(header = "Location")] String),
}

#[derive(Debug, ApiResponse)]
enum ScreenCreated {
    /// Created; `Location` is its URL.
    #[oai(status = 201)]
    Created(Json<Screen>, #[oai(header = "Location")] String),
}

#[derive(Debug, ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

const EARTH_RADIUS_KM: f64 = 6371.0;

/// Great-circle distance in kilometres.
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().asin()
}

/// A box that holds every point within `radius_km` of a centre: (south,
/// west, north, east), clamped to valid coordinates.
fn bounds(lat: f64, lon: f64, radius_km: f64) -> (f64, f64, f64, f64) {
    let dlat = (radius_km / EARTH_RADIUS_KM).to_degrees();
    let dlon = dlat / lat.to_radians().cos().max(0.01);
    (
        (lat - dlat).max(-90.0),
        (lon - dlon).max(-180.0),
        (lat + dlat).min(90.0),
        (lon + dlon).min(180.0),
    )
}

#[OpenApi(tag = "ApiTags::Theaters")]
impl TheatersApi {
    /// Theaters in a city, or within a radius of a point, nearest first.
    #[oai(path = "/v1/theaters", method = "get")]
    async fn theaters(
        &self,
        state: Data<&Arc<AppState>>,
        /// City name, case-insensitive, such as `Boston`.
        #[oai(validator(min_length = 1, max_length = 100))]
        city: Query<Option<String>>,
        /// Latitude of the point to search around; needs `lon`.
        #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
        lat: Query<Option<f64>>,
        /// Longitude of the point to search around; needs `lat`.
        #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
        lon: Query<Option<f64>>,
        /// Search radius around the point, 0.1 to 500 km.
        #[oai(
            default = "default_radius",
            validator(minimum(value = "0.1"), maximum(value = "500"))
        )]
        radius_km: Query<f64>,
    ) -> Result<Json<TheaterList>, ApiError> {
        let near = match (lat.0, lon.0) {
            (Some(lat), Some(lon)) => Some((lat, lon)),
            (None, None) => None,
            _ => {
                return Err(super::invalid_parameter(
                    "lon",
                    "lat and lon go together; give both or neither",
                ))
            }
        };
        if near.is_none() && city.0.is_none() {
            return Err(super::invalid_parameter(
                "city",
                "give a city, or lat and lon",
            ));
        }
        let radius = radius_km.0;
        let found = state
            .storage
            .find_theaters(
                city.0.as_deref().map(str::trim),
                near.map(|(lat, lon)| bounds(lat, lon, radius)),
            )
            .await?;
        let mut theaters: Vec<Theater> = found
            .into_iter()
            .filter_map(|stored| {
                let point = (stored.info.latitude, stored.info.longitude);
                let mut theater = Theater::from(stored);
                if let Some(centre) = near {
                    let distance = haversine_km(centre, point);
                    if distance > radius {
                        return None;
                    }
                    theater.distance_km = Some((distance * 100.0).round() / 100.0);
                }
                Some(theater)
            })
            .collect();
        theaters.sort_by(|a, b| {
            a.distance_km
                .unwrap_or(0.0)
                .total_cmp(&b.distance_km.unwrap_or(0.0))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(Json(TheaterList { theaters }))
    }

    /// A theater.
    #[oai(path = "/v1/theaters/:id", method = "get")]
    async fn theater(
        &self,
        state: Data<&Arc<AppState>>,
        id: Path<Uuid>,
    ) -> Result<Json<Theater>, ApiError> {
        state
            .storage
            .theater(id.0)
            .await?
            .map(|theater| Json(theater.into()))
            .ok_or_else(|| ApiError::not_found(format!("no theater has id {}", id.0)))
    }

    /// A theater's screens and their layouts.
    #[oai(path = "/v1/theaters/:id/screens", method = "get")]
    async fn screens(
        &self,
        state: Data<&Arc<AppState>>,
        id: Path<Uuid>,
    ) -> Result<Json<ScreenList>, ApiError> {
        if state.storage.theater(id.0).await?.is_none() {
            return Err(ApiError::not_found(format!("no theater has id {}", id.0)));
        }
        let screens = state.storage.screens(id.0).await?;
        Ok(Json(ScreenList {
            screens: screens.into_iter().map(Screen::from).collect(),
        }))
    }

    /// Adds a theater.
    #[oai(path = "/v1/admin/theaters", method = "post", tag = "ApiTags::Admin")]
    async fn create_theater(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        body: JsonBody<TheaterBody>,
    ) -> Result<TheaterCreated, ApiError> {
        let stored = state
            .storage
            .put_theater(Uuid::now_v7(), &body.0.into_info())
            .await?;
        let location = format!("/v1/theaters/{}", stored.id);
        Ok(TheaterCreated::Created(Json(stored.into()), location))
    }

    /// Rewrites a theater.
    #[oai(
        path = "/v1/admin/theaters/:id",
        method = "put",
        tag = "ApiTags::Admin"
    )]
    async fn update_theater(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        body: JsonBody<TheaterBody>,
    ) -> Result<Json<Theater>, ApiError> {
        if state.storage.theater(id.0).await?.is_none() {
            return Err(ApiError::not_found(format!("no theater has id {}", id.0)));
        }
        let stored = state.storage.put_theater(id.0, &body.0.into_info()).await?;
        Ok(Json(stored.into()))
    }

    /// Deletes a theater that has no screens.
    #[oai(
        path = "/v1/admin/theaters/:id",
        method = "delete",
        tag = "ApiTags::Admin"
    )]
    async fn delete_theater(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        state.storage.delete_theater(id.0).await?;
        Ok(Deleted::Deleted)
    }

    /// Adds a screen with its seat layout.
    #[oai(
        path = "/v1/admin/theaters/:id/screens",
        method = "post",
        tag = "ApiTags::Admin"
    )]
    async fn create_screen(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        body: JsonBody<ScreenBody>,
    ) -> Result<ScreenCreated, ApiError> {
        let layout = SeatLayout::from(&body.0.layout);
        let stored = state
            .storage
            .put_screen(id.0, Uuid::now_v7(), body.0.name.trim(), &layout)
            .await?;
        let location = format!("/v1/theaters/{}/screens", id.0);
        Ok(ScreenCreated::Created(Json(stored.into()), location))
    }

    /// Rewrites a screen. Showtimes already scheduled keep the layout they
    /// were scheduled with, so sold seats stay valid.
    #[oai(
        path = "/v1/admin/theaters/:id/screens/:screen_id",
        method = "put",
        tag = "ApiTags::Admin"
    )]
    async fn update_screen(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        screen_id: Path<Uuid>,
        body: JsonBody<ScreenBody>,
    ) -> Result<Json<Screen>, ApiError> {
        if state.storage.screen(id.0, screen_id.0).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "theater {} has no screen {}",
                id.0, screen_id.0
            )));
        }
        let layout = SeatLayout::from(&body.0.layout);
        let stored = state
            .storage
            .put_screen(id.0, screen_id.0, body.0.name.trim(), &layout)
            .await?;
        Ok(Json(stored.into()))
    }

    /// Deletes a screen with no showtimes.
    #[oai(
        path = "/v1/admin/theaters/:id/screens/:screen_id",
        method = "delete",
        tag = "ApiTags::Admin"
    )]
    async fn delete_screen(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        screen_id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        state.storage.delete_screen(id.0, screen_id.0).await?;
        Ok(Deleted::Deleted)
    }
}

fn default_radius() -> f64 {
    25.0
}
