//! The release importer: distributors drop release files in a folder, and
//! each pass imports the new ones into the catalogue, where the scanner
//! tells subscribers of the releases they asked about.
//!
//! A file is JSON: `{"distributor": "...", "releases": [{"external_id",
//! "title", "genres", "release_date", "director"?, "synopsis"?, "cast"?,
//! "runtime_minutes"?, "certificate"?}]}`. A release's movie id is derived
//! from the distributor and its `external_id`, so a file imported twice
//! (a crash before it was moved aside) adds nothing; a movie already in
//! the catalogue is left as staff edited it. A file that is read whole is
//! moved to `imported/`; one that cannot be read, or holds an invalid
//! release, to `rejected/` with a `.error.txt` beside it, and nothing of
//! it is imported, so the distributor can send a corrected file. A file
//! whose release the database refuses three passes in a row is set aside
//! the same way (the releases before it stay imported), and the files
//! after it go on; while a node cannot be reached, files wait.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use marquee_storage::demo_places::stable_id;
use marquee_storage::movies::NewMovie;
use marquee_storage::Storage;
use serde::Deserialize;
use serde_json::json;

use crate::{Beat, Error, Job};

/// How long a file must go unchanged before it is read.
const SETTLED: Duration = Duration::from_secs(2);
/// A file the database refuses this many passes in a row is set aside, so
/// one bad release cannot hold up the files after it. A single refusal may
/// be a failover's dropped connection; the same one three times is not.
const REFUSALS_BEFORE_REJECTING: u64 = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseFile {
    distributor: String,
    releases: Vec<Release>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Release {
    external_id: String,
    title: String,
    genres: Vec<String>,
    release_date: NaiveDate,
    director: Option<String>,
    synopsis: Option<String>,
    #[serde(default)]
    cast: Vec<String>,
    runtime_minutes: Option<i32>,
    certificate: Option<String>,
}

impl Release {
    fn problem(&self) -> Option<String> {
        let title = self.title.trim();
        if self.external_id.trim().is_empty() {
            return Some("a release has an empty external_id".to_owned());
        }
        if title.is_empty() || title.chars().count() > 300 {
            return Some(format!(
                "release {}: the title must have 1 to 300 characters",
                self.external_id
            ));
        }
        if self.genres.is_empty() || self.genres.len() > 5 {
            return Some(format!("release {}: list 1 to 5 genres", self.external_id));
        }
        if self
            .runtime_minutes
            .is_some_and(|minutes| !(1..=1000).contains(&minutes))
        {
            return Some(format!(
                "release {}: runtime_minutes must be 1 to 1000",
                self.external_id
            ));
        }
        None
    }

    fn movie(&self, distributor: &str) -> NewMovie {
        NewMovie {
            id: stable_id(&format!("release:{distributor}:{}", self.external_id)),
            title: self.title.trim().to_owned(),
            genres: self
                .genres
                .iter()
                .map(|genre| genre.trim().to_lowercase())
                .collect(),
            director: self.director.clone(),
            synopsis: self.synopsis.clone(),
            cast: self.cast.clone(),
            runtime_minutes: self.runtime_minutes,
            certificate: self.certificate.clone(),
            release_date: Some(self.release_date),
            poster_url: None,
            imdb_rating: None,
            imdb_votes: None,
            demo_generated: false,
        }
    }
}

#[derive(Debug)]
pub struct ReleaseImporter {
    storage: Storage,
    folder: PathBuf,
    every: Duration,
}

impl ReleaseImporter {
    pub fn new(storage: Storage, folder: impl Into<PathBuf>, every: Duration) -> Self {
        Self {
            storage,
            folder: folder.into(),
            every,
        }
    }

    fn pending(&self) -> Result<Vec<PathBuf>, Error> {
        let entries = match std::fs::read_dir(&self.folder) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(file_error(&self.folder, err)),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "json"))
            .filter(|path| settled(path))
            .collect();
        files.sort();
        Ok(files)
    }

    fn set_aside(&self, file: &Path, folder: &str, error: Option<&str>) -> Result<(), Error> {
        let target = self.folder.join(folder);
        std::fs::create_dir_all(&target).map_err(|err| file_error(&target, err))?;
        let name = file.file_name().unwrap_or_default();
        if let Some(error) = error {
            let note = target.join(format!("{}.error.txt", name.to_string_lossy()));
            std::fs::write(&note, error).map_err(|err| file_error(&note, err))?;
        }
        std::fs::rename(file, target.join(name)).map_err(|err| file_error(file, err))
    }

    /// Imports one file; the movies added.
    async fn import(&self, file: &Path, beat: &Beat) -> Result<usize, Error> {
        let parsed = std::fs::read_to_string(file)
            .map_err(|err| err.to_string())
            .and_then(|text| {
                serde_json::from_str::<ReleaseFile>(&text).map_err(|err| err.to_string())
            })
            .and_then(|parsed| {
                if parsed.distributor.trim().is_empty() {
                    return Err("the distributor is empty".to_owned());
                }
                match parsed.releases.iter().find_map(Release::problem) {
                    Some(problem) => Err(problem),
                    None => Ok(parsed),
                }
            });
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                tracing::warn!(file = %file.display(), %reason, "release file rejected");
                self.set_aside(file, "rejected", Some(&reason))?;
                return Ok(0);
            }
        };
        let total = parsed.releases.len();
        let mut added = 0;
        for (done, release) in parsed.releases.iter().enumerate() {
            let movie = release.movie(parsed.distributor.trim());
            if self.storage.movie(movie.id).await?.is_none() {
                self.storage
                    .upsert_movie(&movie)
                    .await
                    .map_err(|err| refusal(&release.external_id, err))?;
                added += 1;
            }
            beat.pulse().await?;
            if (done + 1) % 100 == 0 {
                tracing::info!(file = %file.display(), done = done + 1, total, "importing releases");
            }
        }
        self.set_aside(file, "imported", None)?;
        tracing::info!(file = %file.display(), added, total, "release file imported");
        Ok(added)
    }
}

