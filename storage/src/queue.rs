//! A showtime's virtual waiting room: whether it is on, the line of people
//! waiting, and the passes that let them hold seats, handed out first come,
//! first served. Everything lives on the movie's node.
//!
//! The line moves on by ticks: a tick takes the room's row (after any other
//! instance's tick of it), lets passes that were not used lapse,
//! and admits as many as the time since the last tick allows at the
//! configured rate, never more than seats left and checkout capacity can
//! take. When no seat is free or held, the room is sold out and everyone
//! still waiting is told.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use marquee_sharding::ids;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::store::{rejected, Outcome};
use crate::{outbox, Error, Storage};

/// Who may turn a room on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomMode {
    /// On when demand crosses the configured rate, and then until sold out
    /// or turned off.
    Auto,
    On,
    Off,
}

impl RoomMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "on" => Self::On,
            "off" => Self::Off,
            _ => Self::Auto,
        }
    }
}

/// A showtime's waiting room as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub showtime_id: Uuid,
    pub mode: RoomMode,
    pub active: bool,
    /// `staff` or `demand`.
    pub reason: Option<String>,
    pub active_since: Option<DateTime<Utc>>,
    /// Places handed out so far.
    pub joined: i64,
    pub waiting: i64,
    /// Passes handed out and not yet used or lapsed.
    pub admitted: i64,
    pub sold_out_at: Option<DateTime<Utc>>,
}

impl Room {
    /// A room nobody has configured or turned on.
    fn default_for(showtime: Uuid) -> Self {
        Self {
            showtime_id: showtime,
            mode: RoomMode::Auto,
            active: false,
            reason: None,
            active_since: None,
            joined: 0,
            waiting: 0,
            admitted: 0,
            sold_out_at: None,
        }
    }
}

/// A place in a room's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub id: Uuid,
    pub showtime_id: Uuid,
    /// Arrival order: 1 for the first.
    pub number: i64,
    pub holder: String,
    /// `waiting`, `admitted`, `used`, `expired`, `left` or `sold_out`.
    pub state: String,
    pub joined_at: DateTime<Utc>,
    pub admitted_at: Option<DateTime<Utc>>,
    pub pass_expires_at: Option<DateTime<Utc>>,
}

/// What joining a line came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined {
    /// A new place, or the holder's place from before.
    Place(Place),
    /// No waiting room is on: hold seats directly.
    NoRoom,
    /// Sold out: nobody more is let into the line.
    SoldOut,
    /// The network address already has this many places in the line.
    TooMany(usize),
}

/// How fast a line moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub admit_per_second: f64,
    /// Most passes out at once: people choosing seats and paying.
    pub checkout_capacity: i64,
    pub pass_ttl: std::time::Duration,
}

/// What a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tick {
    pub admitted: u64,
    pub lapsed: u64,
    /// Places told the showtime sold out.
    pub sold_out: u64,
}

const PLACE_COLUMNS: &str =
    "id, showtime_id, number, holder, state, joined_at, admitted_at, pass_expires_at";

fn place(row: &Row) -> Place {
    Place {
        id: row.get(0),
        showtime_id: row.get(1),
        number: row.get(2),
        holder: row.get(3),
        state: row.get(4),
        joined_at: row.get(5),
        admitted_at: row.get(6),
        pass_expires_at: row.get(7),
    }
}

async fn room_on(
    client: &impl GenericClient,
    showtime: Uuid,
) -> Result<Room, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "select w.mode, w.active, w.reason, w.active_since, w.joined, w.sold_out_at, \
                 (select count(*) from queue_places q \
                     where q.showtime_id = w.showtime_id and q.state = 'waiting'), \
                 (select count(*) from queue_places q \
                     where q.showtime_id = w.showtime_id and q.state = 'admitted' \
                         and q.pass_expires_at > now()) \
             from waiting_rooms w where w.showtime_id = $1",
            &[&showtime],
        )
        .await?;
    Ok(row.map_or_else(
        || Room::default_for(showtime),
        |row| {
            let mode: String = row.get(0);
            Room {
                showtime_id: showtime,
                mode: RoomMode::parse(&mode),
                active: row.get(1),
                reason: row.get(2),
                active_since: row.get(3),
                joined: row.get(4),
                sold_out_at: row.get(5),
                waiting: row.get(6),
                admitted: row.get(7),
            }
        },
    ))
}

