//! Seat holds: claiming seats of a showtime for one customer until the hold
//! lapses or becomes an order.
//!
//! Whatever the locking mode, a seat changes hands only through one guarded
//! write: a free seat (no row) is claimed by inserting its row, a lapsed
//! hold's seat by updating the row at the version that was read. Two buyers
//! can therefore never both get a seat, even when two instances disagree on
//! the mode. The modes differ in what happens before that write:
//!
//! - optimistic: read a snapshot without locks, choose, write; if another
//!   buyer got there first, roll back and retry with a fresh snapshot.
//! - pessimistic: lock the seat rows (rows of the auditorium) being chosen
//!   from, so buyers queue per row instead of colliding. Best-available
//!   buyers skip rows another buyer has locked (`SKIP LOCKED`) and take the
//!   next best row, so a storm spreads over the auditorium.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use marquee_sharding::ids;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::layout::{Prices, SeatKind, SeatLayout};
use crate::outbox;
use crate::seating::{self, BestRequest};
use crate::store::rejected;
use crate::store::{Outcome, ShowtimeFacts};
use crate::{Error, Storage};

/// How seats of a showtime are being claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    Optimistic,
    Pessimistic,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Optimistic => "optimistic",
            LockMode::Pessimistic => "pessimistic",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "optimistic" => Some(LockMode::Optimistic),
            "pessimistic" => Some(LockMode::Pessimistic),
            _ => None,
        }
    }
}

/// An operator's choice of locking for a showtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockPolicy {
    /// Follow contention.
    Auto,
    Fixed(LockMode),
}

impl LockPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LockPolicy::Auto => "auto",
            LockPolicy::Fixed(mode) => mode.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(LockPolicy::Auto),
            other => LockMode::parse(other).map(LockPolicy::Fixed),
        }
    }
}

/// A showtime's locking as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LockState {
    pub policy: LockPolicy,
    /// What `auto` currently uses.
    pub mode: LockMode,
    pub since: DateTime<Utc>,
    pub switches: i32,
}

/// One switch of a showtime's locking mode.
#[derive(Debug, Clone, PartialEq)]
pub struct LockSwitch {
    pub mode: LockMode,
    /// The contention that decided it.
    pub conflict_rate: f64,
    pub at: DateTime<Utc>,
}

/// Which seats a customer wants.
#[derive(Debug, Clone, PartialEq)]
pub enum SeatChoice {
    Seats(Vec<String>),
    Best(BestRequest),
}

impl SeatChoice {
    pub fn count(&self) -> usize {
        match self {
            SeatChoice::Seats(seats) => seats.len(),
            SeatChoice::Best(request) => request.count,
        }
    }
}

/// A hold to place.
#[derive(Debug, Clone)]
pub struct NewHold<'a> {
    /// The hold's id, routed with the showtime (`ids::sibling` of it), so
    /// the caller can name it before it exists.
    pub id: Uuid,
    pub showtime_id: Uuid,
    pub customer: &'a str,
    pub token_hash: &'a [u8],
    pub choice: &'a SeatChoice,
    pub ttl: std::time::Duration,
    /// Seats one customer may hold or own for one showtime.
    pub per_customer: usize,
    /// How the hold passes the showtime's waiting room, when it is on.
    pub room: RoomEntry,
    /// Who asked beyond the customer: keys of the client's address, its
    /// device and the address typed in canonical form, kept with the hold
    /// so that what it counted against is freed when it ends.
    pub claimants: &'a [String],
    /// Inside configured peak hours, `auto` showtimes are pessimistic
    /// whatever their contention.
    pub peak: bool,
    /// Optimistic attempts before giving up on a busy showtime.
    pub attempts: u32,
    /// Told of every attempt, and may switch the showtime's mode between
    /// attempts.
    pub observer: &'a dyn ContentionObserver,
}

/// How a hold passes a showtime's waiting room while it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomEntry {
    /// With no pass: refused while the room is on.
    NoPass,
    /// Spending the pass of this place in line, already checked to be the
    /// caller's.
    Pass(Uuid),
    /// A waiting-list offer, which the room does not stand in front of.
    WaitingList,
}

/// Watches claims attempt by attempt, so that a showtime under `auto` can
/// switch modes in the middle of a storm rather than after it.
pub trait ContentionObserver: Send + Sync + std::fmt::Debug {
    /// The mode to switch the showtime to, if any, with the conflict rate
    /// that decided it.
    fn observe(
        &self,
        showtime: Uuid,
        contention: &Contention,
        collided: bool,
    ) -> Option<(LockMode, f64)>;

