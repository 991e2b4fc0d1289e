//! A virtual waiting room for a hot showtime. While it is on, holds need a
//! pass; people join the line once each (per account, or per device for
//! guests), watch their position, and are let out first come, first served
//! at a rate matched to the seats left and checkout capacity. A pass is a
//! short-lived token signed for its holder and showtime, spent by the hold
//! it lets through.
//!
//! A room turns on when staff say so, or by itself when hold attempts per
//! second cross a rate proportional to the seats left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use marquee_storage::holds::RoomEntry;
use marquee_storage::queue::{Joined, Pace, Place, Room, RoomMode, Tick};
use uuid::Uuid;

use crate::fairness::Client;
use crate::{Booking, Error};

/// How long a line's positions may be served from memory.
const LINE_FRESHNESS: Duration = Duration::from_millis(500);

/// Who a place in line, and the hold its pass lets through, belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    Account(Uuid),
    /// A device id this service handed out, already verified.
    Device(String),
}

/// A place as its holder sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceView {
    pub place: Place,
    /// People still waiting ahead; `None` once out of the line.
    pub ahead: Option<usize>,
    /// The pass, while the place is admitted and the pass is live.
    pub pass: Option<String>,
}

/// Hold attempts per showtime on this instance, counted over one-second
/// windows.
#[derive(Debug, Default)]
pub(crate) struct Demand {
    windows: Mutex<HashMap<Uuid, (Instant, u32)>>,
}

impl Demand {
    /// Counts an attempt; at the close of a window, the rate it saw.
    fn observe(&self, showtime: Uuid) -> Option<f64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(2));
        }
        let (start, count) = windows.entry(showtime).or_insert((now, 0));
        *count += 1;
        let elapsed = now.duration_since(*start);
        if elapsed < Duration::from_secs(1) {
            return None;
        }
        let rate = f64::from(*count) / elapsed.as_secs_f64();
        *start = now;
        *count = 0;
        Some(rate)
    }
}

/// A line's waiting numbers, and when they were read.
type Numbers = (Instant, Arc<Vec<i64>>);

/// The waiting numbers of each line, read at most every half second, so
/// that thousands watching their position cost one read per line.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    lines: Mutex<HashMap<Uuid, Numbers>>,
}

impl Lines {
    fn fresh(&self, showtime: Uuid) -> Option<Arc<Vec<i64>>> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .get(&showtime)
            .filter(|(read, _)| read.elapsed() < LINE_FRESHNESS)
            .map(|(_, numbers)| Arc::clone(numbers))
    }

    fn keep(&self, showtime: Uuid, numbers: Arc<Vec<i64>>) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() > 1_000 {
            lines.retain(|_, (read, _)| read.elapsed() < LINE_FRESHNESS);
        }
        lines.insert(showtime, (Instant::now(), numbers));
    }
}

impl Booking {
    fn holder_key(&self, holder: &Holder) -> String {
        match holder {
            Holder::Account(user) => marquee_storage::accounts::customer_of(*user),
            Holder::Device(device) => self.clients.device_holder(device),
        }
    }

    /// How a hold from `holder` passes the showtime's room: the place its
    /// pass names, or no pass. A pass that is not genuine, is another
    /// holder's or another showtime's, or is past its time is refused here.
    pub fn room_entry(
        &self,
        showtime: Uuid,
        holder: Option<&Holder>,
        pass: Option<&str>,
    ) -> Result<RoomEntry, Error> {
        let Some(pass) = pass else {
            return Ok(RoomEntry::NoPass);
        };
        let place = holder.and_then(|holder| {
            self.clients
                .open_pass(pass, showtime, &self.holder_key(holder), Utc::now())
        });
        place.map(RoomEntry::Pass).ok_or(Error::BadPass)
    }

    /// A showtime's room; `None` when the showtime does not exist.
    pub async fn room(&self, showtime: Uuid) -> Result<Option<Room>, Error> {
        Ok(self.storage.room(showtime).await?)
    }

    /// Staff turn a room on or off, or hand it back to demand.
    pub async fn set_room(&self, showtime: Uuid, mode: RoomMode) -> Result<Room, Error> {
        let before = self.storage.room(showtime).await?;
        let room = self.storage.set_room_mode(showtime, mode).await?;
        if room.active && !before.is_some_and(|before| before.active) {
            self.hot.rooms_turned_on.with_label_values(&["staff"]).inc();
        }
        Ok(room)
    }

