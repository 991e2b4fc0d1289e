//! Periodic jobs, each held by one instance at a time and watched by a
//! heartbeat monitor.
//!
//! - [`Supervisor`]: runs every [`Job`] it is given in a loop of passes.
//!   A pass starts only under the job's lease in the catalog
//!   (`storage::jobs`), which the holder renews as it beats; an instance
//!   that stops beating loses the job to another after the lease. The
//!   job's saved state (its cursor) goes with it.
//! - The monitor: each job's runner beats in memory as it makes progress;
//!   a runner silent for longer than `stall_after` is hung (a query that
//!   never returns, a lock never granted), and the monitor aborts it and
//!   starts a new one, counted in `marquee_job_restarts_total`.
//! - [`scanner::Scanner`]: new showtimes, new releases and freed seats,
//!   matched against users' subscriptions into alerts.
//! - [`releases::ReleaseImporter`]: distributors' release files into the
//!   catalogue.

pub mod matching;
pub mod releases;
pub mod scanner;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use marquee_storage::Storage;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Pause between two passes of the scanner.
    pub scan_every_ms: u64,
    /// Pause between two looks at the release drop folder.
    pub import_every_ms: u64,
    /// A runner that has not beaten for this long is restarted.
    pub stall_after_ms: u64,
    /// Another instance takes a job over once its holder has not beaten
    /// in the catalog for this long.
    pub lease_ms: u64,
    /// Subscriptions one account may hold.
    pub max_subscriptions: i64,
    /// Where distributors' release files are dropped.
    pub releases_dir: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scan_every_ms: 1_000,
            import_every_ms: 60_000,
            stall_after_ms: 30_000,
            lease_ms: 45_000,
            max_subscriptions: 50,
            releases_dir: "var/releases".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] marquee_storage::Error),
    #[error("release file {path}: {reason}")]
    ReleaseFile { path: String, reason: String },
    #[error("release {release} was refused: {source}")]
    ReleaseRefused {
        release: String,
        source: marquee_storage::Error,
    },
    #[error("job metrics could not be registered: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("another instance took the job over")]
    LeaseLost,
}

/// A periodic job: one pass at a time, from the state the last pass left.
#[async_trait::async_trait]
pub trait Job: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The pause between passes.
    fn every(&self) -> Duration;
    /// One pass, beating through `beat` as it goes; returns the state the
    /// next pass starts from. A first pass gets an empty object.
    async fn pass(&self, state: serde_json::Value, beat: &Beat)
        -> Result<serde_json::Value, Error>;
}

/// A runner's proof of life: in memory for the monitor, and in the catalog
/// (at most once a second) to keep the lease.
#[derive(Debug)]
pub struct Beat {
    storage: Storage,
    job: &'static str,
    holder: Uuid,
    started: Instant,
    /// Milliseconds since `started` of the last beat.
    last: AtomicU64,
    /// Milliseconds since `started` of the last beat written to the catalog.
    written: AtomicU64,
}

impl Beat {
    fn new(storage: Storage, job: &'static str, holder: Uuid) -> Self {
        Self {
            storage,
            job,
            holder,
            started: Instant::now(),
            last: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Marks progress; a long pass calls it between units of work. Fails
    /// when another instance took the job over, so the pass stops.
    pub async fn pulse(&self) -> Result<(), Error> {
        let now = self.now_ms();
        self.last.store(now, Ordering::Relaxed);
        if now.saturating_sub(self.written.load(Ordering::Relaxed)) >= 1_000 {
            self.written.store(now, Ordering::Relaxed);
            if !self.storage.beat_job(self.job, self.holder, None).await? {
                return Err(Error::LeaseLost);
            }
        }
        Ok(())
    }

    fn silent_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last.load(Ordering::Relaxed)),
        )
    }
}

