//! Caps on what a key has alive at once: the holds one client has open
//! across every showtime, or the unpaid seats it holds of one showtime.
//! Each key is a Redis sorted set of members, each carrying a weight (a
//! hold's seats, say) and scored by when it lapses, so every instance
//! counts the same members and a member nobody frees still lapses on time.
//! Several keys are taken together or not at all, in one round trip; while
//! Redis is unreachable each instance counts on its own.
//!
//! Taking several keys at once needs them in one Redis node, which a
//! single Redis (or a cluster with the keys' hash tags aligned) gives.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::Script;

use crate::backend::{lock, make_room, Backend, MAX_KEYS};

/// Every key is a sorted set of members `<id>#<weight>` scored by when they
/// lapse, beside a running total of their weights, so a take costs the
/// members that lapsed since the last one, not every member: keys arrive
/// in pairs, the set then its total.
const LAPSE: &str = r"
local function weight(entry)
  return tonumber(string.match(entry, '#(%d+)$') or '1')
end
local function lapse(set, total, now)
  local gone = redis.call('ZRANGEBYSCORE', set, '-inf', now)
  if #gone > 0 then
    local sum = 0
    for _, entry in ipairs(gone) do sum = sum + weight(entry) end
    redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
    redis.call('DECRBY', total, sum)
  end
  return tonumber(redis.call('GET', total) or '0')
end
local function keep_until_last(set, total)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', set, last[2])
    redis.call('PEXPIREAT', total, last[2])
  else
    redis.call('DEL', set, total)
  end
end
local function remove(set, total, member)
  if redis.call('ZREM', set, member) == 1 then
    redis.call('DECRBY', total, weight(member))
  end
end
";

/// Lets lapsed members of every key go, then adds the new member to each
/// if every key stays within its cap; otherwise answers which key was
/// full, what it held and how long until its first member lapses.
const TAKE: &str = r"
local now = tonumber(ARGV[1])
local member = ARGV[2]
local lapse_at = ARGV[3]
local pairs_count = #KEYS / 2
for index = 1, pairs_count do
  local set, total = KEYS[index * 2 - 1], KEYS[index * 2]
  local weight = tonumber(ARGV[2 + index * 2])
  local cap = tonumber(ARGV[3 + index * 2])
  local used = lapse(set, total, now)
  if used + weight > cap then
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    local wait = 1
    if first[2] then wait = math.max(1, tonumber(first[2]) - now) end
    return {index, used, wait}
  end
end
for index = 1, pairs_count do
  local set, total = KEYS[index * 2 - 1], KEYS[index * 2]
  local weight = ARGV[2 + index * 2]
  redis.call('ZADD', set, lapse_at, member .. '#' .. weight)
  redis.call('INCRBY', total, weight)
  keep_until_last(set, total)
end
return {0, 0, 0}
";

/// Replaces a member of every key with another, lapsing at a new time:
/// a member's life extended, or its slot handed on.
const RENAME: &str = r"
for index = 1, #KEYS / 2 do
  local set, total = KEYS[index * 2 - 1], KEYS[index * 2]
  local weight = ARGV[3 + index]
  remove(set, total, ARGV[1] .. '#' .. weight)
  redis.call('ZADD', set, ARGV[3], ARGV[2] .. '#' .. weight)
  redis.call('INCRBY', total, weight)
  keep_until_last(set, total)
end
return 0
";

/// Removes a member from every key.
const FREE: &str = r"
for index = 1, #KEYS / 2 do
  local set, total = KEYS[index * 2 - 1], KEYS[index * 2]
  remove(set, total, ARGV[1] .. '#' .. ARGV[1 + index])
  keep_until_last(set, total)
end
return 0
";

/// One key to take, with the member's weight in it and the key's cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    pub weight: u64,
    pub cap: u64,
}

/// Whether a member got its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Granted,
    /// The claim at `index` would pass its cap: its key holds `used`, and
    /// its first member lapses after `until` at the latest. Nothing was
    /// taken.
    Full {
        index: usize,
        used: u64,
        until: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotsSettings {
    /// How long one Redis call may take before the instance counts alone.
    pub redis_timeout: Duration,
    pub retry_redis_after: Duration,
}

impl Default for SlotsSettings {
    fn default() -> Self {
        Self {
            redis_timeout: Duration::from_millis(50),
            retry_redis_after: Duration::from_secs(2),
        }
    }
}

/// A member counted by this instance while Redis was unavailable.
#[derive(Debug, Clone)]
struct Local {
    member: String,
    weight: u64,
    until: Instant,
}

pub struct Slots {
    backend: Backend,
    prefix: String,
    take: Script,
    rename: Script,
    free: Script,
    local: Mutex<HashMap<String, Vec<Local>>>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("prefix", &self.prefix)
            .field("shared", &self.backend.shared())
            .finish_non_exhaustive()
    }
}

fn unix_ms(after: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from((now + after).as_millis()).unwrap_or(u64::MAX)
}

