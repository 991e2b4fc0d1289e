//! Fan-out of one new showtime to every subscriber, against the local
//! cluster and broker: loads accounts subscribed to one movie into a schema
//! of its own, serves the application in-process (scanner, relay,
//! notification service), schedules a showtime of the movie, and times
//! until every subscriber's inbox has its notice.
//!
//! `cargo run --release -p marquee --example fanout -- 10000` (subscribers).
//! Progress goes to stderr; one JSON line to stdout.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use marquee_sharding::ids;
use marquee_storage::Storage;
use serde_json::json;
use uuid::Uuid;

mod bench;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let subscribers: usize = std::env::args().nth(1).map_or(Ok(10_000), |n| n.parse())?;
    let bench = bench::Bench::start("fanout", &[]).await?;
    let storage = bench.state.storage.clone();
    let movie = bench
        .create(
            "/v1/admin/movies",
            json!({"title": "Fan-out Feature", "genres": ["drama"], "runtime_minutes": 100, "release_date": "2020-01-01"}),
        )
        .await?;
    let venue = bench.venue(1, 10).await?;

    let loading = Instant::now();
    load_subscribers(&storage, subscribers, movie).await?;
    eprintln!(
        "{subscribers} subscribers loaded in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    // The scanner starts at each outbox's head on its first pass; the
    // showtime must come after that.
    tokio::time::sleep(Duration::from_secs(3)).await;

    bench.schedule(movie, venue).await?;
    let scheduled = Instant::now();

    let mut alerts_done = None;
    let mut last_report = Instant::now();
    let delivered = loop {
        let (alerts, notices) = counts(&storage).await?;
        if alerts >= subscribers && alerts_done.is_none() {
            alerts_done = Some(scheduled.elapsed());
        }
        if notices >= subscribers {
            break scheduled.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "{:>5.1} s: {alerts} alerts raised, {notices} notices filed",
                scheduled.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(
            scheduled.elapsed() < Duration::from_secs(900),
            "fan-out did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delays = notice_delays(&storage).await?;
    writeln!(
        std::io::stdout(),
        "{}",
        json!({
            "subscribers": subscribers,
            "alerts_raised_s": alerts_done.map(|d| d.as_secs_f64()),
            "all_notices_s": delivered.as_secs_f64(),
            "notices_per_s": subscribers as f64 / delivered.as_secs_f64(),
            "delay_s": bench::percentiles(delays),
        })
    )?;
    bench.finish().await?;
    Ok(())
}

/// Accounts that want notices in the app only, each subscribed to
/// `movie`, written straight to the nodes that own them.
async fn load_subscribers(storage: &Storage, count: usize, movie: Uuid) -> anyhow::Result<()> {
    let mut by_node: HashMap<String, (Vec<Uuid>, Vec<Uuid>)> = HashMap::new();
    for _ in 0..count {
        let user = Uuid::now_v7();
        let node = storage
            .cluster()
            .route_hash(ids::route_hash(user))?
            .id()
            .to_string();
        let entry = by_node.entry(node).or_default();
        entry.0.push(user);
        entry.1.push(ids::scoped(user));
    }
    for shard in storage.cluster().shards() {
        let Some((users, subscriptions)) = by_node.get(shard.id().as_str()) else {
            continue;
        };
        let client = shard.primary.get().await?;
        client
            .execute(
                "insert into users (id, email, name, password_hash, notify_email) \
                 select id, id::text || '@example.com', 'Subscriber', 'x', false from unnest($1::uuid[]) as u (id)",
                &[users],
            )
            .await?;
        client
            .execute(
                "insert into subscriptions (id, user_id, movie_id) \
                 select s, u, $3 from unnest($1::uuid[], $2::uuid[]) as x (s, u)",
                &[subscriptions, users, &movie],
            )
            .await?;
    }
    Ok(())
}

async fn counts(storage: &Storage) -> anyhow::Result<(usize, usize)> {
    let (mut alerts, mut notices) = (0i64, 0i64);
    for shard in storage.cluster().shards() {
        let row = shard
            .primary
            .get()
            .await?
            .query_one(
                "select (select count(*) from subscription_alerts), \
                        (select count(*) from inbox where kind = 'showtime.new')",
                &[],
            )
            .await?;
        alerts += row.get::<_, i64>(0);
        notices += row.get::<_, i64>(1);
    }
    Ok((usize::try_from(alerts)?, usize::try_from(notices)?))
}

/// Seconds from the showtime's commit to each notice's, by the database
/// clock.
async fn notice_delays(storage: &Storage) -> anyhow::Result<Vec<f64>> {
    let mut scheduled = None;
    for shard in storage.cluster().shards() {
        let row = shard
            .primary
            .get()
            .await?
            .query_one(
                "select extract(epoch from min(created_at))::float8 from showtimes",
                &[],
            )
            .await?;
        if let Some(at) = row.get::<_, Option<f64>>(0) {
            scheduled = Some(at);
        }
    }
    let scheduled = scheduled.ok_or_else(|| anyhow::anyhow!("no showtime"))?;
    let mut delays = Vec::new();
    for shard in storage.cluster().shards() {
        for row in shard
            .primary
            .get()
            .await?
            .query("select extract(epoch from created_at)::float8 from inbox where kind = 'showtime.new'", &[])
            .await?
        {
            delays.push(row.get::<_, f64>(0) - scheduled);
        }
    }
    Ok(delays)
}
