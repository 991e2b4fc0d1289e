//! The job supervisor against the real catalog: a hung runner is
//! restarted by the monitor, and a job whose holder falls silent passes to
//! another instance after its lease, with its saved state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use marquee_jobs::{Beat, Error, Job, Settings, Supervisor};
use serde_json::json;

use crate::helpers::TestSchema;

/// Counts its passes in its state; the first pass of a `hangs` job never
/// returns, as a query stuck on a dead connection would not.
struct Counting {
    passes: AtomicUsize,
    hangs: bool,
}

#[async_trait::async_trait]
impl Job for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn every(&self) -> Duration {
        Duration::from_millis(50)
    }

    async fn pass(
        &self,
        state: serde_json::Value,
        beat: &Beat,
    ) -> Result<serde_json::Value, Error> {
        let pass = self.passes.fetch_add(1, Ordering::SeqCst);
        if self.hangs && pass == 0 {
            std::future::pending::<()>().await;
        }
        beat.pulse().await?;
        let total = state
            .get("total")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Ok(json!({ "total": total + 1 }))
    }
}

fn settings() -> Settings {
    Settings {
        stall_after_ms: 400,
        lease_ms: 1_000,
        ..Settings::default()
    }
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test]
async fn a_job_runner_that_stops_beating_is_restarted_by_the_monitor() {
    let schema = TestSchema::new();
    let storage = schema.storage();
    storage.migrate().await.expect("migrations apply");
    let supervisor = Arc::new(
        Supervisor::new(storage.clone(), settings(), &prometheus::Registry::new())
            .expect("supervisor"),
    );
    let job = Arc::new(Counting {
        passes: AtomicUsize::new(0),
        hangs: true,
    });
    supervisor.start(Arc::clone(&job) as Arc<dyn Job>);
    let monitor = supervisor.spawn_monitor();
    wait_until("three passes after the hang", || {
        job.passes.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert_eq!(
        supervisor.restarts("counting"),
        1,
        "restarted once, for the one hang"
    );
    let status = storage.jobs().await.expect("jobs");
    let counting = status
        .iter()
        .find(|job| job.name == "counting")
        .expect("recorded");
    assert!(
        counting.runs >= 2,
        "finished passes are recorded: {counting:?}"
    );
    assert!(counting.beat_age_seconds < 5.0);
    monitor.abort();
    supervisor.shutdown();
}

#[tokio::test]
async fn a_job_whose_holder_falls_silent_passes_to_another_instance_with_its_state() {
    let schema = TestSchema::new();
    let storage = schema.storage();
    storage.migrate().await.expect("migrations apply");
    let first = Supervisor::new(storage.clone(), settings(), &prometheus::Registry::new())
        .expect("supervisor");
    let second = Supervisor::new(storage.clone(), settings(), &prometheus::Registry::new())
        .expect("supervisor");
    let (one, two) = (
        Arc::new(Counting {
            passes: AtomicUsize::new(0),
            hangs: false,
        }),
        Arc::new(Counting {
            passes: AtomicUsize::new(0),
            hangs: false,
        }),
    );
    first.start(Arc::clone(&one) as Arc<dyn Job>);
    wait_until("the first instance holds the job", || {
        one.passes.load(Ordering::SeqCst) >= 3
    })
    .await;
    second.start(Arc::clone(&two) as Arc<dyn Job>);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(two.passes.load(Ordering::SeqCst), 0, "one holder at a time");

    first.shutdown();
    let ran_first = one.passes.load(Ordering::SeqCst);
    wait_until("the second instance takes over", || {
        two.passes.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(one.passes.load(Ordering::SeqCst) <= ran_first + 1);
    let job = storage.jobs().await.expect("jobs").remove(0);
    let total = job.state["total"].as_u64().expect("total");
    assert!(
        total > ran_first as u64,
        "the successor continued the saved count: {total} after {ran_first} passes"
    );
    second.shutdown();
}
