//! Behaviour against the local cluster's Redis (`scripts/cluster up`), plus a
//! proxy in front of it to simulate outages without disturbing other users.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use marquee_ratelimit::{
    Claim, Decision, Limit, LimiterSettings, Lockout, LockoutSettings, RateLimiter, Slots,
    SlotsSettings, Taken,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn redis_url() -> String {
    if let Ok(url) = std::env::var("MARQUEE__REDIS__URL") {
        return url;
    }
    // Read at run time: one target directory may serve several checkouts,
    // and a path compiled in names whichever built the binary last.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{manifest}/../var/cluster.yaml");
    let text = std::fs::read_to_string(path).expect("var/cluster.yaml exists (scripts/cluster up)");
    text.lines()
        .skip_while(|line| !line.starts_with("redis:"))
        .find_map(|line| line.trim().strip_prefix("url:"))
        .map(|url| url.trim().to_owned())
        .expect("var/cluster.yaml names the Redis URL")
}

async fn connect(url: &str) -> Option<ConnectionManager> {
    let client = redis::Client::open(url).ok()?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_max_delay(20)
        .set_connection_timeout(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .ok()
}

async fn shared_redis() -> ConnectionManager {
    connect(&redis_url())
        .await
        .expect("the local Redis is running (scripts/cluster up)")
}

fn unique_prefix() -> String {
    format!("test:ratelimit:{}", uuid::Uuid::new_v4())
}

fn limiter(redis: Option<ConnectionManager>) -> RateLimiter {
    RateLimiter::new(redis, unique_prefix(), LimiterSettings::default())
}

async fn count_allowed(limiter: &RateLimiter, limit: &Limit, key: &str, attempts: u32) -> u32 {
    let mut allowed = 0;
    for _ in 0..attempts {
        if limiter.acquire(limit, key).await == Decision::Allowed {
            allowed += 1;
        }
    }
    allowed
}

fn retry_after(decision: Decision) -> Duration {
    match decision {
        Decision::Limited { retry_after } => retry_after,
        Decision::Allowed => panic!("expected the request to be limited"),
    }
}

/// Forwards to Redis until told to stall (accept but never answer) or refuse
/// (drop every connection at once).
struct Proxy {
    url: String,
    mode: watch::Sender<Mode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Stall,
    Refuse,
}

impl Proxy {
    async fn start() -> Self {
        let info = redis::Client::open(redis_url())
            .expect("the Redis URL parses")
            .get_connection_info()
            .addr
            .to_string();
        let upstream: SocketAddr = tokio::net::lookup_host(info)
            .await
            .expect("the Redis host resolves")
            .next()
            .expect("the Redis host has an address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("redis://{}/", listener.local_addr().expect("bound"));
        let (mode, watcher) = watch::channel(Mode::Forward);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, watcher.clone()));
            }
        });
        Self { url, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    if *mode.borrow() == Mode::Refuse {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => return,
        _ = mode.wait_for(|mode| *mode != Mode::Forward) => {}
    }
    let _ = mode.wait_for(|mode| *mode == Mode::Refuse).await;
}

#[tokio::test]
async fn a_burst_is_allowed_and_then_limited_with_the_time_until_the_next_token() {
    let limiter = limiter(Some(shared_redis().await));
    let limit = Limit {
        per_second: 1.0,
        burst: 10,
    };
    assert_eq!(count_allowed(&limiter, &limit, "client", 10).await, 10);
    let wait = retry_after(limiter.acquire(&limit, "client").await);
    assert!(wait > Duration::from_millis(900), "{wait:?}");
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    assert!(limiter.shared());
}

#[tokio::test]
async fn a_limited_key_is_refused_locally_until_a_token_can_exist() {
    let limiter = limiter(Some(shared_redis().await));
    let limit = Limit {
        per_second: 1.0,
        burst: 4,
    };
    assert_eq!(count_allowed(&limiter, &limit, "client", 5).await, 4);
    let calls = limiter.redis_calls();
    for _ in 0..100 {
        retry_after(limiter.acquire(&limit, "client").await);
    }
    assert_eq!(limiter.redis_calls(), calls);
}

#[tokio::test]
async fn tokens_refill_over_time() {
    let limiter = limiter(Some(shared_redis().await));
    let limit = Limit {
        per_second: 50.0,
        burst: 5,
    };
    assert_eq!(count_allowed(&limiter, &limit, "client", 6).await, 5);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refilled = count_allowed(&limiter, &limit, "client", 10).await;
    assert!((4..=6).contains(&refilled), "{refilled} refilled");
}

