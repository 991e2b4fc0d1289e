//! Events per second through the outbox relay, against the local cluster
//! and broker: fills every shard's outbox in a schema of its own, then
//! times one relay publishing all of it, for each batch size given.
//!
//! `cargo run --release -p marquee --example relay_throughput -- 20000 100 500 2000`
//! (events per shard, then batch sizes). Prints a JSON line per batch size.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use marquee::settings::Settings;
use marquee_sharding::Cluster;
use marquee_storage::Storage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let per_shard: i64 = args.next().map_or(Ok(20_000), |n| n.parse())?;
    let batches: Vec<i64> = args.map(|n| n.parse()).collect::<Result<_, _>>()?;
    let batches = if batches.is_empty() {
        vec![marquee_relay::Settings::default().batch]
    } else {
        batches
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = format!("bench_relay_{}", std::process::id());
    let env: HashMap<String, String> = [("MARQUEE__DATABASE__SCHEMA".to_owned(), schema.clone())]
        .into_iter()
        .collect();
    let settings = Settings::load(&root, None, env)?;
    let storage = Storage::new(Arc::new(Cluster::new(&settings.database)?), schema.clone());
    storage.migrate().await?;
    storage.load_placement().await?;
    let mut out = std::io::stdout();
    for batch in batches {
        for shard in storage.cluster().shards() {
            shard
                .primary
                .get()
                .await?
                .execute(
                    "insert into outbox (aggregate, aggregate_id, event, payload) \
                     select 'order', md5(i::text)::uuid, 'order', jsonb_build_object('seats', 2) \
                     from generate_series(1::bigint, $1) i",
                    &[&per_shard],
                )
                .await?;
        }
        let relay = marquee_relay::Relay::new(
            storage.clone(),
            &settings.broker.bootstrap_servers,
            marquee_relay::Settings {
                batch,
                ..marquee_relay::Settings::default()
            },
            &prometheus::Registry::new(),
        )?;
        let total = per_shard * storage.cluster().shards().len() as i64;
        let started = Instant::now();
        let mut sent = 0usize;
        while (sent as i64) < total {
            sent += relay.run_once().await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        // The next size's relay is another holder; free the shards for it.
        for shard in storage.cluster().shards() {
            shard
                .primary
                .get()
                .await?
                .execute("delete from relay_lease", &[])
                .await?;
        }
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "events": sent,
                "batch": batch,
                "seconds": seconds,
                "per_second": sent as f64 / seconds,
            })
        )?;
    }
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
