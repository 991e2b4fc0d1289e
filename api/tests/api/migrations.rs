use std::time::Duration;

use marquee::startup::{Application, StartupError};
use marquee_sharding::{Endpoint, Session};
use marquee_storage::Error;

use crate::helpers::{connect, connect_for, member_address, TestSchema};

#[tokio::test]
async fn migrating_twice_applies_everything_once() {
    let schema = TestSchema::new();
    let storage = schema.storage();

    let first = storage.migrate().await.expect("first run");
    let second = storage.migrate().await.expect("second run");

    assert!(
        first
            .applied
            .iter()
            .all(|(_, versions)| !versions.is_empty()),
        "{first:?}"
    );
    assert!(
        second
            .applied
            .iter()
            .all(|(_, versions)| versions.is_empty()),
        "{second:?}"
    );
    assert_eq!(
        first.applied.len(),
        1 + schema.settings.database.shards.len()
    );
}

#[tokio::test]
async fn concurrent_migrators_apply_each_migration_once() {
    let schema = TestSchema::new();
    let (a, b) = (schema.storage(), schema.storage());

    let (first, second) = tokio::join!(a.migrate(), b.migrate());

    let total: usize = [first.expect("a"), second.expect("b")]
        .iter()
        .flat_map(|report| report.applied.iter().map(|(_, versions)| versions.len()))
        .sum();
    let expected = marquee_storage::migrations::CATALOG.len()
        + marquee_storage::migrations::SHARD.len() * schema.settings.database.shards.len();
    assert_eq!(total, expected);
}

#[tokio::test]
async fn an_edited_migration_is_refused_naming_the_node() {
    let schema = TestSchema::new();
    let storage = schema.storage();
    storage.migrate().await.expect("migrate");
    let shard = &schema.settings.database.shards[0];
    let client = connect(&shard.primary).await.expect("connect");
    client
        .execute(
            &format!(
                "update {}.schema_migrations set checksum = 'edited' where version = 1",
                schema.name
            ),
            &[],
        )
        .await
        .expect("tamper");

    let err = storage.migrate().await.expect_err("drift is refused");

    assert!(
        matches!(&err, Error::MigrationDrift { component, version: 1, .. } if component == "shard-0/primary"),
        "{err}"
    );
}

#[tokio::test]
async fn replicas_receive_the_schema_by_streaming() {
    let schema = TestSchema::new();
    schema.storage().migrate().await.expect("migrate");

    for shard in &schema.settings.database.shards {
        let replica = shard.replica.as_ref().expect("local shards have replicas");
        let client = connect_for(replica, Session::Reads).await.expect("connect");
        let mut visible = false;
        for _ in 0..50 {
            visible = client
                .query_one(
                    "select count(*) = 1 from information_schema.tables where table_schema = $1 and table_name = 'movies'",
                    &[&schema.name],
                )
                .await
                .expect("query")
                .get(0);
            if visible {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            visible,
            "{} replica never showed the movies table",
            shard.name
        );
    }
}

#[tokio::test]
async fn migrations_are_refused_on_a_replica() {
    let mut schema = TestSchema::new();
    let shard = &mut schema.settings.database.shards[2];
    let replica = shard.replica.clone().expect("replica");
    let standby = member_address(&replica, Session::Reads).await;
    // The standby alone, as a misconfigured endpoint would name it.
    shard.primary = Endpoint {
        host: standby.ip().to_string(),
        port: standby.port(),
        failover: Vec::new(),
        ..replica
    };

    let err = schema
        .storage()
        .migrate()
        .await
        .expect_err("a replica is read-only");

    assert!(
        matches!(&err, Error::ReadOnly { component } if component == "shard-2/primary"),
        "{err}"
    );
}

#[tokio::test]
async fn serving_refuses_to_start_before_migrations_are_applied() {
    let schema = TestSchema::new();

    let err = Application::build(schema.settings.clone())
        .await
        .expect_err("unmigrated");

    assert!(
        matches!(err, StartupError::Storage(Error::Pending { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("run `marquee migrate`"), "{err}");
}
