//! Versioned, immutable SQL migrations.
//!
//! Each file is applied once per node in its own transaction, together with
//! the row in `schema_migrations` that records it, so a crash leaves either
//! both or neither. A second migrator racing on the same node blocks on that
//! row's primary key and then finds the migration applied. Checksums catch a
//! file edited after it shipped. Replicas receive everything by streaming
//! replication and are never written to.

use deadpool_postgres::Client;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;

use crate::Error;

/// One SQL file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// Stable across releases and platforms, unlike `DefaultHasher`.
    pub fn checksum(&self) -> String {
        let mut hasher = SipHasher13::new_with_keys(0, 0);
        hasher.write(self.sql.as_bytes());
        format!("{:016x}", hasher.finish())
    }
}

macro_rules! migrations {
    ($dir:literal: $($version:literal $name:literal),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $dir, "/", $name, ".sql")),
        }),*]
    };
}

/// Migrations of the catalog node, in order.
pub const CATALOG: &[Migration] = migrations!("catalog": 1 "0001_shard_nodes", 2 "0002_shard_map", 3 "0003_movie_moves", 4 "0004_joining_nodes", 5 "0005_rebalancing", 6 "0006_audit_log", 7 "0007_route_pins", 8 "0008_key_moves", 9 "0009_jobs");

/// Migrations of every shard node, in order.
pub const SHARD: &[Migration] = migrations!("shard": 1 "0001_movies", 2 "0002_movie_fences", 3 "0003_catalog", 4 "0004_booking", 5 "0005_lock_switches", 6 "0006_customer_orders", 7 "0007_accounts", 8 "0008_outbox_relay", 9 "0009_key_fences", 10 "0010_notification_receipts", 11 "0011_inbox", 12 "0012_subscriptions", 13 "0013_phone_verification", 14 "0014_booking_summaries", 15 "0015_door", 16 "0016_fair_holds", 17 "0017_waiting_room", 18 "0018_waitlist");

/// Which versions of `migrations` are applied on the node behind `client`.
pub async fn applied(client: &Client) -> Result<Vec<(i32, String)>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "select exists (select 1 from information_schema.tables \
             where table_schema = current_schema() and table_name = 'schema_migrations')",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "select version, checksum from schema_migrations order by version",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Versions of `migrations` not yet applied on a node.
pub fn pending(migrations: &[Migration], applied: &[(i32, String)]) -> Vec<i32> {
    migrations
        .iter()
        .filter(|m| !applied.iter().any(|(version, _)| *version == m.version))
        .map(|m| m.version)
        .collect()
}

/// Applies what is missing; returns the versions this call applied.
pub async fn apply(
    client: &mut Client,
    component: &str,
    schema: &str,
    migrations: &[Migration],
) -> Result<Vec<i32>, Error> {
    let query_error = |err: tokio_postgres::Error| Error::Rejected {
        component: component.to_owned(),
        message: err.as_db_error().map_or_else(
            || err.to_string(),
            |db| format!("{} ({})", db.message(), db.code().code()),
        ),
    };
    let in_recovery: bool = client
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .map_err(query_error)?
        .get(0);
    if in_recovery {
        return Err(Error::ReadOnly {
            component: component.to_owned(),
        });
    }
    // The schema name was checked to be a plain identifier when the
    // configuration was loaded, so it is safe to splice in.
    let setup = format!(
        "create schema if not exists {schema};
         create table if not exists {schema}.schema_migrations (
             version integer primary key,
             name text not null,
             checksum text not null,
             applied_at timestamptz not null default now()
         );"
    );
    // `if not exists` is not atomic: a migrator racing this one can create
    // the schema between the check and the insert. Its work is as good as
    // ours, so one retry settles it.
    if let Err(err) = client.batch_execute(&setup).await {
        if !is_concurrent_creation(&err) {
            return Err(query_error(err));
        }
        client.batch_execute(&setup).await.map_err(query_error)?;
    }

    let mut newly_applied = Vec::new();
    for migration in migrations {
        let checksum = migration.checksum();
        let transaction = client.transaction().await.map_err(query_error)?;
        let claimed = transaction
            .query_opt(
                "insert into schema_migrations (version, name, checksum) values ($1, $2, $3) \
                 on conflict (version) do nothing returning version",
                &[&migration.version, &migration.name, &checksum],
            )
            .await
            .map_err(query_error)?;
        if claimed.is_some() {
            transaction
                .batch_execute(migration.sql)
                .await
                .map_err(query_error)?;
            transaction.commit().await.map_err(query_error)?;
            tracing::info!(
                component,
                version = migration.version,
                name = migration.name,
                "migration applied"
            );
            newly_applied.push(migration.version);
            continue;
        }
        let stored: String = transaction
            .query_one(
                "select checksum from schema_migrations where version = $1",
                &[&migration.version],
            )
            .await
            .map_err(query_error)?
            .get(0);
        transaction.rollback().await.map_err(query_error)?;
        if stored != checksum {
            return Err(Error::MigrationDrift {
                component: component.to_owned(),
                version: migration.version,
                name: migration.name.to_owned(),
            });
        }
    }
    Ok(newly_applied)
}

fn is_concurrent_creation(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    err.code().is_some_and(|code| {
        [
            SqlState::UNIQUE_VIOLATION,
            SqlState::DUPLICATE_SCHEMA,
            SqlState::DUPLICATE_TABLE,
        ]
        .contains(code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed_files(migrations: &[Migration]) -> Vec<String> {
        migrations
            .iter()
            .map(|m| format!("{}.sql", m.name))
            .collect()
    }

    fn files_in(dir: &str) -> Vec<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/");
        let mut names: Vec<String> = std::fs::read_dir(format!("{path}{dir}"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        assert_eq!(files_in("catalog"), listed_files(CATALOG));
        assert_eq!(files_in("shard"), listed_files(SHARD));
    }

    #[test]
    fn versions_are_strictly_increasing_and_match_file_names() {
        for set in [CATALOG, SHARD] {
            for pair in set.windows(2) {
                assert!(pair[0].version < pair[1].version);
            }
            for migration in set {
                assert!(migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version)));
            }
        }
    }

    #[test]
    fn a_pending_list_names_only_versions_not_yet_applied() {
        let applied = vec![(1, CATALOG[0].checksum())];
        let all: Vec<i32> = (1..=CATALOG.len() as i32).collect();
        assert_eq!(pending(CATALOG, &applied), all[1..].to_vec());
        assert_eq!(pending(CATALOG, &[]), all);
    }
}
