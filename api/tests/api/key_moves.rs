//! Theaters and accounts moving between nodes in a rebalance, with
//! everything they own, while reads and writes go on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use marquee_storage::accounts::{NewAccount, NewSession};
use marquee_storage::key_data::{self, KeyBatch};
use marquee_storage::layout::SeatLayout;
use marquee_storage::{NodeRecord, Storage};
use uuid::Uuid;

use crate::helpers::{connect, TestSchema};
use crate::shards::theater_info;

const PASSWORD_HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA";

/// A theater with one screen, and an account with a session, a mailed
/// token and a booking in its index.
struct Population {
    theaters: Vec<(Uuid, Uuid)>,
    accounts: Vec<(Uuid, String, Uuid)>,
}

/// The first two nodes of the test cluster, migrated, and the schema that
/// still knows all three.
async fn two_node_cluster() -> (
    TestSchema,
    Storage,
    Vec<marquee_sharding::config::ShardConfig>,
) {
    let mut schema = TestSchema::new();
    let all_shards = schema.settings.database.shards.clone();
    schema.settings.database.shards.truncate(2);
    let small = schema.storage();
    small.migrate().await.expect("a two-node cluster");
    small.load_placement().await.expect("placement");
    (schema, small, all_shards)
}

/// The test cluster's three nodes, migrated.
async fn three_node_cluster() -> (TestSchema, Storage) {
    let schema = TestSchema::new();
    let storage = schema.storage();
    storage.migrate().await.expect("migrated");
    storage.load_placement().await.expect("placement");
    (schema, storage)
}

async fn populate(storage: &Storage, theaters: usize, accounts: usize) -> Population {
    let mut population = Population {
        theaters: Vec::new(),
        accounts: Vec::new(),
    };
    for index in 0..theaters {
        let id = Uuid::now_v7();
        storage
            .put_theater(id, &theater_info(index))
            .await
            .expect("theater");
        let screen = Uuid::now_v7();
        storage
            .put_screen(id, screen, "Screen 1", &SeatLayout::generate(4, 8, 4, 1))
            .await
            .expect("screen");
        population.theaters.push((id, screen));
    }
    for index in 0..accounts {
        let id = Uuid::now_v7();
        let email = format!("mover{index}-{}@example.com", id.simple());
        let session = add_account(storage, id, &email).await;
        population.accounts.push((id, email, session));
    }
    population
}

/// Registers account `id` with a session and a booking in its index; the
/// session's id.
async fn add_account(storage: &Storage, id: Uuid, email: &str) -> Uuid {
    storage
        .register(&NewAccount {
            id,
            email,
            name: "Mover",
            password_hash: PASSWORD_HASH,
        })
        .await
        .expect("account");
    let session = marquee_sharding::ids::scoped(id);
    storage
        .create_session(&NewSession {
            id: session,
            user_id: id,
            refresh_hash: session.as_bytes(),
            mfa: false,
            user_agent: Some("test"),
            ip: None,
            ttl: std::time::Duration::from_secs(3600),
        })
        .await
        .expect("session");
    storage
        .index_booking(id, Uuid::now_v7(), Uuid::now_v7())
        .await
        .expect("bookings index");
    session
}

/// How many rows of `table` each node of the schema holds, read directly.
async fn rows_per_node(schema: &TestSchema, table: &str) -> Vec<i64> {
    let mut counts = Vec::new();
    for shard in &schema.settings.database.shards {
        let client = connect(&shard.primary).await.expect("connect");
        counts.push(
            client
                .query_one(
                    &format!("select count(*) from {}.{table}", schema.name),
                    &[],
                )
                .await
                .expect("count")
                .get(0),
        );
    }
    counts
}

