//! Theaters and screens. Both live on the shard of the theater's id, with
//! each screen's timetable (`screen_slots`), so that overlapping showtimes
//! are refused under one row lock.

use chrono::{DateTime, NaiveTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::layout::SeatLayout;
use crate::outbox;

/// When a theater is open on one day of the week. `closes` before `opens`
/// means it closes after midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpeningHours {
    /// `mon` … `sun`.
    pub day: String,
    pub opens: NaiveTime,
    pub closes: NaiveTime,
}

/// Everything about a theater that an operator writes.
#[derive(Debug, Clone, PartialEq)]
pub struct TheaterInfo {
    pub name: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub region: Option<String>,
    pub city: String,
    pub street: String,
    pub postcode: String,
    pub latitude: f64,
    pub longitude: f64,
    pub timezone: String,
    pub opening_hours: Vec<OpeningHours>,
    pub demo_generated: bool,
}

impl TheaterInfo {
    /// Whether the theater is open at `at`, by its local opening hours. A
    /// theater that publishes no hours at all is taken to be always open;
    /// otherwise a day without an entry is closed. Hours that close before
    /// they open run past midnight into the next day.
    pub fn is_open_at(&self, at: DateTime<Utc>) -> bool {
        if self.opening_hours.is_empty() {
            return true;
        }
        let Ok(zone) = self.timezone.parse::<chrono_tz::Tz>() else {
            return true;
        };
        let local = at.with_timezone(&zone);
        let time = local.time();
        let day = |weekday: chrono::Weekday| {
            let name = weekday.to_string().to_lowercase();
            self.opening_hours.iter().find(move |h| h.day == name)
        };
        let today = day(chrono::Datelike::weekday(&local)).is_some_and(|h| {
            if h.opens < h.closes {
                h.opens <= time && time < h.closes
            } else {
                h.opens <= time
            }
        });
        let after_midnight = day(chrono::Datelike::weekday(&local).pred())
            .is_some_and(|h| h.closes <= h.opens && time < h.closes);
        today || after_midnight
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theater {
    pub id: Uuid,
    pub info: TheaterInfo,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    pub id: Uuid,
    pub theater_id: Uuid,
    pub name: String,
    pub layout: SeatLayout,
    pub layout_id: String,
    pub capacity: i32,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A showtime occupying a screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub showtime_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_age_seconds: f64,
}

const THEATER_COLUMNS: &str = "id, name, country, region, city, street, postcode, latitude, \
     longitude, timezone, opening_hours, demo_generated, version, created_at, updated_at";

fn theater_from_row(row: &Row) -> Theater {
    let Json(opening_hours): Json<Vec<OpeningHours>> = row.get(10);
    Theater {
        id: row.get(0),
        info: TheaterInfo {
            name: row.get(1),
            country: row.get(2),
            region: row.get(3),
            city: row.get(4),
            street: row.get(5),
            postcode: row.get(6),
            latitude: row.get(7),
            longitude: row.get(8),
            timezone: row.get(9),
            opening_hours,
            demo_generated: row.get(11),
        },
        version: row.get(12),
        created_at: row.get(13),
        updated_at: row.get(14),
    }
}

/// Inserts a theater or rewrites it, recording the change in the outbox.
pub async fn upsert(
    client: &impl GenericClient,
    id: Uuid,
    info: &TheaterInfo,
) -> Result<Theater, tokio_postgres::Error> {
    let sql = format!(
        "insert into theaters (id, name, country, region, city, street, postcode, latitude, \
             longitude, timezone, opening_hours, demo_generated) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         on conflict (id) do update set name = excluded.name, country = excluded.country, \
             region = excluded.region, city = excluded.city, street = excluded.street, \
             postcode = excluded.postcode, latitude = excluded.latitude, \
             longitude = excluded.longitude, timezone = excluded.timezone, \
             opening_hours = excluded.opening_hours, demo_generated = excluded.demo_generated, \
             version = theaters.version + 1, updated_at = now() \
         returning {THEATER_COLUMNS}"
    );
    let statement = client.prepare_cached(&sql).await?;
    let row = client
        .query_one(
            &statement,
            &[
                &id,
                &info.name,
                &info.country,
                &info.region,
                &info.city,
                &info.street,
                &info.postcode,
                &info.latitude,
                &info.longitude,
                &info.timezone,
                &Json(&info.opening_hours),
                &info.demo_generated,
            ],
        )
        .await?;
    let theater = theater_from_row(&row);
    let event = if theater.version == 1 {
        "theater.created"
    } else {
        "theater.changed"
    };
    outbox::record(client, "theater", id, event).await?;
    Ok(theater)
}

pub async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Theater>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {THEATER_COLUMNS} from theaters where id = $1"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(theater_from_row))
}

/// Theaters of one shard among `ids`.
pub async fn by_ids(
    client: &impl GenericClient,
    ids: &[Uuid],
) -> Result<Vec<Theater>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {THEATER_COLUMNS} from theaters where id = any($1)"
        ))
        .await?;
    Ok(client
        .query(&statement, &[&ids])
        .await?
        .iter()
        .map(theater_from_row)
        .collect())
}

