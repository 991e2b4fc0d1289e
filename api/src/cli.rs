//! The `marquee` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "marquee",
    version,
    about = "Movie-ticket booking: API server and operations tool"
)]
pub struct Cli {
    /// Directory holding config/, data/ and var/.
    #[arg(long, env = "MARQUEE_ROOT", default_value = ".", global = true)]
    pub root: PathBuf,
    /// A configuration file layered over config/base.yaml and var/*.yaml.
    #[arg(long, env = "MARQUEE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API over HTTPS until SIGINT or SIGTERM.
    Serve,
    /// Apply schema migrations to the catalog and every shard primary.
    Migrate,
    /// Load the demo catalogue from data/ (safe to run again).
    Seed {
        #[command(flatten)]
        scale: crate::seed::Scale,
    },
    /// Check configuration and reach every dependency, then exit.
    Check,
    /// Shard placement tools.
    Shards {
        #[command(subcommand)]
        command: ShardsCommand,
    },
    /// Print the OpenAPI spec.
    Openapi {
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShardsCommand {
    /// Print balance and key movement of placement as a cluster grows from
    /// `--from` to `--to` nodes, one node at a time. Needs no cluster.
    Simulate {
        #[arg(long, default_value_t = 20)]
        from: usize,
        #[arg(long, default_value_t = 70)]
        to: usize,
        /// Keys to place at each size.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
    },
}
