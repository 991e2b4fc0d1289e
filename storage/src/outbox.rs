//! The transactional outbox: each change records a domain event in the
//! transaction that makes it, so readers of the change stream never see a
//! change without its event or an event without its change.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use marquee_sharding::ShardNode;
use uuid::Uuid;

use crate::store::rejected;
use crate::{Error, Storage};

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

/// An event on its way to the broker, with everything consumers read.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub seq: i64,
    pub aggregate: String,
    pub aggregate_id: Uuid,
    pub event: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl Storage {
    /// Takes or renews the relay lease of `shard` for `holder`; whether
    /// `holder` has it now. A lapsed lease passes to whoever asks first.
    pub async fn hold_relay_lease(
        &self,
        shard: &ShardNode,
        holder: Uuid,
        ttl: std::time::Duration,
    ) -> Result<bool, Error> {
        let server = &shard.primary;
        let ttl = format!("{} milliseconds", ttl.as_millis());
        Ok(server
            .get()
            .await?
            .query_opt(
                "insert into relay_lease (name, holder, expires_at) \
                 values ('outbox', $1, now() + $2::text::interval) \
                 on conflict (name) do update set holder = excluded.holder, expires_at = excluded.expires_at \
                 where relay_lease.holder = excluded.holder or relay_lease.expires_at < now() \
                 returning holder",
                &[&holder, &ttl],
            )
            .await
            .map_err(|err| rejected(server, err))?
            .is_some())
    }

    /// The oldest events of `shard` not yet published, in order.
    pub async fn unpublished(&self, shard: &ShardNode, limit: i64) -> Result<Vec<Outgoing>, Error> {
        let server = &shard.primary;
        Ok(server
            .get()
            .await?
            .query(
                "select seq, aggregate, aggregate_id, event, payload, created_at from outbox \
                 where published_at is null order by seq limit $1",
                &[&limit],
            )
            .await
            .map_err(|err| rejected(server, err))?
            .iter()
            .map(|row| Outgoing {
                seq: row.get(0),
                aggregate: row.get(1),
                aggregate_id: row.get(2),
                event: row.get(3),
                payload: row.get(4),
                created_at: row.get(5),
            })
            .collect())
    }

    /// Marks events the broker acknowledged.
    pub async fn mark_published(&self, shard: &ShardNode, seqs: &[i64]) -> Result<(), Error> {
        let server = &shard.primary;
        server
            .get()
            .await?
            .execute(
                "update outbox set published_at = now() where seq = any($1) and published_at is null",
                &[&seqs],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        Ok(())
    }

    /// Queues events published within `window` again: the broker lost
    /// them (it restarted without its data), and consumers skip what they
    /// already applied.
    pub async fn republish_window(
        &self,
        shard: &ShardNode,
        window: std::time::Duration,
    ) -> Result<u64, Error> {
        let server = &shard.primary;
        let window = format!("{} milliseconds", window.as_millis());
        server
            .get()
            .await?
            .execute(
                "update outbox set published_at = null \
                 where published_at > now() - $1::text::interval",
                &[&window],
            )
            .await
            .map_err(|err| rejected(server, err))
    }

    /// Deletes events published longer ago than `retention`; how many.
    pub async fn prune_published(
        &self,
        shard: &ShardNode,
        retention: std::time::Duration,
    ) -> Result<u64, Error> {
        let server = &shard.primary;
        let retention = format!("{} milliseconds", retention.as_millis());
        server
            .get()
            .await?
            .execute(
                "delete from outbox where published_at < now() - $1::text::interval",
                &[&retention],
            )
            .await
            .map_err(|err| rejected(server, err))
    }
}