    /// The mode this instance last switched the showtime to, and when. It
    /// applies at once to every claim here, while the stored switch waits
    /// for a connection behind the very storm that caused it.
    fn decided(&self, showtime: Uuid) -> Option<(LockMode, DateTime<Utc>)>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeldSeat {
    pub seat: String,
    pub kind: SeatKind,
    pub price: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub id: Uuid,
    pub showtime_id: Uuid,
    pub movie_id: Uuid,
    pub customer: String,
    pub token_hash: Vec<u8>,
    pub seats: Vec<HeldSeat>,
    pub amount: i64,
    pub currency: String,
    /// `active`, `ordering`, `ordered`, `released` or `expired`.
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub extended: bool,
    pub created_at: DateTime<Utc>,
    /// The client keys the hold counts against.
    pub claimants: Vec<String>,
}

impl Hold {
    /// Active and not lapsed at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status == "active" && self.expires_at > now
    }
}

/// The contention a claim met, which the locking mode follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Contention {
    /// The mode the claim ran in.
    pub mode: LockMode,
    /// The showtime's policy is `auto`, so contention may switch its mode.
    pub auto: bool,
    /// The mode `auto` had stored, and since when.
    pub stored: LockMode,
    pub since: DateTime<Utc>,
    pub attempts: u32,
    /// Attempts that found a seat taken or a row locked since they looked.
    pub conflicts: u32,
    /// The mode this claim switched the showtime to.
    pub switched: Option<LockMode>,
}

impl Contention {
    fn new() -> Self {
        Self {
            mode: LockMode::Optimistic,
            auto: true,
            stored: LockMode::Optimistic,
            since: Utc::now(),
            attempts: 0,
            conflicts: 0,
            switched: None,
        }
    }
}

/// A placed hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub hold: Hold,
    pub contention: Contention,
}

/// A claim that did not get its seats.
#[derive(Debug)]
pub struct Refused {
    pub error: Error,
    pub contention: Contention,
}

const HOLD_COLUMNS: &str = "h.id, h.showtime_id, h.movie_id, h.customer, h.token_hash, h.seats, \
     h.prices, h.currency, h.status, h.expires_at, h.extended, h.created_at, h.claimants";

fn hold_from_row(row: &Row, layout: Option<&SeatLayout>) -> Hold {
    let seats: Vec<String> = row.get(5);
    let prices: Vec<i64> = row.get(6);
    let seats: Vec<HeldSeat> = seats
        .into_iter()
        .zip(prices)
        .map(|(seat, price)| HeldSeat {
            kind: layout
                .and_then(|layout| layout.kind_of(&seat))
                .unwrap_or(SeatKind::Standard),
            seat,
            price,
        })
        .collect();
    Hold {
        id: row.get(0),
        showtime_id: row.get(1),
        movie_id: row.get(2),
        customer: row.get(3),
        token_hash: row.get(4),
        amount: seats.iter().map(|seat| seat.price).sum(),
        seats,
        currency: row.get(7),
        status: row.get(8),
        expires_at: row.get(9),
        extended: row.get(10),
        created_at: row.get(11),
        claimants: row.get(12),
    }
}

/// One seat as a claim reads it.
#[derive(Debug, Clone)]
struct SeatState {
    version: i64,
    /// Held by a hold that has lapsed: claimable.
    lapsed: bool,
}

impl SeatState {
    fn available(&self) -> bool {
        self.lapsed
    }
}

async fn seat_snapshot(
    client: &impl GenericClient,
    showtime: Uuid,
    row: Option<&str>,
) -> Result<HashMap<String, SeatState>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "select seat, version, (state = 'held' and expires_at <= now()) \
             from seat_states where showtime_id = $1 \
             and ($2::text is null or split_part(seat, '-', 1) = $2)",
        )
        .await?;
    Ok(client
        .query(&statement, &[&showtime, &row])
        .await?
        .iter()
        .map(|row| {
            (
                row.get(0),
                SeatState {
                    version: row.get(1),
                    lapsed: row.get(2),
                },
            )
        })
        .collect())
}

fn is_unavailable(snapshot: &HashMap<String, SeatState>, seat: &str) -> bool {
    snapshot.get(seat).is_some_and(|state| !state.available())
}

/// Claims `seats` at the versions in `snapshot`; the number claimed. Fewer
/// than asked means another buyer changed one of them since the snapshot.
async fn write_claim(
    client: &impl GenericClient,
    showtime: Uuid,
    movie: Uuid,
    hold: Uuid,
    ttl_seconds: f64,
    seats: &[String],
    snapshot: &HashMap<String, SeatState>,
) -> Result<usize, tokio_postgres::Error> {
    let versions: Vec<i64> = seats
        .iter()
        .map(|seat| snapshot.get(seat).map_or(0, |state| state.version))
        .collect();
    let statement = client
        .prepare_cached(
            "with wanted (seat, version) as (select * from unnest($2::text[], $3::int8[])), \
             taken as ( \
                 update seat_states s set state = 'held', hold_id = $4, order_id = null, \
                     expires_at = now() + make_interval(secs => $5), \
                     version = s.version + 1, updated_at = now() \
                 from wanted w \
                 where s.showtime_id = $1 and s.seat = w.seat and w.version > 0 \
                     and s.version = w.version and s.state = 'held' and s.expires_at <= now() \
                 returning s.seat), \
             fresh as ( \
                 insert into seat_states (showtime_id, seat, movie_id, state, hold_id, expires_at) \
                 select $1, w.seat, $6, 'held', $4, now() + make_interval(secs => $5) \
                 from wanted w where w.version = 0 \
                 on conflict (showtime_id, seat) do nothing \
                 returning seat) \
             select (select count(*) from taken) + (select count(*) from fresh)",
        )
        .await?;
    let claimed: i64 = client
        .query_one(
            &statement,
            &[&showtime, &seats, &versions, &hold, &ttl_seconds, &movie],
        )
        .await?
        .get(0);
    Ok(usize::try_from(claimed).unwrap_or(0))
}