/// Every row of the population is readable through `storage`, exactly
/// where the map in force says, with its screens, sessions and bookings.
async fn assert_all_readable(storage: &Storage, population: &Population) {
    for (theater, screen) in &population.theaters {
        assert!(
            storage.theater(*theater).await.expect("read").is_some(),
            "theater {theater}"
        );
        let screens = storage.screens(*theater).await.expect("screens");
        assert_eq!(
            screens.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![*screen],
            "screens of {theater}"
        );
    }
    for (id, email, session) in &population.accounts {
        assert_eq!(
            storage
                .account_by_email(email)
                .await
                .expect("read")
                .map(|a| a.id),
            Some(*id),
            "{email}"
        );
        assert!(
            storage.session_is_live(*session).await.expect("read"),
            "session of {email}"
        );
        assert_eq!(
            storage
                .user_bookings(*id, &Default::default(), 10)
                .await
                .expect("read")
                .len(),
            1,
            "bookings index of {email}"
        );
    }
}

fn all_active(mut nodes: Vec<NodeRecord>) -> Vec<NodeRecord> {
    for node in &mut nodes {
        node.state = "active".to_owned();
    }
    nodes
}

#[tokio::test]
async fn a_joining_node_takes_its_share_of_theaters_and_accounts_with_all_they_own() {
    let (mut schema, small, all_shards) = two_node_cluster().await;
    let population = populate(&small, 10, 16).await;
    schema.settings.database.shards = all_shards;
    let full = schema.storage();
    full.migrate().await.expect("shard-2 joins");
    full.load_placement().await.expect("placement");
    let plan = full
        .keys_moving(&all_active(full.shard_map().await.expect("map").nodes))
        .await
        .expect("plan");

    let done = full
        .rebalance(all_active(full.shard_map().await.expect("map").nodes))
        .await
        .expect("rebalanced");

    assert!(done.keys_moved > 0, "the new node owns some keys: {done:?}");
    assert_eq!(done.keys_moved, plan, "the dry run counted what moved");
    let users = rows_per_node(&schema, "users").await;
    let theaters = rows_per_node(&schema, "theaters").await;
    assert_eq!(
        users.iter().sum::<i64>(),
        16,
        "no account lost or copied twice: {users:?}"
    );
    assert_eq!(theaters.iter().sum::<i64>(), 10, "{theaters:?}");
    assert_eq!(
        rows_per_node(&schema, "user_emails")
            .await
            .iter()
            .sum::<i64>(),
        16
    );
    assert_eq!(
        rows_per_node(&schema, "sessions").await.iter().sum::<i64>(),
        16
    );
    assert_eq!(
        rows_per_node(&schema, "screens").await.iter().sum::<i64>(),
        10
    );
    assert!(
        users[2] + theaters[2] > 0,
        "the new node holds accounts or theaters: {users:?} {theaters:?}"
    );
    let catalog = connect(&schema.settings.database.catalog)
        .await
        .expect("connect");
    let pins: i64 = catalog
        .query_one(
            &format!("select count(*) from {}.route_pins", schema.name),
            &[],
        )
        .await
        .expect("pins")
        .get(0);
    assert_eq!(pins, 0, "every moved key lives where placement says");
    assert_all_readable(&full, &population).await;
    let fresh = schema.storage();
    fresh.load_placement().await.expect("placement");
    assert_all_readable(&fresh, &population).await;
}

#[tokio::test]
async fn draining_a_node_moves_its_theaters_and_accounts_and_leaves_nothing_behind() {
    let (schema, storage) = three_node_cluster().await;
    let population = populate(&storage, 9, 12).await;
    let before = storage.shard_map().await.expect("map");
    let mut after = before.nodes.clone();
    after[0].state = "draining".to_owned();

    let done = storage.rebalance(after).await.expect("drained");

    assert!(done.keys_moved > 0, "{done:?}");
    for table in [
        "theaters",
        "screens",
        "users",
        "sessions",
        "user_tokens",
        "user_bookings",
        "user_emails",
    ] {
        let counts = rows_per_node(&schema, table).await;
        assert_eq!(counts[0], 0, "{table} left on the drained node: {counts:?}");
    }
    assert_all_readable(&storage, &population).await;
}

