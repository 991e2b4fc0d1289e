//! Lockout with exponential backoff against password guessing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;

use crate::backend::{lock, make_room, millis, Backend, MAX_KEYS};

/// Counts a failure (the count is forgotten a window after the latest one)
/// and, once the free attempts are used up, locks for the backoff delay unless
/// a longer lock is already running; returns the lock's remaining ms, or 0.
const FAILED: &str = r"
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local free = tonumber(ARGV[2])
if failures <= free then
  return 0
end
local exponent = math.min(failures - free - 1, 60)
local delay = math.floor(math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ exponent))
if delay <= 0 then
  return 0
end
local remaining = redis.call('PTTL', KEYS[2])
if remaining >= delay then
  return remaining
end
redis.call('SET', KEYS[2], '1', 'PX', delay)
return delay
";

/// Tuning for [`Lockout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutSettings {
    /// Failures allowed before any lock.
    pub free_attempts: u32,
    /// Lock after the first failure beyond the free ones; each further
    /// failure doubles it.
    pub base_delay: Duration,
    /// Longest lock.
    pub max_delay: Duration,
    /// Failures are forgotten this long after the latest one.
    pub window: Duration,
    /// Longest wait for Redis before deciding locally instead.
    pub redis_timeout: Duration,
    /// After Redis fails, how long to decide locally before trying it again.
    pub retry_redis_after: Duration,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            free_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
            redis_timeout: Duration::from_millis(50),
            retry_redis_after: Duration::from_secs(2),
        }
    }
}

/// Locks a key (a hashed account email, a client address) out of signing in
/// after repeated failures, with a delay that doubles on every further
/// failure. State is shared by all instances through Redis; while Redis is
/// unreachable each instance counts failures on its own.
pub struct Lockout {
    backend: Backend,
    prefix: String,
    settings: LockoutSettings,
    script: Script,
    records: Mutex<HashMap<String, Record>>,
}

/// Failures seen by this instance while Redis was unavailable.
struct Record {
    failures: u32,
    forget_at: Instant,
    locked_until: Option<Instant>,
}

impl Record {
    fn lapses_at(&self) -> Instant {
        self.locked_until
            .map_or(self.forget_at, |until| until.max(self.forget_at))
    }
}

impl Lockout {
    /// Creates a lockout; with `redis` absent every instance counts on its own.
    /// Redis keys start with `key_prefix`, a colon, and the caller's key.
    pub fn new(
        redis: Option<ConnectionManager>,
        key_prefix: String,
        settings: LockoutSettings,
    ) -> Self {
        Self {
            backend: Backend::new(
                redis,
                "login lockout",
                settings.redis_timeout,
                settings.retry_redis_after,
            ),
            prefix: key_prefix,
            settings,
            script: Script::new(FAILED),
            records: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` stays locked, or `None` when it may try now.
    pub async fn check(&self, key: &str) -> Option<Duration> {
        let lock_key = self.lock_key(key);
        let remaining_ms: Option<i64> = self
            .backend
            .call(|mut connection| async move {
                redis::cmd("PTTL")
                    .arg(&lock_key)
                    .query_async(&mut connection)
                    .await
            })
            .await;
        match remaining_ms {
            Some(ms) => u64::try_from(ms)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            None => {
                let now = Instant::now();
                lock(&self.records)
                    .get(key)
                    .and_then(|record| record.locked_until)
                    .and_then(|until| remaining(until, now))
            }
        }
    }

    /// Records a failed attempt; returns how long `key` is now locked, if at all.
    pub async fn failed(&self, key: &str) -> Option<Duration> {
        let failures_key = self.failures_key(key);
        let lock_key = self.lock_key(key);
        let settings = &self.settings;
        let locked_ms: Option<u64> = self
            .backend
            .call(|mut connection| async move {
                self.script
                    .key(&failures_key)
                    .key(&lock_key)
                    .arg(millis(settings.window))
                    .arg(settings.free_attempts)
                    .arg(millis(settings.base_delay))
                    .arg(millis(settings.max_delay))
                    .invoke_async(&mut connection)
                    .await
            })
            .await;
        match locked_ms {
            Some(ms) => Some(Duration::from_millis(ms)).filter(|lock| !lock.is_zero()),
            None => self.failed_locally(key),
        }
    }

    /// Forgets `key`'s failures and lifts any lock, after a successful sign-in.
    pub async fn succeeded(&self, key: &str) {
        let keys = [self.failures_key(key), self.lock_key(key)];
        let _: Option<u64> = self
            .backend
            .call(|mut connection| async move {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await
            })
            .await;
        // Failures counted during an outage would otherwise resurface in the
        // next one.
        lock(&self.records).remove(key);
    }

    /// Whether failures are currently counted across instances through Redis.
    pub fn shared(&self) -> bool {
        self.backend.shared()
    }

    /// Requests sent to Redis so far, including failed ones.
    pub fn redis_calls(&self) -> u64 {
        self.backend.calls()
    }

    fn failed_locally(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut records = lock(&self.records);
        if !records.contains_key(key) {
            make_room(&mut records, MAX_KEYS, now, Record::lapses_at);
        }
        let record = records.entry(key.to_owned()).or_insert(Record {
            failures: 0,
            forget_at: now,
            locked_until: None,
        });
        if record.forget_at <= now {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.forget_at = now + self.settings.window;
        let delay = backoff(&self.settings, record.failures)?;
        let until = record
            .locked_until
            .map_or(now + delay, |until| until.max(now + delay));
        record.locked_until = Some(until);
        remaining(until, now)
    }

    // The braces keep both keys of one login in the same Redis Cluster slot,
    // which the script needs.
    fn failures_key(&self, key: &str) -> String {
        format!("{}:{{{}}}:failures", self.prefix, key)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:{{{}}}:lock", self.prefix, key)
    }
}

impl fmt::Debug for Lockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockout")
            .field("prefix", &self.prefix)
            .field("settings", &self.settings)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn remaining(until: Instant, now: Instant) -> Option<Duration> {
    Some(until.saturating_duration_since(now)).filter(|left| !left.is_zero())
}

/// The lock after `failures` failures, matching the Redis script.
fn backoff(settings: &LockoutSettings, failures: u32) -> Option<Duration> {
    let beyond = failures
        .checked_sub(settings.free_attempts)?
        .checked_sub(1)?;
    let factor = 1_u32 << beyond.min(31);
    Some(
        settings
            .base_delay
            .saturating_mul(factor)
            .min(settings.max_delay),
    )
    .filter(|delay| !delay.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_attempts_never_lock() {
        let settings = LockoutSettings::default();
        for failures in 0..=5 {
            assert_eq!(backoff(&settings, failures), None);
        }
    }

    #[test]
    fn the_lock_doubles_with_each_failure_up_to_the_maximum() {
        let settings = LockoutSettings::default();
        assert_eq!(backoff(&settings, 6), Some(Duration::from_secs(1)));
        assert_eq!(backoff(&settings, 7), Some(Duration::from_secs(2)));
        assert_eq!(backoff(&settings, 8), Some(Duration::from_secs(4)));
        assert_eq!(backoff(&settings, 20), Some(Duration::from_secs(15 * 60)));
        assert_eq!(
            backoff(&settings, u32::MAX),
            Some(Duration::from_secs(15 * 60))
        );
    }
}