/// The showtime as a claim needs it, read inside the claim's transaction.
struct ClaimTarget {
    starts_at: DateTime<Utc>,
    prices: Prices,
    currency: String,
    policy: LockPolicy,
    stored: LockMode,
    since: DateTime<Utc>,
    /// A waiting room is on: holds need a pass.
    room_active: bool,
}

/// How one attempt ended.
enum Attempt<T> {
    Done(T),
    /// Another buyer changed the seats since they were read.
    Collided,
    Refused(Error),
}

impl Storage {
    pub(crate) fn scoped_primary(&self, id: Uuid) -> Result<&marquee_sharding::Server, Error> {
        Ok(&self
            .cluster()
            .route_hash(ids::scoped_route_hash(id))?
            .primary)
    }

    /// Places a hold, choosing and claiming seats in the showtime's locking
    /// mode. The hold's id is scoped to the movie, like the showtime's.
    pub async fn place_hold(&self, new: &NewHold<'_>) -> Result<Claim, Refused> {
        let mut contention = Contention::new();
        let (showtime, layout) = match self.showtime_layout(new.showtime_id).await {
            Ok(found) => found,
            Err(error) => return Err(Refused { error, contention }),
        };
        if let SeatChoice::Seats(seats) = new.choice {
            let problems = seating::unknown_or_repeated(&layout, seats);
            if !problems.is_empty() {
                let error = Error::Invalid {
                    detail: "some seats cannot be held".to_owned(),
                    fields: problems
                        .into_iter()
                        .map(|(i, message)| (format!("seats[{i}]"), message))
                        .collect(),
                };
                return Err(Refused { error, contention });
            }
        }
        let hold_id = new.id;
        // Retries keep their connection: going back to the pool would put a
        // collided buyer behind everyone who arrived since.
        let mut pooled = None;
        loop {
            let outcome = self
                .hold_attempt(
                    new,
                    &showtime,
                    &layout,
                    hold_id,
                    &mut contention,
                    &mut pooled,
                )
                .await;
            let (attempt, contended) = match outcome {
                Ok(outcome) => outcome,
                Err(error) => return Err(Refused { error, contention }),
            };
            contention.conflicts += u32::from(contended);
            let reached = matches!(attempt, Attempt::Done(_) | Attempt::Collided) || contended;
            if reached {
                self.observe_attempt(new, &mut contention, contended).await;
            }
            match attempt {
                Attempt::Done(hold) => return Ok(Claim { hold, contention }),
                Attempt::Refused(error) => return Err(Refused { error, contention }),
                Attempt::Collided => {
                    if contention.attempts >= new.attempts.max(1) {
                        let error = Error::Conflict(format!(
                            "seats of showtime {} are selling fast and were taken while \
                             this request chose; try again",
                            new.showtime_id
                        ));
                        return Err(Refused { error, contention });
                    }
                    // Spread optimistic retries so colliding buyers do not
                    // collide again; a retry that will lock its row waits
                    // for the lock instead.
                    let pessimistic_next = contention.switched == Some(LockMode::Pessimistic)
                        || new
                            .observer
                            .decided(new.showtime_id)
                            .is_some_and(|(mode, _)| mode == LockMode::Pessimistic);
                    if !pessimistic_next {
                        let jitter = u64::from(hold_id.as_bytes()[15] % 8);
                        tokio::time::sleep(std::time::Duration::from_millis(
                            u64::from(contention.attempts) * 2 + jitter,
                        ))
                        .await;
                    }
                }
            }
        }
    }

    /// Hands an attempt to the observer and carries out the switch it asks
    /// for, so the next attempt, here or on any instance, runs in the new
    /// mode.
    async fn observe_attempt(
        &self,
        new: &NewHold<'_>,
        contention: &mut Contention,
        collided: bool,
    ) {
        let Some((mode, rate)) = new.observer.observe(new.showtime_id, contention, collided) else {
            return;
        };
        match self.switch_lock_mode(new.showtime_id, mode, rate).await {
            Ok(true) => {
                contention.switched = Some(mode);
                tracing::info!(showtime = %new.showtime_id, mode = mode.as_str(), rate, "seat locking switched");
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(showtime = %new.showtime_id, error = %err, "could not switch seat locking");
            }
        }
    }

    async fn showtime_layout(
        &self,
        id: Uuid,
    ) -> Result<(ShowtimeFacts, std::sync::Arc<SeatLayout>), Error> {
        let facts = self.showtime_facts(id).await?.ok_or(Error::NotFound {
            what: "showtime",
            id,
        })?;
        let layout = self.layout_by_id(id, &facts.layout_id).await?;
        Ok((facts, layout))
    }