#[tokio::test]
async fn an_instance_with_the_old_map_reads_and_writes_moved_keys_where_they_now_live() {
    let (schema, storage) = three_node_cluster().await;
    let population = populate(&storage, 6, 12).await;
    // Each instance reloads its map at the first fence it meets, so each
    // kind of request gets an instance of its own that has met none.
    let mut stale = Vec::new();
    for _ in 0..3 {
        let instance = schema.storage();
        instance
            .load_placement()
            .await
            .expect("the map before the drain");
        stale.push(instance);
    }
    let mut after = storage.shard_map().await.expect("map").nodes;
    after[1].state = "draining".to_owned();
    storage.rebalance(after).await.expect("drained");

    for (id, _, session) in &population.accounts {
        let renamed = stale[0].set_name(*id, "Renamed").await.expect("renamed");
        assert_eq!(renamed.name.as_deref(), Some("Renamed"));
        assert!(stale[0]
            .revoke_session(*id, *session)
            .await
            .expect("revoked"));
    }
    for (theater, _) in &population.theaters {
        stale[1]
            .put_screen(
                *theater,
                Uuid::now_v7(),
                "Screen 2",
                &SeatLayout::generate(3, 6, 3, 0),
            )
            .await
            .expect("a second screen");
    }
    for (id, email, _) in &population.accounts {
        assert_eq!(
            stale[2]
                .account_by_email(email)
                .await
                .expect("read")
                .map(|a| a.id),
            Some(*id)
        );
    }
    let users = rows_per_node(&schema, "users").await;
    assert_eq!(
        users[1], 0,
        "nothing was written on the drained node: {users:?}"
    );
    assert_eq!(rows_per_node(&schema, "screens").await[1], 0);
    for (id, _, session) in &population.accounts {
        let account = storage.account(*id).await.expect("read").expect("account");
        assert_eq!(account.name.as_deref(), Some("Renamed"));
        assert!(!storage.session_is_live(*session).await.expect("read"));
    }
    for (theater, _) in &population.theaters {
        assert_eq!(storage.screens(*theater).await.expect("screens").len(), 2);
    }
}

#[tokio::test]
async fn account_writes_during_a_rebalance_are_never_lost_or_doubled() {
    let (mut schema, small, all_shards) = two_node_cluster().await;
    let population = populate(&small, 0, 24).await;
    schema.settings.database.shards = all_shards;
    let full = Arc::new(schema.storage());
    full.migrate().await.expect("shard-2 joins");
    full.load_placement().await.expect("placement");
    let writer = Arc::new(schema.storage());
    writer.load_placement().await.expect("placement");
    let stop = Arc::new(AtomicBool::new(false));
    let accounts: Vec<Uuid> = population.accounts.iter().map(|(id, _, _)| *id).collect();
    let writing = tokio::spawn({
        let (writer, stop, accounts) = (Arc::clone(&writer), Arc::clone(&stop), accounts.clone());
        async move {
            let mut acknowledged = Vec::new();
            let mut refused = 0u32;
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) || round < 3 {
                for id in &accounts {
                    let name = format!("round {round}");
                    let session = marquee_sharding::ids::scoped(*id);
                    let outcome = async {
                        writer.set_name(*id, &name).await?;
                        writer
                            .create_session(&NewSession {
                                id: session,
                                user_id: *id,
                                refresh_hash: session.as_bytes(),
                                mfa: false,
                                user_agent: None,
                                ip: None,
                                ttl: std::time::Duration::from_secs(3600),
                            })
                            .await
                    }
                    .await;
                    match outcome {
                        Ok(_) => acknowledged.push((*id, name, session)),
                        // A write held past its retries by a fenced batch
                        // is refused whole, and the client retries.
                        Err(marquee_storage::Error::StaleMap { .. }) => refused += 1,
                        Err(err) => panic!("write failed: {err}"),
                    }
                }
                round += 1;
            }
            (acknowledged, refused)
        }
    });

    let done = full
        .rebalance(all_active(full.shard_map().await.expect("map").nodes))
        .await
        .expect("rebalanced");
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, refused) = writing.await.expect("writer");

    assert!(done.keys_moved > 0, "{done:?}");
    assert!(!acknowledged.is_empty());
    let users = rows_per_node(&schema, "users").await;
    assert_eq!(users.iter().sum::<i64>(), 24, "{users:?}");
    let sessions = rows_per_node(&schema, "sessions").await;
    assert_eq!(
        sessions.iter().sum::<i64>(),
        24 + acknowledged.len() as i64,
        "every acknowledged session exists once ({refused} writes refused): {sessions:?}"
    );
    for id in &accounts {
        let last = acknowledged
            .iter()
            .rev()
            .find(|(account, _, _)| account == id)
            .map(|(_, name, _)| name.clone())
            .expect("each account was written");
        let account = full.account(*id).await.expect("read").expect("account");
        assert_eq!(
            account.name,
            Some(last),
            "the last acknowledged name of {id}"
        );
    }
    for (_, _, session) in &acknowledged {
        assert!(full.session_is_live(*session).await.expect("read"));
    }
}