#[tokio::test]
async fn keys_have_separate_buckets() {
    let limiter = limiter(Some(shared_redis().await));
    let limit = Limit {
        per_second: 0.001,
        burst: 3,
    };
    assert_eq!(count_allowed(&limiter, &limit, "first", 5).await, 3);
    assert_eq!(count_allowed(&limiter, &limit, "second", 5).await, 3);
}

#[tokio::test]
async fn instances_sharing_redis_together_admit_exactly_the_burst() {
    let redis = shared_redis().await;
    let prefix = unique_prefix();
    let first = RateLimiter::new(
        Some(redis.clone()),
        prefix.clone(),
        LimiterSettings::default(),
    );
    let second = RateLimiter::new(Some(redis), prefix, LimiterSettings::default());
    let limit = Limit {
        per_second: 0.001,
        burst: 20,
    };
    let (a, b) = tokio::join!(
        count_allowed(&first, &limit, "client", 40),
        count_allowed(&second, &limit, "client", 40),
    );
    // Every admitted request spent a token the shared bucket granted, and each
    // instance attempts more than the whole burst, so no leased token is left
    // unspent and the refill over the test (far below one token) adds none.
    assert_eq!(a + b, 20, "{a} + {b}");
    assert!(a > 0 && b > 0, "{a} + {b}");
}

#[tokio::test]
async fn requests_within_a_lease_do_not_touch_redis() {
    let limiter = limiter(Some(shared_redis().await));
    let limit = Limit {
        per_second: 100.0,
        burst: 1000,
    };
    assert_eq!(limiter.acquire(&limit, "client").await, Decision::Allowed);
    assert_eq!(limiter.redis_calls(), 1);
    assert_eq!(count_allowed(&limiter, &limit, "client", 7).await, 7);
    assert_eq!(limiter.redis_calls(), 1);
    assert_eq!(limiter.acquire(&limit, "client").await, Decision::Allowed);
    assert_eq!(limiter.redis_calls(), 2);
}

#[tokio::test]
async fn a_request_within_a_lease_takes_well_under_ten_microseconds() {
    let settings = LimiterSettings {
        lease: 1000,
        lease_ttl: Duration::from_secs(10),
        ..LimiterSettings::default()
    };
    let limiter = RateLimiter::new(Some(shared_redis().await), unique_prefix(), settings);
    let limit = Limit {
        per_second: 100.0,
        burst: 10_000,
    };
    assert_eq!(limiter.acquire(&limit, "client").await, Decision::Allowed);
    let started = Instant::now();
    assert_eq!(count_allowed(&limiter, &limit, "client", 999).await, 999);
    let each = started.elapsed() / 999;
    assert_eq!(limiter.redis_calls(), 1);
    assert!(each < Duration::from_micros(10), "{each:?} per request");
}

#[tokio::test]
async fn leased_tokens_expire_and_are_fetched_again() {
    let settings = LimiterSettings {
        lease_ttl: Duration::from_millis(50),
        ..LimiterSettings::default()
    };
    let limiter = RateLimiter::new(Some(shared_redis().await), unique_prefix(), settings);
    let limit = Limit {
        per_second: 100.0,
        burst: 1000,
    };
    assert_eq!(limiter.acquire(&limit, "client").await, Decision::Allowed);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(limiter.acquire(&limit, "client").await, Decision::Allowed);
    assert_eq!(limiter.redis_calls(), 2);
}

#[tokio::test]
async fn a_limiter_without_reachable_redis_still_limits_on_its_own() {
    let redis = connect("redis://127.0.0.1:1/").await;
    assert!(redis.is_none());
    let limiter = limiter(redis);
    let limit = Limit {
        per_second: 1.0,
        burst: 5,
    };
    assert_eq!(count_allowed(&limiter, &limit, "client", 8).await, 5);
    let wait = retry_after(limiter.acquire(&limit, "client").await);
    assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1));
    assert!(!limiter.shared());
    assert_eq!(limiter.redis_calls(), 0);
}

#[tokio::test]
async fn a_redis_outage_falls_back_to_local_limits_and_recovers() {
    let proxy = Proxy::start().await;
    let settings = LimiterSettings {
        retry_redis_after: Duration::from_millis(300),
        ..LimiterSettings::default()
    };
    let limiter = RateLimiter::new(connect(&proxy.url).await, unique_prefix(), settings);
    let limit = Limit {
        per_second: 0.001,
        burst: 4,
    };
    assert_eq!(limiter.acquire(&limit, "client").await, Decision::Allowed);
    assert!(limiter.shared());

    proxy.set(Mode::Refuse);
    let calls = limiter.redis_calls();
    // The shared bucket has 3 tokens left; the local one starts full at 4.
    assert_eq!(count_allowed(&limiter, &limit, "client", 10).await, 4);
    assert!(!limiter.shared());
    assert_eq!(limiter.redis_calls(), calls + 1, "the breaker skips Redis");

    proxy.set(Mode::Forward);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count_allowed(&limiter, &limit, "client", 10).await, 3);
    assert!(limiter.shared());
}

