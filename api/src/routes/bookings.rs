//! Buying seats: holds, orders, tickets and cancellations for customers;
//! order lookup, cancellation and seat-locking control for staff.
//!
//! A customer proves ownership of a hold, and of the order it becomes, with
//! the booking token returned when the hold is created (header
//! `Booking-Token`). Orders take an `Idempotency-Key` header: a retried
//! request gets the first one's answer, and is never charged twice.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem::Request;
use poem_openapi::auth::ApiKey;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, SecurityScheme};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::{AdminOnly, SignedIn, Staff};
use crate::body::{JsonBody, Validate};
use crate::cache::Entry;
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;
use marquee_booking::room::Holder;
use marquee_booking::{Access, Client, OrderRequest, Render};
use marquee_storage::holds::{Hold as StoredHold, LockMode, LockPolicy, SeatChoice};
use marquee_storage::orders::{Cancelled, Order as StoredOrder};
use marquee_storage::seating::BestRequest;

#[derive(Debug)]
pub struct BookingsApi;

/// The booking token returned when a hold is created, sent as the
/// `Booking-Token` header to see, extend, release or pay for the hold and
/// to see or cancel the order it becomes.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "api_key", key_name = "Booking-Token", key_in = "header")]
pub(crate) struct BookingToken(ApiKey);

/// Who may act on a hold or order: its signed-in owner, or whoever has
/// its booking token.
#[derive(Debug, SecurityScheme)]
pub(crate) enum Owner {
    Account(SignedIn),
    Token(BookingToken),
}

impl Owner {
    /// The booking token this caller proves: a signed-in customer's holds
    /// carry a token derived from the account, which only the service can
    /// compute.
    fn token(&self, state: &AppState) -> String {
        match self {
            Self::Account(account) => state.auth.gatekeeper.owner_token(account.0.user),
            Self::Token(token) => token.0.key.clone(),
        }
    }
}

/// Who is buying: a signed-in customer, or a guest.
#[derive(Debug, SecurityScheme)]
pub(crate) enum Buyer {
    Account(SignedIn),
    #[oai(fallback)]
    Guest,
}

/// Who is asking: the network address the request came from, and the
/// device id it sent, which must be one this service handed out.
pub(crate) fn client_of(
    state: &AppState,
    req: &Request,
    device: Option<&str>,
) -> Result<Client, ApiError> {
    if let Some(device) = device {
        if !state.booking.clients().is_device(device) {
            return Err(ApiError::unprocessable(
                "the Device-Id header is not a device id this service handed out",
                vec![FieldError::new(
                    "Device-Id",
                    "get one from POST /v1/devices and keep it",
                )],
            ));
        }
    }
    Ok(Client {
        address: crate::auth::client_ip(req),
        device: device.map(str::to_owned),
    })
}

/// "The best N seats together".
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct BestAvailable {
    #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
    count: u32,
    /// How many of the seats are wheelchair spaces; each comes with the
    /// companion seat beside it, counted in `count`.
    #[oai(default, validator(minimum(value = "0"), maximum(value = "50")))]
    #[serde(default)]
    wheelchair_spaces: u32,
}

/// Seats to hold: either `seats` by id or `best_available`.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Where a guest's confirmation goes, and what the per-customer seat
    /// limit counts by; required without an account. Signed-in customers
    /// leave it out: their account is both.
    #[oai(validator(min_length = 3, max_length = 254))]
    #[serde(default, deserialize_with = "super::present")]
    email: Option<String>,
    /// Seat ids such as `F-12`.
    #[oai(validator(max_items = 50))]
    #[serde(default, deserialize_with = "super::present")]
    seats: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::present")]
    best_available: Option<BestAvailable>,
}

impl Validate for HoldBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match (&self.seats, &self.best_available) {
            (Some(_), Some(_)) | (None, None) => errors.push(FieldError::new(
                "seats",
                "give either `seats` or `best_available`, not both or neither",
            )),
            (_, Some(best)) if best.wheelchair_spaces * 2 > best.count => {
                errors.push(FieldError::new(
                    "best_available.wheelchair_spaces",
                    "each wheelchair space needs its companion seat within `count`",
                ));
            }
            _ => {}
        }
        if self.email.as_deref().is_some_and(|email| !email_ok(email)) {
            errors.push(FieldError::new(
                "email",
                "an email address such as ada@example.com",
            ));
        }
        if let Some(seats) = &self.seats {
            for (index, seat) in seats.iter().enumerate() {
                if !seat_id_ok(seat) {
                    errors.push(FieldError::new(
                        format!("seats[{index}]"),
                        "a seat id is a row label and a number, such as F-12",
                    ));
                }
            }
        }
        errors
    }
}

