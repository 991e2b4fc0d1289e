//! Moving theaters, accounts and email index entries to another node a
//! batch at a time, while everything else goes on. A rebalance moves each
//! key whose owner the new registry changes this way.
//!
//! A batch is recorded in the catalog's `key_moves`:
//!
//! 1. `moving`: the source fences the batch's keys, locking their root rows
//!    first so writes in flight finish and later ones see the fence; the
//!    frozen rows are copied to the target and compared. Writes to these
//!    keys wait (reload, retry) meanwhile; nothing else does.
//! 2. `cut_over`: one catalog transaction pins the keys to the target and
//!    bumps the map version; the rebalance's switch later makes the target
//!    their natural owner and drops the pins.
//! 3. `done`: the source's copy is deleted; its fences stay, so a request
//!    routed by an older map is refused there and retried.
//!
//! A crash leaves the batch in its last state: [`Storage::resume_key_moves`]
//! rolls back a `moving` batch (the source owns it again, unfenced) and
//! finishes a `cut_over` one. Every step is idempotent.

use marquee_sharding::NodeId;
use uuid::Uuid;

use crate::key_data::{self, KeyBatch};
use crate::store::{bump_map_version, rejected};
use crate::{Error, Storage};

/// A batch as recorded in the catalog.
#[derive(Debug, Clone, PartialEq)]
struct KeyMove {
    id: Uuid,
    source: NodeId,
    target: NodeId,
    batch: KeyBatch,
    state: String,
}

