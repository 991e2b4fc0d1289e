//! The transactional outbox: each change records a domain event in the
//! transaction that makes it, so readers of the change stream never see a
//! change without its event or an event without its change.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub aggregate: String,
    pub aggregate_id: Uuid,
    pub event: String,
    pub age_seconds: f64,
}

pub async fn record(
    client: &impl GenericClient,
    aggregate: &str,
    id: Uuid,
    event: &str,
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached("insert into outbox (aggregate, aggregate_id, event) values ($1, $2, $3)")
        .await?;
    client
        .execute(&statement, &[&aggregate, &id, &event])
        .await?;
    Ok(())
}

/// Records an event that carries what its consumers need, such as the
/// contact details a confirmation is sent to.
pub async fn record_payload(
    client: &impl GenericClient,
    aggregate: &str,
    id: Uuid,
    event: &str,
    payload: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "insert into outbox (aggregate, aggregate_id, event, payload) values ($1, $2, $3, $4)",
        )
        .await?;
    client
        .execute(&statement, &[&aggregate, &id, &event, payload])
        .await?;
    Ok(())
}

/// Events after `after`, in sequence order.
pub async fn after(
    client: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "select seq, aggregate, aggregate_id, event, \
                 extract(epoch from now() - created_at)::float8 \
             from outbox where seq > $1 order by seq limit $2",
        )
        .await?;
    Ok(client
        .query(&statement, &[&after, &limit])
        .await?
        .iter()
        .map(|row| Event {
            seq: row.get(0),
            aggregate: row.get(1),
            aggregate_id: row.get(2),
            event: row.get(3),
            age_seconds: row.get(4),
        })
        .collect())
}

/// The newest sequence number, 0 when the outbox is empty.
pub async fn head(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("select coalesce(max(seq), 0) from outbox", &[])
        .await?
        .get(0))
}
