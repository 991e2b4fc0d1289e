//! How long account writes wait while a rebalance moves accounts, against
//! the local cluster: loads accounts into a schema of its own, keeps
//! writers renaming random accounts, drains one node, and compares the
//! writes' latency before and during the drain in the same run.
//!
//! `cargo run --release -p marquee --example key_move_pause -- 6000 8`
//! (accounts, writers). Prints one JSON line.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use marquee::settings::Settings;
use marquee_sharding::{ids, Cluster};
use marquee_storage::Storage;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let accounts: usize = args.next().map_or(Ok(6_000), |n| n.parse())?;
    let writers: usize = args.next().map_or(Ok(8), |n| n.parse())?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = format!("bench_keys_{}", std::process::id());
    let env: HashMap<String, String> = [("MARQUEE__DATABASE__SCHEMA".to_owned(), schema.clone())]
        .into_iter()
        .collect();
    let settings = Settings::load(&root, None, env)?;
    let storage = Arc::new(Storage::new(
        Arc::new(Cluster::new(&settings.database)?),
        schema.clone(),
    ));
    storage.migrate().await?;
    storage.load_placement().await?;
    let ids = load_accounts(&storage, accounts).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (storage, stop, ids) = (Arc::clone(&storage), Arc::clone(&stop), ids.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut next = writer;
                while !stop.load(Ordering::Relaxed) {
                    next = (next * 7919 + 13) % ids.len();
                    let at = started.elapsed();
                    let outcome = storage.set_name(ids[next], "Renamed").await;
                    samples.push((at, started.elapsed() - at, outcome.is_ok()));
                }
                samples
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drain_started = started.elapsed();
    let mut after = storage.shard_map().await?.nodes;
    after[0].state = "draining".to_owned();
    let done = storage.rebalance(after).await?;
    let drain_ended = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut before = Vec::new();
    let mut during = Vec::new();
    let mut refused = 0usize;
    for task in tasks {
        for (at, took, ok) in task.await? {
            if !ok {
                refused += 1;
            } else if at < drain_started {
                before.push(took);
            } else if at < drain_ended {
                during.push(took);
            }
        }
    }
    let (before, during) = (summary(&mut before), summary(&mut during));
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::json!({
            "accounts": accounts,
            "writers": writers,
            "keys_moved": done.keys_moved,
            "drain_seconds": (drain_ended - drain_started).as_secs_f64(),
            "before_ms": before,
            "during_ms": during,
            "refused": refused,
        })
    )?;
    for shard in storage.cluster().shards() {
        shard
            .primary
            .get()
            .await?
            .batch_execute(&format!("drop schema {schema} cascade"))
            .await?;
    }
    storage
        .cluster()
        .catalog()
        .get()
        .await?
        .batch_execute(&format!("drop schema {schema} cascade"))
        .await?;
    Ok(())
}

/// Writes accounts and their email index entries straight to the nodes
/// that own them, a statement per node.
async fn load_accounts(storage: &Storage, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let mut users: HashMap<String, (Vec<Uuid>, Vec<String>)> = HashMap::new();
    let mut emails: HashMap<String, (Vec<String>, Vec<Uuid>)> = HashMap::new();
    for id in &ids {
        let email = format!("{}@example.com", id.simple());
        let user_node = storage.cluster().route_hash(ids::route_hash(*id))?.id();
        let entry = users.entry(user_node.to_string()).or_default();
        entry.0.push(*id);
        entry.1.push(email.clone());
        let email_node = storage.cluster().route(email.as_bytes())?.id();
        let entry = emails.entry(email_node.to_string()).or_default();
        entry.0.push(email);
        entry.1.push(*id);
    }
    for shard in storage.cluster().shards() {
        let client = shard.primary.get().await?;
        if let Some((ids, emails)) = users.get(shard.id().as_str()) {
            client
                .execute(
                    "insert into users (id, email, name, password_hash) \
                     select id, email, 'Loaded', 'x' from unnest($1::uuid[], $2::text[]) as u (id, email)",
                    &[ids, emails],
                )
                .await?;
        }
        if let Some((emails, ids)) = emails.get(shard.id().as_str()) {
            client
                .execute(
                    "insert into user_emails (email, user_id) select * from unnest($1::text[], $2::uuid[])",
                    &[emails, ids],
                )
                .await?;
        }
    }
    Ok(ids)
}

/// Median, 99th percentile and maximum, in milliseconds.
fn summary(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    serde_json::json!({
        "writes": samples.len(),
        "p50": at(0.5),
        "p99": at(0.99),
        "max": at(1.0),
    })
}
