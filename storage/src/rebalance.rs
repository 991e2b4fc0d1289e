//! Executing a change to the node registry: moving every movie, theater,
//! account and email index entry whose owner changes, then switching the
//! registry in one catalog transaction.
//!
//! While the data moves, the old registry stays in force and each moved
//! key is pinned to its new node (movies by an override, the others in
//! `route_pins`), so reads and writes keep finding it. The switch then
//! makes those nodes the keys' natural owners and drops the pins that have
//! become redundant, all at one map version. New movies, theaters and
//! accounts wait for the switch (see [`Storage::create_movie`]). A failure
//! part-way leaves the old registry in force with everything moved so far
//! pinned where its data is: consistent, and safe to run again. A rebalance
//! whose process died stops beating; the next instance to start clears
//! its flag.

use std::collections::BTreeMap;

use marquee_sharding::{ids, NodeId, Placement};
use uuid::Uuid;

use crate::key_data::{Key, KeyBatch};
use crate::movies::{Movie, NewMovie};
use crate::store::{bump_map_version, rejected, NodeRecord, ShardMap};
use crate::{Error, Storage};

/// What a rebalance did.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebalanced {
    pub movies_moved: u64,
    /// Theaters, accounts and email index entries moved.
    pub keys_moved: u64,
    pub map_version: i64,
}

/// Keys moved per batch: each batch's keys wait for writes only while it
/// is fenced, copied and compared.
const KEY_BATCH: usize = 500;

/// A rebalance that has not beaten for this long is taken for dead.
const REBALANCE_STALE_AFTER: &str = "60 seconds";

/// The keys to move, by source and target node.
type KeyPlan = BTreeMap<(NodeId, NodeId), KeyBatch>;

impl Storage {
    /// Creates a movie unless a rebalance is running.
    pub async fn create_movie(&self, movie: &NewMovie) -> Result<Movie, Error> {
        self.unless_rebalancing(|| self.upsert_movie(movie)).await
    }

