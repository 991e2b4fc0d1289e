//! Hot releases: a showtime's virtual waiting room and its line, and the
//! waiting list of a sold-out showtime.
//!
//! While a room is on, `POST /v1/showtimes/{id}/holds` needs the
//! `Queue-Pass` header: join the line, watch the place (long-poll or SSE)
//! until it is admitted, then hold with the pass it carries. Guests join
//! with the `Device-Id` header from `POST /v1/devices`, and keep it, so a
//! reload or a second tab finds the same place.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::bookings::{client_of, Buyer};
use super::ApiTags;
use crate::auth::{AdminOnly, SignedIn, Staff};
use crate::body::{JsonBody, Validate};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use marquee_booking::room::{Holder, PlaceView};
use marquee_storage::queue::{Room, RoomMode};
use marquee_storage::waitlist::Entry;

#[derive(Debug)]
pub struct QueueApi;

/// Longest long-poll.
const MAX_WAIT_SECONDS: u64 = 30;
/// How often a stream looks at its place.
const STREAM_EVERY: Duration = Duration::from_secs(1);

/// Who turns a room on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename = "WaitingRoomMode", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Demand turns it on; it stays on until sold out or turned off.
    Auto,
    /// On now.
    On,
    /// Off, and demand does not turn it on.
    Off,
}

impl From<Mode> for RoomMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Auto => Self::Auto,
            Mode::On => Self::On,
            Mode::Off => Self::Off,
        }
    }
}

impl From<RoomMode> for Mode {
    fn from(mode: RoomMode) -> Self {
        match mode {
            RoomMode::Auto => Self::Auto,
            RoomMode::On => Self::On,
            RoomMode::Off => Self::Off,
        }
    }
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct RoomBody {
    mode: Mode,
}

impl Validate for RoomBody {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

/// A showtime's waiting room.
#[derive(Debug, Clone, Object)]
pub struct RoomView {
    showtime_id: Uuid,
    mode: Mode,
    /// While on, holds need a pass from the line.
    active: bool,
    /// Why it is on: `staff` or `demand`.
    #[oai(skip_serializing_if_is_none)]
    reason: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    active_since: Option<DateTime<Utc>>,
    /// People waiting in line.
    waiting: i64,
    /// People let out and choosing seats.
    admitted: i64,
    #[oai(skip_serializing_if_is_none)]
    sold_out_at: Option<DateTime<Utc>>,
}

impl From<Room> for RoomView {
    fn from(room: Room) -> Self {
        Self {
            showtime_id: room.showtime_id,
            mode: room.mode.into(),
            active: room.active,
            reason: room.reason,
            active_since: room.active_since,
            waiting: room.waiting,
            admitted: room.admitted,
            sold_out_at: room.sold_out_at,
        }
    }
}

/// Where a place in line stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum PlaceState {
    /// In line: `ahead` people are before it.
    Waiting,
    /// Let out: hold seats with `pass` before `pass_expires_at`.
    Admitted,
    /// Its pass went to a hold.
    Used,
    /// Its pass lapsed unused.
    Expired,
    Left,
    /// The showtime sold out: join its waiting list (`waitlist`).
    SoldOut,
}

/// A place in a waiting room's line.
#[derive(Debug, Clone, Object)]
pub struct PlaceResponse {
    id: Uuid,
    showtime_id: Uuid,
    /// Arrival order: 1 for the first to join.
    number: i64,
    state: PlaceState,
    /// People still waiting ahead (while waiting).
    #[oai(skip_serializing_if_is_none)]
    ahead: Option<u64>,
    joined_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    admitted_at: Option<DateTime<Utc>>,
    /// Send as the `Queue-Pass` header of `POST /v1/showtimes/{id}/holds`.
    #[oai(skip_serializing_if_is_none)]
    pass: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pass_expires_at: Option<DateTime<Utc>>,
    /// Where to join the waiting list, once sold out.
    #[oai(skip_serializing_if_is_none)]
    waitlist: Option<String>,
}

impl From<PlaceView> for PlaceResponse {
    fn from(view: PlaceView) -> Self {
        let place = view.place;
        let state = match place.state.as_str() {
            "waiting" => PlaceState::Waiting,
            "admitted" if view.pass.is_some() => PlaceState::Admitted,
            "admitted" | "expired" => PlaceState::Expired,
            "used" => PlaceState::Used,
            "sold_out" => PlaceState::SoldOut,
            _ => PlaceState::Left,
        };
        Self {
            id: place.id,
            showtime_id: place.showtime_id,
            number: place.number,
            state,
            ahead: view
                .ahead
                .map(|ahead| u64::try_from(ahead).unwrap_or(u64::MAX)),
            joined_at: place.joined_at,
            admitted_at: place.admitted_at,
            pass_expires_at: view.pass.as_ref().and(place.pass_expires_at),
            pass: view.pass,
            waitlist: (state == PlaceState::SoldOut)
                .then(|| format!("/v1/showtimes/{}/waitlist", place.showtime_id)),
        }
    }
}

/// A party for the waiting list.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct WaitlistBody {
    /// Seats wanted together, wheelchair spaces and their companion seats
    /// included.
    #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
    party_size: u32,
    #[oai(default, validator(minimum(value = "0"), maximum(value = "25")))]
    #[serde(default)]
    wheelchair_spaces: u32,
}

