//! Leases, heartbeats and cursors of periodic jobs, on the catalog node.

use std::time::Duration;

use uuid::Uuid;

use crate::store::rejected;
use crate::{Error, Storage};

/// A job as the catalog sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub name: String,
    pub holder: Uuid,
    pub beat_age_seconds: f64,
    pub runs: i64,
    pub last_error: Option<String>,
    pub state: serde_json::Value,
}

impl Storage {
    /// Takes or keeps the job `name` for `holder`: granted when nobody holds
    /// it, `holder` already does, or the holder's last beat is older than
    /// `lease`. Returns the job's saved state when granted.
    pub async fn claim_job(
        &self,
        name: &str,
        holder: Uuid,
        lease: Duration,
    ) -> Result<Option<serde_json::Value>, Error> {
        let catalog = self.cluster().catalog();
        let lease = format!("{} milliseconds", lease.as_millis());
        Ok(catalog
            .get()
            .await?
            .query_opt(
                "insert into jobs (name, holder) values ($1, $2) \
                 on conflict (name) do update set holder = excluded.holder, beat_at = now() \
                 where jobs.holder = excluded.holder or jobs.beat_at < now() - $3::text::interval \
                 returning state",
                &[&name, &holder, &lease],
            )
            .await
            .map_err(|err| rejected(catalog, err))?
            .map(|row| row.get(0)))
    }

    /// Records that `holder` is alive and, after a run, the job's new state
    /// and outcome; false if the job was taken over meanwhile, in which
    /// case nothing is saved.
    pub async fn beat_job(
        &self,
        name: &str,
        holder: Uuid,
        run: Option<(&serde_json::Value, Option<&str>)>,
    ) -> Result<bool, Error> {
        let catalog = self.cluster().catalog();
        let client = catalog.get().await?;
        let updated = match run {
            None => client
                .execute(
                    "update jobs set beat_at = now() where name = $1 and holder = $2",
                    &[&name, &holder],
                )
                .await,
            Some((state, error)) => client
                .execute(
                    "update jobs set beat_at = now(), state = $3, runs = runs + 1, last_error = $4 \
                     where name = $1 and holder = $2",
                    &[&name, &holder, state, &error],
                )
                .await,
        }
        .map_err(|err| rejected(catalog, err))?;
        Ok(updated == 1)
    }

    /// Every job the catalog knows, by name.
    pub async fn jobs(&self) -> Result<Vec<JobStatus>, Error> {
        let catalog = self.cluster().catalog();
        Ok(catalog
            .get()
            .await?
            .query(
                "select name, holder, extract(epoch from now() - beat_at)::float8, runs, last_error, state \
                 from jobs order by name",
                &[],
            )
            .await
            .map_err(|err| rejected(catalog, err))?
            .iter()
            .map(|row| JobStatus {
                name: row.get(0),
                holder: row.get(1),
                beat_age_seconds: row.get(2),
                runs: row.get(3),
                last_error: row.get(4),
                state: row.get(5),
            })
            .collect())
    }
}
