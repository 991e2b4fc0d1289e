//! The signed-in user's subscriptions (what to be told about) and channel
//! preferences (how).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use marquee_jobs::matching::words;
use marquee_storage::subscriptions::{Filter, Near, Preferences, Subscription};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::movies::Genre;
use super::showtimes::Format;
use super::ApiTags;
use crate::auth::SignedIn;
use crate::body::{JsonBody, Validate};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;

/// Title words a subscription may require.
const MAX_TITLE_WORDS: usize = 8;

#[derive(Debug)]
pub struct SubscriptionsApi;

/// A point and a radius around it.
#[derive(Debug, Clone, Copy, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct NearBody {
    #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
    latitude: f64,
    #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
    longitude: f64,
    #[oai(validator(minimum(value = "0.1"), maximum(value = "500")))]
    radius_km: f64,
}

/// What to be told about. Every filter set must hold. With `showtime_id`
/// alone, it watches that sold-out showtime and tells once when seats are
/// freed; with title words or a genre alone, it tells of new releases;
/// otherwise of new showtimes.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct SubscriptionBody {
    movie_id: Option<Uuid>,
    /// Words that must all appear in the title, such as `dune part`.
    #[oai(validator(max_length = 200))]
    title_words: Option<String>,
    genre: Option<Genre>,
    #[oai(validator(min_length = 1, max_length = 100))]
    city: Option<String>,
    near: Option<NearBody>,
    theater_id: Option<Uuid>,
    format: Option<Format>,
    /// A sold-out showtime to watch for freed seats.
    showtime_id: Option<Uuid>,
}

impl SubscriptionBody {
    fn filter(&self) -> Filter {
        Filter {
            movie_id: self.movie_id,
            title_words: self.title_words.as_deref().map(words).unwrap_or_default(),
            genre: self.genre.map(Genre::slug),
            city: self.city.as_deref().map(|city| city.trim().to_lowercase()),
            near: self.near.map(|near| Near {
                latitude: near.latitude,
                longitude: near.longitude,
                radius_km: near.radius_km,
            }),
            theater_id: self.theater_id,
            format: self.format.map(|format| format.as_str().to_owned()),
            showtime_id: self.showtime_id,
        }
    }
}

impl Validate for SubscriptionBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let filter = self.filter();
        if filter == Filter::default() {
            errors.push(FieldError::new("", "set at least one filter"));
        }
        if let Some(title) = &self.title_words {
            let count = words(title).len();
            if count == 0 {
                errors.push(FieldError::new(
                    "title_words",
                    "has no letters or digits to match",
                ));
            } else if count > MAX_TITLE_WORDS {
                errors.push(FieldError::new(
                    "title_words",
                    format!("may hold at most {MAX_TITLE_WORDS} words"),
                ));
            }
        }
        if self
            .city
            .as_deref()
            .is_some_and(|city| city.trim().is_empty())
        {
            errors.push(FieldError::new("city", "is blank"));
        }
        if self.showtime_id.is_some()
            && filter
                != (Filter {
                    showtime_id: self.showtime_id,
                    ..Filter::default()
                })
        {
            errors.push(FieldError::new(
                "showtime_id",
                "a seat watch names its showtime and nothing else",
            ));
        }
        errors
    }
}

#[derive(Debug, Object)]
struct NearView {
    latitude: f64,
    longitude: f64,
    radius_km: f64,
}

#[derive(Debug, Object)]
struct SubscriptionView {
    id: Uuid,
    /// `showtimes`, `releases` or `freed_seats`: what it tells of.
    kind: String,
    #[oai(skip_serializing_if_is_none)]
    movie_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_empty)]
    title_words: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    genre: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    city: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    near: Option<NearView>,
    #[oai(skip_serializing_if_is_none)]
    theater_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    format: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    showtime_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl From<Subscription> for SubscriptionView {
    fn from(subscription: Subscription) -> Self {
        let filter = subscription.filter;
        let kind = if filter.showtime_id.is_some() {
            "freed_seats"
        } else if filter.is_movie_level() {
            "releases"
        } else {
            "showtimes"
        };
        Self {
            id: subscription.id,
            kind: kind.to_owned(),
            movie_id: filter.movie_id,
            title_words: filter.title_words,
            genre: filter.genre,
            city: filter.city,
            near: filter.near.map(|near| NearView {
                latitude: near.latitude,
                longitude: near.longitude,
                radius_km: near.radius_km,
            }),
            theater_id: filter.theater_id,
            format: filter.format,
            showtime_id: filter.showtime_id,
            created_at: subscription.created_at,
        }
    }
}

#[derive(Debug, Object)]
struct SubscriptionList {
    subscriptions: Vec<SubscriptionView>,
    /// How many an account may hold.
    limit: i64,
}

#[derive(Debug, ApiResponse)]
enum Created {
    /// Subscribed.
    #[oai(status = 201)]
    Created(Json<SubscriptionView>),
}

#[derive(Debug, ApiResponse)]
enum Deleted {
    /// Unsubscribed.
    #[oai(status = 204)]
    NoContent,
}

/// The channels notices go out on.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct PreferencesBody {
    email: bool,
    sms: bool,
    /// The in-app inbox, and its live stream.
    in_app: bool,
    /// E.164, such as `+14155550100`; SMS needs it.
    #[oai(validator(max_length = 16))]
    phone: Option<String>,
}

fn is_e164(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

impl Validate for PreferencesBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(phone) = &self.phone {
            if !is_e164(phone) {
                errors.push(FieldError::new(
                    "phone",
                    "must be in E.164 form: + then 8 to 15 digits, such as +14155550100",
                ));
            }
        }
        if self.sms && self.phone.is_none() {
            errors.push(FieldError::new("phone", "is needed to receive SMS"));
        }
        errors
    }
}