    /// One attempt in one transaction: its outcome, and whether it met
    /// contention on the way.
    async fn hold_attempt(
        &self,
        new: &NewHold<'_>,
        showtime: &ShowtimeFacts,
        layout: &SeatLayout,
        hold_id: Uuid,
        contention: &mut Contention,
        pooled: &mut Option<(marquee_sharding::NodeId, deadpool_postgres::Client)>,
    ) -> Result<(Attempt<Hold>, bool), Error> {
        let movie = showtime.movie_id;
        let mut stale = 0;
        loop {
            let server = self.scoped_primary(new.showtime_id)?;
            if pooled
                .as_ref()
                .is_some_and(|(node, _)| node != server.node())
            {
                *pooled = None;
            }
            if pooled.is_none() {
                *pooled = Some((server.node().clone(), server.get().await?));
            }
            let Some((_, client)) = pooled.as_mut() else {
                continue;
            };
            let Some((transaction, _)) = self
                .begin_on_movie(client, server, movie, false, &mut stale)
                .await?
            else {
                continue;
            };
            // One round trip: the showtime, the customer's seats (under the
            // customer's row lock) and the seats as they stand.
            let (target, limit, snapshot) = futures::try_join!(
                claim_target(&transaction, new.showtime_id),
                customer_limit(&transaction, new),
                seat_snapshot(&transaction, new.showtime_id, None),
            )
            .map_err(|err| rejected(server, err))?;
            let Some(target) = target else {
                let error = Error::NotFound {
                    what: "showtime",
                    id: new.showtime_id,
                };
                return Ok((Attempt::Refused(error), false));
            };
            contention.auto = target.policy == LockPolicy::Auto;
            (contention.stored, contention.since) = match new.observer.decided(new.showtime_id) {
                Some((mode, at)) if at > target.since => (mode, at),
                _ => (target.stored, target.since),
            };
            contention.mode = match target.policy {
                LockPolicy::Fixed(fixed) => fixed,
                LockPolicy::Auto if new.peak => LockMode::Pessimistic,
                LockPolicy::Auto => contention.stored,
            };
            // Counted only once the claim reaches the seats: a request
            // refused earlier (an exhausted pool, a moved movie) says
            // nothing about contention.
            contention.attempts += 1;
            if target.starts_at <= Utc::now() {
                let error = Error::Conflict(format!(
                    "showtime {} has started; its seats are no longer sold",
                    new.showtime_id
                ));
                return Ok((Attempt::Refused(error), false));
            }
            if let Some(error) = limit {
                return Ok((Attempt::Refused(error), false));
            }
            if target.room_active {
                let admitted = match new.room {
                    RoomEntry::Pass(place) => {
                        crate::queue::spend_pass(&transaction, place, new.showtime_id)
                            .await
                            .map_err(|err| rejected(server, err))?
                    }
                    RoomEntry::NoPass => false,
                    RoomEntry::WaitingList => true,
                };
                if !admitted {
                    return Ok((
                        Attempt::Refused(Error::WaitingRoom {
                            showtime: new.showtime_id,
                            had_pass: matches!(new.room, RoomEntry::Pass(_)),
                        }),
                        false,
                    ));
                }
            }
            let ttl = new.ttl.as_secs_f64();
            let (attempt, contended) = match contention.mode {
                LockMode::Optimistic => {
                    claim_optimistic(
                        &transaction,
                        new,
                        movie,
                        layout,
                        hold_id,
                        ttl,
                        contention.attempts,
                        snapshot,
                    )
                    .await
                }
                LockMode::Pessimistic => {
                    claim_pessimistic(&transaction, new, movie, layout, hold_id, ttl, snapshot)
                        .await
                }
            }
            .map_err(|err| rejected(server, err))?;
            let seats = match attempt {
                Attempt::Done(seats) => seats,
                Attempt::Collided => return Ok((Attempt::Collided, contended)),
                Attempt::Refused(error) => return Ok((Attempt::Refused(error), contended)),
            };
            let mut prices = Vec::with_capacity(seats.len());
            for seat in &seats {
                let kind = layout.kind_of(seat).unwrap_or(SeatKind::Standard);
                let Some(price) = target.prices.get(&kind) else {
                    let error = Error::Invalid {
                        detail: format!(
                            "{seat} is a {} seat, which this showtime does not sell",
                            kind.as_str()
                        ),
                        fields: vec![("seats".to_owned(), format!("{seat} has no price"))],
                    };
                    return Ok((Attempt::Refused(error), contended));
                };
                prices.push(*price);
            }
            let (hold, ()) = futures::try_join!(
                insert_hold(
                    &transaction,
                    hold_id,
                    new,
                    movie,
                    &seats,
                    &prices,
                    &target.currency,
                    ttl,
                    layout,
                ),
                outbox::record(&transaction, "showtime", new.showtime_id, "seats.held"),
            )
            .map_err(|err| rejected(server, err))?;
            transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err))?;
            return Ok((Attempt::Done(hold), contended));
        }
    }

    /// A hold with the kinds of its seats.
    pub async fn hold(&self, id: Uuid) -> Result<Option<Hold>, Error> {
        let server = self.scoped_primary(id)?;
        let client = server.get().await?;
        let row = client
            .query_opt(
                &format!("select {HOLD_COLUMNS} from holds h where h.id = $1"),
                &[&id],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let showtime_id: Uuid = row.get(1);
        let layout = match self.showtime_facts(showtime_id).await? {
            Some(facts) => Some(self.layout_by_id(showtime_id, &facts.layout_id).await?),
            None => None,
        };
        Ok(Some(hold_from_row(&row, layout.as_deref())))
    }

    /// Extends a live hold once by `extension`.
    pub async fn extend_hold(
        &self,
        id: Uuid,
        token_hash: &[u8],
        extension: std::time::Duration,
    ) -> Result<Hold, Error> {
        let hold = self.owned_hold(id, token_hash).await?;
        if hold.status != "active" || hold.expires_at <= Utc::now() {
            return Err(Error::Conflict(format!(
                "hold {id} is {}; only a live hold can be extended",
                shown_status(&hold)
            )));
        }
        if hold.extended {
            return Err(Error::Conflict(format!(
                "hold {id} was already extended once"
            )));
        }
        let seconds = extension.as_secs_f64();
        self.in_movie_transaction(hold.id, hold.movie_id, |transaction| {
            Box::pin(async move {
                let extended = transaction
                    .execute(
                        "update holds set expires_at = expires_at + make_interval(secs => $2), \
                             extended = true, updated_at = now() \
                         where id = $1 and status = 'active' and not extended \
                             and expires_at > now()",
                        &[&id, &seconds],
                    )
                    .await?;
                if extended == 1 {
                    transaction
                        .execute(
                            "update seat_states set expires_at = expires_at + make_interval(secs => $2) \
                             where hold_id = $1 and state = 'held'",
                            &[&id, &seconds],
                        )
                        .await?;
                }
                Ok(if extended == 1 {
                    Outcome::Commit(true)
                } else {
                    Outcome::Rollback(false)
                })
            })
        })
        .await?
        .then_some(())
        .ok_or_else(|| Error::Conflict(format!("hold {id} changed while it was being extended")))?;
        self.hold(id)
            .await?
            .ok_or(Error::NotFound { what: "hold", id })
    }

    /// Gives a live hold's seats back; the hold as it was. Releasing a hold
    /// that already lapsed or was released changes nothing.
    pub async fn release_hold(&self, id: Uuid, token_hash: &[u8]) -> Result<Hold, Error> {
        let hold = self.owned_hold(id, token_hash).await?;
        match hold.status.as_str() {
            "ordering" => {
                return Err(Error::Conflict(format!(
                    "hold {id} is being paid for; it is released if the payment fails"
                )))
            }
            "ordered" => {
                return Err(Error::Conflict(format!(
                    "hold {id} became an order; cancel the order instead"
                )))
            }
            "released" | "expired" => return Ok(hold),
            _ => {}
        }
        let showtime = hold.showtime_id;
        self.in_movie_transaction(hold.id, hold.movie_id, |transaction| {
            Box::pin(async move {
                transaction
                    .execute(
                        "delete from seat_states where hold_id = $1 and state = 'held'",
                        &[&id],
                    )
                    .await?;
                transaction
                    .execute(
                        "update holds set status = 'released', updated_at = now() \
                         where id = $1 and status = 'active'",
                        &[&id],
                    )
                    .await?;
                outbox::record(transaction, "showtime", showtime, "seats.released").await?;
                Ok(Outcome::Commit(()))
            })
        })
        .await?;
        Ok(hold)
    }

    /// Returns the seats of every lapsed hold on every node; the showtimes
    /// whose seats came back. Readers already treat those seats as free;
    /// this makes the rows and the holds say so too.
    pub async fn expire_holds(&self) -> Result<Vec<Uuid>, Error> {
        let mut showtimes = BTreeSet::new();
        for shard in self.cluster().shards() {
            let server = &shard.primary;
            let mut client = server.get().await?;
            let transaction = client
                .transaction()
                .await
                .map_err(|err| rejected(server, err))?;
            let rows = transaction
                .query(
                    "with lapsed as ( \
                         delete from seat_states where state = 'held' and expires_at <= now() \
                         returning hold_id, showtime_id), \
                     holds_lapsed as ( \
                         update holds set status = 'expired', updated_at = now() \
                         where status = 'active' and expires_at <= now() \
                         returning id, showtime_id), \
                     told as ( \
                         insert into outbox (aggregate, aggregate_id, event, payload) \
                         select 'hold', id, 'hold.expired', jsonb_build_object('showtime_id', showtime_id) \
                         from holds_lapsed) \
                     select showtime_id from lapsed union select showtime_id from holds_lapsed",
                    &[],
                )
                .await
                .map_err(|err| rejected(server, err))?;
            for row in &rows {
                let showtime: Uuid = row.get(0);
                outbox::record(&transaction, "showtime", showtime, "seats.released")
                    .await
                    .map_err(|err| rejected(server, err))?;
                showtimes.insert(showtime);
            }
            transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err))?;
        }
        Ok(showtimes.into_iter().collect())
    }

    /// When the showtime's next live hold lapses, if any is live.
    pub async fn next_hold_lapse(&self, showtime: Uuid) -> Result<Option<DateTime<Utc>>, Error> {
        let server = self.scoped_primary(showtime)?;
        let client = server.get().await?;
        let statement = client
            .prepare_cached(
                "select min(expires_at) from seat_states \
                 where showtime_id = $1 and state = 'held' and expires_at > now()",
            )
            .await
            .map_err(|err| rejected(server, err))?;
        client
            .query_one(&statement, &[&showtime])
            .await
            .map(|row| row.get(0))
            .map_err(|err| rejected(server, err))
    }

    /// The showtime's locking as stored.
    pub async fn lock_state(&self, showtime: Uuid) -> Result<LockState, Error> {
        let server = self.scoped_primary(showtime)?;
        let row = server
            .get()
            .await?
            .query_opt(
                "select lock_policy, lock_mode, lock_mode_since, lock_switches \
                 from showtimes where id = $1",
                &[&showtime],
            )
            .await
            .map_err(|err| rejected(server, err))?
            .ok_or(Error::NotFound {
                what: "showtime",
                id: showtime,
            })?;
        let policy: String = row.get(0);
        let mode: String = row.get(1);
        Ok(LockState {
            policy: LockPolicy::parse(&policy).unwrap_or(LockPolicy::Auto),
            mode: LockMode::parse(&mode).unwrap_or(LockMode::Optimistic),
            since: row.get(2),
            switches: row.get(3),
        })
    }

    /// Sets the operator's locking policy.
    pub async fn set_lock_policy(
        &self,
        showtime: Uuid,
        policy: LockPolicy,
    ) -> Result<LockState, Error> {
        let server = self.scoped_primary(showtime)?;
        let updated = server
            .get()
            .await?
            .execute(
                "update showtimes set lock_policy = $2 where id = $1",
                &[&showtime, &policy.as_str()],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        if updated == 0 {
            return Err(Error::NotFound {
                what: "showtime",
                id: showtime,
            });
        }
        self.lock_state(showtime).await
    }

    /// Records that `auto` now uses `mode`, and why; false when it already
    /// did.
    pub async fn switch_lock_mode(
        &self,
        showtime: Uuid,
        mode: LockMode,
        conflict_rate: f64,
    ) -> Result<bool, Error> {
        let server = self.scoped_primary(showtime)?;
        let mut client = server.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(server, err))?;
        let updated = transaction
            .query_opt(
                "update showtimes set lock_mode = $2, lock_mode_since = now(), \
                     lock_switches = lock_switches + 1 \
                 where id = $1 and lock_mode <> $2 returning movie_id",
                &[&showtime, &mode.as_str()],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        let Some(row) = updated else {
            return Ok(false);
        };
        let movie: Uuid = row.get(0);
        transaction
            .execute(
                "insert into seat_lock_switches (id, showtime_id, movie_id, mode, conflict_rate) \
                 values ($1, $2, $3, $4, $5)",
                &[
                    &ids::sibling(showtime),
                    &showtime,
                    &movie,
                    &mode.as_str(),
                    &conflict_rate,
                ],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(server, err))?;
        Ok(true)
    }

    /// The showtime's latest switches, newest first.
    pub async fn lock_switches(
        &self,
        showtime: Uuid,
        limit: i64,
    ) -> Result<Vec<LockSwitch>, Error> {
        let server = self.scoped_primary(showtime)?;
        let rows = server
            .get()
            .await?
            .query(
                "select mode, conflict_rate, switched_at from seat_lock_switches \
                 where showtime_id = $1 order by switched_at desc limit $2",
                &[&showtime, &limit],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        Ok(rows
            .iter()
            .map(|row| {
                let mode: String = row.get(0);
                LockSwitch {
                    mode: LockMode::parse(&mode).unwrap_or(LockMode::Optimistic),
                    conflict_rate: row.get(1),
                    at: row.get(2),
                }
            })
            .collect())
    }

    /// The hold, if the token is its own.
    async fn owned_hold(&self, id: Uuid, token_hash: &[u8]) -> Result<Hold, Error> {
        let hold = self
            .hold(id)
            .await?
            .ok_or(Error::NotFound { what: "hold", id })?;
        if hold.token_hash != token_hash {
            return Err(Error::Forbidden(format!(
                "hold {id} belongs to another booking; send the booking token it was created with"
            )));
        }
        Ok(hold)
    }
}

fn shown_status(hold: &Hold) -> &str {
    if hold.status == "active" && hold.expires_at <= Utc::now() {
        "expired"
    } else {
        &hold.status
    }
}

async fn claim_target(
    client: &impl GenericClient,
    showtime: Uuid,
) -> Result<Option<ClaimTarget>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "select s.starts_at, s.prices, s.currency, s.lock_policy, s.lock_mode, \
                 s.lock_mode_since, coalesce(w.active, false) \
             from showtimes s left join waiting_rooms w on w.showtime_id = s.id \
             where s.id = $1",
        )
        .await?;
    Ok(client
        .query_opt(&statement, &[&showtime])
        .await?
        .map(|row| {
            let Json(prices): Json<Prices> = row.get(1);
            let policy: String = row.get(3);
            let stored: String = row.get(4);
            ClaimTarget {
                starts_at: row.get(0),
                prices,
                currency: row.get(2),
                policy: LockPolicy::parse(&policy).unwrap_or(LockPolicy::Auto),
                stored: LockMode::parse(&stored).unwrap_or(LockMode::Optimistic),
                since: row.get(5),
                room_active: row.get(6),
            }
        }))
}