    /// Runs `work`, which places a new key, unless a rebalance is running.
    /// The share lock on the map row is held until the work is done, so a
    /// rebalance starting meanwhile waits for it and then finds the new key
    /// when it scans.
    pub(crate) async fn unless_rebalancing<T, F, Fut>(&self, work: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let catalog = self.cluster().catalog();
        let mut client = catalog.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(catalog, err))?;
        let rebalancing: bool = transaction
            .query_one("select rebalancing from shard_map for share", &[])
            .await
            .map_err(|err| rejected(catalog, err))?
            .get(0);
        if rebalancing {
            return Err(Error::Rebalancing);
        }
        let done = work().await?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(done)
    }

    /// Moves data so that the registry can become `after`, then switches to it.
    pub async fn rebalance(&self, after: Vec<NodeRecord>) -> Result<Rebalanced, Error> {
        let catalog = self.cluster().catalog();
        let started = catalog
            .get()
            .await?
            .execute(
                "update shard_map set rebalancing = true, rebalance_heartbeat = now() \
                 where not rebalancing",
                &[],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        if started == 0 {
            return Err(Error::RebalanceInProgress);
        }
        let outcome = self.move_and_switch(after).await;
        let cleared = catalog
            .get()
            .await?
            .execute("update shard_map set rebalancing = false", &[])
            .await
            .map_err(|err| rejected(catalog, err));
        let rebalanced = outcome?;
        cleared?;
        self.load_placement().await?;
        Ok(rebalanced)
    }

    /// Clears the flag of a rebalance that stopped beating: its process
    /// died. Its moves were resumed or rolled back first, so the old
    /// registry is in force with everything moved pinned where it is.
    /// True if there was one.
    pub(crate) async fn clear_dead_rebalance(&self) -> Result<bool, Error> {
        let catalog = self.cluster().catalog();
        let cleared = catalog
            .get()
            .await?
            .execute(
                &format!(
                    "update shard_map set rebalancing = false where rebalancing \
                     and coalesce(rebalance_heartbeat < now() - interval '{REBALANCE_STALE_AFTER}', true)"
                ),
                &[],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(cleared > 0)
    }

    /// Whether a rebalance is running and alive.
    pub(crate) async fn rebalance_alive(&self) -> Result<bool, Error> {
        let catalog = self.cluster().catalog();
        Ok(catalog
            .get()
            .await?
            .query_one(
                &format!(
                    "select rebalancing and coalesce(rebalance_heartbeat >= now() - interval '{REBALANCE_STALE_AFTER}', false) \
                     from shard_map"
                ),
                &[],
            )
            .await
            .map_err(|err| rejected(catalog, err))?
            .get(0))
    }

    async fn beat(&self) -> Result<(), Error> {
        let catalog = self.cluster().catalog();
        catalog
            .get()
            .await?
            .execute("update shard_map set rebalance_heartbeat = now()", &[])
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(())
    }

    async fn move_and_switch(&self, after: Vec<NodeRecord>) -> Result<Rebalanced, Error> {
        self.load_placement().await?;
        let target_map = ShardMap {
            version: 0,
            nodes: after,
        };
        let target_placement = target_map.placement();
        let routing = self.cluster().routing();
        let active_after = |node: &NodeId| {
            target_map
                .nodes
                .iter()
                .any(|record| record.name == node.as_str() && record.effective_weight() > 0)
        };
        let mut moved = 0u64;
        for (node, ids) in self.movie_ids().await? {
            for id in ids {
                // A dedicated movie stays on its node unless that node leaves.
                let target = match routing.overrides.get(&ids::route_hash(id)) {
                    Some(dedicated) if active_after(dedicated) => dedicated.clone(),
                    _ => match target_placement.route(id.as_bytes()) {
                        Some(target) => target.clone(),
                        None => return Err(Error::NodeNotActive("any".to_owned())),
                    },
                };
                if target != node {
                    self.move_to(id, target).await?;
                    self.beat().await?;
                    moved += 1;
                }
            }
        }
        let mut keys_moved = 0u64;
        for ((source, target), batch) in self.keys_to_move(&target_placement).await? {
            for chunk in batch.chunks(KEY_BATCH) {
                keys_moved += chunk.len() as u64;
                self.move_keys(source.clone(), target.clone(), chunk)
                    .await?;
                self.beat().await?;
            }
        }
        let map_version = self.switch(&target_map).await?;
        Ok(Rebalanced {
            movies_moved: moved,
            keys_moved,
            map_version,
        })
    }

    /// How many theater, account and email index keys a rebalance to
    /// `after` would move.
    pub async fn keys_moving(&self, after: &[NodeRecord]) -> Result<u64, Error> {
        let target_map = ShardMap {
            version: 0,
            nodes: after.to_vec(),
        };
        Ok(self
            .keys_to_move(&target_map.placement())
            .await?
            .values()
            .map(|batch| batch.len() as u64)
            .sum())
    }

    /// Theaters, accounts and email index entries whose owner `target`
    /// changes, by where they are and where they go. A key counts where the
    /// map in force places it; rows a node holds that the map places
    /// elsewhere are a moved key's fenced leftovers and stay put.
    async fn keys_to_move(&self, target: &Placement) -> Result<KeyPlan, Error> {
        let routing = self.cluster().routing();
        let mut plan = KeyPlan::new();
        for shard in self.cluster().shards() {
            let node = shard.id();
            let server = &shard.primary;
            let client = server.get().await?;
            let mut keys: Vec<Key> = Vec::new();
            for (sql, theater) in [
                ("select id from theaters", true),
                ("select id from users", false),
            ] {
                for row in client
                    .query(sql, &[])
                    .await
                    .map_err(|err| rejected(server, err))?
                {
                    let id: Uuid = row.get(0);
                    keys.push(if theater {
                        Key::Theater(id)
                    } else {
                        Key::User(id)
                    });
                }
            }
            for row in client
                .query("select email from user_emails", &[])
                .await
                .map_err(|err| rejected(server, err))?
            {
                keys.push(Key::Email(row.get(0)));
            }
            for key in keys {
                let hash = key.hash();
                if routing.route_hash(hash) != Some(node) {
                    continue;
                }
                let owner = target
                    .route_hash(hash)
                    .ok_or_else(|| Error::NodeNotActive("any".to_owned()))?;
                if owner != node {
                    plan.entry((node.clone(), owner.clone()))
                        .or_default()
                        .push(key);
                }
            }
        }
        Ok(plan)
    }

    /// Writes the new registry, drops overrides that now match placement,
    /// and bumps the version: one catalog transaction.
    async fn switch(&self, target_map: &ShardMap) -> Result<i64, Error> {
        let placement = target_map.placement();
        let catalog = self.cluster().catalog();
        let mut client = catalog.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(catalog, err))?;
        for node in &target_map.nodes {
            transaction
                .execute(
                    "insert into shard_nodes (name, weight, state) values ($1, $2, $3) \
                     on conflict (name) do update set weight = excluded.weight, state = excluded.state",
                    &[&node.name, &node.weight, &node.state],
                )
                .await
                .map_err(|err| rejected(catalog, err))?;
        }
        let overrides = transaction
            .query("select movie_id, node from movie_overrides", &[])
            .await
            .map_err(|err| rejected(catalog, err))?;
        for row in overrides {
            let (movie, node): (Uuid, String) = (row.get(0), row.get(1));
            if placement
                .route(movie.as_bytes())
                .is_some_and(|owner| owner.as_str() == node)
            {
                transaction
                    .execute("delete from movie_overrides where movie_id = $1", &[&movie])
                    .await
                    .map_err(|err| rejected(catalog, err))?;
            }
        }
        let stale_pins = transaction
            .query("select hash, node from route_pins", &[])
            .await
            .map_err(|err| rejected(catalog, err))?;
        for row in stale_pins {
            let (hash, node): (i64, String) = (row.get(0), row.get(1));
            if placement
                .route_hash(u64::from_ne_bytes(hash.to_ne_bytes()))
                .is_some_and(|owner| owner.as_str() == node)
            {
                transaction
                    .execute("delete from route_pins where hash = $1", &[&hash])
                    .await
                    .map_err(|err| rejected(catalog, err))?;
            }
        }
        let version = bump_map_version(&transaction)
            .await
            .map_err(|err| rejected(catalog, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(version)
    }
}
