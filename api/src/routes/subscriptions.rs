//! The signed-in user's subscriptions (what to be told about) and channel
//! preferences (how).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use marquee_jobs::matching::words;
use marquee_sms::SmsMessage;
use marquee_storage::subscriptions::{Filter, Near, PhoneCheck, Preferences, Subscription};
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
pub(super) struct NearView {
    latitude: f64,
    longitude: f64,
    radius_km: f64,
}

#[derive(Debug, Object)]
pub(super) struct SubscriptionView {
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
    /// Texts to the confirmed phone number; confirm one first.
    sms: bool,
    /// The in-app inbox, and its live stream.
    in_app: bool,
}

impl Validate for PreferencesBody {
    /// Booleans only; whether SMS may be chosen depends on the account.
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

#[derive(Debug, Object)]
pub(super) struct PreferencesView {
    email: bool,
    sms: bool,
    in_app: bool,
    /// The confirmed number texts go to.
    #[oai(skip_serializing_if_is_none)]
    phone: Option<String>,
}

impl From<Preferences> for PreferencesView {
    fn from(preferences: Preferences) -> Self {
        Self {
            email: preferences.email,
            sms: preferences.sms,
            in_app: preferences.in_app,
            phone: preferences.phone,
        }
    }
}

#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct PhoneBody {
    /// E.164, such as `+14155550100`.
    #[oai(validator(max_length = 16))]
    phone: String,
}

impl Validate for PhoneBody {
    fn validate(&self) -> Vec<FieldError> {
        if is_e164(&self.phone) {
            Vec::new()
        } else {
            vec![FieldError::new(
                "phone",
                "must be in E.164 form: + then 8 to 15 digits, such as +14155550100",
            )]
        }
    }
}

#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct PhoneCodeBody {
    /// The six digits the text carried.
    #[oai(validator(max_length = 6))]
    code: String,
}

impl Validate for PhoneCodeBody {
    fn validate(&self) -> Vec<FieldError> {
        if self.code.len() == 6 && self.code.bytes().all(|b| b.is_ascii_digit()) {
            Vec::new()
        } else {
            vec![FieldError::new(
                "code",
                "is the six digits the text carried",
            )]
        }
    }
}

#[derive(Debug, Object)]
struct CodeSent {
    detail: String,
}

#[derive(Debug, ApiResponse)]
enum CodeSentResponse {
    /// A code is on its way to the number.
    #[oai(status = 202)]
    Accepted(Json<CodeSent>),
}

/// How long a phone code may be typed back, how often it may be tried, and
/// how soon another may be sent.
const CODE_TTL_SECONDS: f64 = 600.0;
const CODE_ATTEMPTS: i32 = 5;
const CODE_COOLDOWN_SECONDS: f64 = 30.0;

fn is_e164(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// The stored form of a code: bound to the user, so a code is no use for
/// another account.
fn code_hash(user: Uuid, code: &str) -> Vec<u8> {
    let mut input = user.as_bytes().to_vec();
    input.extend_from_slice(code.as_bytes());
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input)
        .as_ref()
        .to_vec()
}

fn new_code() -> Result<String, ApiError> {
    let mut bytes = [0u8; 4];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::internal())?;
    Ok(format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000))
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
    ) -> Result<Json<PreferencesView>, ApiError> {
        Ok(Json(state.storage.preferences(caller.0.user).await?.into()))
    }

    /// Set my notification channels
    ///
    /// Booking confirmations always go to the address the booking names;
    /// these choose where alerts and the booking's copies go: the inbox,
    /// email, and SMS to the confirmed phone number (422 without one).
    #[oai(path = "/v1/me/preferences", method = "put")]
    async fn set_preferences(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        body: JsonBody<PreferencesBody>,
    ) -> Result<Json<PreferencesView>, ApiError> {
        let body = body.0;
        let user = caller.0.user;
        if !state
            .storage
            .set_preferences(user, body.email, body.sms, body.in_app)
            .await?
        {
            return Err(ApiError::not_found("this account no longer exists"));
        }
        Ok(Json(state.storage.preferences(user).await?.into()))
    }

    /// Confirm a phone number: send the code
    ///
    /// Texts a six-digit code to the number; typing it back (within 10
    /// minutes, 5 tries) makes it the number SMS goes to. Another code may
    /// be asked for after 30 s.
    #[oai(path = "/v1/me/phone", method = "post")]
    async fn send_phone_code(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        body: JsonBody<PhoneBody>,
    ) -> Result<CodeSentResponse, ApiError> {
        let user = caller.0.user;
        let code = new_code()?;
        let hash = code_hash(user, &code);
        if let Some(wait) = state
            .storage
            .start_phone_check(user, &body.0.phone, &hash, CODE_COOLDOWN_SECONDS)
            .await?
        {
            return Err(ApiError::too_many_requests(
                "a code was sent moments ago; wait before asking for another",
                u64::try_from(wait).unwrap_or(1),
            ));
        }
        let message = SmsMessage {
            to: body.0.phone.clone(),
            body: format!(
                "Marquee code: {code}. It confirms this number for your account and lapses in 10 minutes."
            ),
            idempotency_key: format!("phone:{user}:{}", super::hex(&hash)),
        };
        match state.sms.send(&message).await {
            Ok(_) => Ok(CodeSentResponse::Accepted(Json(CodeSent {
                detail: format!("a code was texted to {}", body.0.phone),
            }))),
            Err(err) if err.is_permanent() => Err(ApiError::unprocessable(
                "this number cannot receive the code",
                vec![FieldError::new("phone", err.to_string())],
            )),
            Err(err) => {
                tracing::warn!(error = %err, "the SMS carrier did not take a phone code");
                Err(ApiError::unavailable(
                    "the text could not be sent just now; ask again shortly",
                ))
            }
        }
    }

    /// Confirm a phone number: type back the code
    #[oai(path = "/v1/me/phone/confirmation", method = "post")]
    async fn confirm_phone(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        body: JsonBody<PhoneCodeBody>,
    ) -> Result<Json<PreferencesView>, ApiError> {
        let user = caller.0.user;
        match state
            .storage
            .finish_phone_check(user, &code_hash(user, &body.0.code), CODE_TTL_SECONDS, CODE_ATTEMPTS)
            .await?
        {
            PhoneCheck::Confirmed => Ok(Json(state.storage.preferences(user).await?.into())),
            PhoneCheck::Wrong => Err(ApiError::unprocessable(
                "the code is wrong",
                vec![FieldError::new("code", "does not match the code sent")],
            )),
            PhoneCheck::Spent => Err(ApiError::conflict(
                "no code is waiting for this account, it lapsed, or it was tried too often; ask for another",
            )),
        }
    }
}
