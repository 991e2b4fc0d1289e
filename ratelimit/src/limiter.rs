//! Token buckets whose state lives in Redis, handed out to instances in
//! small leases so most requests are decided without a network round trip.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;

use crate::backend::{lock, make_room, millis, Backend, MAX_KEYS};

/// The longest `retry_after` ever reported, and how long an idle bucket that
/// never refills (a zero rate) is remembered.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Rates above this are treated as unlimited refill; it keeps the arithmetic
/// finite for callers that pass `f64::INFINITY`.
const FASTEST_RATE: f64 = 1e12;

/// Refills the bucket from Redis's own clock (so instances' clocks do not
/// matter), grants up to the requested number of tokens, and reports how long
/// until a token exists when none could be granted.
const ACQUIRE: &str = r"
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local longest = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = tokens + (now - at) * rate
  at = now
end
tokens = math.min(burst, tokens)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
local wait = 0
local ttl = longest
if rate > 0 then
  if granted == 0 then
    wait = math.min(longest, math.ceil((1 - tokens) / rate))
  end
  ttl = math.min(longest, math.ceil((burst - tokens) / rate)) + 1000
elseif granted == 0 then
  wait = longest
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', at)
redis.call('PEXPIRE', KEYS[1], ttl)
return {granted, wait}
";

/// How many requests a key may make: `burst` at once, refilled at
/// `per_second`. A burst of zero admits nothing; a zero rate never refills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

impl Limit {
    fn rate(&self) -> f64 {
        if self.per_second.is_nan() {
            0.0
        } else {
            self.per_second.clamp(0.0, FASTEST_RATE)
        }
    }
}

/// Whether a request may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Rejected; a token is expected to be available after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

/// Tuning for [`RateLimiter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Tokens an instance takes from a shared bucket at once. Larger leases
    /// mean fewer Redis round trips but a coarser split of the bucket between
    /// instances; small buckets get smaller leases automatically.
    pub lease: u32,
    /// How long leased tokens stay usable; unused ones are forfeited so an
    /// instance cannot spend tokens the bucket granted long ago.
    pub lease_ttl: Duration,
    /// Longest wait for Redis before deciding locally instead.
    pub redis_timeout: Duration,
    /// After Redis fails, how long to decide locally before trying it again.
    pub retry_redis_after: Duration,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        Self {
            lease: 8,
            lease_ttl: Duration::from_secs(1),
            redis_timeout: Duration::from_millis(50),
            retry_redis_after: Duration::from_secs(2),
        }
    }
}

