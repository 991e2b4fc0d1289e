//! Showtimes and their seat states. Both live with the movie: a showtime's
//! id carries the movie's routing hash, so a seat map, a hold or an order
//! reaches exactly one shard.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::layout::{Prices, SeatLayout};
use crate::outbox;

/// Everything about a showtime that an operator writes, besides where.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// `2d`, `3d` or `imax`.
    pub format: String,
    pub language: String,
    pub currency: String,
    pub prices: Prices,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Showtime {
    pub id: Uuid,
    pub movie_id: Uuid,
    pub theater_id: Uuid,
    pub screen_id: Uuid,
    pub layout_id: String,
    pub schedule: Schedule,
    pub capacity: i32,
    /// Seats neither held, sold nor blocked.
    pub seats_available: i32,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A waiting room is on: holds need a pass from its line.
    pub waiting_room: bool,
}

const COLUMNS: &str = "s.id, s.movie_id, s.theater_id, s.screen_id, s.layout_id, s.starts_at, \
     s.ends_at, s.format, s.language, s.currency, s.prices, s.capacity, \
     s.capacity - (select count(*) from seat_states x where x.showtime_id = s.id \
         and (x.state <> 'held' or x.expires_at > now()))::int4, \
     s.version, s.created_at, s.updated_at, \
     exists (select 1 from waiting_rooms w where w.showtime_id = s.id and w.active \
         and w.sold_out_at is null)";

fn from_row(row: &Row) -> Showtime {
    let Json(prices): Json<Prices> = row.get(10);
    Showtime {
        id: row.get(0),
        movie_id: row.get(1),
        theater_id: row.get(2),
        screen_id: row.get(3),
        layout_id: row.get(4),
        schedule: Schedule {
            starts_at: row.get(5),
            ends_at: row.get(6),
            format: row.get(7),
            language: row.get(8),
            currency: row.get(9),
            prices,
        },
        capacity: row.get(11),
        seats_available: row.get(12),
        version: row.get(13),
        created_at: row.get(14),
        updated_at: row.get(15),
        waiting_room: row.get(16),
    }
}

/// Stores a layout snapshot once per shard.
pub async fn put_layout(
    client: &impl GenericClient,
    layout: &SeatLayout,
) -> Result<String, tokio_postgres::Error> {
    let id = layout.layout_id();
    let statement = client
        .prepare_cached(
            "insert into seat_layouts (id, layout) values ($1, $2) on conflict (id) do nothing",
        )
        .await?;
    client.execute(&statement, &[&id, &Json(layout)]).await?;
    Ok(id)
}

pub async fn layout(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<SeatLayout>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached("select layout from seat_layouts where id = $1")
        .await?;
    Ok(client.query_opt(&statement, &[&id]).await?.map(|row| {
        let Json(layout): Json<SeatLayout> = row.get(0);
        layout
    }))
}

/// A new showtime, as written by [`insert`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewShowtime<'a> {
    pub id: Uuid,
    pub movie_id: Uuid,
    pub theater_id: Uuid,
    pub screen_id: Uuid,
    pub layout: &'a SeatLayout,
    pub schedule: &'a Schedule,
    pub blocked_seats: &'a [String],
}

/// Inserts a showtime with its blocked seats and records the event.
pub async fn insert(
    client: &impl GenericClient,
    new: &NewShowtime<'_>,
) -> Result<(), tokio_postgres::Error> {
    let layout_id = put_layout(client, new.layout).await?;
    let capacity = i32::try_from(new.layout.capacity()).unwrap_or(i32::MAX);
    let schedule = new.schedule;
    let statement = client
        .prepare_cached(
            "insert into showtimes (id, movie_id, theater_id, screen_id, layout_id, starts_at, \
                 ends_at, format, language, currency, prices, capacity) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &new.id,
                &new.movie_id,
                &new.theater_id,
                &new.screen_id,
                &layout_id,
                &schedule.starts_at,
                &schedule.ends_at,
                &schedule.format,
                &schedule.language,
                &schedule.currency,
                &Json(&schedule.prices),
                &capacity,
            ],
        )
        .await?;
    if !new.blocked_seats.is_empty() {
        client
            .execute(
                "insert into seat_states (showtime_id, seat, movie_id, state) \
                 select $1, seat, $2, 'blocked' from unnest($3::text[]) as seat",
                &[&new.id, &new.movie_id, &new.blocked_seats],
            )
            .await?;
    }
    outbox::record(client, "showtime", new.id, "showtime.created").await
}