    /// Counts a hold attempt, and turns the showtime's room on when the
    /// attempts of the last second cross the demand rate for the seats
    /// left. The check runs off the request's path.
    pub(crate) fn observe_demand(&self, showtime: Uuid) {
        let settings = &self.settings.waiting_room;
        if !settings.auto {
            return;
        }
        let Some(rate) = self.demand.observe(showtime) else {
            return;
        };
        if rate < settings.min_attempts_per_second {
            return;
        }
        let storage = self.storage.clone();
        let per_seat = settings.attempts_per_seat_left;
        let turned_on = self.hot.rooms_turned_on.with_label_values(&["demand"]);
        tokio::spawn(async move {
            let Ok(Some(found)) = storage.showtime(showtime).await else {
                return;
            };
            let seats_left = f64::from(found.seats_available.max(0));
            if rate < per_seat * seats_left {
                return;
            }
            match storage.room_on_demand(showtime, found.movie_id).await {
                Ok(true) => {
                    turned_on.inc();
                    tracing::info!(%showtime, rate, seats_left, "waiting room turned on by demand");
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%showtime, error = %err, "could not turn a waiting room on")
                }
            }
        });
    }

    /// A place in the showtime's line for `holder`: a new one, or the one
    /// it has (a reload or a second tab). `None` when no room is on.
    pub async fn join_queue(
        &self,
        showtime: Uuid,
        holder: &Holder,
        client: &Client,
    ) -> Result<Option<PlaceView>, Error> {
        let address = client
            .address
            .map(|address| self.clients.address_holder(address))
            .unwrap_or_default();
        let joined = self
            .storage
            .join_queue(
                showtime,
                &self.holder_key(holder),
                &address,
                self.settings.waiting_room.max_places_per_address,
            )
            .await?;
        match joined {
            Joined::Place(place) => Ok(Some(self.place_view(place).await?)),
            Joined::NoRoom => Ok(None),
            Joined::SoldOut => Err(Error::SoldOut(showtime)),
            Joined::TooMany(allowed) => {
                self.hot.limits.with_label_values(&["places"]).inc();
                Err(Error::TooManyPlaces { allowed })
            }
        }
    }

    /// A place, to its holder; anyone else is told it does not exist.
    pub async fn place(&self, id: Uuid, holder: &Holder) -> Result<PlaceView, Error> {
        let place = self
            .storage
            .place(id)
            .await?
            .filter(|place| place.holder == self.holder_key(holder))
            .ok_or(marquee_storage::Error::NotFound {
                what: "place in line",
                id,
            })?;
        self.place_view(place).await
    }

    /// Waits up to `wait` for a place to move: let out, or further up the
    /// line than `seen` people ahead. The place as it then stands.
    pub async fn watch_place(
        &self,
        id: Uuid,
        holder: &Holder,
        seen: Option<usize>,
        wait: Duration,
    ) -> Result<PlaceView, Error> {
        let deadline = Instant::now() + wait;
        loop {
            let view = self.place(id, holder).await?;
            let moved = view.place.state != "waiting"
                || seen.is_some_and(|seen| view.ahead.is_some_and(|ahead| ahead < seen));
            if moved || Instant::now() >= deadline {
                return Ok(view);
            }
            tokio::time::sleep(LINE_FRESHNESS.min(deadline - Instant::now())).await;
        }
    }

    /// Gives a place up.
    pub async fn leave_queue(&self, id: Uuid, holder: &Holder) -> Result<(), Error> {
        self.place(id, holder).await?;
        self.storage.leave_queue(id).await?;
        Ok(())
    }

    async fn place_view(&self, place: Place) -> Result<PlaceView, Error> {
        let ahead = if place.state == "waiting" {
            let numbers = match self.lines.fresh(place.showtime_id) {
                Some(numbers) => numbers,
                None => {
                    let numbers = Arc::new(self.storage.waiting_numbers(place.showtime_id).await?);
                    self.lines.keep(place.showtime_id, Arc::clone(&numbers));
                    numbers
                }
            };
            Some(numbers.partition_point(|number| *number < place.number))
        } else {
            None
        };
        let pass =
            match (place.state.as_str(), place.pass_expires_at) {
                ("admitted", Some(expires_at)) if expires_at > Utc::now() => Some(
                    self.clients
                        .pass(place.id, place.showtime_id, &place.holder, expires_at),
                ),
                _ => None,
            };
        Ok(PlaceView { place, ahead, pass })
    }

    /// Moves every active room's line on; what the ticks did.
    pub async fn tick_rooms(&self) -> Result<Tick, Error> {
        let settings = &self.settings.waiting_room;
        let pace = Pace {
            admit_per_second: settings.admit_per_second,
            checkout_capacity: settings.checkout_capacity,
            pass_ttl: Duration::from_secs(settings.pass_ttl_seconds),
        };
        let mut total = Tick::default();
        let rooms = self.storage.active_rooms().await?;
        self.hot
            .rooms_active
            .set(i64::try_from(rooms.len()).unwrap_or(i64::MAX));
        for showtime in rooms {
            let tick = self.storage.tick_room(showtime, pace).await?;
            total.admitted += tick.admitted;
            total.lapsed += tick.lapsed;
            total.sold_out += tick.sold_out;
            self.hot.admitted.inc_by(tick.admitted);
            self.hot.sold_out_told.inc_by(tick.sold_out);
            if tick.sold_out > 0 {
                tracing::info!(%showtime, told = tick.sold_out, "sold out: everyone in line told");
            }
        }
        Ok(total)
    }
}
