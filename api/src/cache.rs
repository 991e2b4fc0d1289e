//! Cache-aside for movie details, showtimes and seat maps: a small
//! in-process tier in front of Redis, which is shared by every instance.
//!
//! The in-process tier keeps an entry for well under a second, so a page
//! that thousands of people refresh during a release-night rush is built
//! once per instance per moment, not once per request; changes made
//! through this instance drop its entries at once, and entries made stale
//! by another instance age out within that short life.
//!
//! The cache is an accelerator, never a dependency: every call has a short
//! timeout, and when Redis is down or hung the cache is bypassed for a
//! moment instead of making each request wait out the timeout. Requests
//! then go to the database, which is the source of truth.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use poem_openapi::types::{ParseFromJSON, ToJSON};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

use crate::settings::RedisSettings;

/// After a failure the cache is skipped for this long.
const BACKOFF: Duration = Duration::from_secs(1);
/// Consecutive timeouts after which Redis is taken to be hung.
const TIMEOUTS_BEFORE_BYPASS: u32 = 50;
/// Entries the in-process tier holds before it starts afresh.
const LOCAL_CAPACITY: usize = 20_000;

/// When the entry was stored, the value, and whether a request is already
/// rebuilding it.
type LocalEntry = (Instant, Arc<dyn Any + Send + Sync>, bool);

/// An expired entry is still served for this many lifetimes while one
/// request rebuilds it, so a popular page expiring does not send every
/// waiting request to Redis and the database at once.
const STALE_LIFETIMES: u32 = 4;

/// Which cached entry a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    Movie(uuid::Uuid),
    Showtime(uuid::Uuid),
    SeatMap(uuid::Uuid),
    /// A seat map's response bytes, served without parsing.
    RenderedSeatMap(uuid::Uuid),
}

pub struct Cache {
    client: Option<redis::Client>,
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    ttl: Duration,
    seat_map_ttl: Duration,
    timeout: Duration,
    started: Instant,
    /// Milliseconds since `started` until which the cache is bypassed.
    bypass_until_ms: AtomicU64,
    timeouts_in_a_row: AtomicU32,
    local: Mutex<HashMap<Entry, LocalEntry>>,
    local_ttl: Duration,
    pub(crate) hits: prometheus::IntCounterVec,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Cache {
    pub fn new(settings: &RedisSettings, hits: prometheus::IntCounterVec) -> Self {
        let client = settings
            .cache_enabled
            .then(|| redis::Client::open(settings.url.expose_secret()).ok())
            .flatten();
        Self {
            client,
            connection: OnceCell::new(),
            prefix: settings.key_prefix.clone(),
            ttl: Duration::from_secs(settings.cache_ttl_seconds),
            seat_map_ttl: Duration::from_secs(settings.seat_map_ttl_seconds),
            timeout: Duration::from_millis(settings.timeout_ms),
            started: Instant::now(),
            bypass_until_ms: AtomicU64::new(0),
            timeouts_in_a_row: AtomicU32::new(0),
            local: Mutex::new(HashMap::new()),
            local_ttl: Duration::from_millis(settings.local_ttl_ms),
            hits,
        }
    }

    fn key(&self, entry: Entry) -> String {
        match entry {
            Entry::Movie(id) => format!("{}movie:{id}", self.prefix),
            Entry::Showtime(id) => format!("{}showtime:{id}", self.prefix),
            Entry::SeatMap(id) => format!("{}seats:{id}", self.prefix),
            Entry::RenderedSeatMap(id) => format!("{}seats-rendered:{id}", self.prefix),
        }
    }

    fn kind(entry: Entry) -> &'static str {
        match entry {
            Entry::Movie(_) => "movie",
            Entry::Showtime(_) => "showtime",
            Entry::SeatMap(_) | Entry::RenderedSeatMap(_) => "seat_map",
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn failed(&self, err: &dyn std::fmt::Display) {
        tracing::warn!(error = %err, "cache unavailable; serving from the database");
        self.bypass_until_ms.store(
            self.now_ms() + u64::try_from(BACKOFF.as_millis()).unwrap_or(1000),
            Ordering::Relaxed,
        );
    }

    /// A slow answer alone does not switch the cache off: under load the
    /// answer may simply wait its turn on a busy instance, and bypassing the
    /// cache then would send everything to the database when it can least
    /// take it. Only a run of them, as from a hung Redis, does.
    fn timed_out(&self) {
        let run = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if run >= TIMEOUTS_BEFORE_BYPASS {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            self.failed(&format!("{run} cache calls in a row timed out"));
        }
    }

    fn refused(&self, err: &redis::RedisError) {
        if err.is_timeout() {
            self.timed_out();
        } else {
            self.failed(err);
        }
    }

    fn answered(&self) {
        self.timeouts_in_a_row.store(0, Ordering::Relaxed);
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        if self.now_ms() < self.bypass_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let client = self.client.as_ref()?;
        let connect = self.connection.get_or_try_init(|| async {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(self.timeout)
                .set_number_of_retries(0);
            tokio::time::timeout(
                self.timeout * 4,
                ConnectionManager::new_with_config(client.clone(), config),
            )
            .await
            .map_err(|_| "connecting to Redis timed out".to_owned())?
            .map_err(|err| err.to_string())
        });
        match connect.await {
            Ok(connection) => Some(connection.clone()),
            Err(err) => {
                self.failed(&err);
                None
            }
        }
    }

    /// The in-process copy, if fresh. An expired copy is still returned
    /// while another request rebuilds it; the first request to find it
    /// expired gets `None` and is expected to rebuild and `local_put` it.
    pub fn local_get<T: Clone + Send + Sync + 'static>(&self, entry: Entry) -> Option<T> {
        let mut local = self.local.lock().ok()?;
        let (stored, value, rebuilding) = local.get_mut(&entry)?;
        let age = stored.elapsed();
        if age > self.local_ttl * STALE_LIFETIMES {
            return None;
        }
        if age > self.local_ttl && !*rebuilding {
            *rebuilding = true;
            return None;
        }
        value.downcast_ref::<T>().cloned()
    }

    pub fn local_put<T: Clone + Send + Sync + 'static>(&self, entry: Entry, value: &T) {
        if self.local_ttl.is_zero() {
            return;
        }
        if let Ok(mut local) = self.local.lock() {
            if local.len() >= LOCAL_CAPACITY {
                let ttl = self.local_ttl;
                local.retain(|_, (stored, _, _)| stored.elapsed() <= ttl * STALE_LIFETIMES);
                if local.len() >= LOCAL_CAPACITY {
                    local.clear();
                }
            }
            local.insert(entry, (Instant::now(), Arc::new(value.clone()), false));
        }
    }

