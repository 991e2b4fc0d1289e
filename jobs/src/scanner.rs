//! The subscription scanner: tails every shard's outbox for new showtimes
//! and new releases, matches them against users' subscriptions, and looks
//! at every watched sold-out showtime for freed seats. What matches
//! becomes an alert (`Storage::raise_alert`) with its change event, which
//! the notification service delivers on the user's channels.
//!
//! An alert's id is derived from its user and what it is about, so a pass
//! repeated after a crash (the cursor is saved only after a pass) raises
//! nothing twice, and two subscriptions of one user matching the same thing
//! raise one alert. New showtimes are grouped per user, movie and local
//! day: a theater publishing a week's schedule sends one alert per day,
//! not one per showtime; showtimes of that day found by a later pass make
//! an alert of their own.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use marquee_storage::inbox::notice_id;
use marquee_storage::movies::Movie;
use marquee_storage::showtimes::Showtime;
use marquee_storage::subscriptions::{Alert, Subscription};
use marquee_storage::theaters::Theater;
use marquee_storage::Storage;
use serde_json::json;
use uuid::Uuid;

use crate::matching::{matches_release, matches_showtime, ShowtimeFacts};
use crate::{Beat, Error, Job};

/// A sequence gap younger than this may be a transaction still committing;
/// an older one was rolled back.
const GAP_WAIT_SECONDS: f64 = 5.0;
/// Events read from one outbox at a time; a pass reads on until it has
/// caught up, or for at most `MAX_READS` reads.
const EVENTS_PER_READ: i64 = 2_000;
const MAX_READS: usize = 50;
/// Alerts raised at once.
const RAISE_CONCURRENCY: usize = 32;

#[derive(Debug)]
pub struct Scanner {
    storage: Storage,
    every: Duration,
}

/// What one pass found: the new showtimes and releases, by id.
#[derive(Debug, Default)]
struct News {
    /// New showtimes, with their event's place in its outbox.
    showtimes: Vec<(Uuid, i64)>,
    movies: Vec<Uuid>,
}

/// Alerts a pass raised, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Raised {
    showtimes: usize,
    releases: usize,
    freed_seats: usize,
}

impl Scanner {
    pub fn new(storage: Storage, every: Duration) -> Self {
        Self { storage, every }
    }

    /// Reads each shard's outbox past its cursor; returns what is new and
    /// the cursors after it. A shard seen for the first time starts at its
    /// head: the scanner tells of what is new, not of the catalogue.
    async fn read_news(
        &self,
        mut cursors: BTreeMap<String, i64>,
        beat: &Beat,
    ) -> Result<(News, BTreeMap<String, i64>), Error> {
        let mut news = News::default();
        for shard in self.storage.cluster().shards() {
            let name = shard.id().to_string();
            let Some(mut cursor) = cursors.get(&name).copied() else {
                cursors.insert(name, self.storage.outbox_head(shard).await?);
                continue;
            };
            for _ in 0..MAX_READS {
                let events = self
                    .storage
                    .outbox_after(shard, cursor, EVENTS_PER_READ)
                    .await?;
                let read = events.len();
                let mut gap = false;
                for event in events {
                    if event.seq != cursor + 1 && event.age_seconds < GAP_WAIT_SECONDS {
                        gap = true;
                        break;
                    }
                    cursor = event.seq;
                    match event.event.as_str() {
                        "showtime.created" => news.showtimes.push((event.aggregate_id, event.seq)),
                        "movie.created" => news.movies.push(event.aggregate_id),
                        _ => {}
                    }
                }
                beat.pulse().await?;
                if gap || read < EVENTS_PER_READ as usize {
                    break;
                }
            }
            cursors.insert(name, cursor);
        }
        Ok((news, cursors))
    }

    /// One pass: the state is `{"cursors": {node: seq}}`.
    async fn scan(
        &self,
        state: &serde_json::Value,
        beat: &Beat,
    ) -> Result<(serde_json::Value, Raised), Error> {
        let cursors: BTreeMap<String, i64> = state
            .get("cursors")
            .and_then(|cursors| serde_json::from_value(cursors.clone()).ok())
            .unwrap_or_default();
        let (news, cursors) = self.read_news(cursors, beat).await?;
        beat.pulse().await?;
        let mut alerts = self.showtime_alerts(&news.showtimes).await?;
        let showtime_alerts = alerts.len();
        alerts.extend(self.release_alerts(&news.movies).await?);
        let release_alerts = alerts.len() - showtime_alerts;
        alerts.extend(self.freed_seat_alerts().await?);
        beat.pulse().await?;
        let raised: Vec<(usize, bool)> = futures::stream::iter(alerts.into_iter().enumerate())
            .map(|(index, alert)| async move {
                let raised = self.storage.raise_alert(&alert).await?;
                beat.pulse().await?;
                Ok::<_, Error>((index, raised))
            })
            .buffer_unordered(RAISE_CONCURRENCY)
            .try_collect()
            .await?;
        let mut counts = Raised::default();
        for (index, _) in raised.into_iter().filter(|(_, fresh)| *fresh) {
            if index < showtime_alerts {
                counts.showtimes += 1;
            } else if index < showtime_alerts + release_alerts {
                counts.releases += 1;
            } else {
                counts.freed_seats += 1;
            }
        }
        Ok((json!({ "cursors": cursors }), counts))
    }