/// Spends the pass of `place` for a hold on `showtime`, inside the hold's
/// transaction: true when the place was admitted and its pass is live.
pub(crate) async fn spend_pass(
    client: &impl GenericClient,
    place: Uuid,
    showtime: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "update queue_places set state = 'used', updated_at = now() \
             where id = $1 and showtime_id = $2 and state = 'admitted' and pass_expires_at > now()",
        )
        .await?;
    Ok(client.execute(&statement, &[&place, &showtime]).await? == 1)
}

impl Storage {
    /// A showtime's room; an unconfigured one is `auto` and off. `None`
    /// when the showtime does not exist.
    pub async fn room(&self, showtime: Uuid) -> Result<Option<Room>, Error> {
        let server = self.scoped_primary(showtime)?;
        let client = server.get().await?;
        let exists = client
            .query_opt("select 1 from showtimes where id = $1", &[&showtime])
            .await
            .map_err(|err| rejected(server, err))?;
        if exists.is_none() {
            return Ok(None);
        }
        room_on(&client, showtime)
            .await
            .map(Some)
            .map_err(|err| rejected(server, err))
    }

    /// Staff's choice for a room: `on` turns it on now, `off` turns it off
    /// for good (demand no longer turns it on), `auto` leaves it as it is
    /// and lets demand turn it on. The room as it now stands.
    pub async fn set_room_mode(&self, showtime: Uuid, mode: RoomMode) -> Result<Room, Error> {
        let movie = self
            .showtime(showtime)
            .await?
            .ok_or(Error::NotFound {
                what: "showtime",
                id: showtime,
            })?
            .movie_id;
        self.in_movie_transaction(showtime, movie, |transaction| {
            Box::pin(async move {
                let active = match mode {
                    RoomMode::On => Some(true),
                    RoomMode::Off => Some(false),
                    RoomMode::Auto => None,
                };
                transaction
                    .execute(
                        "insert into waiting_rooms as w (showtime_id, movie_id, mode, active, reason, active_since) \
                         values ($1, $2, $3, coalesce($4, false), case when $4 then 'staff' end, \
                             case when $4 then now() end) \
                         on conflict (showtime_id) do update set mode = excluded.mode, \
                             active = coalesce($4, w.active), \
                             reason = case when $4 and not w.active then 'staff' \
                                 when $4 = false then null else w.reason end, \
                             active_since = case when $4 and not w.active then now() \
                                 when $4 = false then null else w.active_since end, \
                             ticked_at = case when $4 and not w.active then now() else w.ticked_at end, \
                             updated_at = now()",
                        &[&showtime, &movie, &mode.as_str(), &active],
                    )
                    .await?;
                outbox::record(transaction, "showtime", showtime, "showtime.waiting_room").await?;
                room_on(transaction, showtime).await.map(Outcome::Commit)
            })
        })
        .await
    }

    /// Turns a room on because of demand, unless staff turned it off or it
    /// is on already; whether it turned on now.
    pub async fn room_on_demand(&self, showtime: Uuid, movie: Uuid) -> Result<bool, Error> {
        self.in_movie_transaction(showtime, movie, |transaction| {
            Box::pin(async move {
                let turned = transaction
                    .execute(
                        "insert into waiting_rooms as w (showtime_id, movie_id, mode, active, reason, active_since) \
                         values ($1, $2, 'auto', true, 'demand', now()) \
                         on conflict (showtime_id) do update set active = true, reason = 'demand', \
                             active_since = now(), ticked_at = now(), updated_at = now() \
                         where w.mode = 'auto' and not w.active and w.sold_out_at is null",
                        &[&showtime, &movie],
                    )
                    .await?;
                if turned == 1 {
                    outbox::record(transaction, "showtime", showtime, "showtime.waiting_room")
                        .await?;
                    Ok(Outcome::Commit(true))
                } else {
                    Ok(Outcome::Rollback(false))
                }
            })
        })
        .await
    }

