//! Everything stored for one movie, as a unit that moves between nodes:
//! the movie row, its showtimes, seat states, holds, orders, tickets with
//! their admissions and revocations, payments and idempotency keys, the
//! showtimes' waiting rooms, lines and waiting lists, with the layout
//! snapshots they reference. Rows travel as JSON of the table's
//! own row type, so a column added by a migration moves without code
//! changes.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

/// Movie-scoped tables, parents first, with the column naming the movie
/// and the key that orders rows for comparison.
const TABLES: &[(&str, &str, &str)] = &[
    ("movies", "id", "id"),
    ("showtimes", "movie_id", "id"),
    ("seat_states", "movie_id", "showtime_id, seat"),
    ("seat_row_locks", "movie_id", "showtime_id, row_label"),
    ("showtime_customers", "movie_id", "showtime_id, customer"),
    ("holds", "movie_id", "id"),
    ("orders", "movie_id", "id"),
    ("tickets", "movie_id", "id"),
    ("admissions", "movie_id", "ticket_id"),
    ("ticket_revocations", "movie_id", "showtime_id, version"),
    ("payments", "movie_id", "id"),
    ("idempotency_keys", "movie_id", "key"),
    ("seat_lock_switches", "movie_id", "id"),
    ("waiting_rooms", "movie_id", "showtime_id"),
    ("queue_places", "movie_id", "id"),
    ("waitlist_entries", "movie_id", "id"),
];

/// A movie's rows on one node: the layouts it references, then one JSON
/// array per table of [`TABLES`].
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    layouts: Value,
    tables: Vec<Value>,
}

impl Snapshot {
    /// Whether the node holds the movie row itself.
    pub fn has_movie(&self) -> bool {
        self.tables
            .first()
            .and_then(Value::as_array)
            .is_some_and(|rows| !rows.is_empty())
    }
}

/// The movie's rows, read in one statement so that every table comes from
/// the same instant: a hold and its order, written while a move copies,
/// are either both in the copy or both missing from it.
pub async fn snapshot(
    client: &impl GenericClient,
    movie: Uuid,
) -> Result<Snapshot, tokio_postgres::Error> {
    let mut columns = vec![
        "(select coalesce(jsonb_agg(to_jsonb(l) order by l.id), '[]') from seat_layouts l \
         where l.id in (select layout_id from showtimes where movie_id = $1))"
            .to_owned(),
    ];
    columns.extend(TABLES.iter().map(|(table, column, order)| {
        format!(
            "(select coalesce(jsonb_agg(to_jsonb(t) order by {order}), '[]') \
             from {table} t where {column} = $1)"
        )
    }));
    let row = client
        .query_one(&format!("select {}", columns.join(", ")), &[&movie])
        .await?;
    Ok(Snapshot {
        layouts: row.get(0),
        tables: (1..=TABLES.len()).map(|i| row.get(i)).collect(),
    })
}

/// Makes the node hold exactly `snapshot` for the movie.
pub async fn replace(
    transaction: &deadpool_postgres::Transaction<'_>,
    movie: Uuid,
    snapshot: &Snapshot,
) -> Result<(), tokio_postgres::Error> {
    delete(transaction, movie).await?;
    transaction
        .execute(
            "insert into seat_layouts select * from jsonb_populate_recordset(null::seat_layouts, $1) \
             on conflict (id) do nothing",
            &[&snapshot.layouts],
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

/// Deletes the movie's rows, children first. Layout snapshots stay: other
/// movies' showtimes may share them.
pub async fn delete(client: &impl GenericClient, movie: Uuid) -> Result<(), tokio_postgres::Error> {
    for (table, column, _) in TABLES.iter().rev() {
        client
            .execute(
                &format!("delete from {table} where {column} = $1"),
                &[&movie],
            )
            .await?;
    }
    Ok(())
}