/// Refuses a hold that would take the customer past the per-showtime
/// limit. The customer's row is locked first, so two holds of one
/// customer are counted one after the other.
async fn customer_limit(
    client: &impl GenericClient,
    new: &NewHold<'_>,
) -> Result<Option<Error>, tokio_postgres::Error> {
    let (lock, count) = futures::try_join!(
        client.prepare_cached(
            "insert into showtime_customers (showtime_id, customer, movie_id) \
             select id, $2, movie_id from showtimes where id = $1 \
             on conflict (showtime_id, customer) do update set customer = excluded.customer",
        ),
        client.prepare_cached(
            "select \
                 (select coalesce(sum(cardinality(seats)), 0) from holds \
                  where showtime_id = $1 and customer = $2 and status in ('active', 'ordering') \
                      and expires_at > now()) \
               + (select count(*) from tickets t \
                  where t.order_id in (select id from orders \
                      where showtime_id = $1 and customer = $2 and status = 'confirmed') \
                      and t.status = 'valid')",
        ),
    )?;
    // Sent together; the count runs once the customer's row is locked.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&new.showtime_id, &new.customer];
    let (_, owned) = futures::try_join!(
        client.execute(&lock, &params),
        client.query_one(&count, &params),
    )?;
    let owned: i64 = owned.get(0);
    let owned = usize::try_from(owned).unwrap_or(usize::MAX);
    let wanted = new.choice.count();
    if owned + wanted > new.per_customer {
        return Ok(Some(Error::Invalid {
            detail: format!(
                "one customer may hold or buy {} seats of a showtime; {} already held or bought",
                new.per_customer, owned
            ),
            fields: vec![(
                "seats".to_owned(),
                format!("at most {} more", new.per_customer.saturating_sub(owned)),
            )],
        }));
    }
    Ok(None)
}