/// Pooled connections to shard-0 and shard-1, in the test's schema.
async fn node_clients(storage: &Storage) -> (deadpool_postgres::Client, deadpool_postgres::Client) {
    let cluster = storage.cluster();
    let node = |name: &str| {
        cluster
            .shard(&marquee_sharding::NodeId::new(name))
            .expect("configured")
    };
    (
        node("shard-0").primary.get().await.expect("source"),
        node("shard-1").primary.get().await.expect("target"),
    )
}

/// Fences `batch` on shard-0 and copies its rows to shard-1, as a move
/// does before it cuts over; the rows copied.
async fn fence_and_copy(storage: &Storage, batch: &KeyBatch) -> key_data::Snapshot {
    let (mut source, mut target) = node_clients(storage).await;
    let fencing = source.transaction().await.expect("transaction");
    key_data::fence(&fencing, batch, "shard-1")
        .await
        .expect("fenced");
    fencing.commit().await.expect("commit");
    let rows = key_data::snapshot(&source, batch).await.expect("snapshot");
    let copying = target.transaction().await.expect("transaction");
    key_data::replace(&copying, batch, &rows)
        .await
        .expect("copied");
    copying.commit().await.expect("commit");
    rows
}

/// An account on shard-0, with a session and a booking, as a batch.
async fn account_on_node_zero(storage: &Storage) -> (Uuid, KeyBatch) {
    let id = std::iter::repeat_with(Uuid::now_v7)
        .find(|id| {
            storage
                .cluster()
                .route(id.as_bytes())
                .expect("routed")
                .id()
                .as_str()
                == "shard-0"
        })
        .expect("ids are endless");
    add_account(storage, id, &format!("{}@example.com", id.simple())).await;
    (
        id,
        KeyBatch {
            users: vec![id],
            ..KeyBatch::default()
        },
    )
}

async fn record_key_move(schema: &TestSchema, batch: &KeyBatch, state: &str) {
    let catalog = connect(&schema.settings.database.catalog)
        .await
        .expect("catalog");
    catalog
        .execute(
            &format!(
                "insert into {}.key_moves (id, source, target, theaters, users, emails, state) \
                 values ($1, 'shard-0', 'shard-1', $2, $3, $4, $5)",
                schema.name
            ),
            &[
                &Uuid::now_v7(),
                &batch.theaters,
                &batch.users,
                &batch.emails,
                &state,
            ],
        )
        .await
        .expect("a move record");
}