/// Theaters of one shard, in a city (case-insensitive) and/or inside a
/// bounding box of (south, west, north, east).
pub async fn find(
    client: &impl GenericClient,
    city: Option<&str>,
    bounds: Option<(f64, f64, f64, f64)>,
) -> Result<Vec<Theater>, tokio_postgres::Error> {
    let (south, west, north, east) = match bounds {
        Some((s, w, n, e)) => (Some(s), Some(w), Some(n), Some(e)),
        None => (None, None, None, None),
    };
    let statement = client
        .prepare_cached(&format!(
            "select {THEATER_COLUMNS} from theaters \
             where ($1::text is null or lower(city) = lower($1)) \
               and ($2::float8 is null or latitude between $2 and $4) \
               and ($3::float8 is null or longitude between $3 and $5) \
             order by id"
        ))
        .await?;
    Ok(client
        .query(&statement, &[&city, &south, &west, &north, &east])
        .await?
        .iter()
        .map(theater_from_row)
        .collect())
}

/// Deletes a theater without screens; `None` when it has screens.
pub async fn delete(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let screens: i64 = client
        .query_one("select count(*) from screens where theater_id = $1", &[&id])
        .await?
        .get(0);
    if screens > 0 {
        return Ok(None);
    }
    let deleted = client
        .execute("delete from theaters where id = $1", &[&id])
        .await?;
    if deleted > 0 {
        outbox::record(client, "theater", id, "theater.deleted").await?;
    }
    Ok(Some(deleted))
}

const SCREEN_COLUMNS: &str =
    "id, theater_id, name, layout, layout_id, capacity, version, created_at, updated_at";

fn screen_from_row(row: &Row) -> Screen {
    let Json(layout): Json<SeatLayout> = row.get(3);
    Screen {
        id: row.get(0),
        theater_id: row.get(1),
        name: row.get(2),
        layout,
        layout_id: row.get(4),
        capacity: row.get(5),
        version: row.get(6),
        created_at: row.get(7),
        updated_at: row.get(8),
    }
}

/// Inserts a screen or rewrites it. A refitted screen keeps its timetable;
/// showtimes already scheduled keep the layout they were created with.
pub async fn upsert_screen(
    client: &impl GenericClient,
    id: Uuid,
    theater_id: Uuid,
    name: &str,
    layout: &SeatLayout,
) -> Result<Screen, tokio_postgres::Error> {
    let capacity = i32::try_from(layout.capacity()).unwrap_or(i32::MAX);
    let sql = format!(
        "insert into screens (id, theater_id, name, layout, layout_id, capacity) \
         values ($1, $2, $3, $4, $5, $6) \
         on conflict (id) do update set name = excluded.name, layout = excluded.layout, \
             layout_id = excluded.layout_id, capacity = excluded.capacity, \
             version = screens.version + 1, updated_at = now() \
         where screens.theater_id = excluded.theater_id \
         returning {SCREEN_COLUMNS}"
    );
    let statement = client.prepare_cached(&sql).await?;
    let row = client
        .query_one(
            &statement,
            &[
                &id,
                &theater_id,
                &name,
                &Json(layout),
                &layout.layout_id(),
                &capacity,
            ],
        )
        .await?;
    outbox::record(client, "theater", theater_id, "screen.changed").await?;
    Ok(screen_from_row(&row))
}

pub async fn screen(
    client: &impl GenericClient,
    theater_id: Uuid,
    id: Uuid,
) -> Result<Option<Screen>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {SCREEN_COLUMNS} from screens where id = $1 and theater_id = $2"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&id, &theater_id])
        .await?
        .as_ref()
        .map(screen_from_row))
}

pub async fn screens(
    client: &impl GenericClient,
    theater_id: Uuid,
) -> Result<Vec<Screen>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "select {SCREEN_COLUMNS} from screens where theater_id = $1 order by name"
        ))
        .await?;
    Ok(client
        .query(&statement, &[&theater_id])
        .await?
        .iter()
        .map(screen_from_row)
        .collect())
}

