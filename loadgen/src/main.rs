use std::io::Write;
use std::time::Duration;

use clap::Parser;

/// Load a Marquee instance with closed-loop clients and report latency.
#[derive(Debug, Parser)]
struct Cli {
    /// Base URL, such as `https://127.0.0.1:8443`.
    #[arg(long)]
    base: String,
    /// File of paths to request, one per line, used in turn.
    #[arg(long)]
    paths: std::path::PathBuf,
    /// File of JSON bodies, one per line: each request then POSTs the
    /// next body to the next path.
    #[arg(long)]
    bodies: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// A label printed with the report.
    #[arg(long, default_value = "run")]
    label: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let paths: Vec<String> = std::fs::read_to_string(&cli.paths)?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    let report = marquee_loadgen::run(&marquee_loadgen::Plan {
        base: cli.base.trim_end_matches('/').to_owned(),
        paths,
        bodies: match &cli.bodies {
            Some(file) => std::fs::read_to_string(file)?
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        },
        concurrency: cli.concurrency,
        warmup: Duration::from_secs(cli.warmup_seconds),
        duration: Duration::from_secs(cli.seconds),
    })
    .await?;
    let mut line = serde_json::to_value(&report)?;
    line["label"] = cli.label.into();
    writeln!(std::io::stdout(), "{line}")?;
    Ok(())
}