#[tokio::test]
async fn a_key_move_interrupted_while_moving_is_rolled_back_on_restart() {
    let (schema, storage) = three_node_cluster().await;
    let (id, batch) = account_on_node_zero(&storage).await;
    record_key_move(&schema, &batch, "moving").await;
    fence_and_copy(&storage, &batch).await;

    let resumed = storage.resume_moves().await.expect("resumed");

    assert_eq!(resumed, 1);
    let (source, target) = node_clients(&storage).await;
    let hash = marquee_sharding::ids::route_hash(id);
    assert_eq!(key_data::fenced(&source, hash).await.expect("read"), None);
    assert_eq!(
        key_data::fenced(&target, hash)
            .await
            .expect("read")
            .as_deref(),
        Some("shard-0"),
        "the target refuses the key toward its owner"
    );
    assert_eq!(
        key_data::snapshot(&target, &batch)
            .await
            .expect("snapshot")
            .rows(),
        0,
        "the partial copy is gone"
    );
    let renamed = storage
        .set_name(id, "Still here")
        .await
        .expect("writable on its node");
    assert_eq!(renamed.name.as_deref(), Some("Still here"));
    let on_source = key_data::snapshot(&source, &batch).await.expect("snapshot");
    assert!(
        on_source.rows() >= 3,
        "account, session and index stay on the source"
    );
}

#[tokio::test]
async fn a_key_move_interrupted_after_cut_over_is_finished_on_restart() {
    let (schema, storage) = three_node_cluster().await;
    let (id, batch) = account_on_node_zero(&storage).await;
    record_key_move(&schema, &batch, "cut_over").await;
    let rows = fence_and_copy(&storage, &batch).await;
    let catalog = connect(&schema.settings.database.catalog)
        .await
        .expect("catalog");
    catalog
        .execute(
            &format!(
                "insert into {}.route_pins (hash, node, kind) values ($1, 'shard-1', 'user')",
                schema.name
            ),
            &[&key_data::stored_hash(marquee_sharding::ids::route_hash(
                id,
            ))],
        )
        .await
        .expect("pinned");
    catalog
        .execute(
            &format!("update {}.shard_map set version = version + 1", schema.name),
            &[],
        )
        .await
        .expect("bumped");

    let resumed = storage.resume_moves().await.expect("resumed");

    assert_eq!(resumed, 1);
    let (source, target) = node_clients(&storage).await;
    assert_eq!(
        key_data::snapshot(&source, &batch)
            .await
            .expect("snapshot")
            .rows(),
        0,
        "the source's copy is deleted"
    );
    assert_eq!(
        key_data::snapshot(&target, &batch).await.expect("snapshot"),
        rows
    );
    let renamed = storage
        .set_name(id, "Moved")
        .await
        .expect("writable where it moved");
    assert_eq!(renamed.name.as_deref(), Some("Moved"));
    assert_eq!(
        storage
            .cluster()
            .route(id.as_bytes())
            .expect("routed")
            .id()
            .as_str(),
        "shard-1"
    );
}

#[tokio::test]
async fn a_rebalance_that_stopped_beating_is_cleared_on_restart_and_a_live_one_is_not() {
    let (schema, storage) = three_node_cluster().await;
    let catalog = connect(&schema.settings.database.catalog)
        .await
        .expect("catalog");
    let set = |age: &'static str| {
        format!(
            "update {}.shard_map set rebalancing = true, rebalance_heartbeat = now() - interval '{age}'",
            schema.name
        )
    };
    let flag = format!("select rebalancing from {}.shard_map", schema.name);

    catalog
        .execute(&set("1 second"), &[])
        .await
        .expect("a live rebalance");
    storage.resume_moves().await.expect("resumed");
    let live: bool = catalog.query_one(&flag, &[]).await.expect("flag").get(0);

    catalog
        .execute(&set("5 minutes"), &[])
        .await
        .expect("a dead rebalance");
    storage.resume_moves().await.expect("resumed");
    let dead: bool = catalog.query_one(&flag, &[]).await.expect("flag").get(0);

    assert!(live, "a rebalance still beating keeps its flag");
    assert!(!dead, "a rebalance that stopped beating is cleared");
}