/// Deletes a screen with nothing scheduled; `None` when showtimes remain.
pub async fn delete_screen(
    client: &impl GenericClient,
    theater_id: Uuid,
    id: Uuid,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let scheduled: i64 = client
        .query_one(
            "select count(*) from screen_slots where screen_id = $1",
            &[&id],
        )
        .await?
        .get(0);
    if scheduled > 0 {
        return Ok(None);
    }
    let deleted = client
        .execute(
            "delete from screens where id = $1 and theater_id = $2",
            &[&id, &theater_id],
        )
        .await?;
    if deleted > 0 {
        outbox::record(client, "theater", theater_id, "screen.deleted").await?;
    }
    Ok(Some(deleted))
}

/// Locks a screen's timetable for the rest of the transaction.
pub async fn lock_screen(
    transaction: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let statement = transaction
        .prepare_cached("select 1 from screens where id = $1 for update")
        .await?;
    Ok(transaction.query_opt(&statement, &[&id]).await?.is_some())
}

/// The first slot on a screen overlapping `[starts_at, ends_at)`, other
/// than `except`'s own.
pub async fn overlapping(
    client: &impl GenericClient,
    screen_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    except: Uuid,
) -> Result<Option<Slot>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "select s.showtime_id, s.starts_at, s.ends_at, \
                 extract(epoch from now() - s.created_at)::float8 \
             from screen_slots s \
             where s.screen_id = $1 and s.starts_at < $3 and s.ends_at > $2 \
               and s.showtime_id <> $4 \
             order by s.starts_at limit 1",
        )
        .await?;
    Ok(client
        .query_opt(&statement, &[&screen_id, &starts_at, &ends_at, &except])
        .await?
        .map(|row| Slot {
            showtime_id: row.get(0),
            starts_at: row.get(1),
            ends_at: row.get(2),
            created_age_seconds: row.get(3),
        }))
}

/// Books `[starts_at, ends_at)` on a screen for a showtime, or moves its
/// existing booking there.
pub async fn put_slot(
    client: &impl GenericClient,
    screen_id: Uuid,
    showtime_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "insert into screen_slots (screen_id, showtime_id, starts_at, ends_at) \
             values ($1, $2, $3, $4) \
             on conflict (screen_id, showtime_id) do update \
                 set starts_at = excluded.starts_at, ends_at = excluded.ends_at",
        )
        .await?;
    client
        .execute(
            &statement,
            &[&screen_id, &showtime_id, &starts_at, &ends_at],
        )
        .await?;
    Ok(())
}

pub async fn delete_slot(
    client: &impl GenericClient,
    screen_id: Uuid,
    showtime_id: Uuid,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "delete from screen_slots where screen_id = $1 and showtime_id = $2",
            &[&screen_id, &showtime_id],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A day with its opening and closing (hour, minute).
    type Day<'a> = (&'a str, (u32, u32), (u32, u32));

    fn theater(hours: &[Day<'_>]) -> TheaterInfo {
        TheaterInfo {
            name: "T".into(),
            country: "US".into(),
            region: None,
            city: "Boston".into(),
            street: "1 Main St".into(),
            postcode: "02108".into(),
            latitude: 42.36,
            longitude: -71.06,
            timezone: "America/New_York".into(),
            opening_hours: hours
                .iter()
                .map(|(day, opens, closes)| OpeningHours {
                    day: (*day).to_owned(),
                    opens: NaiveTime::from_hms_opt(opens.0, opens.1, 0).expect("time"),
                    closes: NaiveTime::from_hms_opt(closes.0, closes.1, 0).expect("time"),
                })
                .collect(),
            demo_generated: false,
        }
    }

    fn boston(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        // 2026-12-04 is a Friday.
        chrono_tz::America::New_York
            .with_ymd_and_hms(2026, 12, day, hour, minute, 0)
            .single()
            .expect("local time")
            .with_timezone(&Utc)
    }

    #[test]
    fn opening_hours_are_read_in_the_theaters_own_time_zone() {
        let info = theater(&[("fri", (10, 0), (23, 30))]);
        assert!(info.is_open_at(boston(4, 10, 0)));
        assert!(info.is_open_at(boston(4, 23, 29)));
        assert!(!info.is_open_at(boston(4, 23, 30)));
        assert!(!info.is_open_at(boston(4, 9, 59)));
        assert!(!info.is_open_at(boston(5, 12, 0)), "no hours on Saturday");
    }

    #[test]
    fn hours_past_midnight_run_into_the_next_day() {
        let info = theater(&[("fri", (18, 0), (2, 0))]);
        assert!(info.is_open_at(boston(4, 23, 0)));
        assert!(
            info.is_open_at(boston(5, 1, 30)),
            "Saturday 01:30 is Friday night"
        );
        assert!(!info.is_open_at(boston(5, 2, 0)));
        assert!(
            theater(&[]).is_open_at(boston(5, 4, 0)),
            "no published hours"
        );
    }
}