    /// The cached value, from this instance or from Redis if it answers in
    /// time.
    pub async fn get<T: ParseFromJSON + Clone + Send + Sync + 'static>(
        &self,
        entry: Entry,
    ) -> Option<T> {
        if let Some(value) = self.local_get(entry) {
            self.hits
                .with_label_values(&[Self::kind(entry), "local_hit"])
                .inc();
            return Some(value);
        }
        let value = self.remote_get::<T>(entry).await?;
        self.local_put(entry, &value);
        Some(value)
    }

    async fn remote_get<T: ParseFromJSON>(&self, entry: Entry) -> Option<T> {
        let value = self
            .remote_get_text(entry)
            .await
            .and_then(|text| serde_json::from_str(&text).ok())
            .and_then(|json| T::parse_from_json(Some(json)).ok());
        let outcome = if value.is_some() { "hit" } else { "miss" };
        self.hits
            .with_label_values(&[Self::kind(entry), outcome])
            .inc();
        value
    }

    async fn remote_get_text(&self, entry: Entry) -> Option<String> {
        let mut connection = self.connection().await?;
        let outcome = tokio::time::timeout(
            self.timeout,
            connection.get::<_, Option<String>>(self.key(entry)),
        )
        .await;
        match outcome {
            Ok(Ok(text)) => {
                self.answered();
                text
            }
            Ok(Err(err)) => {
                self.refused(&err);
                None
            }
            Err(_) => {
                self.timed_out();
                None
            }
        }
    }

    async fn remote_put_text(&self, entry: Entry, text: String) {
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let ttl = match entry {
            Entry::SeatMap(_) | Entry::RenderedSeatMap(_) => self.seat_map_ttl,
            _ => self.ttl,
        };
        let outcome = tokio::time::timeout(
            self.timeout,
            connection.set_ex::<_, _, ()>(self.key(entry), text, ttl.as_secs().max(1)),
        )
        .await;
        match outcome {
            Ok(Ok(())) => self.answered(),
            Ok(Err(err)) => self.refused(&err),
            Err(_) => self.timed_out(),
        }
    }

    pub async fn put<T: ToJSON + Clone + Send + Sync + 'static>(&self, entry: Entry, value: &T) {
        self.local_put(entry, value);
        if let Some(json) = value.to_json() {
            self.remote_put_text(entry, json.to_string()).await;
        }
    }

    /// A rendered response and the instant until which it holds, from this
    /// instance or from Redis, served as bytes without parsing.
    pub async fn get_rendered(&self, entry: Entry) -> Option<(DateTime<Utc>, Bytes)> {
        if let Some(found) = self.local_get::<(DateTime<Utc>, Bytes)>(entry) {
            self.hits
                .with_label_values(&[Self::kind(entry), "local_hit"])
                .inc();
            return Some(found);
        }
        let text = self.remote_get_text(entry).await;
        let found = text.and_then(|text| {
            let (until, body) = text.split_once('\n')?;
            let until = DateTime::<Utc>::from_timestamp_millis(until.parse().ok()?)?;
            Some((until, Bytes::from(body.to_owned())))
        });
        let outcome = if found.is_some() { "hit" } else { "miss" };
        self.hits
            .with_label_values(&[Self::kind(entry), outcome])
            .inc();
        if let Some(found) = &found {
            self.local_put(entry, found);
        }
        found
    }

    pub async fn put_rendered(&self, entry: Entry, until: DateTime<Utc>, body: Bytes) {
        let text = format!(
            "{}\n{}",
            until.timestamp_millis(),
            String::from_utf8_lossy(&body)
        );
        self.local_put(entry, &(until, body));
        self.remote_put_text(entry, text).await;
    }

    /// Drops entries after a change. A failure here is logged: the TTL
    /// bounds how long the stale entry can be served.
    pub async fn invalidate(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut all = entries.to_vec();
        all.extend(entries.iter().filter_map(|entry| match entry {
            Entry::SeatMap(id) => Some(Entry::RenderedSeatMap(*id)),
            _ => None,
        }));
        if let Ok(mut local) = self.local.lock() {
            for entry in &all {
                local.remove(entry);
            }
        }
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let keys: Vec<String> = all.iter().map(|entry| self.key(*entry)).collect();
        let outcome = tokio::time::timeout(self.timeout, connection.del::<_, ()>(keys)).await;
        match outcome {
            Ok(Ok(())) => self.answered(),
            Ok(Err(err)) => self.refused(&err),
            Err(_) => self.timed_out(),
        }
    }
}