fn taken_error(seats: &[&String]) -> Error {
    Error::Conflict(format!(
        "{} already held or sold",
        seats
            .iter()
            .map(|seat| seat.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn no_block_error(request: BestRequest) -> Error {
    Error::Conflict(format!(
        "no {} adjacent seats{} are free together",
        request.count,
        if request.wheelchair > 0 {
            " with wheelchair spaces"
        } else {
            ""
        }
    ))
}

#[allow(clippy::too_many_arguments)]
async fn claim_optimistic(
    client: &impl GenericClient,
    new: &NewHold<'_>,
    movie: Uuid,
    layout: &SeatLayout,
    hold: Uuid,
    ttl: f64,
    attempt: u32,
    snapshot: HashMap<String, SeatState>,
) -> Result<(Attempt<Vec<String>>, bool), tokio_postgres::Error> {
    let seats = match new.choice {
        SeatChoice::Seats(seats) => {
            let taken: Vec<&String> = seats
                .iter()
                .filter(|seat| is_unavailable(&snapshot, seat))
                .collect();
            if !taken.is_empty() {
                return Ok((Attempt::Refused(taken_error(&taken)), false));
            }
            seats.clone()
        }
        SeatChoice::Best(request) => {
            let unavailable = |seat: &str| is_unavailable(&snapshot, seat);
            let mut blocks = seating::best_blocks(layout, &unavailable, *request);
            if blocks.is_empty() {
                return Ok((Attempt::Refused(no_block_error(*request)), false));
            }
            // Every buyer's snapshot ranks the same block first; a buyer
            // who already collided picks among more of the best ones, so
            // retries spread instead of colliding again.
            let spread = (1usize << attempt.saturating_sub(1).min(6)).min(blocks.len());
            let pick = usize::from(Uuid::new_v4().as_bytes()[0]) % spread;
            blocks.swap_remove(pick).seats
        }
    };
    let claimed = write_claim(client, new.showtime_id, movie, hold, ttl, &seats, &snapshot).await?;
    if claimed < seats.len() {
        return Ok((Attempt::Collided, true));
    }
    Ok((Attempt::Done(seats), false))
}

/// Makes sure the showtime has its lockable seat rows.
async fn seat_rows(
    client: &impl GenericClient,
    showtime: Uuid,
    movie: Uuid,
    layout: &SeatLayout,
) -> Result<(), tokio_postgres::Error> {
    let labels: Vec<&str> = layout.rows.iter().map(|row| row.label.as_str()).collect();
    let statement = client
        .prepare_cached(
            "insert into seat_row_locks (showtime_id, row_label, movie_id) \
             select $1, label, $2 from unnest($3::text[]) as label \
             where not exists (select 1 from seat_row_locks where showtime_id = $1) \
             on conflict do nothing",
        )
        .await?;
    client
        .execute(&statement, &[&showtime, &movie, &labels])
        .await?;
    Ok(())
}

async fn claim_pessimistic(
    client: &impl GenericClient,
    new: &NewHold<'_>,
    movie: Uuid,
    layout: &SeatLayout,
    hold: Uuid,
    ttl: f64,
    before: HashMap<String, SeatState>,
) -> Result<(Attempt<Vec<String>>, bool), tokio_postgres::Error> {
    // `before` is what an optimistic buyer would have chosen from: a
    // different outcome once the rows are locked is the conflict it would
    // have met.
    seat_rows(client, new.showtime_id, movie, layout).await?;
    match new.choice {
        SeatChoice::Seats(seats) => {
            let rows: BTreeSet<&str> = seats
                .iter()
                .filter_map(|seat| seat.split_once('-').map(|(row, _)| row))
                .collect();
            let rows: Vec<&str> = rows.into_iter().collect();
            let lock = client
                .prepare_cached(
                    "select row_label from seat_row_locks \
                     where showtime_id = $1 and row_label = any($2) \
                     order by row_label for update",
                )
                .await?;
            client.query(&lock, &[&new.showtime_id, &rows]).await?;
            let now = seat_snapshot(client, new.showtime_id, None).await?;
            let taken: Vec<&String> = seats
                .iter()
                .filter(|seat| is_unavailable(&now, seat))
                .collect();
            let contended = seats
                .iter()
                .any(|seat| is_unavailable(&before, seat) != is_unavailable(&now, seat));
            if !taken.is_empty() {
                return Ok((Attempt::Refused(taken_error(&taken)), contended));
            }
            let claimed =
                write_claim(client, new.showtime_id, movie, hold, ttl, seats, &now).await?;
            if claimed < seats.len() {
                return Ok((Attempt::Collided, true));
            }
            Ok((Attempt::Done(seats.clone()), contended))
        }
        SeatChoice::Best(request) => {
            let unavailable = |seat: &str| is_unavailable(&before, seat);
            let blocks = seating::best_blocks(layout, &unavailable, *request);
            let first_choice = blocks.first().map(|block| block.seats.clone());
            let mut rows: Vec<String> = Vec::new();
            for block in blocks {
                if !rows.contains(&block.row) {
                    rows.push(block.row);
                }
            }
            let lock = client
                .prepare_cached(
                    "select 1 from seat_row_locks \
                     where showtime_id = $1 and row_label = $2 for update skip locked",
                )
                .await?;
            let mut contended = false;
            for row in rows {
                if client
                    .query_opt(&lock, &[&new.showtime_id, &row])
                    .await?
                    .is_none()
                {
                    contended = true;
                    continue;
                }
                let now = seat_snapshot(client, new.showtime_id, Some(&row)).await?;
                let unavailable = |seat: &str| is_unavailable(&now, seat);
                let Some(block) = seating::best_in_row(layout, &row, &unavailable, *request) else {
                    contended = true;
                    continue;
                };
                contended |= first_choice.as_ref() != Some(&block.seats);
                let claimed = write_claim(
                    client,
                    new.showtime_id,
                    movie,
                    hold,
                    ttl,
                    &block.seats,
                    &now,
                )
                .await?;
                if claimed < block.seats.len() {
                    return Ok((Attempt::Collided, true));
                }
                return Ok((Attempt::Done(block.seats), contended));
            }
            if contended {
                // Rows with free seats were locked by other buyers, who may
                // yet fail; the next attempt looks again.
                return Ok((Attempt::Collided, true));
            }
            Ok((Attempt::Refused(no_block_error(*request)), contended))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_hold(
    client: &impl GenericClient,
    id: Uuid,
    new: &NewHold<'_>,
    movie: Uuid,
    seats: &[String],
    prices: &[i64],
    currency: &str,
    ttl: f64,
    layout: &SeatLayout,
) -> Result<Hold, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "insert into holds as h (id, showtime_id, movie_id, customer, token_hash, seats, prices, \
                 currency, status, expires_at, claimants) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, 'active', now() + make_interval(secs => $9), $10) \
             returning {HOLD_COLUMNS}"
        ))
        .await?;
    let row = client
        .query_one(
            &statement,
            &[
                &id,
                &new.showtime_id,
                &movie,
                &new.customer,
                &new.token_hash,
                &seats,
                &prices,
                &currency,
                &ttl,
                &new.claimants,
            ],
        )
        .await?;
    Ok(hold_from_row(&row, Some(layout)))
}
