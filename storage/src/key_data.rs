//! The rows of theaters, accounts and email index entries, as batches that
//! move between nodes during a rebalance. A theater brings its screens and
//! their timetables; an account its sessions, mailed tokens, bookings
//! index, inbox and subscriptions; an email index entry is one row. Rows travel as JSON of the
//! table's own row type, like a movie's (see [`crate::movie_data`]).

use deadpool_postgres::GenericClient;
use marquee_sharding::{ids, placement::hash_key};
use serde_json::Value;
use uuid::Uuid;

/// Key-scoped tables, parents first: the table, the condition selecting a
/// batch's rows (`$1` theaters, `$2` users, `$3` addresses), and the key
/// that orders rows for comparison.
const TABLES: &[(&str, &str, &str)] = &[
    ("theaters", "id = any($1)", "id"),
    ("screens", "theater_id = any($1)", "id"),
    (
        "screen_slots",
        "screen_id in (select id from screens where theater_id = any($1))",
        "screen_id, showtime_id",
    ),
    ("users", "id = any($2)", "id"),
    ("sessions", "user_id = any($2)", "id"),
    ("user_tokens", "user_id = any($2)", "id"),
    ("user_bookings", "user_id = any($2)", "user_id, hold_id"),
    ("inbox", "user_id = any($2)", "id"),
    ("subscriptions", "user_id = any($2)", "id"),
    ("subscription_alerts", "user_id = any($2)", "id"),
    ("user_emails", "email = any($3)", "email"),
];

/// Theaters, accounts and email index entries moving together from one
/// node to another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyBatch {
    pub theaters: Vec<Uuid>,
    pub users: Vec<Uuid>,
    pub emails: Vec<String>,
}

impl KeyBatch {
    pub fn len(&self) -> usize {
        self.theaters.len() + self.users.len() + self.emails.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each key's routing hash and kind. Session, token and screen ids are
    /// scoped to or stored with their parent, so the parent's hash covers
    /// them.
    pub fn hashes(&self) -> Vec<(u64, &'static str)> {
        let theaters = self
            .theaters
            .iter()
            .map(|id| (ids::route_hash(*id), "theater"));
        let users = self.users.iter().map(|id| (ids::route_hash(*id), "user"));
        let emails = self
            .emails
            .iter()
            .map(|email| (hash_key(email.as_bytes()), "email"));
        theaters.chain(users).chain(emails).collect()
    }

    /// The routing hashes as the signed integers the database stores.
    pub fn stored_hashes(&self) -> Vec<i64> {
        self.hashes()
            .into_iter()
            .map(|(hash, _)| stored_hash(hash))
            .collect()
    }

    /// Splits into batches of at most `size` keys.
    pub fn chunks(self, size: usize) -> Vec<KeyBatch> {
        let mut keys: Vec<Key> = self
            .theaters
            .into_iter()
            .map(Key::Theater)
            .chain(self.users.into_iter().map(Key::User))
            .chain(self.emails.into_iter().map(Key::Email))
            .collect();
        let mut batches = Vec::new();
        while !keys.is_empty() {
            let rest = keys.split_off(keys.len().min(size));
            let mut batch = KeyBatch::default();
            for key in keys {
                batch.push(key);
            }
            batches.push(batch);
            keys = rest;
        }
        batches
    }

    pub fn push(&mut self, key: Key) {
        match key {
            Key::Theater(id) => self.theaters.push(id),
            Key::User(id) => self.users.push(id),
            Key::Email(email) => self.emails.push(email),
        }
    }
}

/// One movable key.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Theater(Uuid),
    User(Uuid),
    Email(String),
}

impl Key {
    pub fn hash(&self) -> u64 {
        match self {
            Key::Theater(id) | Key::User(id) => ids::route_hash(*id),
            Key::Email(email) => hash_key(email.as_bytes()),
        }
    }
}

/// Names the three parameters every statement over a batch takes, so each
/// is typed whichever of them the statement's condition uses.
const PARAMS: &str = "with params as (select $1::uuid[], $2::uuid[], $3::text[])";

/// A routing hash as stored in a `bigint` column.
pub fn stored_hash(hash: u64) -> i64 {
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// A batch's rows on one node, one JSON array per table of [`TABLES`].
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    tables: Vec<Value>,
}

