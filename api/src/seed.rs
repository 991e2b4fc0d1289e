//! `marquee seed`: the demo catalogue from the real data in `data/`:
//! films, theaters in the largest US cities, screens with realistic
//! layouts, and showtimes for the coming days. Every id is derived from
//! the data, so running it twice writes nothing new.

use chrono::{Duration, Utc};
use futures::stream::{self, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use marquee_storage::demo_places::{self, SeedShowtime};
use marquee_storage::movies::NewMovie;
use marquee_storage::{demo, Storage};

use crate::startup::StartupError;

/// Movies written per batch; one transaction per shard per batch.
const BATCH: usize = 500;
/// Showtime batches written at once.
const CONCURRENT_BATCHES: usize = 2;

/// How large a catalogue to build. The defaults make a lively demo; load
/// tests raise them (300 cities × 4 theaters × 12 screens × 14 days is
/// about a million showtimes).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Scale {
    /// Load at most this many movies.
    #[arg(long)]
    pub movies: Option<usize>,
    /// Cities to open theaters in, largest first.
    #[arg(long, default_value_t = 25)]
    pub cities: usize,
    #[arg(long, default_value_t = 2)]
    pub theaters_per_city: usize,
    #[arg(long, default_value_t = 5)]
    pub screens_per_theater: usize,
    /// Days of showtimes, from today.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Movies in the showtime rotation, most popular first.
    #[arg(long, default_value_t = 150)]
    pub now_playing: usize,
    /// Showtimes written per batch; two batches are written at once.
    #[arg(long, default_value_t = 5_000)]
    pub showtime_batch: usize,
}

/// What a seed wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    pub movies: usize,
    pub theaters: usize,
    pub screens: usize,
    pub showtimes: usize,
}

fn bar(total: u64, unit: &str) -> ProgressBar {
    let template =
        format!("{{msg:>10}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})");
    ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    )
}

pub async fn run(
    storage: &Storage,
    movies_path: &std::path::Path,
    places_path: &std::path::Path,
    scale: &Scale,
    turnaround_minutes: u32,
) -> Result<Seeded, StartupError> {
    let mut movies = demo::load_movies(movies_path)?;
    if let Some(limit) = scale.movies {
        movies.truncate(limit);
    }
    let progress = bar(movies.len() as u64, "movies");
    progress.set_message("movies");
    for batch in movies.chunks(BATCH) {
        storage
            .upsert_movies(batch, &|written| progress.inc(written as u64))
            .await?;
    }
    progress.finish();

    let today = Utc::now().date_naive();
    let mut playing: Vec<NewMovie> = movies
        .iter()
        .filter(|m| m.runtime_minutes.is_some() && m.release_date.is_some_and(|d| d <= today))
        .cloned()
        .collect();
    playing.sort_by(|a, b| b.imdb_votes.cmp(&a.imdb_votes).then(a.id.cmp(&b.id)));
    playing.truncate(scale.now_playing.max(1));

    let cities = demo_places::load_cities(places_path)?;
    let cities = &cities[..scale.cities.min(cities.len())];
    let theater_count = cities.len() * scale.theaters_per_city;
    let progress = bar(theater_count as u64, "theaters");
    progress.set_message("theaters");
    let mut theaters = Vec::with_capacity(theater_count);
    for city in cities {
        for number in 0..scale.theaters_per_city {
            theaters.push(demo_places::theater(city, number));
        }
    }
    let mut screens = Vec::new();
    for (id, info) in &theaters {
        storage.put_theater(*id, info).await?;
        for number in 0..scale.screens_per_theater {
            let (screen_id, name, layout, imax) =
                demo_places::screen(*id, number, scale.screens_per_theater);
            storage.put_screen(*id, screen_id, &name, &layout).await?;
            screens.push((*id, info.timezone.clone(), screen_id, layout, imax));
        }
        progress.inc(1);
    }
    progress.finish();

    let turnaround = Duration::minutes(i64::from(turnaround_minutes));
    let days: Vec<_> = (0..scale.days)
        .filter_map(|offset| today.checked_add_days(chrono::Days::new(u64::from(offset))))
        .collect();
    let progress = bar((screens.len() * days.len()) as u64, "screen-days");
    progress.set_message("showtimes");
    let mut pending: Vec<SeedShowtime> = Vec::new();
    let mut batches = Vec::new();
    for (theater, zone, screen, layout, imax) in &screens {
        let zone: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
        for day in &days {
            pending.extend(demo_places::screen_day(
                *theater,
                &zone,
                (*screen, layout, *imax),
                *day,
                &playing,
                turnaround,
            ));
            if pending.len() >= scale.showtime_batch.max(1) {
                batches.push(std::mem::take(&mut pending));
            }
        }
    }
    batches.push(pending);
    let per_batch: Vec<usize> = batches.iter().map(Vec::len).collect();
    let screen_days_per_showtime =
        (screens.len() * days.len()) as f64 / per_batch.iter().sum::<usize>().max(1) as f64;
    stream::iter(batches.into_iter().map(Ok::<_, StartupError>))
        .try_for_each_concurrent(CONCURRENT_BATCHES, |batch| {
            let progress = progress.clone();
            async move {
                storage.seed_showtimes(&batch).await?;
                progress.inc((batch.len() as f64 * screen_days_per_showtime).round() as u64);
                Ok(())
            }
        })
        .await?;
    let written = per_batch.iter().sum::<usize>();
    progress.finish();
    Ok(Seeded {
        movies: movies.len(),
        theaters: theaters.len(),
        screens: screens.len(),
        showtimes: written,
    })
}
