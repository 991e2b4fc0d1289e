//! Executing a change to the node registry: moving every movie whose owner
//! changes, then switching the registry in one catalog transaction.
//!
//! While the data moves, the old registry stays in force and each moved
//! movie is pinned to its new node by an override, so reads and writes keep
//! finding it. The switch then makes those nodes the movies' natural owners
//! and drops the overrides that have become redundant, all at one map
//! version. New movies wait for the switch (see [`Storage::create_movie`]).
//! A failure part-way leaves the old registry in force with every moved
//! movie pinned where its data is: consistent, and safe to run again.
//!
//! Theaters and account data do not move: each key the new registry would
//! place elsewhere is pinned to the node that holds it, at the switch, so
//! it keeps being found. New ones wait for the switch like new movies.

use marquee_sharding::NodeId;
use uuid::Uuid;

use crate::movies::{Movie, NewMovie};
use crate::store::{bump_map_version, rejected, NodeRecord, ShardMap};
use crate::{Error, Storage};

/// What a rebalance did.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebalanced {
    pub movies_moved: u64,
    /// Theaters, accounts and email index entries left where they are and
    /// pinned there.
    pub keys_pinned: u64,
    pub map_version: i64,
}

/// A key kept on the node that holds its data.
#[derive(Debug, Clone)]
struct Pin {
    hash: u64,
    node: NodeId,
    kind: &'static str,
}

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
                "update shard_map set rebalancing = true where not rebalancing",
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
        let pins = self.unmoved_keys(&target_placement, &active_after).await?;
        let mut moved = 0u64;
        for (node, ids) in self.movie_ids().await? {
            for id in ids {
                // A dedicated movie stays on its node unless that node leaves.
                let target = match routing
                    .overrides
                    .get(&marquee_sharding::ids::route_hash(id))
                {
                    Some(dedicated) if active_after(dedicated) => dedicated.clone(),
                    _ => match target_placement.route(id.as_bytes()) {
                        Some(target) => target.clone(),
                        None => return Err(Error::NodeNotActive("any".to_owned())),
                    },
                };
                if target != node {
                    self.move_to(id, target).await?;
                    moved += 1;
                }
            }
        }
        let map_version = self.switch(&target_map, &pins).await?;
        Ok(Rebalanced {
            movies_moved: moved,
            keys_pinned: pins.len() as u64,
            map_version,
        })
    }

    /// How many theater, account and email index keys a rebalance to
    /// `after` would pin where they are; the conflict a rebalance would be
    /// refused with, if a drained node holds any.
    pub async fn keys_to_pin(&self, after: &[NodeRecord]) -> Result<u64, Error> {
        let target_map = ShardMap {
            version: 0,
            nodes: after.to_vec(),
        };
        let active_after = |node: &NodeId| {
            target_map
                .nodes
                .iter()
                .any(|record| record.name == node.as_str() && record.effective_weight() > 0)
        };
        let pins = self
            .unmoved_keys(&target_map.placement(), &active_after)
            .await?;
        Ok(pins.len() as u64)
    }

    /// Theaters, accounts and email index entries whose owner the new
    /// registry changes. They stay where their data is, pinned there at the
    /// switch. A node that leaves cannot keep them, so draining one that
    /// holds any is refused before anything moves.
    async fn unmoved_keys(
        &self,
        target: &marquee_sharding::Placement,
        active_after: &impl Fn(&NodeId) -> bool,
    ) -> Result<Vec<Pin>, Error> {
        let routing = self.cluster().routing();
        let mut pins = Vec::new();
        for shard in self.cluster().shards() {
            let node = shard.id();
            let server = &shard.primary;
            let client = server.get().await?;
            let mut hashes: Vec<(u64, &'static str)> = Vec::new();
            for (sql, kind) in [
                ("select id from theaters", "theater"),
                ("select id from users", "user"),
            ] {
                for row in client
                    .query(sql, &[])
                    .await
                    .map_err(|err| rejected(server, err))?
                {
                    let id: Uuid = row.get(0);
                    hashes.push((marquee_sharding::ids::route_hash(id), kind));
                }
            }
            for row in client
                .query("select email from user_emails", &[])
                .await
                .map_err(|err| rejected(server, err))?
            {
                let email: String = row.get(0);
                hashes.push((
                    marquee_sharding::placement::hash_key(email.as_bytes()),
                    "email",
                ));
            }
            for (hash, kind) in hashes {
                if routing.route_hash(hash) != Some(node) {
                    continue;
                }
                if !active_after(node) {
                    return Err(Error::Conflict(format!(
                        "{node} holds theater and account data, which a rebalance does not move; it cannot be drained yet"
                    )));
                }
                if target.route_hash(hash) != Some(node) {
                    pins.push(Pin {
                        hash,
                        node: node.clone(),
                        kind,
                    });
                }
            }
        }
        Ok(pins)
    }

    /// Writes the new registry, drops overrides that now match placement,
    /// and bumps the version: one catalog transaction.
    async fn switch(&self, target_map: &ShardMap, pins: &[Pin]) -> Result<i64, Error> {
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
        for pin in pins {
            transaction
                .execute(
                    "insert into route_pins (hash, node, kind) values ($1, $2, $3) \
                     on conflict (hash) do update set node = excluded.node",
                    &[
                        &i64::from_ne_bytes(pin.hash.to_ne_bytes()),
                        &pin.node.as_str(),
                        &pin.kind,
                    ],
                )
                .await
                .map_err(|err| rejected(catalog, err))?;
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
