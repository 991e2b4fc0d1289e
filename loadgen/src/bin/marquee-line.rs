use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use marquee_loadgen::line;

/// Send clients through one showtime's waiting room, each holding and
/// paying for a party once let out, and report how fair the line was.
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
    #[arg(long, default_value_t = 2_000)]
    clients: usize,
    #[arg(long, default_value_t = 500)]
    seats: usize,
    /// Parties are 1 to this many seats.
    #[arg(long, default_value_t = 4)]
    max_party: u32,
    /// Seats one customer may hold or buy, as the server is configured.
    #[arg(long, default_value_t = 10)]
    cap: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let admin_token = match cli.admin_token {
        Some(token) => token,
        None => {
            let secrets = std::fs::read_to_string(&cli.secrets)
                .with_context(|| format!("reading {}", cli.secrets.display()))?;
            marquee_loadgen::storm::admin::token_from_secrets(&secrets)
                .with_context(|| format!("no `admin: token:` in {}", cli.secrets.display()))?
        }
    };
    let report = line::run(&line::Plan {
        base: cli.base.trim_end_matches('/').to_owned(),
        admin_token,
        clients: cli.clients,
        seats: cli.seats,
        max_party: cli.max_party,
        cap: cli.cap,
    })
    .await?;
    writeln!(std::io::stdout(), "{}", serde_json::to_string(&report)?)?;
    Ok(())
}