    async fn showtime_alerts(&self, news: &[(Uuid, i64)]) -> Result<Vec<Alert>, Error> {
        if news.is_empty() {
            return Ok(Vec::new());
        }
        let mut movies: HashMap<Uuid, Option<Movie>> = HashMap::new();
        let mut theaters: HashMap<Uuid, Option<Theater>> = HashMap::new();
        let mut found = Vec::new();
        for (id, seq) in news {
            let Some(showtime) = self.storage.showtime(*id).await? else {
                continue;
            };
            if let Entry::Vacant(entry) = movies.entry(showtime.movie_id) {
                entry.insert(self.storage.movie(showtime.movie_id).await?);
            }
            if let Entry::Vacant(entry) = theaters.entry(showtime.theater_id) {
                entry.insert(self.storage.theater(showtime.theater_id).await?);
            }
            found.push((showtime, *seq));
        }
        let movie_ids: Vec<Uuid> = movies.keys().copied().collect();
        let theater_ids: Vec<Uuid> = theaters.keys().copied().collect();
        let mut groups: BTreeMap<(Uuid, Uuid, NaiveDate), Group> = BTreeMap::new();
        for shard in self.storage.cluster().shards() {
            let subscriptions = self
                .storage
                .showtime_subscriptions(shard, &movie_ids, &theater_ids)
                .await?;
            for (showtime, seq) in &found {
                let (Some(Some(movie)), Some(Some(theater))) = (
                    movies.get(&showtime.movie_id),
                    theaters.get(&showtime.theater_id),
                ) else {
                    continue;
                };
                let city = theater.info.city.to_lowercase();
                let facts = ShowtimeFacts {
                    movie_id: movie.id,
                    title: &movie.title,
                    genres: &movie.genres,
                    theater_id: theater.id,
                    city: &city,
                    latitude: theater.info.latitude,
                    longitude: theater.info.longitude,
                    format: &showtime.schedule.format,
                };
                let day = local_day(showtime.schedule.starts_at, &theater.info.timezone);
                for subscription in subscriptions
                    .iter()
                    .filter(|subscription| matches_showtime(&subscription.filter, &facts))
                {
                    let group = groups
                        .entry((subscription.user_id, movie.id, day))
                        .or_insert_with(|| Group {
                            subscription: subscription.clone(),
                            movie: movie.clone(),
                            day,
                            first_seq: i64::MAX,
                            showtimes: Vec::new(),
                        });
                    // Overlapping subscriptions of one user list a showtime once.
                    if group
                        .showtimes
                        .iter()
                        .all(|(listed, _)| listed.id != showtime.id)
                    {
                        group.first_seq = group.first_seq.min(*seq);
                        group.showtimes.push((showtime.clone(), theater.clone()));
                    }
                }
            }
        }
        Ok(groups.into_values().map(Group::into_alert).collect())
    }