#[tokio::test]
async fn a_slow_redis_costs_at_most_the_timeout_once_per_retry_period() {
    let proxy = Proxy::start().await;
    let limiter = limiter(connect(&proxy.url).await);
    let limit = Limit {
        per_second: 1.0,
        burst: 1,
    };
    assert_eq!(limiter.acquire(&limit, "warm").await, Decision::Allowed);
    proxy.set(Mode::Stall);

    let started = Instant::now();
    assert_eq!(limiter.acquire(&limit, "client").await, Decision::Allowed);
    let first = started.elapsed();
    assert!(first >= Duration::from_millis(50), "{first:?}");
    assert!(first < Duration::from_millis(500), "{first:?}");
    assert!(!limiter.shared());

    let started = Instant::now();
    retry_after(limiter.acquire(&limit, "client").await);
    assert!(started.elapsed() < Duration::from_millis(10));
    proxy.set(Mode::Refuse);
}

fn lockout(redis: Option<ConnectionManager>) -> Lockout {
    Lockout::new(redis, unique_prefix(), LockoutSettings::default())
}

async fn fail_free_attempts(lockout: &Lockout, key: &str) {
    for _ in 0..5 {
        assert_eq!(lockout.failed(key).await, None);
    }
}

#[tokio::test]
async fn five_failures_are_free_and_the_sixth_locks_for_about_a_second() {
    let lockout = lockout(Some(shared_redis().await));
    fail_free_attempts(&lockout, "account").await;
    assert_eq!(lockout.check("account").await, None);
    assert_eq!(
        lockout.failed("account").await,
        Some(Duration::from_secs(1))
    );
    let left = lockout.check("account").await.expect("locked");
    assert!(left > Duration::from_millis(800) && left <= Duration::from_secs(1));
    assert!(lockout.shared());
}

#[tokio::test]
async fn each_further_failure_doubles_the_lock() {
    let lockout = lockout(Some(shared_redis().await));
    fail_free_attempts(&lockout, "account").await;
    let mut seconds = Vec::new();
    for _ in 0..4 {
        let lock = lockout.failed("account").await.expect("locked");
        seconds.push(lock.as_secs());
    }
    assert_eq!(seconds, [1, 2, 4, 8]);
}

#[tokio::test]
async fn the_lock_stops_growing_at_the_maximum() {
    let settings = LockoutSettings {
        max_delay: Duration::from_secs(3),
        ..LockoutSettings::default()
    };
    let lockout = Lockout::new(Some(shared_redis().await), unique_prefix(), settings);
    fail_free_attempts(&lockout, "account").await;
    for _ in 0..3 {
        lockout.failed("account").await;
    }
    let lock = lockout.failed("account").await.expect("locked");
    assert!(lock <= Duration::from_secs(3) && lock > Duration::from_millis(2500));
}

#[tokio::test]
async fn a_successful_sign_in_clears_failures_and_lock() {
    let lockout = lockout(Some(shared_redis().await));
    fail_free_attempts(&lockout, "account").await;
    assert!(lockout.failed("account").await.is_some());
    lockout.succeeded("account").await;
    assert_eq!(lockout.check("account").await, None);
    fail_free_attempts(&lockout, "account").await;
}

