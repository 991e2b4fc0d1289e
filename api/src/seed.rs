//! `marquee seed`: the demo catalogue from the real data in `data/`.

use indicatif::{ProgressBar, ProgressStyle};
use marquee_storage::{demo, Storage};

use crate::startup::StartupError;

/// Movies written per batch; one transaction per shard per batch.
const BATCH: usize = 500;

pub async fn run(
    storage: &Storage,
    movies_path: &std::path::Path,
    limit: Option<usize>,
) -> Result<usize, StartupError> {
    let mut movies = demo::load_movies(movies_path)?;
    if let Some(limit) = limit {
        movies.truncate(limit);
    }
    let total = movies.len();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(
            "{msg:>8} [{bar:40}] {pos}/{len} movies ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("seeding");
    for (number, batch) in movies.chunks(BATCH).enumerate() {
        storage
            .upsert_movies(batch, &|written| bar.inc(written as u64))
            .await?;
        tracing::info!(
            written = (number * BATCH + batch.len()),
            total,
            "seed progress"
        );
    }
    bar.finish_with_message("seeded");
    Ok(total)
}
