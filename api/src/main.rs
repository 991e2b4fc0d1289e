//! The `marquee` binary: parses the command line and hands off to the library.

// Printing is this binary's interface; libraries log instead.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;

use anyhow::Context;
use clap::Parser;
use marquee::cli::{Cli, Command, ShardsCommand};
use marquee::settings::Settings;
use marquee::startup::{self, Application};
use marquee::{routes, seed, simulate, telemetry};

/// Requests allocate many small objects across worker threads; glibc's
/// allocator spent a fifth of the service's time in locking and
/// consolidation under a purchase storm.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Openapi { out } = &cli.command {
        let spec = routes::spec(&routes::service("/"));
        return match out {
            Some(path) => {
                std::fs::write(path, spec).with_context(|| format!("writing {}", path.display()))
            }
            None => {
                print!("{spec}");
                Ok(())
            }
        };
    }

    if let Command::Shards {
        command: ShardsCommand::Simulate { from, to, keys },
    } = &cli.command
    {
        return simulate::run(*from, *to, *keys);
    }

    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = Settings::load(&cli.root, cli.config.as_deref(), env)?;
    telemetry::init(&settings.log);

    match cli.command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Migrate => {
            let cluster = std::sync::Arc::new(marquee_sharding::Cluster::new(&settings.database)?);
            let storage = marquee_storage::Storage::new(cluster, settings.database.schema.clone());
            for (component, applied) in storage.migrate().await?.applied {
                println!("{component}: {}", describe_applied(&applied));
            }
        }
        Command::Seed { scale } => {
            let storage = startup::connect_storage(&settings).await?;
            let seeded = seed::run(
                &storage,
                &settings.seed.movies_path,
                &settings.seed.places_path,
                &scale,
                settings.catalog.turnaround_minutes,
            )
            .await?;
            println!(
                "seeded {} movies, {} theaters, {} screens, {} showtimes",
                seeded.movies, seeded.theaters, seeded.screens, seeded.showtimes
            );
        }
        Command::Check => {
            startup::connect_storage(&settings).await?;
            println!("configuration is valid and every shard primary is reachable and migrated");
        }
        Command::Openapi { .. } | Command::Shards { .. } => {}
    }
    Ok(())
}

fn describe_applied(applied: &[i32]) -> String {
    if applied.is_empty() {
        "up to date".to_owned()
    } else {
        format!("applied {applied:?}")
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!(error = %err, "SIGTERM handler unavailable; stopping on SIGINT only");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}