#[tokio::test]
async fn a_lock_expires_on_its_own() {
    let settings = LockoutSettings {
        free_attempts: 0,
        base_delay: Duration::from_millis(100),
        ..LockoutSettings::default()
    };
    let lockout = Lockout::new(Some(shared_redis().await), unique_prefix(), settings);
    assert_eq!(
        lockout.failed("account").await,
        Some(Duration::from_millis(100))
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(lockout.check("account").await, None);
}

#[tokio::test]
async fn instances_share_failures_and_locks() {
    let redis = shared_redis().await;
    let prefix = unique_prefix();
    let first = Lockout::new(
        Some(redis.clone()),
        prefix.clone(),
        LockoutSettings::default(),
    );
    let second = Lockout::new(Some(redis), prefix, LockoutSettings::default());
    for _ in 0..3 {
        assert_eq!(first.failed("account").await, None);
    }
    for _ in 0..2 {
        assert_eq!(second.failed("account").await, None);
    }
    assert_eq!(second.failed("account").await, Some(Duration::from_secs(1)));
    assert!(first.check("account").await.is_some());
    first.succeeded("account").await;
    assert_eq!(second.check("account").await, None);
}

#[tokio::test]
async fn a_lockout_without_reachable_redis_counts_failures_on_its_own() {
    let redis = connect("redis://127.0.0.1:1/").await;
    let lockout = lockout(redis);
    fail_free_attempts(&lockout, "account").await;
    assert_eq!(
        lockout.failed("account").await,
        Some(Duration::from_secs(1))
    );
    let left = lockout.check("account").await.expect("locked");
    assert!(left > Duration::from_millis(800) && left <= Duration::from_secs(1));
    lockout.succeeded("account").await;
    assert_eq!(lockout.check("account").await, None);
    assert!(!lockout.shared());
}

#[tokio::test]
async fn a_lockout_keeps_counting_locally_when_redis_fails_mid_way() {
    let proxy = Proxy::start().await;
    let lockout = lockout(connect(&proxy.url).await);
    assert_eq!(lockout.failed("account").await, None);
    assert!(lockout.shared());
    proxy.set(Mode::Refuse);
    fail_free_attempts(&lockout, "account").await;
    assert_eq!(
        lockout.failed("account").await,
        Some(Duration::from_secs(1))
    );
    assert!(lockout.check("account").await.is_some());
    assert!(!lockout.shared());
}

fn slots(redis: Option<ConnectionManager>, prefix: &str) -> Slots {
    Slots::new(redis, prefix.to_owned(), SlotsSettings::default())
}

fn claim(key: &str, weight: u64, cap: u64) -> Claim {
    Claim {
        key: key.to_owned(),
        weight,
        cap,
    }
}

#[tokio::test]
async fn instances_sharing_redis_fill_a_key_up_to_its_cap_by_weight_and_no_further() {
    let prefix = unique_prefix();
    let (one, two) = (
        slots(Some(shared_redis().await), &prefix),
        slots(Some(shared_redis().await), &prefix),
    );
    let ttl = Duration::from_secs(60);
    assert_eq!(
        one.take(&[claim("seats", 6, 10)], "a", ttl).await,
        Taken::Granted
    );
    assert_eq!(
        two.take(&[claim("seats", 4, 10)], "b", ttl).await,
        Taken::Granted
    );
    let Taken::Full { index, used, until } = one.take(&[claim("seats", 1, 10)], "c", ttl).await
    else {
        panic!("the key is full");
    };
    assert_eq!((index, used), (0, 10));
    assert!(until > Duration::from_secs(55) && until <= ttl, "{until:?}");
    two.free(&[claim("seats", 6, 10)], "a").await;
    assert_eq!(
        one.take(&[claim("seats", 5, 10)], "c", ttl).await,
        Taken::Granted
    );
    assert!(one.shared() && two.shared());
}

#[tokio::test]
async fn several_keys_are_taken_together_or_not_at_all() {
    let slots = slots(Some(shared_redis().await), &unique_prefix());
    let ttl = Duration::from_secs(60);
    assert_eq!(
        slots.take(&[claim("live", 1, 1)], "first", ttl).await,
        Taken::Granted
    );
    let both = [claim("seats", 2, 10), claim("live", 1, 1)];
    assert!(matches!(
        slots.take(&both, "second", ttl).await,
        Taken::Full {
            index: 1,
            used: 1,
            ..
        }
    ));
    assert_eq!(
        slots.take(&[claim("seats", 10, 10)], "third", ttl).await,
        Taken::Granted,
        "the refused take left nothing in the key it did not fill"
    );
}

#[tokio::test]
async fn a_renamed_member_keeps_its_slot_and_a_lapsed_one_frees_it() {
    let slots = slots(Some(shared_redis().await), &unique_prefix());
    let cap = [claim("live", 1, 1)];
    assert_eq!(
        slots
            .take(&cap, "provisional", Duration::from_secs(60))
            .await,
        Taken::Granted
    );
    slots
        .rename(&cap, "provisional", "hold", Duration::from_millis(300))
        .await;
    assert!(matches!(
        slots.take(&cap, "other", Duration::from_secs(60)).await,
        Taken::Full { .. }
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        slots.take(&cap, "other", Duration::from_secs(60)).await,
        Taken::Granted,
        "a member nobody freed lapses on time"
    );
}

#[tokio::test]
async fn slots_without_reachable_redis_still_cap_on_their_own() {
    let slots = slots(connect("redis://127.0.0.1:1/").await, &unique_prefix());
    let ttl = Duration::from_secs(60);
    assert_eq!(
        slots.take(&[claim("seats", 8, 10)], "a", ttl).await,
        Taken::Granted
    );
    assert!(matches!(
        slots.take(&[claim("seats", 3, 10)], "b", ttl).await,
        Taken::Full { used: 8, .. }
    ));
    slots.free(&[claim("seats", 8, 10)], "a").await;
    assert_eq!(
        slots.take(&[claim("seats", 3, 10)], "b", ttl).await,
        Taken::Granted
    );
    assert!(!slots.shared());
}