/// The shape of an address, checked here rather than by a schema pattern:
/// holds are the hottest write, and schema patterns are compiled anew on
/// every check.
fn email_ok(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    (1..=64).contains(&local.len())
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
        && !domain.contains('@')
}

fn seat_id_ok(seat: &str) -> bool {
    seat.split_once('-').is_some_and(|(row, number)| {
        [row, number].iter().all(|part| {
            (1..=4).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum HoldStatus {
    /// Seats are held; the hold can be paid for.
    Active,
    /// A payment for it is under way.
    Ordering,
    /// It became an order.
    Ordered,
    Released,
    Expired,
}

#[derive(Debug, Clone, Object)]
pub struct HeldSeat {
    id: String,
    kind: super::theaters::Kind,
    price_minor: i64,
}

/// Seats held for one customer until `expires_at`.
#[derive(Debug, Clone, Object)]
pub struct Hold {
    id: Uuid,
    showtime_id: Uuid,
    status: HoldStatus,
    seats: Vec<HeldSeat>,
    amount_minor: i64,
    currency: String,
    expires_at: DateTime<Utc>,
    /// The one extension allowed has been used.
    extended: bool,
}

impl From<StoredHold> for Hold {
    fn from(hold: StoredHold) -> Self {
        let now = Utc::now();
        let status = match hold.status.as_str() {
            "active" if hold.expires_at <= now => HoldStatus::Expired,
            "active" => HoldStatus::Active,
            "ordering" => HoldStatus::Ordering,
            "ordered" => HoldStatus::Ordered,
            "released" => HoldStatus::Released,
            _ => HoldStatus::Expired,
        };
        Self {
            id: hold.id,
            showtime_id: hold.showtime_id,
            status,
            seats: hold
                .seats
                .into_iter()
                .map(|seat| HeldSeat {
                    id: seat.seat,
                    kind: seat.kind.into(),
                    price_minor: seat.price,
                })
                .collect(),
            amount_minor: hold.amount,
            currency: hold.currency,
            expires_at: hold.expires_at,
            extended: hold.extended,
        }
    }
}

/// A device id for the `Device-Id` header.
#[derive(Debug, Clone, Object)]
pub struct DeviceCreated {
    device_id: String,
}

#[derive(Debug, ApiResponse)]
pub enum DeviceCreatedResponse {
    #[oai(status = 201)]
    Created(Json<DeviceCreated>),
}

/// A new hold and the token that proves it is yours.
#[derive(Debug, Clone, Object)]
pub struct HoldCreated {
    hold: Hold,
    /// Send as the `Booking-Token` header for this hold and its order. It
    /// is shown once and stored only as a hash. Absent for signed-in
    /// customers, whose access token does the same.
    #[oai(skip_serializing_if_is_none)]
    booking_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum PaymentMethod {
    Card,
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    method: PaymentMethod,
    /// The token the payment form returned, such as `tok_visa`. Card
    /// numbers are refused and never stored.
    #[oai(validator(min_length = 1, max_length = 200))]
    token: String,
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    hold_id: Uuid,
    payment: PaymentBody,
}

impl Validate for OrderBody {
    fn validate(&self) -> Vec<FieldError> {
        if self.payment.token.trim().is_empty() {
            return vec![FieldError::new("payment.token", "must not be blank")];
        }
        Vec::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum TicketStatus {
    Valid,
    Cancelled,
}

/// One seat's ticket. `code` is the QR payload, signed by the server.
#[derive(Debug, Clone, Object)]
pub struct Ticket {
    id: Uuid,
    seat: String,
    price_minor: i64,
    status: TicketStatus,
    code: String,
    refunded_minor: i64,
}

#[derive(Debug, Clone, Object)]
pub struct Payment {
    method: String,
    provider: String,
    /// The provider's reference for the payment.
    #[oai(skip_serializing_if_is_none)]
    reference: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct Order {
    id: Uuid,
    hold_id: Uuid,
    showtime_id: Uuid,
    status: OrderStatus,
    seats: Vec<String>,
    amount_minor: i64,
    currency: String,
    refunded_minor: i64,
    payment: Payment,
    tickets: Vec<Ticket>,
    created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    confirmed_at: Option<DateTime<Utc>>,
    /// Why the order failed.
    #[oai(skip_serializing_if_is_none)]
    failure: Option<String>,
}

impl From<&StoredOrder> for Order {
    fn from(order: &StoredOrder) -> Self {
        Self {
            id: order.id,
            hold_id: order.hold_id,
            showtime_id: order.showtime_id,
            status: match order.status.as_str() {
                "pending" => OrderStatus::Pending,
                "confirmed" => OrderStatus::Confirmed,
                "cancelled" => OrderStatus::Cancelled,
                _ => OrderStatus::Failed,
            },
            seats: order.seats.clone(),
            amount_minor: order.amount,
            currency: order.currency.clone(),
            refunded_minor: order.refunded,
            payment: Payment {
                method: order.payment_method.clone(),
                provider: order.provider.clone(),
                reference: order.payment_ref.clone(),
            },
            tickets: order
                .tickets
                .iter()
                .map(|ticket| Ticket {
                    id: ticket.id,
                    seat: ticket.seat.clone(),
                    price_minor: ticket.price,
                    status: if ticket.status == "valid" {
                        TicketStatus::Valid
                    } else {
                        TicketStatus::Cancelled
                    },
                    code: ticket.code.clone(),
                    refunded_minor: ticket.refunded,
                })
                .collect(),
            created_at: order.created_at,
            confirmed_at: order.confirmed_at,
            failure: order.failure.clone(),
        }
    }
}

/// Seats to cancel; all the order's valid tickets when `seats` is absent.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CancellationBody {
    #[oai(validator(
        min_items = 1,
        max_items = 50,
        pattern = r"^[A-Za-z0-9]{1,4}-[A-Za-z0-9]{1,4}$"
    ))]
    #[serde(default, deserialize_with = "super::present")]
    seats: Option<Vec<String>>,
}

impl Validate for CancellationBody {
    fn validate(&self) -> Vec<FieldError> {
        seat_errors(self.seats.as_deref())
    }
}

fn seat_errors(seats: Option<&[String]>) -> Vec<FieldError> {
    seats
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, seat)| !seat_id_ok(seat))
        .map(|(index, _)| {
            FieldError::new(
                format!("seats[{index}]"),
                "a seat id is a row label and a number, such as F-12",
            )
        })
        .collect()
}

/// A staff cancellation: any order, any time.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct AdminCancellationBody {
    #[oai(validator(
        min_items = 1,
        max_items = 50,
        pattern = r"^[A-Za-z0-9]{1,4}-[A-Za-z0-9]{1,4}$"
    ))]
    #[serde(default, deserialize_with = "super::present")]
    seats: Option<Vec<String>>,
    /// Share of the price refunded; 100 when absent.
    #[oai(validator(minimum(value = "0"), maximum(value = "100")))]
    #[serde(default, deserialize_with = "super::present")]
    refund_percent: Option<u32>,
}