    /// Gives `holder` a place in the line of an active room, or the place
    /// it already has.
    pub async fn join_queue(
        &self,
        showtime: Uuid,
        holder: &str,
        address: &str,
        max_per_address: usize,
    ) -> Result<Joined, Error> {
        let movie = self
            .showtime(showtime)
            .await?
            .ok_or(Error::NotFound {
                what: "showtime",
                id: showtime,
            })?
            .movie_id;
        let (holder, address) = (holder.to_owned(), address.to_owned());
        let cap = i64::try_from(max_per_address).unwrap_or(i64::MAX);
        self.in_movie_transaction(showtime, movie, |transaction| {
            let (holder, address) = (holder.clone(), address.clone());
            Box::pin(async move {
                let Some(room) = transaction
                    .query_opt(
                        "select active, sold_out_at is not null from waiting_rooms \
                         where showtime_id = $1 for update",
                        &[&showtime],
                    )
                    .await?
                else {
                    return Ok(Outcome::Rollback(Joined::NoRoom));
                };
                let (active, sold_out): (bool, bool) = (room.get(0), room.get(1));
                let existing = transaction
                    .query_opt(
                        &format!(
                            "select {PLACE_COLUMNS} from queue_places \
                             where showtime_id = $1 and holder = $2 \
                                 and state in ('waiting', 'admitted')"
                        ),
                        &[&showtime, &holder],
                    )
                    .await?;
                if let Some(existing) = existing {
                    return Ok(Outcome::Rollback(Joined::Place(place(&existing))));
                }
                if sold_out {
                    return Ok(Outcome::Rollback(Joined::SoldOut));
                }
                if !active {
                    return Ok(Outcome::Rollback(Joined::NoRoom));
                }
                let from_address: i64 = transaction
                    .query_one(
                        "select count(*) from queue_places where showtime_id = $1 \
                             and address = $2 and state in ('waiting', 'admitted')",
                        &[&showtime, &address],
                    )
                    .await?
                    .get(0);
                if from_address >= cap {
                    return Ok(Outcome::Rollback(Joined::TooMany(
                        usize::try_from(cap).unwrap_or(usize::MAX),
                    )));
                }
                let id = ids::scoped(movie);
                let row = transaction
                    .query_one(
                        &format!(
                            "with numbered as ( \
                                 update waiting_rooms set joined = joined + 1, updated_at = now() \
                                 where showtime_id = $2 returning joined) \
                             insert into queue_places (id, showtime_id, movie_id, number, holder, address, state) \
                             select $1, $2, $3, joined, $4, $5, 'waiting' from numbered \
                             returning {PLACE_COLUMNS}"
                        ),
                        &[&id, &showtime, &movie, &holder, &address],
                    )
                    .await?;
                Ok(Outcome::Commit(Joined::Place(place(&row))))
            })
        })
        .await
    }

    /// A place by its id.
    pub async fn place(&self, id: Uuid) -> Result<Option<Place>, Error> {
        let server = self.scoped_primary(id)?;
        server
            .get()
            .await?
            .query_opt(
                &format!("select {PLACE_COLUMNS} from queue_places where id = $1"),
                &[&id],
            )
            .await
            .map(|row| row.as_ref().map(place))
            .map_err(|err| rejected(server, err))
    }