impl Snapshot {
    /// How many rows the snapshot holds.
    pub fn rows(&self) -> usize {
        self.tables
            .iter()
            .map(|rows| rows.as_array().map_or(0, Vec::len))
            .sum()
    }
}

/// The batch's rows, read in one statement so that every table comes from
/// the same instant.
pub async fn snapshot(
    client: &impl GenericClient,
    batch: &KeyBatch,
) -> Result<Snapshot, tokio_postgres::Error> {
    let columns: Vec<String> = TABLES
        .iter()
        .map(|(table, condition, order)| {
            format!(
                "(select coalesce(jsonb_agg(to_jsonb(t) order by {order}), '[]') \
                 from {table} t where {condition})"
            )
        })
        .collect();
    let row = client
        .query_one(
            &format!("{PARAMS} select {}", columns.join(", ")),
            &[&batch.theaters, &batch.users, &batch.emails],
        )
        .await?;
    Ok(Snapshot {
        tables: (0..TABLES.len()).map(|i| row.get(i)).collect(),
    })
}

/// Makes the node hold exactly `snapshot` for the batch, and lifts any
/// fence an earlier move away left here for its keys.
pub async fn replace(
    transaction: &deadpool_postgres::Transaction<'_>,
    batch: &KeyBatch,
    snapshot: &Snapshot,
) -> Result<(), tokio_postgres::Error> {
    delete(transaction, batch).await?;
    transaction
        .execute(
            "delete from key_fences where hash = any($1)",
            &[&batch.stored_hashes()],
        )
        .await?;
    for ((table, _, _), rows) in TABLES.iter().zip(&snapshot.tables) {
        transaction
            .execute(
                &format!(
                    "insert into {table} select * from jsonb_populate_recordset(null::{table}, $1)"
                ),
                &[rows],
            )
            .await?;
    }
    Ok(())
}

/// Deletes the batch's rows, children first.
pub async fn delete(
    client: &impl GenericClient,
    batch: &KeyBatch,
) -> Result<(), tokio_postgres::Error> {
    for (table, condition, _) in TABLES.iter().rev() {
        client
            .execute(
                &format!("{PARAMS} delete from {table} where {condition}"),
                &[&batch.theaters, &batch.users, &batch.emails],
            )
            .await?;
    }
    Ok(())
}

/// Fences the batch's keys on this node: locks their root rows, so writes
/// in flight finish first and later ones see the fence, then records it.
pub async fn fence(
    transaction: &deadpool_postgres::Transaction<'_>,
    batch: &KeyBatch,
    moved_to: &str,
) -> Result<(), tokio_postgres::Error> {
    transaction
        .execute(
            "select 1 from theaters where id = any($1) for update",
            &[&batch.theaters],
        )
        .await?;
    transaction
        .execute(
            "select 1 from users where id = any($1) for update",
            &[&batch.users],
        )
        .await?;
    transaction
        .execute(
            "select 1 from user_emails where email = any($1) for update",
            &[&batch.emails],
        )
        .await?;
    transaction
        .execute(
            "insert into key_fences (hash, moved_to) select unnest($1::bigint[]), $2 \
             on conflict (hash) do update set moved_to = excluded.moved_to, fenced_at = now()",
            &[&batch.stored_hashes(), &moved_to],
        )
        .await?;
    Ok(())
}

/// Reads a key's fence on a node.
pub(crate) const FENCE: &str = "select moved_to from key_fences where hash = $1";

/// The node a key's rows moved to, if this node has fenced it.
pub async fn fenced(
    client: &impl GenericClient,
    hash: u64,
) -> Result<Option<String>, tokio_postgres::Error> {
    let statement = client.prepare_cached(FENCE).await?;
    Ok(client
        .query_opt(&statement, &[&stored_hash(hash)])
        .await?
        .map(|row| row.get(0)))
}

/// The node the first of `hashes` that this node has fenced moved to.
pub async fn first_fenced(
    client: &impl GenericClient,
    hashes: &[u64],
) -> Result<Option<String>, tokio_postgres::Error> {
    let stored: Vec<i64> = hashes.iter().map(|hash| stored_hash(*hash)).collect();
    Ok(client
        .query_opt(
            "select moved_to from key_fences where hash = any($1) limit 1",
            &[&stored],
        )
        .await?
        .map(|row| row.get(0)))
}
