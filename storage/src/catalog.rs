//! The catalogue's writes and reads across shards: theaters and screens on
//! the theater's node, showtimes and seat states on the movie's node.
//!
//! Scheduling a showtime touches two nodes. The screen's timetable (theater
//! node) is reserved first under the screen's row lock, which is what
//! refuses overlaps; then the showtime is written with its movie. If that
//! second write fails, the reservation is released. A reservation left
//! behind by a crash between the two is recognised the next time it
//! blocks a request, since its showtime does not exist, and is cleared.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use futures::future::try_join_all;
use marquee_sharding::{ids, Server, ShardNode};
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::demo_places::SeedShowtime;
use crate::key_data;
use crate::layout::SeatLayout;
use crate::movies::{self, Movie};
use crate::retry;
use crate::showtimes::{self, NewShowtime, Schedule, Showtime};
use crate::store::{rejected, KeyLock};
use crate::theaters::{self, Screen, Theater, TheaterInfo};
use crate::{Error, Storage};

/// Locks for a write to a theater: the theater's own row, or a share of it
/// for its screens and timetables.
const LOCK_THEATER: &str = "select 1 from theaters where id = $1 for update";
const SHARE_THEATER: &str = "select 1 from theaters where id = $1 for share";

fn theater_key<'a>(id: &'a Uuid, lock: &'static str) -> KeyLock<'a> {
    KeyLock {
        hash: ids::route_hash(*id),
        kind: "theater",
        lock,
        param: id,
    }
}

/// A reservation younger than this may belong to a showtime still being
/// written on its movie's node; older ones without a showtime are debris.
const ORPHAN_SLOT_AGE_SECONDS: f64 = 60.0;

/// Filters for listing movies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MovieFilter {
    pub genre: Option<String>,
    /// Case-insensitive start of the title.
    pub title_prefix: Option<String>,
    pub released_from: Option<chrono::NaiveDate>,
    pub released_to: Option<chrono::NaiveDate>,
    /// Keyset position: (lower-cased title, id) of the last movie seen.
    pub after: Option<(String, Uuid)>,
    pub limit: usize,
}

/// One page of movies, in title order.
#[derive(Debug, Clone, PartialEq)]
pub struct MoviePage {
    pub movies: Vec<Movie>,
    /// Where the next page starts, when there is one.
    pub next: Option<(String, Uuid)>,
}

/// A showtime to schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewShowtimeRequest {
    pub movie_id: Uuid,
    pub theater_id: Uuid,
    pub screen_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub format: String,
    pub language: String,
    pub currency: String,
    pub prices: crate::layout::Prices,
    pub blocked_seats: Vec<String>,
    /// Cleaning and admission time added after the movie's runtime.
    pub turnaround: Duration,
}