/// Rate limiting by key (a client address, an account) with one token bucket
/// per key shared by every gateway instance through Redis.
///
/// Each instance leases a few tokens at a time from the shared bucket and
/// spends them locally, so most requests cost a map lookup and all instances
/// together still admit no more than the bucket allows: at most `burst` plus
/// `per_second` for every second elapsed.
///
/// While Redis is unreachable each instance enforces the limit on its own, so
/// a key can briefly get the limit once per instance. Redis is tried again
/// every `retry_redis_after`, so an outage never adds a timeout to every
/// request.
pub struct RateLimiter {
    backend: Backend,
    prefix: String,
    settings: LimiterSettings,
    script: Script,
    leases: Mutex<HashMap<String, Lease>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// What this instance may decide about a key without asking Redis.
enum Lease {
    /// Tokens granted by the shared bucket and not yet spent.
    Tokens { left: u32, expires: Instant },
    /// The shared bucket was empty; no token can exist before `retry_at`, so
    /// asking again sooner would only load Redis.
    Denied { until: Instant, retry_at: Instant },
}

impl Lease {
    fn lapses_at(&self) -> Instant {
        match self {
            Self::Tokens { expires, .. } => *expires,
            Self::Denied { until, .. } => *until,
        }
    }
}

/// The local bucket used while Redis is unavailable.
struct Bucket {
    tokens: f64,
    updated: Instant,
    full_at: Instant,
}

impl RateLimiter {
    /// Creates a limiter; with `redis` absent every instance limits on its own.
    /// Bucket keys in Redis are `key_prefix`, a colon, and the caller's key.
    pub fn new(
        redis: Option<ConnectionManager>,
        key_prefix: String,
        settings: LimiterSettings,
    ) -> Self {
        Self {
            backend: Backend::new(
                redis,
                "rate limiter",
                settings.redis_timeout,
                settings.retry_redis_after,
            ),
            prefix: key_prefix,
            settings,
            script: Script::new(ACQUIRE),
            leases: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket. Never fails: when Redis cannot
    /// answer, the decision is made from this instance's own bucket.
    pub async fn acquire(&self, limit: &Limit, key: &str) -> Decision {
        if limit.burst == 0 {
            return Decision::Limited {
                retry_after: LONGEST_WAIT,
            };
        }
        if let Some(decision) = self.decide_by_lease(key, Instant::now()) {
            return decision;
        }
        match self.decide_by_redis(limit, key).await {
            Some(decision) => decision,
            None => self.decide_locally(limit, key),
        }
    }

    /// Whether decisions currently come from the buckets shared through Redis.
    pub fn shared(&self) -> bool {
        self.backend.shared()
    }

    /// Requests sent to Redis so far, including failed ones.
    pub fn redis_calls(&self) -> u64 {
        self.backend.calls()
    }

    fn decide_by_lease(&self, key: &str, now: Instant) -> Option<Decision> {
        let mut leases = lock(&self.leases);
        match leases.get_mut(key)? {
            Lease::Tokens { left, expires } if *left > 0 && *expires > now => {
                *left -= 1;
                Some(Decision::Allowed)
            }
            Lease::Denied { until, retry_at } if *until > now => Some(Decision::Limited {
                retry_after: retry_at.saturating_duration_since(now),
            }),
            _ => None,
        }
    }

    async fn decide_by_redis(&self, limit: &Limit, key: &str) -> Option<Decision> {
        let bucket = format!("{}:{}", self.prefix, key);
        let want = lease_size(self.settings.lease, limit.burst);
        let (granted, wait_ms): (u32, u64) = self
            .backend
            .call(|mut connection| async move {
                self.script
                    .key(&bucket)
                    .arg(limit.rate().to_string())
                    .arg(limit.burst)
                    .arg(want)
                    .arg(millis(LONGEST_WAIT))
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        let now = Instant::now();
        let (decision, lease) = if granted == 0 {
            let retry_after = Duration::from_millis(wait_ms);
            let lease = Lease::Denied {
                until: now + retry_after.min(self.settings.lease_ttl),
                retry_at: now + retry_after,
            };
            (Decision::Limited { retry_after }, lease)
        } else {
            let lease = Lease::Tokens {
                left: granted - 1,
                expires: now + self.settings.lease_ttl,
            };
            (Decision::Allowed, lease)
        };
        self.store_lease(key, lease, now);
        Some(decision)
    }

    fn store_lease(&self, key: &str, lease: Lease, now: Instant) {
        let mut leases = lock(&self.leases);
        let Some(existing) = leases.get_mut(key) else {
            make_room(&mut leases, MAX_KEYS, now, Lease::lapses_at);
            leases.insert(key.to_owned(), lease);
            return;
        };
        // Concurrent requests may each have fetched a lease; tokens the shared
        // bucket already gave up are kept until spent or expired.
        match (existing, lease) {
            (
                Lease::Tokens { left, expires },
                Lease::Tokens {
                    left: more,
                    expires: renewed,
                },
            ) if *expires > now => {
                *left = left.saturating_add(more);
                *expires = renewed;
            }
            (Lease::Tokens { left, expires }, Lease::Denied { .. })
                if *left > 0 && *expires > now => {}
            (existing, lease) => *existing = lease,
        }
    }

    fn decide_locally(&self, limit: &Limit, key: &str) -> Decision {
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        if let Some(bucket) = buckets.get_mut(key) {
            return bucket.take(limit, now);
        }
        make_room(&mut buckets, MAX_KEYS, now, |bucket| bucket.full_at);
        let mut bucket = Bucket {
            tokens: f64::from(limit.burst),
            updated: now,
            full_at: now,
        };
        let decision = bucket.take(limit, now);
        buckets.insert(key.to_owned(), bucket);
        decision
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("prefix", &self.prefix)
            .field("settings", &self.settings)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    fn take(&mut self, limit: &Limit, now: Instant) -> Decision {
        let rate = limit.rate();
        let burst = f64::from(limit.burst);
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
        let decision = if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: time_to_earn(1.0 - self.tokens, rate),
            }
        };
        self.full_at = now + time_to_earn(burst - self.tokens, rate);
        decision
    }
}

fn time_to_earn(tokens: f64, rate: f64) -> Duration {
    if tokens <= 0.0 {
        return Duration::ZERO;
    }
    if rate <= 0.0 {
        return LONGEST_WAIT;
    }
    Duration::try_from_secs_f64(tokens / rate).map_or(LONGEST_WAIT, |wait| wait.min(LONGEST_WAIT))
}

/// Tokens to lease at once: never more than a quarter of the bucket, so one
/// instance cannot hoard a small bucket while others are refused, and at
/// least one so a request can always be decided.
fn lease_size(lease: u32, burst: u32) -> u32 {
    lease.min(burst / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_capped_at_a_quarter_of_a_small_burst() {
        assert_eq!(lease_size(8, 5), 1);
        assert_eq!(lease_size(8, 20), 5);
        assert_eq!(lease_size(8, 1000), 8);
    }

    #[test]
    fn a_lease_always_holds_at_least_one_token() {
        assert_eq!(lease_size(0, 100), 1);
        assert_eq!(lease_size(8, 1), 1);
    }

    #[test]
    fn the_local_bucket_admits_the_burst_then_reports_the_wait_for_one_token() {
        let limit = Limit {
            per_second: 2.0,
            burst: 3,
        };
        let now = Instant::now();
        let mut bucket = Bucket {
            tokens: 3.0,
            updated: now,
            full_at: now,
        };
        for _ in 0..3 {
            assert_eq!(bucket.take(&limit, now), Decision::Allowed);
        }
        assert_eq!(
            bucket.take(&limit, now),
            Decision::Limited {
                retry_after: Duration::from_millis(500)
            }
        );
        assert_eq!(
            bucket.take(&limit, now + Duration::from_millis(500)),
            Decision::Allowed
        );
    }

    #[test]
    fn a_zero_rate_never_refills_and_reports_the_longest_wait() {
        let limit = Limit {
            per_second: 0.0,
            burst: 1,
        };
        let now = Instant::now();
        let mut bucket = Bucket {
            tokens: 1.0,
            updated: now,
            full_at: now,
        };
        assert_eq!(bucket.take(&limit, now), Decision::Allowed);
        assert_eq!(
            bucket.take(&limit, now + Duration::from_secs(3600)),
            Decision::Limited {
                retry_after: LONGEST_WAIT
            }
        );
    }
}
