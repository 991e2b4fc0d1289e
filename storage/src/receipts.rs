//! Receipts of the notifications sent for outbox events, kept on the node
//! whose outbox the event came from, so that `(node, seq, channel)` is
//! claimed once however often the event is delivered.

use std::time::Duration;

use marquee_sharding::NodeId;

use crate::store::rejected;
use crate::{Error, Storage};

/// What claiming a receipt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody sent this yet; the caller sends, then marks it sent.
    Claimed,
    /// It was sent before.
    Sent,
    /// Another consumer is sending it now; look again later.
    InFlight,
}

impl Storage {
    /// Claims the notification of event `seq` of `node` on `channel`. A
    /// claim older than `stale_after` that was never marked sent belongs to
    /// a consumer that died mid-send, and is taken over.
    pub async fn claim_receipt(
        &self,
        node: &NodeId,
        seq: i64,
        channel: &str,
        stale_after: Duration,
    ) -> Result<Claim, Error> {
        let server = &self.cluster().shard(node)?.primary;
        let client = server.get().await?;
        let stale = format!("{} milliseconds", stale_after.as_millis());
        let row = client
            .query_one(
                "with claimed as ( \
                     insert into notification_receipts (seq, channel, state) values ($1, $2, 'sending') \
                     on conflict (seq, channel) do update set claimed_at = now() \
                     where notification_receipts.state = 'sending' \
                       and notification_receipts.claimed_at < now() - $3::text::interval \
                     returning 1) \
                 select (select count(*) from claimed), \
                        (select state from notification_receipts where seq = $1 and channel = $2)",
                &[&seq, &channel, &stale],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        let (claimed, state): (i64, Option<String>) = (row.get(0), row.get(1));
        Ok(match (claimed, state.as_deref()) {
            (1, _) => Claim::Claimed,
            (_, Some("sent")) => Claim::Sent,
            _ => Claim::InFlight,
        })
    }

    /// Marks a claimed notification sent.
    pub async fn mark_sent(&self, node: &NodeId, seq: i64, channel: &str) -> Result<(), Error> {
        let server = &self.cluster().shard(node)?.primary;
        server
            .get()
            .await?
            .execute(
                "update notification_receipts set state = 'sent', sent_at = now() \
                 where seq = $1 and channel = $2",
                &[&seq, &channel],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        Ok(())
    }

    /// Forgets a claim whose delivery failed, so a retry may claim it.
    pub async fn release_receipt(
        &self,
        node: &NodeId,
        seq: i64,
        channel: &str,
    ) -> Result<(), Error> {
        let server = &self.cluster().shard(node)?.primary;
        server
            .get()
            .await?
            .execute(
                "delete from notification_receipts where seq = $1 and channel = $2 and state = 'sending'",
                &[&seq, &channel],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        Ok(())
    }
}