impl Validate for AdminCancellationBody {
    fn validate(&self) -> Vec<FieldError> {
        seat_errors(self.seats.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Object)]
pub struct RefundView {
    amount_minor: i64,
    /// `pending` while the provider has not confirmed it; it is retried
    /// until it does.
    status: RefundStatus,
}

#[derive(Debug, Clone, Object)]
pub struct CancellationView {
    order: Order,
    cancelled_seats: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    refund: Option<RefundView>,
}

impl From<Cancelled> for CancellationView {
    fn from(cancelled: Cancelled) -> Self {
        Self {
            order: Order::from(&cancelled.order),
            cancelled_seats: cancelled.seats,
            refund: cancelled.refund.map(|refund| RefundView {
                amount_minor: refund.amount,
                status: match refund.status.as_str() {
                    "succeeded" => RefundStatus::Succeeded,
                    "failed" => RefundStatus::Failed,
                    _ => RefundStatus::Pending,
                },
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Follow contention.
    Auto,
    Optimistic,
    Pessimistic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Mode {
    Optimistic,
    Pessimistic,
}

impl From<LockMode> for Mode {
    fn from(mode: LockMode) -> Self {
        match mode {
            LockMode::Optimistic => Mode::Optimistic,
            LockMode::Pessimistic => Mode::Pessimistic,
        }
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct LockingBody {
    policy: Policy,
}

impl Validate for LockingBody {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

/// How a showtime's seats are claimed, and why.
#[derive(Debug, Clone, Object)]
pub struct Locking {
    showtime_id: Uuid,
    policy: Policy,
    /// The mode claims use now.
    mode: Mode,
    /// The mode `auto` has settled on from contention, and since when.
    auto_mode: Mode,
    auto_mode_since: DateTime<Utc>,
    /// Times `auto` has switched this showtime.
    switches: i32,
    /// Configured peak hours are on: `auto` showtimes are pessimistic.
    peak_hours: bool,
    /// This instance's recent claims of the showtime, and how many met
    /// contention.
    recent_claims: u32,
    recent_conflicts: u32,
    /// The latest switches of `auto`, newest first.
    switch_log: Vec<LockSwitchView>,
}

/// One switch of a showtime's locking mode.
#[derive(Debug, Clone, Object)]
pub struct LockSwitchView {
    mode: Mode,
    /// Share of the deciding instance's recent claims that met contention.
    conflict_rate: f64,
    at: DateTime<Utc>,
}

#[derive(Debug, ApiResponse)]
enum HoldCreatedResponse {
    /// Held; `Location` is the hold's URL.
    #[oai(status = 201)]
    Created(Json<HoldCreated>, #[oai(header = "Location")] String),
}

#[derive(Debug, ApiResponse)]
enum Released {
    /// Released: its seats are back on sale.
    #[oai(status = 204)]
    Released,
}

#[derive(Debug, ApiResponse)]
enum OrderPlaced {
    /// Paid and confirmed, with tickets. `Idempotent-Replayed: true` marks
    /// the stored answer to an earlier request with the same key.
    #[oai(status = 201)]
    Created(
        Json<Order>,
        #[oai(header = "Location")] String,
        #[oai(header = "Idempotent-Replayed")] String,
    ),
}

/// Problem bodies built the same way as every other error, for storing
/// with an idempotency key.
struct Renderer;

impl Render for Renderer {
    fn order(&self, order: &StoredOrder) -> serde_json::Value {
        Order::from(order).to_json().unwrap_or_default()
    }

    fn problem(&self, status: u16, slug: &str, detail: &str) -> serde_json::Value {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT);
        Problem::new(status, slug, detail)
            .to_json()
            .unwrap_or_default()
    }
}

pub(crate) fn renderer() -> &'static dyn Render {
    &Renderer
}

pub(crate) async fn seats_changed(state: &AppState, showtime: Uuid) {
    state
        .cache
        .invalidate(&[Entry::Showtime(showtime), Entry::SeatMap(showtime)])
        .await;
}

fn problem_from(body: serde_json::Value) -> Json<Box<Problem>> {
    Json(Box::new(
        Problem::parse_from_json(Some(body)).unwrap_or_else(|_| {
            Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "the stored answer to this idempotency key could not be read",
            )
        }),
    ))
}

fn locking_view(state: &AppState, showtime: Uuid, view: marquee_booking::LockingView) -> Locking {
    let marquee_booking::LockingView {
        state: stored,
        switches,
        observed,
    } = view;
    let peak = state.booking.is_peak(Utc::now());
    let (policy, mode) = match stored.policy {
        LockPolicy::Auto => (
            Policy::Auto,
            if peak {
                Mode::Pessimistic
            } else {
                stored.mode.into()
            },
        ),
        LockPolicy::Fixed(LockMode::Optimistic) => (Policy::Optimistic, Mode::Optimistic),
        LockPolicy::Fixed(LockMode::Pessimistic) => (Policy::Pessimistic, Mode::Pessimistic),
    };
    Locking {
        showtime_id: showtime,
        policy,
        mode,
        auto_mode: stored.mode.into(),
        auto_mode_since: stored.since,
        switches: stored.switches,
        peak_hours: peak,
        recent_claims: u32::try_from(observed.claims).unwrap_or(u32::MAX),
        recent_conflicts: u32::try_from(observed.contended).unwrap_or(u32::MAX),
        switch_log: switches
            .into_iter()
            .map(|switch| LockSwitchView {
                mode: switch.mode.into(),
                conflict_rate: switch.conflict_rate,
                at: switch.at,
            })
            .collect(),
    }
}

fn valid_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters, such as a UUID",
        ));
    }
    Ok(())
}

#[OpenApi]
impl BookingsApi {
    /// Hold seats
    ///
    /// Holds seats for `booking.hold_ttl_seconds` (10 minutes by default):
    /// chosen ones, or the best N together in one row, never leaving a
    /// single seat stranded and never splitting a wheelchair space from
    /// its companion seat. The response's `booking_token` is needed for
    /// everything that follows.
    #[oai(
        path = "/v1/showtimes/:id/holds",
        method = "post",
        tag = "ApiTags::Booking"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        buyer: Buyer,
        id: Path<Uuid>,
        /// A device id from `POST /v1/devices`, kept by the client: holds
        /// from one device count together.
        #[oai(name = "Device-Id")]
        device: Header<Option<String>>,
        /// While the showtime's waiting room is on: the pass of your place
        /// in line (`POST /v1/showtimes/{id}/queue`).
        #[oai(name = "Queue-Pass")]
        pass: Header<Option<String>>,
        body: JsonBody<HoldBody>,
    ) -> Result<HoldCreatedResponse, ApiError> {
        let body = body.0;
        let client = client_of(&state, req, device.0.as_deref())?;
        let holder = match &buyer {
            Buyer::Account(account) => Some(Holder::Account(account.0.user)),
            Buyer::Guest => client.device.clone().map(Holder::Device),
        };
        let room = state
            .booking
            .room_entry(id.0, holder.as_ref(), pass.0.as_deref())?;
        let (customer, owner_token, account) = match (&buyer, body.email) {
            (Buyer::Account(account), _) => (
                marquee_storage::accounts::customer_of(account.0.user),
                Some(state.auth.gatekeeper.owner_token(account.0.user)),
                Some(account.0.user),
            ),
            (Buyer::Guest, Some(email)) => (email, None, None),
            (Buyer::Guest, None) => {
                return Err(ApiError::unprocessable(
                    "guests give an email address; signed-in customers send their access token",
                    vec![FieldError::new("email", "required without an account")],
                ))
            }
        };
        let choice = match (body.seats, body.best_available) {
            (Some(seats), _) => SeatChoice::Seats(seats),
            (None, Some(best)) => SeatChoice::Best(BestRequest {
                count: best.count as usize,
                wheelchair: best.wheelchair_spaces as usize,
            }),
            (None, None) => {
                return Err(ApiError::unprocessable(
                    "give either `seats` or `best_available`",
                    vec![FieldError::new("seats", "required without best_available")],
                ))
            }
        };
        let (hold, token) = state
            .booking
            .hold(id.0, &customer, &choice, owner_token, &client, room)
            .await?;
        seats_changed(&state, id.0).await;
        if let Some(user) = account {
            state.storage.index_booking(user, hold.id, id.0).await?;
        }
        let location = format!("/v1/holds/{}", hold.id);
        Ok(HoldCreatedResponse::Created(
            Json(HoldCreated {
                hold: hold.into(),
                booking_token: account.is_none().then_some(token),
            }),
            location,
        ))
    }

    /// Get a device id
    ///
    /// An id for this device, to send as the `Device-Id` header on holds
    /// and waiting-room places and to keep (reloading the page, or a
    /// second tab, sends the same one). Holds from one device count
    /// together against the limits on unpaid seats.
    #[oai(path = "/v1/devices", method = "post", tag = "ApiTags::Booking")]
    async fn device(&self, state: Data<&Arc<AppState>>) -> Result<DeviceCreatedResponse, ApiError> {
        let device_id = state.booking.clients().new_device().ok_or_else(|| {
            tracing::error!("the system random source failed");
            ApiError::internal()
        })?;
        Ok(DeviceCreatedResponse::Created(Json(DeviceCreated {
            device_id,
        })))
    }

    /// A hold
    #[oai(path = "/v1/holds/:id", method = "get", tag = "ApiTags::Booking")]
    async fn get_hold(
        &self,
        state: Data<&Arc<AppState>>,
        owner: Owner,
        id: Path<Uuid>,
    ) -> Result<Json<Hold>, ApiError> {
        Ok(Json(
            state
                .booking
                .hold_of(id.0, &owner.token(&state))
                .await?
                .into(),
        ))
    }

    /// Extend a hold
    ///
    /// Adds `booking.hold_extension_seconds` to a live hold, once.
    #[oai(
        path = "/v1/holds/:id/extension",
        method = "post",
        tag = "ApiTags::Booking"
    )]
    async fn extend_hold(
        &self,
        state: Data<&Arc<AppState>>,
        owner: Owner,
        id: Path<Uuid>,
    ) -> Result<Json<Hold>, ApiError> {
        Ok(Json(
            state
                .booking
                .extend_hold(id.0, &owner.token(&state))
                .await?
                .into(),
        ))
    }