impl Storage {
    /// Moves `batch` from `source` to `target` and pins its keys there.
    pub(crate) async fn move_keys(
        &self,
        source: NodeId,
        target: NodeId,
        batch: KeyBatch,
    ) -> Result<(), Error> {
        let target_primary = &self.cluster().shard(&target)?.primary;
        if let Err(err) = target_primary.get().await {
            return Err(Error::NodeUnreachable {
                node: target.to_string(),
                reason: err.to_string(),
            });
        }
        let record = KeyMove {
            id: Uuid::now_v7(),
            source,
            target,
            batch,
            state: "moving".to_owned(),
        };
        let catalog = self.cluster().catalog();
        catalog
            .get()
            .await?
            .execute(
                "insert into key_moves (id, source, target, theaters, users, emails, state) \
                 values ($1, $2, $3, $4, $5, $6, 'moving')",
                &[
                    &record.id,
                    &record.source.as_str(),
                    &record.target.as_str(),
                    &record.batch.theaters,
                    &record.batch.users,
                    &record.batch.emails,
                ],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        tracing::info!(
            keys = record.batch.len(),
            from = %record.source,
            to = %record.target,
            "moving theaters and accounts"
        );
        self.drive_keys(record).await
    }

    /// Finishes or rolls back key batches a crash left open; how many.
    pub(crate) async fn resume_key_moves(&self) -> Result<usize, Error> {
        let catalog = self.cluster().catalog();
        let rows = catalog
            .get()
            .await?
            .query(
                "select id, source, target, theaters, users, emails, state from key_moves \
                 where state in ('moving', 'cut_over') order by started_at",
                &[],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        let open: Vec<KeyMove> = rows
            .iter()
            .map(|row| KeyMove {
                id: row.get(0),
                source: NodeId::new(row.get::<_, String>(1)),
                target: NodeId::new(row.get::<_, String>(2)),
                batch: KeyBatch {
                    theaters: row.get(3),
                    users: row.get(4),
                    emails: row.get(5),
                },
                state: row.get(6),
            })
            .collect();
        for record in &open {
            tracing::warn!(keys = record.batch.len(), state = %record.state, "resuming an interrupted key move");
            if record.state == "moving" {
                self.roll_back_keys(record).await?;
            } else {
                self.drive_keys(record.clone()).await?;
            }
        }
        Ok(open.len())
    }

    async fn drive_keys(&self, mut record: KeyMove) -> Result<(), Error> {
        if record.state == "moving" {
            if let Err(err) = self.fence_and_copy(&record).await {
                self.roll_back_keys(&record).await?;
                return Err(err);
            }
            self.cut_over_keys(&record).await?;
            record.state = "cut_over".to_owned();
        }
        self.load_placement().await?;
        let source = &self.cluster().shard(&record.source)?.primary;
        key_data::delete(&source.get().await?, &record.batch)
            .await
            .map_err(|err| rejected(source, err))?;
        self.set_key_move_state(&record, "done").await
    }

    /// Fences the batch on the source, copies the frozen rows and checks
    /// that the target now holds exactly them.
    async fn fence_and_copy(&self, record: &KeyMove) -> Result<(), Error> {
        let source = &self.cluster().shard(&record.source)?.primary;
        let target = &self.cluster().shard(&record.target)?.primary;
        let mut source_client = source.get().await?;
        let transaction = source_client
            .transaction()
            .await
            .map_err(|err| rejected(source, err))?;
        key_data::fence(&transaction, &record.batch, record.target.as_str())
            .await
            .map_err(|err| rejected(source, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(source, err))?;
        let original = key_data::snapshot(&source_client, &record.batch)
            .await
            .map_err(|err| rejected(source, err))?;
        let mut target_client = target.get().await?;
        let transaction = target_client
            .transaction()
            .await
            .map_err(|err| rejected(target, err))?;
        key_data::replace(&transaction, &record.batch, &original)
            .await
            .map_err(|err| rejected(target, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(target, err))?;
        let copy = key_data::snapshot(&target_client, &record.batch)
            .await
            .map_err(|err| rejected(target, err))?;
        if copy != original {
            return Err(Error::KeyMoveVerification {
                keys: record.batch.len(),
                source_node: record.source.to_string(),
                target: record.target.to_string(),
            });
        }
        Ok(())
    }

    /// Pins the batch's keys to the target and bumps the map version, in
    /// one catalog transaction. A key moving to the node the registry in
    /// force already gives it needs no pin.
    async fn cut_over_keys(&self, record: &KeyMove) -> Result<(), Error> {
        let routing = self.cluster().routing();
        let catalog = self.cluster().catalog();
        let mut client = catalog.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(catalog, err))?;
        let (mut pinned, mut pinned_kinds, mut natural) = (Vec::new(), Vec::new(), Vec::new());
        for (hash, kind) in record.batch.hashes() {
            if routing.placement.route_hash(hash) == Some(&record.target) {
                natural.push(key_data::stored_hash(hash));
            } else {
                pinned.push(key_data::stored_hash(hash));
                pinned_kinds.push(kind);
            }
        }
        transaction
            .execute("delete from route_pins where hash = any($1)", &[&natural])
            .await
            .map_err(|err| rejected(catalog, err))?;
        transaction
            .execute(
                "insert into route_pins (hash, node, kind) \
                 select hash, $3, kind from unnest($1::bigint[], $2::text[]) as pins (hash, kind) \
                 on conflict (hash) do update set node = excluded.node",
                &[&pinned, &pinned_kinds, &record.target.as_str()],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        bump_map_version(&transaction)
            .await
            .map_err(|err| rejected(catalog, err))?;
        transaction
            .execute(
                "update key_moves set state = 'cut_over', updated_at = now() where id = $1",
                &[&record.id],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(catalog, err))
    }

    /// Undoes a batch that has not cut over: the source owns its keys
    /// again. The target drops its partial copy and fences the keys toward
    /// the source, so a request routed there by an old map is refused.
    async fn roll_back_keys(&self, record: &KeyMove) -> Result<(), Error> {
        let source = &self.cluster().shard(&record.source)?.primary;
        let target = &self.cluster().shard(&record.target)?.primary;
        let hashes = record.batch.stored_hashes();
        source
            .get()
            .await?
            .execute(
                "delete from key_fences where hash = any($1) and moved_to = $2",
                &[&hashes, &record.target.as_str()],
            )
            .await
            .map_err(|err| rejected(source, err))?;
        let mut client = target.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(target, err))?;
        key_data::delete(&transaction, &record.batch)
            .await
            .map_err(|err| rejected(target, err))?;
        transaction
            .execute(
                "insert into key_fences (hash, moved_to) select unnest($1::bigint[]), $2 \
                 on conflict (hash) do update set moved_to = excluded.moved_to, fenced_at = now()",
                &[&hashes, &record.source.as_str()],
            )
            .await
            .map_err(|err| rejected(target, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(target, err))?;
        self.set_key_move_state(record, "rolled_back").await?;
        tracing::warn!(keys = record.batch.len(), "key move rolled back");
        Ok(())
    }

    async fn set_key_move_state(&self, record: &KeyMove, state: &str) -> Result<(), Error> {
        let catalog = self.cluster().catalog();
        catalog
            .get()
            .await?
            .execute(
                "update key_moves set state = $2, updated_at = now() where id = $1",
                &[&record.id, &state],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(())
    }
}