/// Rewrites a showtime's schedule; `None` when it does not exist.
pub async fn update(
    client: &impl GenericClient,
    id: Uuid,
    schedule: &Schedule,
) -> Result<Option<Showtime>, tokio_postgres::Error> {
    let updated = client
        .execute(
            "update showtimes set starts_at = $2, ends_at = $3, format = $4, language = $5, \
                 currency = $6, prices = $7, version = version + 1, updated_at = now() \
             where id = $1",
            &[
                &id,
                &schedule.starts_at,
                &schedule.ends_at,
                &schedule.format,
                &schedule.language,
                &schedule.currency,
                &Json(&schedule.prices),
            ],
        )
        .await?;
    if updated == 0 {
        return Ok(None);
    }
    outbox::record(client, "showtime", id, "showtime.changed").await?;
    get(client, id).await
}

/// Seats held or sold: a showtime with any cannot be deleted.
pub async fn seats_taken(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "select count(*) from seat_states where showtime_id = $1 and state <> 'blocked' \
             and (state <> 'held' or expires_at > now())",
            &[&id],
        )
        .await?
        .get(0))
}

/// Orders ever placed for a showtime: their record outlives cancellation,
/// so a showtime with any is kept.
pub async fn orders_placed(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("select count(*) from orders where showtime_id = $1", &[&id])
        .await?
        .get(0))
}

pub async fn delete(client: &impl GenericClient, id: Uuid) -> Result<u64, tokio_postgres::Error> {
    for table in [
        "seat_lock_switches",
        "seat_states",
        "seat_row_locks",
        "showtime_customers",
        "holds",
    ] {
        client
            .execute(
                &format!("delete from {table} where showtime_id = $1"),
                &[&id],
            )
            .await?;
    }
    let deleted = client
        .execute("delete from showtimes where id = $1", &[&id])
        .await?;
    if deleted > 0 {
        outbox::record(client, "showtime", id, "showtime.deleted").await?;
    }
    Ok(deleted)
}

pub async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Showtime>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {COLUMNS} from showtimes s where s.id = $1"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(from_row))
}

/// A movie's showtimes that end after `from` and start before `to`,
/// earliest first.
pub async fn of_movie(
    client: &impl GenericClient,
    movie_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Showtime>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {COLUMNS} from showtimes s \
             where s.movie_id = $1 and s.ends_at > $2 and s.starts_at < $3 \
             order by s.starts_at, s.id"
        ))
        .await?;
    Ok(client
        .query(&statement, &[&movie_id, &from, &to])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// Showtimes of one shard after `after` in id order, a page at a time, for
/// building the search index.
pub async fn page(
    client: &impl GenericClient,
    after: Uuid,
    limit: i64,
) -> Result<Vec<Showtime>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {COLUMNS} from showtimes s where s.id > $1 order by s.id limit $2"
        ))
        .await?;
    Ok(client
        .query(&statement, &[&after, &limit])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// A theater's showtimes on one shard, for re-indexing after the theater
/// changes.
pub async fn of_theater(
    client: &impl GenericClient,
    theater_id: Uuid,
) -> Result<Vec<Showtime>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {COLUMNS} from showtimes s where s.theater_id = $1"
        ))
        .await?;
    Ok(client
        .query(&statement, &[&theater_id])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// When a movie's earliest showtime starts.
pub async fn first_start(
    client: &impl GenericClient,
    movie_id: Uuid,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "select min(starts_at) from showtimes where movie_id = $1",
            &[&movie_id],
        )
        .await?
        .get(0))
}

/// Showtimes a movie has; a movie with any cannot be deleted.
pub async fn count_of_movie(
    client: &impl GenericClient,
    movie_id: Uuid,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "select count(*) from showtimes where movie_id = $1",
            &[&movie_id],
        )
        .await?
        .get(0))
}

/// The seats of a showtime that are not free; a lapsed hold's seats are.
pub async fn seat_states(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<BTreeMap<String, String>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "select seat, state from seat_states where showtime_id = $1 \
             and (state <> 'held' or expires_at > now())",
        )
        .await?;
    Ok(client
        .query(&statement, &[&id])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}