struct Runner {
    job: Arc<dyn Job>,
    beat: Arc<Beat>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs jobs and restarts any whose runner hangs.
pub struct Supervisor {
    storage: Storage,
    settings: Settings,
    holder: Uuid,
    runners: Mutex<Vec<Runner>>,
    stopped: std::sync::atomic::AtomicBool,
    restarts: IntCounterVec,
    passes: IntCounterVec,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    pub fn new(storage: Storage, settings: Settings, registry: &Registry) -> Result<Self, Error> {
        let restarts = IntCounterVec::new(
            Opts::new(
                "job_restarts_total",
                "Job runners the monitor restarted because their heartbeat stopped.",
            ),
            &["job"],
        )?;
        let passes = IntCounterVec::new(
            Opts::new("job_passes_total", "Job passes by outcome."),
            &["job", "outcome"],
        )?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(passes.clone()))?;
        Ok(Self {
            storage,
            settings,
            holder: Uuid::new_v4(),
            runners: Mutex::new(Vec::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            restarts,
            passes,
        })
    }

    /// Starts `job`'s runner.
    pub fn start(&self, job: Arc<dyn Job>) {
        let beat = Arc::new(Beat::new(self.storage.clone(), job.name(), self.holder));
        let task = self.spawn_runner(Arc::clone(&job), Arc::clone(&beat));
        lock(&self.runners).push(Runner { job, beat, task });
    }

    /// How often the monitor restarted `job`'s runner.
    pub fn restarts(&self, job: &str) -> u64 {
        self.restarts.with_label_values(&[job]).get()
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.settings.lease_ms)
    }

    fn spawn_runner(&self, job: Arc<dyn Job>, beat: Arc<Beat>) -> tokio::task::JoinHandle<()> {
        let storage = self.storage.clone();
        let lease = self.lease();
        let passes = self.passes.clone();
        tokio::spawn(async move {
            loop {
                beat.last.store(beat.now_ms(), Ordering::Relaxed);
                if let Err(err) = pass_once(&storage, job.as_ref(), &beat, lease, &passes).await {
                    tracing::warn!(job = job.name(), error = %err, "job lease unreachable");
                }
                beat.last.store(beat.now_ms(), Ordering::Relaxed);
                tokio::time::sleep(job.every()).await;
            }
        })
    }

    /// Watches the runners forever, restarting any silent for longer than
    /// `stall_after`.
    pub fn spawn_monitor(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let supervisor = Arc::clone(self);
        tokio::spawn(async move {
            let stall_after = Duration::from_millis(supervisor.settings.stall_after_ms);
            let mut ticker =
                tokio::time::interval((stall_after / 4).max(Duration::from_millis(50)));
            loop {
                ticker.tick().await;
                supervisor.check(stall_after);
            }
        })
    }

    fn check(&self, stall_after: Duration) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut runners = lock(&self.runners);
        for runner in runners.iter_mut() {
            let silent = runner.beat.silent_for();
            if silent > stall_after + runner.job.every() || runner.task.is_finished() {
                tracing::error!(
                    job = runner.job.name(),
                    silent_ms = silent.as_millis() as u64,
                    "job runner stopped beating; restarting it"
                );
                runner.task.abort();
                self.restarts.with_label_values(&[runner.job.name()]).inc();
                runner
                    .beat
                    .last
                    .store(runner.beat.now_ms(), Ordering::Relaxed);
                runner.task = self.spawn_runner(Arc::clone(&runner.job), Arc::clone(&runner.beat));
            }
        }
    }

    /// Stops every runner; the monitor restarts none after this.
    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        for runner in lock(&self.runners).iter() {
            runner.task.abort();
        }
    }
}

/// Claims the job and, if granted, runs a pass and saves its state (or,
/// when it failed, its error with the old state, so the next pass retries).
async fn pass_once(
    storage: &Storage,
    job: &dyn Job,
    beat: &Beat,
    lease: Duration,
    passes: &IntCounterVec,
) -> Result<(), Error> {
    let Some(state) = storage.claim_job(job.name(), beat.holder, lease).await? else {
        return Ok(());
    };
    beat.written.store(beat.now_ms(), Ordering::Relaxed);
    let (next, error) = match job.pass(state.clone(), beat).await {
        Ok(next) => (next, None),
        Err(err) => {
            tracing::warn!(job = job.name(), error = %err, "job pass failed; the next pass retries");
            (state, Some(err.to_string()))
        }
    };
    let outcome = if error.is_some() { "failed" } else { "done" };
    passes.with_label_values(&[job.name(), outcome]).inc();
    storage
        .beat_job(job.name(), beat.holder, Some((&next, error.as_deref())))
        .await?;
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