/// A change to a scheduled showtime.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowtimeChange {
    pub starts_at: DateTime<Utc>,
    pub format: String,
    pub language: String,
    pub currency: String,
    pub prices: crate::layout::Prices,
    pub turnaround: Duration,
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl Storage {
    fn theater_primary(&self, id: Uuid) -> Result<&Server, Error> {
        Ok(&self.cluster().route(id.as_bytes())?.primary)
    }

    fn showtime_primary(&self, id: Uuid) -> Result<&Server, Error> {
        Ok(&self
            .cluster()
            .route_hash(ids::scoped_route_hash(id))?
            .primary)
    }

    /// Reloads the shard map when the catalog has a newer one; true if it
    /// did. Called when an id routed by this instance's map was not found,
    /// since the data may have moved.
    pub(crate) async fn refresh_if_stale(&self) -> Result<bool, Error> {
        let catalog = self.cluster().catalog();
        let version: i64 = catalog
            .get()
            .await?
            .query_one("select version from shard_map", &[])
            .await
            .map_err(|err| rejected(catalog, err))?
            .get(0);
        if version == self.cluster().routing().version {
            return Ok(false);
        }
        self.load_placement().await?;
        Ok(true)
    }

    /// Creates or replaces a theater; waits out a rebalance, which places
    /// theaters by the registry it scanned.
    pub async fn put_theater(&self, id: Uuid, info: &TheaterInfo) -> Result<Theater, Error> {
        self.unless_rebalancing(|| {
            self.in_key_transaction(theater_key(&id, LOCK_THEATER), |transaction, server| {
                let info = info.clone();
                Box::pin(async move {
                    theaters::upsert(transaction, id, &info)
                        .await
                        .map_err(|err| rejected(server, err))
                })
            })
        })
        .await
    }

    pub async fn theater(&self, id: Uuid) -> Result<Option<Theater>, Error> {
        self.read_theater(id, |client| Box::pin(theaters::get(client, id)))
            .await
    }

    /// The theaters among `ids`, one query per node that holds any.
    pub async fn theaters_by_id(&self, ids: &[Uuid]) -> Result<Vec<Theater>, Error> {
        let mut attempt = 0;
        loop {
            let mut by_node: Vec<(&Server, Vec<Uuid>)> = Vec::new();
            for id in ids {
                let server = self.theater_primary(*id)?;
                match by_node.iter_mut().find(|(s, _)| std::ptr::eq(*s, server)) {
                    Some((_, group)) => group.push(*id),
                    None => by_node.push((server, vec![*id])),
                }
            }
            let found = try_join_all(by_node.into_iter().map(|(server, group)| async move {
                let client = server.get().await?;
                let theaters = theaters::by_ids(&client, &group)
                    .await
                    .map_err(|err| rejected(server, err))?;
                let hashes: Vec<u64> = group.iter().map(|id| ids::route_hash(*id)).collect();
                let moved = key_data::first_fenced(&client, &hashes)
                    .await
                    .map_err(|err| rejected(server, err))?;
                Ok::<_, Error>((server, theaters, moved))
            }))
            .await?;
            match found.iter().find(|(_, _, moved)| moved.is_some()) {
                Some((server, _, Some(moved_to))) => {
                    self.after_stale_route(
                        server,
                        "theaters".to_owned(),
                        moved_to.clone(),
                        &mut attempt,
                    )
                    .await?;
                }
                _ => {
                    return Ok(found
                        .into_iter()
                        .flat_map(|(_, theaters, _)| theaters)
                        .collect())
                }
            }
        }
    }

    /// Every theater on every node, for the search index.
    pub async fn all_theaters(&self) -> Result<Vec<Theater>, Error> {
        self.find_theaters(None, None).await
    }

    /// Deletes a theater that has no screens left.
    pub async fn delete_theater(&self, id: Uuid) -> Result<(), Error> {
        let deleted = self
            .in_key_transaction(theater_key(&id, LOCK_THEATER), |transaction, server| {
                Box::pin(async move {
                    theaters::delete(transaction, id)
                        .await
                        .map_err(|err| rejected(server, err))
                })
            })
            .await?;
        match deleted {
            None => Err(Error::Conflict(format!(
                "theater {id} still has screens; delete them first"
            ))),
            Some(0) => Err(Error::NotFound {
                what: "theater",
                id,
            }),
            Some(_) => Ok(()),
        }
    }

    /// Theaters on every node in a city and/or a bounding box. A theater
    /// caught between a rebalance's copy and the deletion of its source is
    /// on two nodes for a moment, with the same rows; it is listed once.
    pub async fn find_theaters(
        &self,
        city: Option<&str>,
        bounds: Option<(f64, f64, f64, f64)>,
    ) -> Result<Vec<Theater>, Error> {
        let per_shard = try_join_all(self.cluster().shards().iter().map(|shard| async move {
            theaters::find(&shard.primary.get().await?, city, bounds)
                .await
                .map_err(|err| rejected(&shard.primary, err))
        }))
        .await?;
        let mut seen = std::collections::HashSet::new();
        Ok(per_shard
            .into_iter()
            .flatten()
            .filter(|theater| seen.insert(theater.id))
            .collect())
    }

    pub async fn put_screen(
        &self,
        theater_id: Uuid,
        id: Uuid,
        name: &str,
        layout: &SeatLayout,
    ) -> Result<Screen, Error> {
        self.in_key_transaction(
            theater_key(&theater_id, SHARE_THEATER),
            |transaction, server| {
                let (name, layout) = (name.to_owned(), layout.clone());
                Box::pin(async move {
                    if theaters::get(transaction, theater_id)
                        .await
                        .map_err(|err| rejected(server, err))?
                        .is_none()
                    {
                        return Err(Error::NotFound {
                            what: "theater",
                            id: theater_id,
                        });
                    }
                    match theaters::upsert_screen(transaction, id, theater_id, &name, &layout).await
                    {
                        Ok(screen) => Ok(screen),
                        Err(err)
                            if err.code()
                                == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                        {
                            Err(Error::Conflict(format!(
                                "theater {theater_id} already has a screen named {name:?}"
                            )))
                        }
                        // The upsert's guard refuses to move a screen between
                        // theaters: the id belongs to another theater's screen.
                        Err(err)
                            if err.code().is_none()
                                && err.to_string().contains("unexpected number of rows") =>
                        {
                            Err(Error::Conflict(format!(
                                "screen {id} belongs to another theater"
                            )))
                        }
                        Err(err) => Err(rejected(server, err)),
                    }
                })
            },
        )
        .await
    }

    pub async fn screen(&self, theater_id: Uuid, id: Uuid) -> Result<Option<Screen>, Error> {
        self.read_theater(theater_id, |client| {
            Box::pin(theaters::screen(client, theater_id, id))
        })
        .await
    }

    pub async fn screens(&self, theater_id: Uuid) -> Result<Vec<Screen>, Error> {
        self.read_theater(theater_id, |client| {
            Box::pin(theaters::screens(client, theater_id))
        })
        .await
    }

    /// Runs `read` on the theater's node, again where the theater moved if
    /// that node has fenced it (see [`Storage::still_owns`]).
    async fn read_theater<T>(
        &self,
        id: Uuid,
        read: impl for<'c> Fn(
            &'c deadpool_postgres::Client,
        )
            -> futures::future::BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Error> {
        let mut attempt = 0;
        loop {
            let server = self.theater_primary(id)?;
            let client = server.get().await?;
            let value = read(&client).await.map_err(|err| rejected(server, err))?;
            if self
                .still_owns(
                    &client,
                    server,
                    ids::route_hash(id),
                    "theater",
                    &mut attempt,
                )
                .await?
            {
                return Ok(value);
            }
        }
    }

    pub async fn delete_screen(&self, theater_id: Uuid, id: Uuid) -> Result<(), Error> {
        let deleted = self
            .in_key_transaction(
                theater_key(&theater_id, SHARE_THEATER),
                |transaction, server| {
                    Box::pin(async move {
                        theaters::delete_screen(transaction, theater_id, id)
                            .await
                            .map_err(|err| rejected(server, err))
                    })
                },
            )
            .await?;
        match deleted {
            None => Err(Error::Conflict(format!(
                "screen {id} has showtimes scheduled; delete them first"
            ))),
            Some(0) => Err(Error::NotFound { what: "screen", id }),
            Some(_) => Ok(()),
        }
    }

    /// Reserves `[starts_at, ends_at)` on a screen for a showtime, refusing
    /// an overlap with any other showtime of the screen.
    async fn reserve_slot(
        &self,
        theater_id: Uuid,
        screen_id: Uuid,
        showtime_id: Uuid,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        loop {
            let clash = self
                .in_key_transaction(
                    theater_key(&theater_id, SHARE_THEATER),
                    |transaction, server| {
                        Box::pin(async move {
                            if !theaters::lock_screen(transaction, screen_id)
                                .await
                                .map_err(|err| rejected(server, err))?
                            {
                                return Err(Error::NotFound {
                                    what: "screen",
                                    id: screen_id,
                                });
                            }
                            let clash = theaters::overlapping(
                                transaction,
                                screen_id,
                                starts_at,
                                ends_at,
                                showtime_id,
                            )
                            .await
                            .map_err(|err| rejected(server, err))?;
                            if clash.is_none() {
                                theaters::put_slot(
                                    transaction,
                                    screen_id,
                                    showtime_id,
                                    starts_at,
                                    ends_at,
                                )
                                .await
                                .map_err(|err| rejected(server, err))?;
                            }
                            Ok(clash)
                        })
                    },
                )
                .await?;
            let Some(clash) = clash else {
                return Ok(());
            };
            let orphan = clash.created_age_seconds > ORPHAN_SLOT_AGE_SECONDS
                && self.showtime(clash.showtime_id).await?.is_none();
            if !orphan {
                return Err(Error::Conflict(format!(
                    "the screen is taken from {} to {} by showtime {}",
                    clash.starts_at.to_rfc3339(),
                    clash.ends_at.to_rfc3339(),
                    clash.showtime_id
                )));
            }
            tracing::warn!(showtime = %clash.showtime_id, %screen_id, "clearing a reservation whose showtime was never written");
            self.delete_slot(theater_id, screen_id, clash.showtime_id)
                .await?;
        }
    }

    async fn delete_slot(
        &self,
        theater_id: Uuid,
        screen_id: Uuid,
        showtime_id: Uuid,
    ) -> Result<u64, Error> {
        self.in_key_transaction(
            theater_key(&theater_id, SHARE_THEATER),
            |transaction, server| {
                Box::pin(async move {
                    theaters::delete_slot(transaction, screen_id, showtime_id)
                        .await
                        .map_err(|err| rejected(server, err))
                })
            },
        )
        .await
    }

    async fn release_slot(&self, theater_id: Uuid, screen_id: Uuid, showtime_id: Uuid) {
        if let Err(err) = self.delete_slot(theater_id, screen_id, showtime_id).await {
            // The reservation blocks nothing for long: the next overlapping
            // request finds its showtime missing and clears it.
            tracing::warn!(error = %err, %showtime_id, "could not release a screen reservation");
        }
    }

    /// Checks a schedule against the movie, the screen's layout and the
    /// showtime's own seats, naming every problem.
    fn check_schedule(
        movie: &Movie,
        theater: &TheaterInfo,
        layout: &SeatLayout,
        starts_at: DateTime<Utc>,
        prices: &crate::layout::Prices,
        blocked_seats: &[String],
    ) -> Result<(), Error> {
        let mut fields = Vec::new();
        if !theater.is_open_at(starts_at) {
            fields.push((
                "starts_at".to_owned(),
                format!("{} is closed at that time", theater.name),
            ));
        }
        if movie.runtime_minutes.is_none() {
            fields.push((
                "movie_id".to_owned(),
                "the movie has no runtime, so the showtime's end cannot be derived".to_owned(),
            ));
        }
        if let Some(release) = movie.release_date {
            if starts_at.date_naive() < release {
                fields.push((
                    "starts_at".to_owned(),
                    format!("the movie is released on {release}; a showtime cannot start before"),
                ));
            }
        }
        let missing: Vec<&str> = layout
            .kinds()
            .into_iter()
            .filter(|kind| !prices.contains_key(kind))
            .map(|kind| kind.as_str())
            .collect();
        if !missing.is_empty() {
            fields.push((
                "prices".to_owned(),
                format!(
                    "the screen has {} seats without a price",
                    missing.join(", ")
                ),
            ));
        }
        for (i, seat) in blocked_seats.iter().enumerate() {
            if layout.kind_of(seat).is_none() {
                fields.push((
                    format!("blocked_seats[{i}]"),
                    format!("seat {seat} is not in the screen's layout"),
                ));
            }
        }
        if fields.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid {
                detail: fields
                    .iter()
                    .map(|(_, message)| message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                fields,
            })
        }
    }

    /// Schedules a showtime: reserves the screen, then writes the showtime
    /// with its movie. Nothing is left behind when either step refuses.
    pub async fn create_showtime(&self, request: &NewShowtimeRequest) -> Result<Showtime, Error> {
        let movie = self.movie(request.movie_id).await?.ok_or(Error::NotFound {
            what: "movie",
            id: request.movie_id,
        })?;
        let screen = self
            .screen(request.theater_id, request.screen_id)
            .await?
            .ok_or(Error::NotFound {
                what: "screen",
                id: request.screen_id,
            })?;
        let theater = self
            .theater(request.theater_id)
            .await?
            .ok_or(Error::NotFound {
                what: "theater",
                id: request.theater_id,
            })?;
        Self::check_schedule(
            &movie,
            &theater.info,
            &screen.layout,
            request.starts_at,
            &request.prices,
            &request.blocked_seats,
        )?;
        let runtime = Duration::minutes(i64::from(movie.runtime_minutes.unwrap_or_default()));
        let schedule = Schedule {
            starts_at: request.starts_at,
            ends_at: request.starts_at + runtime + request.turnaround,
            format: request.format.clone(),
            language: request.language.clone(),
            currency: request.currency.clone(),
            prices: request.prices.clone(),
        };
        let id = ids::scoped(movie.id);
        self.reserve_slot(
            request.theater_id,
            request.screen_id,
            id,
            schedule.starts_at,
            schedule.ends_at,
        )
        .await?;
        let blocked: Vec<String> = request
            .blocked_seats
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let new = NewShowtime {
            id,
            movie_id: movie.id,
            theater_id: request.theater_id,
            screen_id: request.screen_id,
            layout: &screen.layout,
            schedule: &schedule,
            blocked_seats: &blocked,
        };
        match self.write_showtime(movie.id, &new).await {
            Ok(showtime) => Ok(showtime),
            Err(err) => {
                self.release_slot(request.theater_id, request.screen_id, id)
                    .await;
                Err(err)
            }
        }
    }

    async fn write_showtime(&self, movie: Uuid, new: &NewShowtime<'_>) -> Result<Showtime, Error> {
        let mut attempt = 0;
        loop {
            let server = self.movie_primary(movie)?;
            let mut client = server.get().await?;
            let Some((transaction, exists)) = self
                .begin_on_movie(&mut client, server, movie, false, &mut attempt)
                .await?
            else {
                continue;
            };
            if !exists {
                return Err(Error::NotFound {
                    what: "movie",
                    id: movie,
                });
            }
            showtimes::insert(&transaction, new)
                .await
                .map_err(|err| rejected(server, err))?;
            let stored = showtimes::get(&transaction, new.id)
                .await
                .map_err(|err| rejected(server, err))?
                .ok_or(Error::NotFound {
                    what: "showtime",
                    id: new.id,
                })?;
            transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err))?;
            return Ok(stored);
        }
    }

    pub async fn showtime(&self, id: Uuid) -> Result<Option<Showtime>, Error> {
        for _ in 0..2 {
            let server = self.showtime_primary(id)?;
            let found = showtimes::get(&server.get().await?, id)
                .await
                .map_err(|err| rejected(server, err))?;
            if found.is_some() || !self.refresh_if_stale().await? {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// A showtime with the layout it is sold under and its seats that are
    /// not free.
    pub async fn seat_map(
        &self,
        id: Uuid,
    ) -> Result<
        Option<(
            Showtime,
            SeatLayout,
            std::collections::BTreeMap<String, String>,
        )>,
        Error,
    > {
        let Some(showtime) = self.showtime(id).await? else {
            return Ok(None);
        };
        let server = self.showtime_primary(id)?;
        let client = server.get().await?;
        let layout = showtimes::layout(&client, &showtime.layout_id)
            .await
            .map_err(|err| rejected(server, err))?
            .ok_or(Error::NotFound {
                what: "showtime",
                id,
            })?;
        let states = showtimes::seat_states(&client, id)
            .await
            .map_err(|err| rejected(server, err))?;
        Ok(Some((showtime, layout, states)))
    }

    /// Reschedules a showtime, moving its screen reservation first.
    pub async fn change_showtime(
        &self,
        id: Uuid,
        change: &ShowtimeChange,
    ) -> Result<Showtime, Error> {
        let current = self.showtime(id).await?.ok_or(Error::NotFound {
            what: "showtime",
            id,
        })?;
        let movie = self.movie(current.movie_id).await?.ok_or(Error::NotFound {
            what: "movie",
            id: current.movie_id,
        })?;
        let server = self.showtime_primary(id)?;
        let layout = showtimes::layout(&server.get().await?, &current.layout_id)
            .await
            .map_err(|err| rejected(server, err))?
            .ok_or(Error::NotFound {
                what: "showtime",
                id,
            })?;
        let theater = self
            .theater(current.theater_id)
            .await?
            .ok_or(Error::NotFound {
                what: "theater",
                id: current.theater_id,
            })?;
        Self::check_schedule(
            &movie,
            &theater.info,
            &layout,
            change.starts_at,
            &change.prices,
            &[],
        )?;
        let runtime = Duration::minutes(i64::from(movie.runtime_minutes.unwrap_or_default()));
        let schedule = Schedule {
            starts_at: change.starts_at,
            ends_at: change.starts_at + runtime + change.turnaround,
            format: change.format.clone(),
            language: change.language.clone(),
            currency: change.currency.clone(),
            prices: change.prices.clone(),
        };
        self.reserve_slot(
            current.theater_id,
            current.screen_id,
            id,
            schedule.starts_at,
            schedule.ends_at,
        )
        .await?;
        let outcome = self.write_schedule(current.movie_id, id, &schedule).await;
        if outcome.is_err() {
            // Put the screen's timetable back as it was.
            let restored = self
                .reserve_slot(
                    current.theater_id,
                    current.screen_id,
                    id,
                    current.schedule.starts_at,
                    current.schedule.ends_at,
                )
                .await;
            if let Err(err) = restored {
                tracing::warn!(error = %err, showtime = %id, "could not restore a screen reservation");
            }
        }
        outcome
    }

    async fn write_schedule(
        &self,
        movie: Uuid,
        id: Uuid,
        schedule: &Schedule,
    ) -> Result<Showtime, Error> {
        let mut attempt = 0;
        loop {
            let server = self.movie_primary(movie)?;
            let mut client = server.get().await?;
            let Some((transaction, _)) = self
                .begin_on_movie(&mut client, server, movie, false, &mut attempt)
                .await?
            else {
                continue;
            };
            let stored = showtimes::update(&transaction, id, schedule)
                .await
                .map_err(|err| rejected(server, err))?
                .ok_or(Error::NotFound {
                    what: "showtime",
                    id,
                })?;
            transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err))?;
            return Ok(stored);
        }
    }

    /// Deletes a showtime nobody holds or bought seats for, then frees its
    /// screen.
    pub async fn delete_showtime(&self, id: Uuid) -> Result<(), Error> {
        let current = self.showtime(id).await?.ok_or(Error::NotFound {
            what: "showtime",
            id,
        })?;
        let movie = current.movie_id;
        let mut attempt = 0;
        loop {
            let server = self.movie_primary(movie)?;
            let mut client = server.get().await?;
            let Some((transaction, _)) = self
                .begin_on_movie(&mut client, server, movie, false, &mut attempt)
                .await?
            else {
                continue;
            };
            let taken = showtimes::seats_taken(&transaction, id)
                .await
                .map_err(|err| rejected(server, err))?;
            if taken > 0 {
                return Err(Error::Conflict(format!(
                    "showtime {id} has {taken} seats held or sold; cancel those bookings first"
                )));
            }
            let orders = showtimes::orders_placed(&transaction, id)
                .await
                .map_err(|err| rejected(server, err))?;
            if orders > 0 {
                return Err(Error::Conflict(format!(
                    "showtime {id} has {orders} orders on record; it can be rescheduled but not deleted"
                )));
            }
            showtimes::delete(&transaction, id)
                .await
                .map_err(|err| rejected(server, err))?;
            transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err))?;
            break;
        }
        self.release_slot(current.theater_id, current.screen_id, id)
            .await;
        Ok(())
    }

    /// A theater's showtimes on every node.
    pub async fn theater_showtimes(&self, theater_id: Uuid) -> Result<Vec<Showtime>, Error> {
        let per_shard = try_join_all(self.cluster().shards().iter().map(|shard| async move {
            showtimes::of_theater(&shard.primary.get().await?, theater_id)
                .await
                .map_err(|err| rejected(&shard.primary, err))
        }))
        .await?;
        Ok(per_shard.into_iter().flatten().collect())
    }

    /// A movie's showtimes overlapping `[from, to)`.
    pub async fn movie_showtimes(
        &self,
        movie: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Showtime>, Error> {
        let server = self.movie_primary(movie)?;
        showtimes::of_movie(&server.get().await?, movie, from, to)
            .await
            .map_err(|err| rejected(server, err))
    }

    /// Deletes a movie without showtimes.
    pub async fn delete_movie(&self, id: Uuid) -> Result<(), Error> {
        let mut attempt = 0;
        loop {
            let server = self.movie_primary(id)?;
            let mut client = server.get().await?;
            let Some((transaction, exists)) = self
                .begin_on_movie(&mut client, server, id, true, &mut attempt)
                .await?
            else {
                continue;
            };
            if !exists {
                return Err(Error::NotFound { what: "movie", id });
            }
            let scheduled = showtimes::count_of_movie(&transaction, id)
                .await
                .map_err(|err| rejected(server, err))?;
            if scheduled > 0 {
                return Err(Error::Conflict(format!(
                    "movie {id} has {scheduled} showtimes; delete them first"
                )));
            }
            movies::delete(&transaction, id)
                .await
                .map_err(|err| rejected(server, err))?;
            crate::outbox::record(&transaction, "movie", id, "movie.deleted")
                .await
                .map_err(|err| rejected(server, err))?;
            return transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err));
        }
    }

    /// A page of movies in title order, merged from every node: each node
    /// returns its next `limit` by the same key, so the first `limit` of
    /// the merge are exactly the page.
    pub async fn list_movies(&self, filter: &MovieFilter) -> Result<MoviePage, Error> {
        let limit = i64::try_from(filter.limit.max(1)).unwrap_or(100);
        let prefix = filter
            .title_prefix
            .as_ref()
            .map(|p| format!("{}%", escape_like(&p.to_lowercase())));
        let (after_title, after_id) = match &filter.after {
            Some((title, id)) => (Some(title.clone()), Some(*id)),
            None => (None, None),
        };
        let per_shard = try_join_all(self.cluster().shards().iter().map(|shard| {
            let (prefix, after_title) = (prefix.clone(), after_title.clone());
            async move {
                let client = shard.primary.get().await?;
                movies::page(
                    &client,
                    &movies::PageQuery {
                        genre: filter.genre.as_deref(),
                        title_like: prefix.as_deref(),
                        released_from: filter.released_from,
                        released_to: filter.released_to,
                        after_title: after_title.as_deref(),
                        after_id,
                        limit: limit + 1,
                    },
                )
                .await
                .map_err(|err| rejected(&shard.primary, err))
            }
        }))
        .await?;
        // Keys are compared bytewise, as the nodes order them (collation C).
        let mut merged: Vec<(String, Movie)> = per_shard.into_iter().flatten().collect();
        merged.sort_by(|a, b| (&a.0, a.1.id).cmp(&(&b.0, b.1.id)));
        let more = merged.len() > filter.limit;
        merged.truncate(filter.limit);
        let next = if more {
            merged.last().map(|(key, movie)| (key.clone(), movie.id))
        } else {
            None
        };
        Ok(MoviePage {
            movies: merged.into_iter().map(|(_, movie)| movie).collect(),
            next,
        })
    }

    /// Writes demo showtimes in bulk: screen reservations on each theater's
    /// node, showtimes on each movie's node, a statement per node per
    /// batch. Rows that exist are left alone, so seeding twice is safe.
    /// Bulk loads bypass the change stream; instances index them when they
    /// start.
    ///
    /// Batches run side by side and share seat layouts, so each writes its
    /// layouts in one statement in id order: two batches then wait for each
    /// other's layouts in the same order and cannot deadlock. Each
    /// per-node write is one transaction, run again if the database still
    /// gives it up under contention.
    pub async fn seed_showtimes(&self, batch: &[SeedShowtime]) -> Result<(), Error> {
        let mut slots: Vec<(&Server, Vec<&SeedShowtime>)> = Vec::new();
        let mut shows: Vec<(&Server, Vec<&SeedShowtime>)> = Vec::new();
        for show in batch {
            for (groups, server) in [
                (&mut slots, self.theater_primary(show.theater_id)?),
                (&mut shows, self.movie_primary(show.movie_id)?),
            ] {
                match groups.iter_mut().find(|(s, _)| std::ptr::eq(*s, server)) {
                    Some((_, group)) => group.push(show),
                    None => groups.push((server, vec![show])),
                }
            }
        }
        try_join_all(slots.into_iter().map(|(server, group)| async move {
            let screens: Vec<Uuid> = group.iter().map(|s| s.screen_id).collect();
            let ids: Vec<Uuid> = group.iter().map(|s| s.id).collect();
            let starts: Vec<DateTime<Utc>> = group.iter().map(|s| s.starts_at).collect();
            let ends: Vec<DateTime<Utc>> = group.iter().map(|s| s.ends_at).collect();
            retry::on_contention(|| async {
                server
                    .get()
                    .await?
                    .execute(
                        "insert into screen_slots (screen_id, showtime_id, starts_at, ends_at) \
                         select * from unnest($1::uuid[], $2::uuid[], $3::timestamptz[], \
                             $4::timestamptz[]) \
                         order by 1, 2 \
                         on conflict do nothing",
                        &[&screens, &ids, &starts, &ends],
                    )
                    .await
                    .map_err(|err| rejected(server, err))
            })
            .await
        }))
        .await?;
        try_join_all(shows.into_iter().map(|(server, group)| async move {
            let layouts: BTreeMap<String, &SeatLayout> = group
                .iter()
                .map(|show| (show.layout.layout_id(), &show.layout))
                .collect();
            let (layout_keys, layout_values): (Vec<&String>, Vec<Json<&SeatLayout>>) = layouts
                .iter()
                .map(|(id, layout)| (id, Json(*layout)))
                .unzip();
            let column =
                |f: &dyn Fn(&SeedShowtime) -> Uuid| group.iter().map(|s| f(s)).collect::<Vec<_>>();
            let (ids, movies, theaters, screens) = (
                column(&|s| s.id),
                column(&|s| s.movie_id),
                column(&|s| s.theater_id),
                column(&|s| s.screen_id),
            );
            let layout_ids: Vec<String> = group.iter().map(|s| s.layout.layout_id()).collect();
            let starts: Vec<DateTime<Utc>> = group.iter().map(|s| s.starts_at).collect();
            let ends: Vec<DateTime<Utc>> = group.iter().map(|s| s.ends_at).collect();
            let formats: Vec<&str> = group.iter().map(|s| s.format.as_str()).collect();
            let languages: Vec<&str> = group.iter().map(|s| s.language.as_str()).collect();
            let prices: Vec<Json<&crate::layout::Prices>> =
                group.iter().map(|s| Json(&s.prices)).collect();
            let capacities: Vec<i32> = group
                .iter()
                .map(|s| i32::try_from(s.layout.capacity()).unwrap_or(i32::MAX))
                .collect();
            retry::on_contention(|| async {
                let mut client = server.get().await?;
                let transaction = client
                    .transaction()
                    .await
                    .map_err(|err| rejected(server, err))?;
                transaction
                    .execute(
                        "insert into seat_layouts (id, layout) \
                         select * from unnest($1::text[], $2::jsonb[]) order by 1 \
                         on conflict (id) do nothing",
                        &[&layout_keys, &layout_values],
                    )
                    .await
                    .map_err(|err| rejected(server, err))?;
                transaction
                    .execute(
                        "insert into showtimes (id, movie_id, theater_id, screen_id, layout_id, \
                             starts_at, ends_at, format, language, currency, prices, capacity) \
                         select id, movie, theater, screen, layout, starts, ends, format, \
                             language, 'USD', prices, capacity \
                         from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], \
                             $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], \
                             $10::jsonb[], $11::int4[]) \
                             as t(id, movie, theater, screen, layout, starts, ends, format, \
                                 language, prices, capacity) \
                         order by id \
                         on conflict (id) do nothing",
                        &[
                            &ids,
                            &movies,
                            &theaters,
                            &screens,
                            &layout_ids,
                            &starts,
                            &ends,
                            &formats,
                            &languages,
                            &prices,
                            &capacities,
                        ],
                    )
                    .await
                    .map_err(|err| rejected(server, err))?;
                transaction
                    .commit()
                    .await
                    .map_err(|err| rejected(server, err))
            })
            .await
        }))
        .await?;
        Ok(())
    }

    /// The newest event sequence in a node's outbox, 0 when it is empty.
    pub async fn outbox_head(&self, node: &ShardNode) -> Result<i64, Error> {
        let server = &node.primary;
        crate::outbox::head(&server.get().await?)
            .await
            .map_err(|err| rejected(server, err))
    }

    /// A node's outbox events after `after`, in sequence order.
    pub async fn outbox_after(
        &self,
        node: &ShardNode,
        after: i64,
        limit: i64,
    ) -> Result<Vec<crate::outbox::Event>, Error> {
        let server = &node.primary;
        crate::outbox::after(&server.get().await?, after, limit)
            .await
            .map_err(|err| rejected(server, err))
    }

    /// A node's showtimes after `after` in id order, a page at a time.
    pub async fn showtime_page(
        &self,
        node: &ShardNode,
        after: Uuid,
        limit: i64,
    ) -> Result<Vec<Showtime>, Error> {
        let server = &node.primary;
        showtimes::page(&server.get().await?, after, limit)
            .await
            .map_err(|err| rejected(server, err))
    }
}