    /// The numbers of the places still waiting in a showtime's line, in
    /// order: a position is a place's rank among them.
    pub async fn waiting_numbers(&self, showtime: Uuid) -> Result<Vec<i64>, Error> {
        let server = self.scoped_primary(showtime)?;
        Ok(server
            .get()
            .await?
            .query(
                "select number from queue_places where showtime_id = $1 and state = 'waiting' \
                 order by number",
                &[&showtime],
            )
            .await
            .map_err(|err| rejected(server, err))?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    /// Leaves the line: a waiting or admitted place is given up.
    pub async fn leave_queue(&self, id: Uuid) -> Result<Option<Place>, Error> {
        let server = self.scoped_primary(id)?;
        server
            .get()
            .await?
            .query_opt(
                &format!(
                    "update queue_places set state = 'left', updated_at = now() \
                     where id = $1 and state in ('waiting', 'admitted') returning {PLACE_COLUMNS}"
                ),
                &[&id],
            )
            .await
            .map(|row| row.as_ref().map(place))
            .map_err(|err| rejected(server, err))
    }

    /// The showtimes whose rooms are on, on every node.
    pub async fn active_rooms(&self) -> Result<Vec<Uuid>, Error> {
        let mut rooms = Vec::new();
        for shard in self.cluster().shards() {
            let server = &shard.primary;
            let rows = server
                .get()
                .await?
                .query(
                    "select showtime_id from waiting_rooms where active and sold_out_at is null",
                    &[],
                )
                .await
                .map_err(|err| rejected(server, err))?;
            rooms.extend(rows.iter().map(|row| row.get::<_, Uuid>(0)));
        }
        Ok(rooms)
    }

    /// Moves a line on by the time since it last moved.
    pub async fn tick_room(&self, showtime: Uuid, pace: Pace) -> Result<Tick, Error> {
        let Some(movie) = self.showtime(showtime).await?.map(|found| found.movie_id) else {
            return Ok(Tick::default());
        };
        let ttl = pace.pass_ttl.as_secs_f64();
        self.in_movie_transaction(showtime, movie, |transaction| {
            Box::pin(async move {
                // Waits for the room's row rather than skipping it: joins
                // lock it for a moment each, and a busy line would
                // otherwise never move. A second tick that waited finds
                // the time already spent.
                transaction
                    .batch_execute("set local lock_timeout = '2s'")
                    .await?;
                let Some(room) = transaction
                    .query_opt(
                        "select extract(epoch from clock_timestamp() - ticked_at)::float8 \
                         from waiting_rooms \
                         where showtime_id = $1 and active and sold_out_at is null for update",
                        &[&showtime],
                    )
                    .await?
                else {
                    return Ok(Outcome::Rollback(Tick::default()));
                };
                let elapsed: f64 = room.get(0);
                let lapsed = transaction
                    .execute(
                        "update queue_places set state = 'expired', updated_at = now() \
                         where showtime_id = $1 and state = 'admitted' and pass_expires_at <= now()",
                        &[&showtime],
                    )
                    .await?;
                let seats = transaction
                    .query_one(
                        "select s.capacity::int8, \
                             (select count(*) from seat_states x where x.showtime_id = s.id \
                                 and x.state in ('sold', 'blocked')), \
                             (select count(*) from seat_states x where x.showtime_id = s.id \
                                 and x.state = 'held' and x.expires_at > now()), \
                             (select count(*) from queue_places q where q.showtime_id = s.id \
                                 and q.state = 'admitted') \
                         from showtimes s where s.id = $1",
                        &[&showtime],
                    )
                    .await?;
                let (capacity, taken, held, out): (i64, i64, i64, i64) =
                    (seats.get(0), seats.get(1), seats.get(2), seats.get(3));
                let free = (capacity - taken - held).max(0);
                if free == 0 && held == 0 {
                    let told = transaction
                        .execute(
                            "update queue_places set state = 'sold_out', updated_at = now() \
                             where showtime_id = $1 and state in ('waiting', 'admitted')",
                            &[&showtime],
                        )
                        .await?;
                    transaction
                        .execute(
                            "update waiting_rooms set sold_out_at = now(), \
                                 ticked_at = clock_timestamp(), updated_at = now() \
                             where showtime_id = $1",
                            &[&showtime],
                        )
                        .await?;
                    return Ok(Outcome::Commit(Tick {
                        admitted: 0,
                        lapsed,
                        sold_out: told,
                    }));
                }
                // Time not yet worth one admission stays banked for the
                // next tick; more than five seconds of it is not, so a line
                // nobody moved for a while does not flood checkout at once.
                let allowance = (pace.admit_per_second * elapsed.min(5.0)).floor();
                if allowance < 1.0 {
                    return Ok(Outcome::Commit(Tick {
                        admitted: 0,
                        lapsed,
                        sold_out: 0,
                    }));
                }
                let room_for = pace.checkout_capacity.min(free) - out;
                #[allow(clippy::cast_possible_truncation)]
                let admit = (allowance as i64).min(room_for).max(0);
                let admitted = if admit > 0 {
                    transaction
                        .execute(
                            "update queue_places set state = 'admitted', admitted_at = now(), \
                                 pass_expires_at = now() + make_interval(secs => $3), updated_at = now() \
                             where id in (select id from queue_places where showtime_id = $1 \
                                 and state = 'waiting' order by number limit $2)",
                            &[&showtime, &admit, &ttl],
                        )
                        .await?
                } else {
                    0
                };
                transaction
                    .execute(
                        "update waiting_rooms set ticked_at = clock_timestamp(), updated_at = now() \
                         where showtime_id = $1",
                        &[&showtime],
                    )
                    .await?;
                Ok(Outcome::Commit(Tick {
                    admitted,
                    lapsed,
                    sold_out: 0,
                }))
            })
        })
        .await
    }
}
