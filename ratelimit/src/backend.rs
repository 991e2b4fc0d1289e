//! The Redis connection shared by the limiter and the lockout, with the
//! timeout and circuit breaker that keep an outage from slowing requests.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::RedisResult;

/// Most keys each instance tracks locally, so that a flood of distinct keys
/// (one per spoofed address, say) cannot exhaust memory.
pub(crate) const MAX_KEYS: usize = 100_000;

/// Why a Redis round trip gave no answer; only ever logged, because callers
/// fall back to local state instead of failing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("Redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

pub(crate) struct Backend {
    redis: Option<ConnectionManager>,
    component: &'static str,
    timeout: Duration,
    retry_after: Duration,
    /// `None` while Redis answers; otherwise when the next probe may go out.
    outage: Mutex<Option<Instant>>,
    calls: AtomicU64,
}

impl Backend {
    pub(crate) fn new(
        redis: Option<ConnectionManager>,
        component: &'static str,
        timeout: Duration,
        retry_after: Duration,
    ) -> Self {
        Self {
            redis,
            component,
            timeout,
            retry_after,
            outage: Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    pub(crate) fn shared(&self) -> bool {
        self.redis.is_some() && lock(&self.outage).is_none()
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Runs one request against Redis, or returns `None` when the caller must
    /// decide locally: no Redis configured, the breaker is open, or the request
    /// failed or was too slow.
    pub(crate) async fn call<T, F, Fut>(&self, request: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let connection = self.connection()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let outcome = match tokio::time::timeout(self.timeout, request(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Error::from(error)),
            Err(_) => Err(Error::Timeout(self.timeout)),
        };
        match outcome {
            Ok(value) => {
                self.recovered();
                Some(value)
            }
            Err(error) => {
                self.failed(&error);
                None
            }
        }
    }

    fn connection(&self) -> Option<ConnectionManager> {
        let redis = self.redis.as_ref()?;
        let mut outage = lock(&self.outage);
        if let Some(next_probe) = *outage {
            let now = Instant::now();
            if now < next_probe {
                return None;
            }
            // Only this request probes; the rest stay local until it succeeds,
            // so a still-dead Redis costs one timeout per retry period.
            *outage = Some(now + self.retry_after);
        }
        Some(redis.clone())
    }

    fn recovered(&self) {
        if lock(&self.outage).take().is_some() {
            tracing::info!(
                component = self.component,
                "Redis is reachable again; limits are shared across instances"
            );
        }
    }

    fn failed(&self, error: &Error) {
        let mut outage = lock(&self.outage);
        if outage.is_none() {
            tracing::warn!(
                component = self.component,
                %error,
                retry_in = ?self.retry_after,
                "Redis is unavailable; each instance now enforces limits on its own"
            );
        }
        *outage = Some(Instant::now() + self.retry_after);
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("redis_configured", &self.redis.is_some())
            .field("shared", &self.shared())
            .field("timeout", &self.timeout)
            .field("retry_after", &self.retry_after)
            .field("calls", &self.calls())
            .finish()
    }
}

/// A poisoned lock only means another request panicked mid-update; the maps
/// hold plain counters that stay usable, and limiting must keep working.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Frees space before a new key is inserted once `map` holds `cap` keys:
/// first entries whose state has lapsed (`lapses_at` passed), then, if that is
/// not enough, the half closest to lapsing, which lose the least information.
pub(crate) fn make_room<V>(
    map: &mut HashMap<String, V>,
    cap: usize,
    now: Instant,
    lapses_at: impl Fn(&V) -> Instant,
) {
    if map.len() < cap {
        return;
    }
    map.retain(|_, value| lapses_at(value) > now);
    if map.len() < cap {
        return;
    }
    let mut deadlines: Vec<Instant> = map.values().map(&lapses_at).collect();
    let middle = deadlines.len() / 2;
    let (_, median, _) = deadlines.select_nth_unstable(middle);
    let median = *median;
    map.retain(|_, value| lapses_at(value) > median);
}

/// Milliseconds for a Lua argument, bounded so Lua's doubles stay exact.
pub(crate) fn millis(duration: Duration) -> u64 {
    const LIMIT: u128 = 1 << 50;
    u64::try_from(duration.as_millis().min(LIMIT)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_made_by_dropping_lapsed_entries_first() {
        let now = Instant::now();
        let mut map = HashMap::new();
        map.insert("lapsed".to_owned(), now - Duration::from_secs(1));
        map.insert("live".to_owned(), now + Duration::from_secs(1));
        make_room(&mut map, 2, now, |deadline| *deadline);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("live"));
    }

    #[test]
    fn room_is_made_by_dropping_the_entries_closest_to_lapsing_when_all_are_live() {
        let now = Instant::now();
        let mut map: HashMap<String, Instant> = (1..=10)
            .map(|i| (format!("k{i}"), now + Duration::from_secs(i)))
            .collect();
        make_room(&mut map, 10, now, |deadline| *deadline);
        assert!(map.len() < 10);
        assert!(map.contains_key("k10"));
        assert!(!map.contains_key("k1"));
    }

    #[test]
    fn a_map_below_its_cap_is_left_alone() {
        let now = Instant::now();
        let mut map = HashMap::new();
        map.insert("lapsed".to_owned(), now - Duration::from_secs(1));
        make_room(&mut map, 2, now, |deadline| *deadline);
        assert_eq!(map.len(), 1);
    }
}
