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

use marquee_sharding::NodeId;
use uuid::Uuid;

use crate::movies::{Movie, NewMovie};
use crate::store::{bump_map_version, rejected, NodeRecord, ShardMap};
use crate::{Error, Storage};

/// What a rebalance did.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebalanced {
    pub movies_moved: u64,
    pub map_version: i64,
}

impl Storage {
    /// Creates a movie unless a rebalance is running. The share lock on the
    /// map row is held until the movie is written, so a rebalance starting
    /// meanwhile waits for it and then finds it when it scans.
    pub async fn create_movie(&self, movie: &NewMovie) -> Result<Movie, Error> {
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
        let stored = self.upsert_movie(movie).await?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(stored)
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
        let map_version = self.switch(&target_map).await?;
        Ok(Rebalanced {
            movies_moved: moved,
            map_version,
        })
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