impl Validate for WaitlistBody {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

/// Where a party on the waiting list stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum EntryState {
    Waiting,
    /// Seats are held for the party: `hold_id`, until `offer_expires_at`.
    Offered,
    /// The party paid for its offer.
    Fulfilled,
    Declined,
    /// The offer lapsed unpaid.
    Expired,
    Left,
}

/// A party on a showtime's waiting list.
#[derive(Debug, Clone, Object)]
pub struct WaitlistEntry {
    id: Uuid,
    showtime_id: Uuid,
    party_size: i32,
    wheelchair_spaces: i32,
    state: EntryState,
    /// Parties still on the list that joined earlier.
    ahead: i64,
    joined_at: DateTime<Utc>,
    /// The hold offered to the party: pay for it like any hold.
    #[oai(skip_serializing_if_is_none)]
    hold_id: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    offer_expires_at: Option<DateTime<Utc>>,
    offers: i32,
}

/// A party, for staff: also whose it is.
#[derive(Debug, Clone, Object)]
pub struct StaffWaitlistEntry {
    #[oai(flatten)]
    entry: WaitlistEntry,
    user_id: Uuid,
}

#[derive(Debug, Clone, Object)]
pub struct Waitlist {
    entries: Vec<StaffWaitlistEntry>,
}

impl From<Entry> for WaitlistEntry {
    fn from(entry: Entry) -> Self {
        let state = match entry.state.as_str() {
            "waiting" => EntryState::Waiting,
            "offered" => EntryState::Offered,
            "fulfilled" => EntryState::Fulfilled,
            "declined" => EntryState::Declined,
            "expired" => EntryState::Expired,
            _ => EntryState::Left,
        };
        Self {
            id: entry.id,
            showtime_id: entry.showtime_id,
            party_size: entry.party_size,
            wheelchair_spaces: entry.wheelchair_spaces,
            state,
            ahead: entry.ahead,
            joined_at: entry.joined_at,
            hold_id: entry.hold_id,
            offer_expires_at: entry.offer_expires_at,
            offers: entry.offers,
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum Left {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// The holder of a place: a signed-in customer, or a guest's device.
fn holder(
    state: &AppState,
    req: &Request,
    buyer: &Buyer,
    device: Option<&str>,
) -> Result<Holder, ApiError> {
    match buyer {
        Buyer::Account(account) => Ok(Holder::Account(account.0.user)),
        Buyer::Guest => {
            let client = client_of(state, req, device)?;
            client.device.map(Holder::Device).ok_or_else(|| {
                ApiError::unprocessable(
                    "guests send the Device-Id header, from POST /v1/devices, to hold a place",
                    vec![FieldError::new("Device-Id", "required without an account")],
                )
            })
        }
    }
}

fn place_in(showtime: Uuid, view: PlaceView) -> Result<PlaceView, ApiError> {
    if view.place.showtime_id == showtime {
        Ok(view)
    } else {
        Err(ApiError::not_found(format!(
            "place {} is not in this showtime's line",
            view.place.id
        )))
    }
}

#[OpenApi]
impl QueueApi {
    /// A showtime's waiting room
    ///
    /// Whether holds need a pass from the line, and how long the line is.
    #[oai(
        path = "/v1/showtimes/:id/waiting-room",
        method = "get",
        tag = "ApiTags::Showtimes"
    )]
    async fn room(
        &self,
        state: Data<&Arc<AppState>>,
        id: Path<Uuid>,
    ) -> Result<Json<RoomView>, ApiError> {
        let room = state
            .booking
            .room(id.0)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("showtime {} does not exist", id.0)))?;
        Ok(Json(room.into()))
    }

