//! The showtimes a storm sells, created fresh for every run through the
//! admin API so runs never share seats: theaters of ten screens, a few
//! movies, and one evening show per screen per day over the coming weeks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Days, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::admin::Admin;
use super::{Plan, Ticker};

/// Days ahead a screen gets a show; screens are added until every showtime
/// has a day.
const DAYS: usize = 20;
const SCREENS_PER_THEATER: usize = 10;
/// Showtimes live on their movie's shard, so spreading them over several
/// movies spreads the purchases over every shard.
const MOVIES: usize = 12;
/// Admin requests in flight while setting up.
const IN_FLIGHT: usize = 16;
/// The layout rules: row labels and seat numbers are one to four
/// alphanumerics, at most 60 rows of at most 120 seats.
const MAX_ROWS: usize = 60;
const MAX_ROW_SEATS: usize = 120;
/// Seats per row unless the screen needs wider rows: 500 seats are 20
/// rows of 25.
const ROW_SEATS: usize = 25;

#[derive(Debug, Default)]
struct Progress {
    theaters: AtomicUsize,
    screens: AtomicUsize,
    movies: AtomicUsize,
    showtimes: AtomicUsize,
    locking: AtomicUsize,
}

/// Creates the showtimes of `plan`, with its locking policy and no waiting
/// room, and returns their ids.
pub async fn create(admin: &Admin, plan: &Plan, run: &str) -> anyhow::Result<Vec<String>> {
    let layout = layout(plan.seats_per_showtime)?;
    let screens = plan.showtimes.div_ceil(DAYS);
    let theaters = screens.div_ceil(SCREENS_PER_THEATER);
    let movies = plan.showtimes.min(MOVIES);
    let progress = Arc::new(Progress::default());
    let _ticker = Ticker::start({
        let progress = Arc::clone(&progress);
        let showtimes = plan.showtimes;
        move || {
            let done = |counter: &AtomicUsize| counter.load(Ordering::Relaxed);
            format!(
                "setup: {}/{theaters} theaters, {}/{screens} screens, {}/{movies} movies, \
                 {}/{showtimes} showtimes, {}/{showtimes} locking policies",
                done(&progress.theaters),
                done(&progress.screens),
                done(&progress.movies),
                done(&progress.showtimes),
                done(&progress.locking),
            )
        }
    });
    let progress: &Progress = &progress;

    let theater_ids = in_flight(0..theaters, |index| {
        let body = theater(run, index);
        async move {
            let id = admin.create("/v1/admin/theaters", &body).await?;
            progress.theaters.fetch_add(1, Ordering::Relaxed);
            Ok(id)
        }
    })
    .await?;
    let screen_ids = in_flight(0..screens, |index| {
        let theater = &theater_ids[index / SCREENS_PER_THEATER];
        let path = format!("/v1/admin/theaters/{theater}/screens");
        let body = json!({"name": format!("Screen {}", index % SCREENS_PER_THEATER + 1), "layout": layout});
        async move {
            let id = admin.create(&path, &body).await?;
            progress.screens.fetch_add(1, Ordering::Relaxed);
            Ok(id)
        }
    })
    .await?;
    let movie_ids = in_flight(0..movies, |index| {
        let body = json!({
            "title": format!("Storm {run} feature {}", index + 1),
            "genres": ["drama"], "runtime_minutes": 100, "release_date": "1995-12-15",
            "cast": ["Al Pacino", "Robert De Niro"],
            "synopsis": "A release-night rush: every seat is wanted at once."
        });
        async move {
            let id = admin.create("/v1/admin/movies", &body).await?;
            progress.movies.fetch_add(1, Ordering::Relaxed);
            Ok(id)
        }
    })
    .await?;
    let showtime_ids = in_flight(0..plan.showtimes, |index| {
        let screen = index % screens;
        let body = json!({
            "movie_id": movie_ids[index % movies],
            "theater_id": theater_ids[screen / SCREENS_PER_THEATER],
            "screen_id": screen_ids[screen],
            "starts_at": evening(index / screens + 1).to_rfc3339(),
            "format": "2d", "language": "en", "currency": "USD",
            "prices": [{"kind": "standard", "amount_minor": 1200}]
        });
        async move {
            let id = admin.create("/v1/admin/showtimes", &body).await?;
            progress.showtimes.fetch_add(1, Ordering::Relaxed);
            Ok(id)
        }
    })
    .await?;
    let policy = plan.policy.as_str();
    in_flight(0..plan.showtimes, |index| {
        let path = format!("/v1/admin/showtimes/{}/locking", showtime_ids[index]);
        let body = json!({ "policy": policy });
        // A storm measures the seat claims themselves; a waiting room the
        // rush would turn on stands in front of them, so it stays off.
        let room = format!("/v1/admin/showtimes/{}/waiting-room", showtime_ids[index]);
        async move {
            let locking = admin.put(&path, &body).await?;
            anyhow::ensure!(
                locking["policy"] == policy,
                "PUT {path} left the policy at {}",
                locking["policy"]
            );
            let room = admin.put(&room, &json!({ "mode": "off" })).await?;
            anyhow::ensure!(
                room["mode"] == "off",
                "the waiting room stayed {}",
                room["mode"]
            );
            progress.locking.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    Ok(showtime_ids)
}

/// Runs `call` for each index, [`IN_FLIGHT`] at a time, keeping the order.
async fn in_flight<T, F, Fut>(indices: std::ops::Range<usize>, call: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    futures::stream::iter(indices)
        .map(call)
        .buffered(IN_FLIGHT)
        .try_collect()
        .await
}

/// Open from 06:00 to 02:00 every day, like a multiplex.
fn theater(run: &str, index: usize) -> Value {
    let hours: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|day| json!({"day": day, "opens": "06:00", "closes": "02:00"}))
        .collect();
    json!({
        "name": format!("Storm {run} multiplex {}", index + 1),
        "country": "US", "region": "MA", "city": "Boston",
        "street": format!("{} Tremont St", index + 1), "postcode": "02108",
        "latitude": 42.355 + index as f64 * 0.001, "longitude": -71.060,
        "timezone": "America/New_York",
        "opening_hours": hours
    })
}

/// 23:00 UTC, `days` from today: 18:00 or 19:00 in Boston, inside the
/// theaters' hours whatever the daylight-saving season, and always ahead.
fn evening(days: usize) -> DateTime<Utc> {
    let day = Utc::now().date_naive() + Days::new(days as u64);
    day.and_hms_opt(23, 0, 0)
        .map_or_else(Utc::now, |time| time.and_utc())
}

/// Standard seats only, in rows of equal width and no aisles, so every
/// seat is as good as the next and best-available has no favourite.
fn layout(seats: usize) -> anyhow::Result<Value> {
    let width = ROW_SEATS.max(seats.div_ceil(MAX_ROWS));
    anyhow::ensure!(
        (1..=MAX_ROWS * MAX_ROW_SEATS).contains(&seats) && width <= MAX_ROW_SEATS,
        "a screen holds 1 to {} seats",
        MAX_ROWS * MAX_ROW_SEATS
    );
    let rows: Vec<Value> = (0..seats.div_ceil(width))
        .map(|row| {
            let in_row = width.min(seats - row * width);
            json!({
                "label": row_label(row),
                "seats": (1..=in_row)
                    .map(|number| json!({"number": number.to_string(), "column": number, "kind": "standard"}))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    Ok(json!({ "rows": rows }))
}

/// `A` to `Z`, then `AA`, `AB` and on, as spreadsheets name columns.
fn row_label(mut row: usize) -> String {
    let mut label = Vec::new();
    loop {
        label.push(b'A' + (row % 26) as u8);
        if row < 26 {
            break;
        }
        row = row / 26 - 1;
    }
    label.reverse();
    String::from_utf8_lossy(&label).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(layout: &Value) -> Vec<(String, usize)> {
        layout["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| {
                (
                    row["label"].as_str().expect("label").to_owned(),
                    row["seats"].as_array().expect("seats").len(),
                )
            })
            .collect()
    }

    #[test]
    fn rows_are_lettered_like_spreadsheet_columns() {
        assert_eq!(row_label(0), "A");
        assert_eq!(row_label(25), "Z");
        assert_eq!(row_label(26), "AA");
        assert_eq!(row_label(59), "BH");
    }

    #[test]
    fn five_hundred_seats_are_twenty_rows_of_twenty_five() {
        let rows = rows(&layout(500).expect("layout"));
        assert_eq!(rows.len(), 20);
        assert!(rows.iter().all(|(_, seats)| *seats == 25));
        assert_eq!(rows[19].0, "T");
    }

    #[test]
    fn the_last_row_takes_what_is_left() {
        let rows = rows(&layout(1_234).expect("layout"));
        assert_eq!(rows.len(), 50);
        assert_eq!(rows[48].1, 25);
        assert_eq!(rows[49].1, 9);
    }

    #[test]
    fn large_screens_widen_their_rows_to_stay_within_sixty() {
        let rows = rows(&layout(3_000).expect("layout"));
        assert_eq!(rows.len(), 60);
        assert!(rows.iter().all(|(_, seats)| *seats == 50));
        assert!(layout(60 * 120).is_ok());
        assert!(layout(60 * 120 + 1).is_err());
        assert!(layout(0).is_err());
    }

    #[test]
    fn evening_shows_start_tomorrow_or_later() {
        assert!(evening(1) > Utc::now());
        assert_eq!(evening(2) - evening(1), chrono::Duration::days(1));
    }
}