impl From<Preferences> for PreferencesBody {
    fn from(preferences: Preferences) -> Self {
        Self {
            email: preferences.email,
            sms: preferences.sms,
            in_app: preferences.in_app,
            phone: preferences.phone,
        }
    }
}

/// Refuses a filter that can never match anything: a 422 naming why.
async fn matchable(state: &AppState, filter: &Filter) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if let Some(id) = filter.showtime_id {
        match state.storage.showtime(id).await? {
            None => errors.push(FieldError::new("showtime_id", "no showtime has this id")),
            Some(showtime) if showtime.schedule.starts_at <= Utc::now() => {
                errors.push(FieldError::new(
                    "showtime_id",
                    "this showtime has begun; no seats will be freed for it",
                ))
            }
            Some(showtime) if showtime.seats_available > 0 => errors.push(FieldError::new(
                "showtime_id",
                format!(
                    "this showtime is not sold out: {} seats are free to book now",
                    showtime.seats_available
                ),
            )),
            Some(_) => {}
        }
    }
    if let Some(id) = filter.movie_id {
        match state.storage.movie(id).await? {
            None => errors.push(FieldError::new("movie_id", "no movie has this id")),
            Some(movie) => {
                let title = words(&movie.title);
                if let Some(missing) = filter
                    .title_words
                    .iter()
                    .find(|word| title.binary_search(word).is_err())
                {
                    errors.push(FieldError::new(
                        "title_words",
                        format!(
                            "\"{missing}\" is not in the title of the chosen movie, {}",
                            movie.title
                        ),
                    ));
                }
                if let Some(genre) = filter
                    .genre
                    .as_ref()
                    .filter(|genre| !movie.genres.contains(genre))
                {
                    errors.push(FieldError::new(
                        "genre",
                        format!(
                            "the chosen movie is not {genre}: it is {}",
                            movie.genres.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    if let Some(id) = filter.theater_id {
        match state.storage.theater(id).await? {
            None => errors.push(FieldError::new("theater_id", "no theater has this id")),
            Some(theater) => {
                if let Some(city) = filter
                    .city
                    .as_ref()
                    .filter(|city| **city != theater.info.city.to_lowercase())
                {
                    errors.push(FieldError::new(
                        "city",
                        format!("the chosen theater is in {}, not {city}", theater.info.city),
                    ));
                }
                if let Some(near) = filter.near {
                    let distance = marquee_search::haversine_km(
                        near.latitude,
                        near.longitude,
                        theater.info.latitude,
                        theater.info.longitude,
                    );
                    if distance > near.radius_km {
                        errors.push(FieldError::new(
                            "near",
                            format!(
                                "the chosen theater is {distance:.1} km away, outside the {} km radius",
                                near.radius_km
                            ),
                        ));
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "this subscription could never match anything",
            errors,
        ))
    }
}

#[OpenApi(tag = "ApiTags::Accounts")]
impl SubscriptionsApi {
    /// Subscribe
    ///
    /// Tells the caller, on the channels of their preferences, about new
    /// showtimes or releases matching every filter set, or once about
    /// seats freed on a sold-out showtime. A filter that could never match
    /// (a movie whose title lacks the words, a theater outside the radius,
    /// a showtime that has begun or still has seats) is refused with 422;
    /// an account holding the maximum is refused with 409.
    #[oai(path = "/v1/me/subscriptions", method = "post")]
    async fn subscribe(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        body: JsonBody<SubscriptionBody>,
    ) -> Result<Created, ApiError> {
        let filter = body.0.filter();
        matchable(&state, &filter).await?;
        let subscription = state
            .storage
            .subscribe(caller.0.user, &filter, state.max_subscriptions)
            .await?;
        Ok(Created::Created(Json(subscription.into())))
    }

    /// My subscriptions
    #[oai(path = "/v1/me/subscriptions", method = "get")]
    async fn subscriptions(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
    ) -> Result<Json<SubscriptionList>, ApiError> {
        let subscriptions = state.storage.subscriptions(caller.0.user).await?;
        Ok(Json(SubscriptionList {
            subscriptions: subscriptions
                .into_iter()
                .map(SubscriptionView::from)
                .collect(),
            limit: state.max_subscriptions,
        }))
    }

    /// Unsubscribe
    #[oai(path = "/v1/me/subscriptions/:id", method = "delete")]
    async fn unsubscribe(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        if state.storage.unsubscribe(caller.0.user, id.0).await? {
            Ok(Deleted::NoContent)
        } else {
            Err(ApiError::not_found(format!(
                "you have no subscription with id {}",
                id.0
            )))
        }
    }

    /// My notification channels
    #[oai(path = "/v1/me/preferences", method = "get")]
    async fn preferences(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
    ) -> Result<Json<PreferencesBody>, ApiError> {
        Ok(Json(state.storage.preferences(caller.0.user).await?.into()))
    }

    /// Set my notification channels
    ///
    /// Booking confirmations always go to the address the booking names;
    /// these choose where alerts and the booking's copies go: the inbox,
    /// email, and SMS to `phone`.
    #[oai(path = "/v1/me/preferences", method = "put")]
    async fn set_preferences(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        body: JsonBody<PreferencesBody>,
    ) -> Result<Json<PreferencesBody>, ApiError> {
        let body = body.0;
        let preferences = Preferences {
            email: body.email,
            sms: body.sms,
            in_app: body.in_app,
            phone: body.phone,
        };
        if !state
            .storage
            .set_preferences(caller.0.user, &preferences)
            .await?
        {
            return Err(ApiError::not_found("this account no longer exists"));
        }
        Ok(Json(preferences.into()))
    }
}