    async fn release_alerts(&self, ids: &[Uuid]) -> Result<Vec<Alert>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut releases = Vec::new();
        for id in ids {
            if let Some(movie) = self.storage.movie(*id).await? {
                releases.push(movie);
            }
        }
        let mut alerts = Vec::new();
        for shard in self.storage.cluster().shards() {
            for subscription in self.storage.release_subscriptions(shard).await? {
                for movie in releases.iter().filter(|movie| {
                    matches_release(&subscription.filter, &movie.title, &movie.genres)
                }) {
                    let today = Utc::now().date_naive();
                    let when = match movie.release_date {
                        Some(date) if date > today => {
                            format!("is coming to theaters on {}", date.format("%-d %B %Y"))
                        }
                        _ => "is now in the catalogue".to_owned(),
                    };
                    alerts.push(alert(
                        &subscription,
                        &format!("release:{}", movie.id),
                        json!({
                            "kind": "movie.released",
                            "title": format!("New release: {}", movie.title),
                            "body": format!("{} {when}.", movie.title),
                            "subject_id": movie.id,
                        }),
                        false,
                    ));
                }
            }
        }
        Ok(alerts)
    }

    /// Alerts for watched showtimes that have seats again; watches of a
    /// showtime that began or is gone are dropped.
    async fn freed_seat_alerts(&self) -> Result<Vec<Alert>, Error> {
        let mut watches: Vec<Subscription> = Vec::new();
        for shard in self.storage.cluster().shards() {
            watches.extend(self.storage.seat_watches(shard).await?);
        }
        let mut seen = HashSet::new();
        watches.retain(|watch| seen.insert(watch.id));
        let mut showtimes: HashMap<Uuid, Option<Showtime>> = HashMap::new();
        let mut titles: HashMap<Uuid, String> = HashMap::new();
        let mut alerts = Vec::new();
        let now = Utc::now();
        for watch in watches {
            let Some(id) = watch.filter.showtime_id else {
                continue;
            };
            if let Entry::Vacant(entry) = showtimes.entry(id) {
                entry.insert(self.storage.showtime(id).await?);
            }
            match showtimes.get(&id).and_then(Option::as_ref) {
                Some(showtime) if showtime.schedule.starts_at > now => {
                    if showtime.seats_available > 0 {
                        // Thousands may watch one showtime: its title is read once.
                        if let Entry::Vacant(entry) = titles.entry(id) {
                            let title = match self.storage.movie(showtime.movie_id).await? {
                                Some(movie) => movie.title,
                                None => "A showtime you watch".to_owned(),
                            };
                            entry.insert(title);
                        }
                        let title = titles.get(&id).map_or("", String::as_str);
                        let seats = showtime.seats_available;
                        alerts.push(alert(
                            &watch,
                            &format!("seats:{}", watch.id),
                            json!({
                                "kind": "seats.freed",
                                "title": format!("Seats free for {title}"),
                                "body": format!(
                                    "{seats} seat{} became available for the {} showing. Book soon: \
                                     others were waiting too.",
                                    if seats == 1 { "" } else { "s" },
                                    showtime.schedule.starts_at.format("%-d %B %H:%M UTC"),
                                ),
                                "subject_id": id,
                            }),
                            true,
                        ));
                    }
                }
                _ => self.storage.drop_watch(watch.user_id, watch.id).await?,
            }
        }
        Ok(alerts)
    }
}

struct Group {
    subscription: Subscription,
    movie: Movie,
    day: NaiveDate,
    /// The first of the group's events in its outbox: the same whenever a
    /// pass is repeated, and new for showtimes a later pass finds.
    first_seq: i64,
    showtimes: Vec<(Showtime, Theater)>,
}

impl Group {
    fn into_alert(mut self) -> Alert {
        self.showtimes
            .sort_by_key(|(showtime, _)| showtime.schedule.starts_at);
        let listed: Vec<String> = self
            .showtimes
            .iter()
            .map(|(showtime, theater)| {
                format!(
                    "{} at {} ({})",
                    local_time(showtime.schedule.starts_at, &theater.info.timezone),
                    theater.info.name,
                    showtime.schedule.format
                )
            })
            .collect();
        let first = self.showtimes.first().map(|(showtime, _)| showtime.id);
        alert(
            &self.subscription,
            &format!(
                "showtimes:{}:{}:{}",
                self.movie.id, self.day, self.first_seq
            ),
            json!({
                "kind": "showtime.new",
                "title": format!("New showtimes: {}", self.movie.title),
                "body": format!("{} on {}: {}.", self.movie.title, self.day.format("%a %-d %B"), listed.join(", ")),
                "subject_id": first,
            }),
            false,
        )
    }
}

/// An alert about `about`, whose id depends on the user and `about` only.
fn alert(
    subscription: &Subscription,
    about: &str,
    payload: serde_json::Value,
    spends: bool,
) -> Alert {
    let mut payload = payload;
    payload["subscription_id"] = json!(subscription.id);
    Alert {
        id: notice_id(subscription.user_id, &format!("alert:{about}")),
        user_id: subscription.user_id,
        subscription_id: subscription.id,
        payload,
        spends_subscription: spends,
    }
}

/// A start time as the theater's clock shows it.
fn local_time(at: DateTime<Utc>, timezone: &str) -> String {
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(zone) => at.with_timezone(&zone).format("%H:%M").to_string(),
        Err(_) => at.format("%H:%M UTC").to_string(),
    }
}

fn local_day(at: DateTime<Utc>, timezone: &str) -> NaiveDate {
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(zone) => at.with_timezone(&zone).date_naive(),
        Err(_) => at.date_naive(),
    }
}

#[async_trait::async_trait]
impl Job for Scanner {
    fn name(&self) -> &'static str {
        "subscription-scanner"
    }

    fn every(&self) -> Duration {
        self.every
    }

    async fn pass(
        &self,
        state: serde_json::Value,
        beat: &Beat,
    ) -> Result<serde_json::Value, Error> {
        let (state, raised) = self.scan(&state, beat).await?;
        if raised != Raised::default() {
            tracing::info!(
                showtimes = raised.showtimes,
                releases = raised.releases,
                freed_seats = raised.freed_seats,
                "subscription alerts raised"
            );
        }
        Ok(state)
    }
}