impl Slots {
    /// Redis keys start with `key_prefix`, a colon, and the caller's key.
    pub fn new(
        redis: Option<ConnectionManager>,
        key_prefix: String,
        settings: SlotsSettings,
    ) -> Self {
        Self {
            backend: Backend::new(
                redis,
                "live-hold slots",
                settings.redis_timeout,
                settings.retry_redis_after,
            ),
            prefix: key_prefix,
            take: Script::new(&format!("{LAPSE}{TAKE}")),
            rename: Script::new(&format!("{LAPSE}{RENAME}")),
            free: Script::new(&format!("{LAPSE}{FREE}")),
            local: Mutex::new(HashMap::new()),
        }
    }

    fn redis_key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    fn total_key(&self, key: &str) -> String {
        format!("{}:{key}:total", self.prefix)
    }

    /// Adds `member` to every claim's key for `ttl`, if each stays within
    /// its cap; otherwise takes nothing.
    pub async fn take(&self, claims: &[Claim], member: &str, ttl: Duration) -> Taken {
        if claims.is_empty() {
            return Taken::Granted;
        }
        let answer: Option<(u64, u64, u64)> = self
            .backend
            .call(|mut connection| async move {
                let mut invocation = self.take.prepare_invoke();
                invocation
                    .arg(unix_ms(Duration::ZERO))
                    .arg(member)
                    .arg(unix_ms(ttl));
                for claim in claims {
                    invocation
                        .key(self.redis_key(&claim.key))
                        .key(self.total_key(&claim.key))
                        .arg(claim.weight)
                        .arg(claim.cap);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await;
        match answer {
            Some((0, _, _)) => Taken::Granted,
            Some((index, used, wait)) => Taken::Full {
                index: usize::try_from(index - 1).unwrap_or(0),
                used,
                until: Duration::from_millis(wait),
            },
            None => self.take_locally(claims, member, ttl),
        }
    }

    /// Hands the member `from` of every claim's key to `to`, live for `ttl`
    /// from now.
    pub async fn rename(&self, claims: &[Claim], from: &str, to: &str, ttl: Duration) {
        if claims.is_empty() {
            return;
        }
        let renamed: Option<u64> = self
            .backend
            .call(|mut connection| async move {
                let mut invocation = self.rename.prepare_invoke();
                invocation.arg(from).arg(to).arg(unix_ms(ttl));
                for claim in claims {
                    invocation
                        .key(self.redis_key(&claim.key))
                        .key(self.total_key(&claim.key))
                        .arg(claim.weight);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await;
        if renamed.is_none() {
            let until = Instant::now() + ttl;
            let mut local = lock(&self.local);
            for claim in claims {
                let members = local.entry(claim.key.clone()).or_default();
                members.retain(|entry| entry.member != from && entry.member != to);
                members.push(Local {
                    member: to.to_owned(),
                    weight: claim.weight,
                    until,
                });
            }
        }
    }

    /// Frees `member`'s slots of every claim's key.
    pub async fn free(&self, claims: &[Claim], member: &str) {
        if claims.is_empty() {
            return;
        }
        let _: Option<u64> = self
            .backend
            .call(|mut connection| async move {
                let mut invocation = self.free.prepare_invoke();
                invocation.arg(member);
                for claim in claims {
                    invocation
                        .key(self.redis_key(&claim.key))
                        .key(self.total_key(&claim.key))
                        .arg(claim.weight);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await;
        // A member taken during an outage is counted here; forgetting it
        // in both places keeps the next outage from counting it again.
        let mut local = lock(&self.local);
        for claim in claims {
            if let Some(members) = local.get_mut(&claim.key) {
                members.retain(|entry| entry.member != member);
            }
        }
    }

    /// Whether members are currently counted across instances.
    pub fn shared(&self) -> bool {
        self.backend.shared()
    }

    fn take_locally(&self, claims: &[Claim], member: &str, ttl: Duration) -> Taken {
        let now = Instant::now();
        let mut local = lock(&self.local);
        for (index, claim) in claims.iter().enumerate() {
            if !local.contains_key(&claim.key) {
                make_room(&mut local, MAX_KEYS, now, |members| {
                    members.iter().map(|entry| entry.until).max().unwrap_or(now)
                });
            }
            let members = local.entry(claim.key.clone()).or_default();
            members.retain(|entry| entry.until > now);
            let used: u64 = members.iter().map(|entry| entry.weight).sum();
            if used + claim.weight > claim.cap {
                let first = members.iter().map(|entry| entry.until).min().unwrap_or(now);
                return Taken::Full {
                    index,
                    used,
                    until: first
                        .saturating_duration_since(now)
                        .max(Duration::from_millis(1)),
                };
            }
        }
        for claim in claims {
            local.entry(claim.key.clone()).or_default().push(Local {
                member: member.to_owned(),
                weight: claim.weight,
                until: now + ttl,
            });
        }
        Taken::Granted
    }
}
