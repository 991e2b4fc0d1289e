//! Running a transaction again when the database gave it up because of a
//! concurrent one: a deadlock (SQLSTATE 40P01) or a serialization failure
//! (40001, which CockroachDB raises where PostgreSQL would wait).
//!
//! A failed attempt has rolled back, so running the whole transaction again
//! cannot apply anything twice; only work that is one transaction per
//! attempt goes through here.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::Error;

/// Attempts of one transaction before the contention is reported.
pub const ATTEMPTS: u32 = 6;

/// Whether the database gave the transaction up because of a concurrent
/// one, so that running it again may succeed.
pub(crate) fn is_contention(err: &tokio_postgres::Error) -> bool {
    err.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Runs `attempt` until it ends in anything but [`Error::Contended`], at
/// most [`ATTEMPTS`] times, sleeping a jittered, doubling delay in between
/// so that the transactions that collided do not collide again.
pub async fn on_contention<T, F, Fut>(mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(err @ Error::Contended { .. }) if tries < ATTEMPTS => {
                tracing::debug!(error = %err, tries, "running the transaction again");
                tokio::time::sleep(backoff(tries)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Half of a doubling step, plus a random share of the other half.
fn backoff(tries: u32) -> Duration {
    let step_ms = 10u64 << tries.min(6);
    let random = u64::from(uuid::Uuid::new_v4().as_bytes()[0]);
    Duration::from_millis(step_ms / 2 + random * step_ms / 2 / 255)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn contended() -> Error {
        Error::Contended {
            component: "shard-0/primary".into(),
            message: "deadlock detected".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_contended_attempt_is_run_again_until_it_succeeds() {
        let calls = AtomicU32::new(0);
        let outcome = on_contention(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(contended()),
                _ => Ok("done"),
            }
        })
        .await;
        assert_eq!(outcome.ok(), Some("done"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn contention_that_never_ends_is_reported_after_the_last_attempt() {
        let calls = AtomicU32::new(0);
        let outcome: Result<(), Error> = on_contention(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(contended())
        })
        .await;
        assert!(matches!(outcome, Err(Error::Contended { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_are_not_run_again() {
        let calls = AtomicU32::new(0);
        let outcome: Result<(), Error> = on_contention(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::Conflict("taken".into()))
        })
        .await;
        assert!(matches!(outcome, Err(Error::Conflict(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delays_grow_and_stay_bounded() {
        for tries in 1..ATTEMPTS {
            let step = 10u64 << tries.min(6);
            let delay = backoff(tries).as_millis() as u64;
            assert!(delay >= step / 2 && delay <= step, "{tries}: {delay}");
        }
    }
}