    /// Turn a waiting room on or off
    ///
    /// `on` turns it on now; `off` turns it off, and demand does not turn
    /// it on again; `auto` lets demand turn it on.
    #[oai(
        path = "/v1/admin/showtimes/:id/waiting-room",
        method = "put",
        tag = "ApiTags::Admin"
    )]
    async fn set_room(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        body: JsonBody<RoomBody>,
    ) -> Result<Json<RoomView>, ApiError> {
        let room = state.booking.set_room(id.0, body.0.mode.into()).await?;
        crate::routes::bookings::seats_changed(&state, id.0).await;
        Ok(Json(room.into()))
    }

    /// Join the line
    ///
    /// A place in the showtime's line while its waiting room is on: a new
    /// one, or the one this account or device already has.
    #[oai(
        path = "/v1/showtimes/:id/queue",
        method = "post",
        tag = "ApiTags::Booking"
    )]
    async fn join(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        buyer: Buyer,
        id: Path<Uuid>,
        /// Required for guests: a device id from `POST /v1/devices`.
        #[oai(name = "Device-Id")]
        device: Header<Option<String>>,
    ) -> Result<Json<PlaceResponse>, ApiError> {
        let holder = holder(&state, req, &buyer, device.0.as_deref())?;
        let client = client_of(&state, req, device.0.as_deref())?;
        let view = state
            .booking
            .join_queue(id.0, &holder, &client)
            .await?
            .ok_or_else(|| {
                ApiError::conflict_of(
                    "no-waiting-room",
                    "no waiting room is on for this showtime: hold seats directly",
                )
            })?;
        Ok(Json(view.into()))
    }

    /// A place in line
    ///
    /// With `wait`, answers as soon as the place moves (let out, or fewer
    /// than `ahead` people ahead) or after `wait` seconds.
    #[oai(
        path = "/v1/showtimes/:id/queue/:place",
        method = "get",
        tag = "ApiTags::Booking"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn place(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        buyer: Buyer,
        id: Path<Uuid>,
        place: Path<Uuid>,
        #[oai(name = "Device-Id")] device: Header<Option<String>>,
        /// Seconds to wait for a move, at most 30.
        #[oai(default, validator(minimum(value = "0"), maximum(value = "30")))]
        wait: Query<u64>,
        /// The `ahead` of the last answer: wait for fewer.
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        ahead: Query<Option<u64>>,
    ) -> Result<Json<PlaceResponse>, ApiError> {
        let holder = holder(&state, req, &buyer, device.0.as_deref())?;
        let view = state
            .booking
            .watch_place(
                place.0,
                &holder,
                ahead
                    .0
                    .map(|ahead| usize::try_from(ahead).unwrap_or(usize::MAX)),
                Duration::from_secs(wait.0.min(MAX_WAIT_SECONDS)),
            )
            .await?;
        Ok(Json(place_in(id.0, view)?.into()))
    }

    /// Watch a place in line
    ///
    /// A server-sent event stream of the place (`place` events) while it
    /// moves: its position while waiting, then its pass, or the news that
    /// the showtime sold out. The stream ends once the place is out of
    /// the line.
    #[oai(
        path = "/v1/showtimes/:id/queue/:place/stream",
        method = "get",
        tag = "ApiTags::Booking"
    )]
    async fn place_stream(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        buyer: Buyer,
        id: Path<Uuid>,
        place: Path<Uuid>,
        #[oai(name = "Device-Id")] device: Header<Option<String>>,
    ) -> Result<EventStream<BoxStream<'static, PlaceResponse>>, ApiError> {
        let holder = holder(&state, req, &buyer, device.0.as_deref())?;
        let first = place_in(id.0, state.booking.place(place.0, &holder).await?)?;
        let state = Arc::clone(&state);
        let place_id = place.0;
        let later = futures::stream::unfold((first.clone(), false), move |(last, done)| {
            let (state, holder) = (Arc::clone(&state), holder.clone());
            async move {
                if done || last.place.state != "waiting" {
                    return None;
                }
                loop {
                    let view = state
                        .booking
                        .watch_place(place_id, &holder, last.ahead, STREAM_EVERY * 10)
                        .await
                        .ok()?;
                    if view.ahead != last.ahead || view.place.state != last.place.state {
                        let finished = view.place.state != "waiting";
                        return Some((PlaceResponse::from(view.clone()), (view, finished)));
                    }
                    tokio::time::sleep(STREAM_EVERY).await;
                }
            }
        });
        let stream =
            futures::stream::once(std::future::ready(PlaceResponse::from(first))).chain(later);
        Ok(
            EventStream::new(Box::pin(stream) as BoxStream<'static, PlaceResponse>)
                .keep_alive(Duration::from_secs(15))
                .to_event(|place| {
                    use poem_openapi::types::ToJSON;
                    poem::web::sse::Event::message(place.to_json_string()).event_type("place")
                }),
        )
    }

    /// Leave the line
    #[oai(
        path = "/v1/showtimes/:id/queue/:place",
        method = "delete",
        tag = "ApiTags::Booking"
    )]
    async fn leave(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        buyer: Buyer,
        id: Path<Uuid>,
        place: Path<Uuid>,
        #[oai(name = "Device-Id")] device: Header<Option<String>>,
    ) -> Result<Left, ApiError> {
        let holder = holder(&state, req, &buyer, device.0.as_deref())?;
        place_in(id.0, state.booking.place(place.0, &holder).await?)?;
        state.booking.leave_queue(place.0, &holder).await?;
        Ok(Left::Done)
    }

    /// Join the waiting list
    ///
    /// Puts the party on a showtime's waiting list, or answers its entry.
    /// When seats together for the party free up, in the order parties
    /// joined, a hold on them is made for the account and it is told on
    /// its channels; pay for the hold like any other before
    /// `offer_expires_at`, or decline it.
    #[oai(
        path = "/v1/showtimes/:id/waitlist",
        method = "post",
        tag = "ApiTags::Booking"
    )]
    async fn join_waitlist(
        &self,
        state: Data<&Arc<AppState>>,
        customer: SignedIn,
        id: Path<Uuid>,
        body: JsonBody<WaitlistBody>,
    ) -> Result<Json<WaitlistEntry>, ApiError> {
        let entry = state
            .booking
            .join_waitlist(
                id.0,
                customer.0.user,
                body.0.party_size,
                body.0.wheelchair_spaces,
            )
            .await?;
        Ok(Json(entry.into()))
    }

    /// My place on a waiting list
    #[oai(
        path = "/v1/showtimes/:id/waitlist/:entry",
        method = "get",
        tag = "ApiTags::Booking"
    )]
    async fn waitlist_entry(
        &self,
        state: Data<&Arc<AppState>>,
        customer: SignedIn,
        id: Path<Uuid>,
        entry: Path<Uuid>,
    ) -> Result<Json<WaitlistEntry>, ApiError> {
        let entry = state
            .booking
            .waitlist_entry(entry.0, customer.0.user)
            .await?;
        if entry.showtime_id != id.0 {
            return Err(ApiError::not_found(
                "no such entry on this showtime's waiting list",
            ));
        }
        Ok(Json(entry.into()))
    }

    /// Leave a waiting list
    ///
    /// Seats offered and not yet paid for go to the next party.
    #[oai(
        path = "/v1/showtimes/:id/waitlist/:entry",
        method = "delete",
        tag = "ApiTags::Booking"
    )]
    async fn leave_waitlist(
        &self,
        state: Data<&Arc<AppState>>,
        customer: SignedIn,
        id: Path<Uuid>,
        entry: Path<Uuid>,
    ) -> Result<Left, ApiError> {
        self.end_entry(&state, &customer, id.0, entry.0, false)
            .await
    }

    /// Decline an offer
    ///
    /// Lets the offered seats go to the next party.
    #[oai(
        path = "/v1/showtimes/:id/waitlist/:entry/decline",
        method = "post",
        tag = "ApiTags::Booking"
    )]
    async fn decline_offer(
        &self,
        state: Data<&Arc<AppState>>,
        customer: SignedIn,
        id: Path<Uuid>,
        entry: Path<Uuid>,
    ) -> Result<Left, ApiError> {
        self.end_entry(&state, &customer, id.0, entry.0, true).await
    }

    /// A showtime's waiting list, for staff
    #[oai(
        path = "/v1/admin/showtimes/:id/waitlist",
        method = "get",
        tag = "ApiTags::Admin"
    )]
    async fn staff_waitlist(
        &self,
        state: Data<&Arc<AppState>>,
        _staff: Staff,
        id: Path<Uuid>,
    ) -> Result<Json<Waitlist>, ApiError> {
        let entries = state
            .booking
            .waitlist(id.0)
            .await?
            .into_iter()
            .map(|entry| StaffWaitlistEntry {
                user_id: entry.user_id,
                entry: entry.into(),
            })
            .collect();
        Ok(Json(Waitlist { entries }))
    }
}

impl QueueApi {
    async fn end_entry(
        &self,
        state: &AppState,
        customer: &SignedIn,
        showtime: Uuid,
        entry: Uuid,
        declined: bool,
    ) -> Result<Left, ApiError> {
        let user = customer.0.user;
        let found = state.booking.waitlist_entry(entry, user).await?;
        if found.showtime_id != showtime {
            return Err(ApiError::not_found(
                "no such entry on this showtime's waiting list",
            ));
        }
        let owner = state.auth.gatekeeper.owner_token(user);
        state
            .booking
            .end_waitlist_entry(entry, user, &owner, declined)
            .await?;
        crate::routes::bookings::seats_changed(state, showtime).await;
        Ok(Left::Done)
    }
}
