use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use marquee_loadgen::storm::{self, Policy, Workload};

/// Race buyers for the seats of fresh showtimes, report bookings per second
/// and purchase latency, and check that no seat was sold twice.
#[derive(Debug, Parser)]
struct Cli {
    /// Base URL, such as `https://127.0.0.1:8443`.
    #[arg(long)]
    base: String,
    /// The admin token; read from `--secrets` when absent.
    #[arg(long, env = "MARQUEE__ADMIN__TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The secrets file with the admin token under `admin: token:`.
    #[arg(long, default_value = "var/secrets.yaml")]
    secrets: PathBuf,
    #[arg(long, value_enum)]
    workload: Workload,
    /// The seat-locking policy set on every showtime of the run.
    #[arg(long, value_enum, default_value_t = Policy::Auto)]
    policy: Policy,
    /// Concurrent buyers; each waits for its purchase before the next.
    #[arg(long, default_value_t = 200)]
    buyers: usize,
    /// Showtimes on sale; 1 for a rush and 1,000 for spread unless given.
    #[arg(long)]
    showtimes: Option<usize>,
    #[arg(long, default_value_t = 500)]
    seats_per_showtime: usize,
    /// How long spread buyers keep buying. A rush ends when every buyer has
    /// tried once.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seats per purchase, held together as best available.
    #[arg(long, default_value_t = 2)]
    seats_per_buyer: u32,
    /// A label printed with the report.
    #[arg(long, default_value = "run")]
    label: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let admin_token = match cli.admin_token {
        Some(token) => token,
        None => {
            let secrets = std::fs::read_to_string(&cli.secrets)
                .with_context(|| format!("reading {}", cli.secrets.display()))?;
            storm::admin::token_from_secrets(&secrets)
                .with_context(|| format!("no `admin: token:` in {}", cli.secrets.display()))?
        }
    };
    let showtimes = cli.showtimes.unwrap_or(match cli.workload {
        Workload::Rush => 1,
        Workload::Spread => 1_000,
    });
    let report = storm::run(&storm::Plan {
        base: cli.base.trim_end_matches('/').to_owned(),
        admin_token,
        workload: cli.workload,
        policy: cli.policy,
        buyers: cli.buyers,
        showtimes,
        seats_per_showtime: cli.seats_per_showtime,
        seats_per_buyer: cli.seats_per_buyer,
        duration: Duration::from_secs(cli.seconds),
    })
    .await?;
    let mut line = serde_json::to_value(&report)?;
    line["label"] = cli.label.into();
    writeln!(std::io::stdout(), "{line}")?;
    Ok(())
}