    /// Release a hold
    ///
    /// Its seats go back on sale at once. Releasing a hold that already
    /// lapsed or was released succeeds and changes nothing.
    #[oai(path = "/v1/holds/:id", method = "delete", tag = "ApiTags::Booking")]
    async fn release_hold(
        &self,
        state: Data<&Arc<AppState>>,
        owner: Owner,
        id: Path<Uuid>,
    ) -> Result<Released, ApiError> {
        let showtime = state
            .booking
            .release_hold(id.0, &owner.token(&state))
            .await?;
        seats_changed(&state, showtime).await;
        Ok(Released::Released)
    }

    /// Pay for a hold
    ///
    /// Authorizes and captures the payment, then sells the seats, confirms
    /// the order and issues signed tickets in one transaction. Send a fresh
    /// `Idempotency-Key` (a UUID) per purchase and the same one on retries:
    /// a retry gets the first answer (marked `Idempotent-Replayed: true`),
    /// the key with a different body is refused (422), and a retry while
    /// the first is still running gets 409. A declined card answers 402 and
    /// keeps the hold, so another card can be tried with a new key.
    #[oai(path = "/v1/orders", method = "post", tag = "ApiTags::Booking")]
    async fn place_order(
        &self,
        state: Data<&Arc<AppState>>,
        owner: Owner,
        #[oai(
            name = "Idempotency-Key",
            validator(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")
        )]
        key: Header<String>,
        body: JsonBody<OrderBody>,
    ) -> Result<OrderPlaced, ApiError> {
        valid_key(&key.0)?;
        let request = OrderRequest {
            hold_id: body.0.hold_id,
            method: match body.0.payment.method {
                PaymentMethod::Card => "card".to_owned(),
            },
            token: body.0.payment.token,
        };
        if let Owner::Account(account) = &owner {
            // The index entry comes first, so no order of an account is
            // missing from its bookings.
            let hold = state
                .booking
                .hold_of(request.hold_id, &owner.token(&state))
                .await?;
            state
                .storage
                .index_booking(account.0.user, hold.id, hold.showtime_id)
                .await?;
        }
        let reply = state
            .booking
            .place_order(&key.0, &request, &owner.token(&state), renderer())
            .await?;
        if !reply.replayed {
            if let Some(showtime) = reply
                .body
                .get("showtime_id")
                .and_then(|id| id.as_str())
                .and_then(|id| id.parse::<Uuid>().ok())
            {
                seats_changed(&state, showtime).await;
            }
        }
        match reply.status {
            201 => {
                let order = Order::parse_from_json(Some(reply.body)).map_err(|err| {
                    tracing::error!(error = ?err, "a stored order response does not parse");
                    ApiError::internal()
                })?;
                let location = format!("/v1/orders/{}", order.id);
                Ok(OrderPlaced::Created(
                    Json(order),
                    location,
                    reply.replayed.to_string(),
                ))
            }
            402 => Err(ApiError::PaymentRequired(problem_from(reply.body))),
            422 => Err(ApiError::Unprocessable(problem_from(reply.body))),
            _ => Err(ApiError::Conflict(problem_from(reply.body))),
        }
    }

    /// An order
    #[oai(path = "/v1/orders/:id", method = "get", tag = "ApiTags::Booking")]
    async fn get_order(
        &self,
        state: Data<&Arc<AppState>>,
        owner: Owner,
        id: Path<Uuid>,
    ) -> Result<Json<Order>, ApiError> {
        let order = state
            .booking
            .order(id.0, Access::Token(&owner.token(&state)))
            .await?;
        Ok(Json(Order::from(&order)))
    }

    /// Cancel an order
    ///
    /// Cancels all of an order's seats, or some, until
    /// `booking.cancellation.cutoff_minutes` before the show. The refund
    /// follows the policy tiers (by default: 100% until 2 hours before,
    /// 50% until the cutoff) and goes back through the payment provider;
    /// the seats return to sale.
    #[oai(
        path = "/v1/orders/:id/cancellation",
        method = "post",
        tag = "ApiTags::Booking"
    )]
    async fn cancel_order(
        &self,
        state: Data<&Arc<AppState>>,
        owner: Owner,
        id: Path<Uuid>,
        body: JsonBody<CancellationBody>,
    ) -> Result<Json<CancellationView>, ApiError> {
        let cancelled = state
            .booking
            .cancel(
                id.0,
                Access::Token(&owner.token(&state)),
                body.0.seats.as_deref(),
                None,
            )
            .await?;
        seats_changed(&state, cancelled.order.showtime_id).await;
        Ok(Json(cancelled.into()))
    }

    /// An order, for staff
    #[oai(path = "/v1/admin/orders/:id", method = "get", tag = "ApiTags::Admin")]
    async fn admin_order(
        &self,
        state: Data<&Arc<AppState>>,
        _staff: Staff,
        id: Path<Uuid>,
    ) -> Result<Json<Order>, ApiError> {
        Ok(Json(Order::from(
            &state.booking.order(id.0, Access::Admin).await?,
        )))
    }

    /// Cancel any order
    ///
    /// Staff may cancel any confirmed order, at any time, refunding
    /// `refund_percent` (100 by default).
    #[oai(
        path = "/v1/admin/orders/:id/cancellation",
        method = "post",
        tag = "ApiTags::Admin"
    )]
    async fn admin_cancel(
        &self,
        state: Data<&Arc<AppState>>,
        _staff: Staff,
        id: Path<Uuid>,
        body: JsonBody<AdminCancellationBody>,
    ) -> Result<Json<CancellationView>, ApiError> {
        let cancelled = state
            .booking
            .cancel(
                id.0,
                Access::Admin,
                body.0.seats.as_deref(),
                body.0.refund_percent,
            )
            .await?;
        seats_changed(&state, cancelled.order.showtime_id).await;
        Ok(Json(cancelled.into()))
    }

    /// A showtime's seat locking
    ///
    /// The policy, the mode in use, when `auto` last switched, and the
    /// contention this instance has seen.
    #[oai(
        path = "/v1/admin/showtimes/:id/locking",
        method = "get",
        tag = "ApiTags::Admin"
    )]
    async fn locking(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
    ) -> Result<Json<Locking>, ApiError> {
        let view = state.booking.locking(id.0).await?;
        Ok(Json(locking_view(&state, id.0, view)))
    }

    /// Set a showtime's seat locking
    ///
    /// `auto` follows contention; `optimistic` or `pessimistic` pin the
    /// mode, for example ahead of a known release-night rush.
    #[oai(
        path = "/v1/admin/showtimes/:id/locking",
        method = "put",
        tag = "ApiTags::Admin"
    )]
    async fn set_locking(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        body: JsonBody<LockingBody>,
    ) -> Result<Json<Locking>, ApiError> {
        let policy = match body.0.policy {
            Policy::Auto => LockPolicy::Auto,
            Policy::Optimistic => LockPolicy::Fixed(LockMode::Optimistic),
            Policy::Pessimistic => LockPolicy::Fixed(LockMode::Pessimistic),
        };
        let view = state.booking.set_locking(id.0, policy).await?;
        Ok(Json(locking_view(&state, id.0, view)))
    }
}