/// A file still being copied in changes; one untouched for a few seconds
/// is whole. (Distributors that write elsewhere and rename into the folder
/// are taken at once.)
fn settled(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| age >= SETTLED)
}

/// A database's answer refusing the release is told apart from one that
/// never came (a node unreachable), which only waits for the next pass.
fn refusal(release: &str, err: marquee_storage::Error) -> Error {
    match err {
        marquee_storage::Error::Rejected { .. }
        | marquee_storage::Error::Invalid { .. }
        | marquee_storage::Error::Conflict(_) => Error::ReleaseRefused {
            release: release.to_owned(),
            source: err,
        },
        other => Error::Storage(other),
    }
}

fn file_error(path: &Path, err: std::io::Error) -> Error {
    Error::ReleaseFile {
        path: path.display().to_string(),
        reason: err.to_string(),
    }
}

#[async_trait::async_trait]
impl Job for ReleaseImporter {
    fn name(&self) -> &'static str {
        "release-importer"
    }

    fn every(&self) -> Duration {
        self.every
    }

    /// The state counts what was imported, for operators.
    async fn pass(
        &self,
        state: serde_json::Value,
        beat: &Beat,
    ) -> Result<serde_json::Value, Error> {
        let mut files = state
            .get("files")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let mut movies = state
            .get("movies")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let mut refused = state
            .get("refused")
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_default();
        for file in self.pending()? {
            let name = file.display().to_string();
            match self.import(&file, beat).await {
                Ok(added) => {
                    movies += added as u64;
                    files += 1;
                    refused.remove(&name);
                }
                Err(err @ Error::ReleaseRefused { .. }) => {
                    let times = refused
                        .get(&name)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                        + 1;
                    tracing::warn!(file = %name, times, error = %err, "release file refused");
                    if times >= REFUSALS_BEFORE_REJECTING {
                        let reason = format!("refused {times} passes in a row: {err}");
                        self.set_aside(&file, "rejected", Some(&reason))?;
                        refused.remove(&name);
                    } else {
                        refused.insert(name, json!(times));
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(json!({ "files": files, "movies": movies, "refused": refused }))
    }
}
