//! The demo catalogue, built from the real film data in `data/movies.json`
//! (vega-datasets, BSD-3-Clause; see `data/README.md`).
//!
//! Ids are derived from each film's title and release date, so loading the
//! file twice writes the same rows again instead of duplicating them.

use std::hash::Hasher;
use std::path::Path;

use chrono::{Datelike, NaiveDate, NaiveTime};
use serde::Deserialize;
use siphasher::sip::SipHasher13;
use uuid::Uuid;

use crate::movies::NewMovie;
use crate::Error;

#[derive(Debug, Deserialize)]
struct SourceFilm {
    #[serde(rename = "Title")]
    title: Option<serde_json::Value>,
    #[serde(rename = "Major Genre")]
    major_genre: Option<String>,
    #[serde(rename = "Director")]
    director: Option<String>,
    #[serde(rename = "Release Date")]
    release_date: Option<String>,
    #[serde(rename = "MPAA Rating")]
    mpaa_rating: Option<String>,
    #[serde(rename = "Running Time min")]
    running_time_min: Option<i32>,
    #[serde(rename = "IMDB Rating")]
    imdb_rating: Option<f64>,
    #[serde(rename = "IMDB Votes")]
    imdb_votes: Option<i32>,
}

/// The source's "Major Genre" as Marquee genre slugs.
fn genres(major: Option<&str>) -> Vec<String> {
    let slugs: &[&str] = match major {
        Some("Action") => &["action"],
        Some("Adventure") => &["adventure"],
        Some("Comedy" | "Black Comedy") => &["comedy"],
        Some("Romantic Comedy") => &["romance", "comedy"],
        Some("Concert/Performance") => &["concert"],
        Some("Documentary") => &["documentary"],
        Some("Drama") => &["drama"],
        Some("Horror") => &["horror"],
        Some("Musical") => &["musical"],
        Some("Thriller/Suspense") => &["thriller"],
        Some("Western") => &["western"],
        _ => &[],
    };
    slugs.iter().map(|s| (*s).to_owned()).collect()
}

/// A UUIDv7 whose timestamp is the release date and whose random bits come
/// from the title: time-ordered like every Marquee id, yet the same on every
/// load.
fn stable_id(title: &str, release: Option<NaiveDate>) -> Uuid {
    let millis = release
        .and_then(|date| {
            date.and_time(NaiveTime::MIN)
                .and_utc()
                .timestamp_millis()
                .try_into()
                .ok()
        })
        .unwrap_or(0u64);
    let mut bytes = [0u8; 10];
    for (round, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut hasher = SipHasher13::new_with_keys(0x6465_6d6f, round as u64);
        hasher.write(title.as_bytes());
        hasher.write_u64(millis);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes()[..chunk.len()]);
    }
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

fn convert(film: SourceFilm) -> Option<NewMovie> {
    let title = match film.title? {
        serde_json::Value::String(title) => title.trim().to_owned(),
        serde_json::Value::Number(number) => number.to_string(),
        _ => return None,
    };
    if title.is_empty() {
        return None;
    }
    let release_date = film
        .release_date
        .as_deref()
        .and_then(|text| NaiveDate::parse_from_str(text, "%b %d %Y").ok())
        .filter(|date| date.year() > 1880);
    Some(NewMovie {
        id: stable_id(&title, release_date),
        genres: genres(film.major_genre.as_deref()),
        director: film.director,
        synopsis: None,
        cast: Vec::new(),
        runtime_minutes: film
            .running_time_min
            .filter(|minutes| (1..=1000).contains(minutes)),
        certificate: film.mpaa_rating,
        release_date,
        poster_url: None,
        imdb_rating: film
            .imdb_rating
            .filter(|rating| (0.0..=10.0).contains(rating)),
        imdb_votes: film.imdb_votes.filter(|votes| *votes >= 0),
        demo_generated: false,
        title,
    })
}

/// Reads the film file; films without a usable title are skipped.
pub fn load_movies(path: &Path) -> Result<Vec<NewMovie>, Error> {
    let unreadable = |reason: String| Error::DemoData {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|err| unreadable(err.to_string()))?;
    let films: Vec<SourceFilm> =
        serde_json::from_str(&text).map_err(|err| unreadable(err.to_string()))?;
    Ok(films.into_iter().filter_map(convert).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_file() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/movies.json")
    }

    #[test]
    fn the_shipped_film_file_yields_thousands_of_movies_with_unique_ids() {
        let movies = load_movies(&data_file()).expect("data/movies.json loads");
        assert!(movies.len() > 3_000, "only {} movies", movies.len());
        let mut ids: Vec<Uuid> = movies.iter().map(|m| m.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), movies.len());
    }

    #[test]
    fn loading_twice_gives_the_same_ids() {
        let first = load_movies(&data_file()).expect("loads");
        let second = load_movies(&data_file()).expect("loads");
        assert_eq!(first, second);
    }

    #[test]
    fn ids_are_ordered_by_release_date() {
        let early = stable_id("A", NaiveDate::from_ymd_opt(1950, 1, 1));
        let late = stable_id("A", NaiveDate::from_ymd_opt(2001, 1, 1));
        assert!(early < late);
        assert_eq!(early.get_version_num(), 7);
    }

    #[test]
    fn source_genres_map_onto_marquee_slugs() {
        assert_eq!(genres(Some("Romantic Comedy")), vec!["romance", "comedy"]);
        assert_eq!(genres(Some("Thriller/Suspense")), vec!["thriller"]);
        assert!(genres(None).is_empty());
    }

    #[test]
    fn a_missing_file_is_reported_with_its_path() {
        let err = load_movies(Path::new("/nonexistent/movies.json")).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/movies.json"));
    }
}
