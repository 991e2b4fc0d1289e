use std::sync::Arc;

use futures::future::{join_all, try_join_all};
use marquee_sharding::ring::DEFAULT_VNODES_PER_WEIGHT;
use marquee_sharding::{Cluster, HashRing, NodeId, Server};
use uuid::Uuid;

use crate::migrations::{self, Migration};
use crate::movies::{self, Movie, NewMovie};
use crate::Error;

/// What `migrate` did on each node.
#[derive(Debug, Default)]
pub struct MigrationReport {
    pub applied: Vec<(String, Vec<i32>)>,
}

/// Routes every query to the node that owns its data.
#[derive(Debug, Clone)]
pub struct Storage {
    cluster: Arc<Cluster>,
    schema: String,
}

impl Storage {
    pub fn new(cluster: Arc<Cluster>, schema: impl Into<String>) -> Self {
        Self {
            cluster,
            schema: schema.into(),
        }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Applies pending migrations to the catalog and every shard primary, and
    /// registers configured shard nodes in the catalog's node registry.
    pub async fn migrate(&self) -> Result<MigrationReport, Error> {
        let mut report = MigrationReport::default();
        let catalog = self.cluster.catalog();
        report.applied.push((
            catalog.component(),
            self.migrate_server(catalog, migrations::CATALOG).await?,
        ));
        // Every node runs to completion, even when another fails: abandoning
        // a node mid-transaction would leave it holding locks until its
        // connection is reaped.
        let outcomes = join_all(self.cluster.shards().iter().map(|shard| async move {
            let applied = self
                .migrate_server(&shard.primary, migrations::SHARD)
                .await?;
            Ok::<_, Error>((shard.primary.component(), applied))
        }))
        .await;
        let shards = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
        report.applied.extend(shards);

        let client = catalog.get().await?;
        for shard in self.cluster.shards() {
            client
                .execute(
                    "insert into shard_nodes (name) values ($1) on conflict (name) do nothing",
                    &[&shard.id().as_str()],
                )
                .await
                .map_err(|err| rejected(catalog, err))?;
        }
        Ok(report)
    }

    async fn migrate_server(&self, server: &Server, set: &[Migration]) -> Result<Vec<i32>, Error> {
        let mut client = server.get().await?;
        migrations::apply(&mut client, &server.component(), &self.schema, set).await
    }

    /// Fails, naming the node, when any primary lacks a migration this binary
    /// needs; serving against an old schema would fail request by request.
    pub async fn check_migrated(&self) -> Result<(), Error> {
        let catalog = self.cluster.catalog();
        let servers = std::iter::once((catalog, migrations::CATALOG)).chain(
            self.cluster
                .shards()
                .iter()
                .map(|shard| (&shard.primary, migrations::SHARD)),
        );
        try_join_all(servers.map(|(server, set)| async move {
            let client = server.get().await?;
            let applied = migrations::applied(&client)
                .await
                .map_err(|err| rejected(server, err))?;
            let pending = migrations::pending(set, &applied);
            if pending.is_empty() {
                Ok(())
            } else {
                Err(Error::Pending {
                    component: server.component(),
                    pending,
                })
            }
        }))
        .await?;
        Ok(())
    }

    /// Replaces the ring with the catalog's node registry, so every instance
    /// places data the same way whatever order its configuration lists nodes.
    pub async fn load_placement(&self) -> Result<(), Error> {
        let catalog = self.cluster.catalog();
        let client = catalog.get().await?;
        let rows = client
            .query(
                "select name, weight, state from shard_nodes order by name",
                &[],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        let mut members = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.get(0);
            let weight: i32 = row.get(1);
            let state: String = row.get(2);
            let node = NodeId::new(&name);
            if self.cluster.shard(&node).is_err() {
                return Err(Error::UnconfiguredNode { node: name });
            }
            let weight = if state == "active" {
                u32::try_from(weight).unwrap_or(0)
            } else {
                0
            };
            members.push((node, weight));
        }
        self.cluster
            .set_ring(HashRing::new(members, DEFAULT_VNODES_PER_WEIGHT))?;
        Ok(())
    }

    fn movie_primary(&self, id: Uuid) -> Result<&Server, Error> {
        Ok(&self.cluster.route(id.as_bytes())?.primary)
    }

    /// The node that owns a movie, for logs and admin views.
    pub fn movie_node(&self, id: Uuid) -> Result<NodeId, Error> {
        Ok(self.movie_primary(id)?.node().clone())
    }

    pub async fn upsert_movie(&self, movie: &NewMovie) -> Result<Movie, Error> {
        let server = self.movie_primary(movie.id)?;
        let client = server.get().await?;
        movies::upsert(&client, movie)
            .await
            .map_err(|err| rejected(server, err))
    }

    pub async fn movie(&self, id: Uuid) -> Result<Option<Movie>, Error> {
        let server = self.movie_primary(id)?;
        let client = server.get().await?;
        movies::get(&client, id)
            .await
            .map_err(|err| rejected(server, err))
    }

    /// Writes many movies, grouped by shard, one transaction per shard and
    /// batch. `progress` is told how many rows each committed batch held.
    pub async fn upsert_movies(
        &self,
        batch: &[NewMovie],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(), Error> {
        let mut by_node: Vec<(NodeId, Vec<&NewMovie>)> = Vec::new();
        for movie in batch {
            let node = self.movie_node(movie.id)?;
            match by_node.iter_mut().find(|(existing, _)| *existing == node) {
                Some((_, movies)) => movies.push(movie),
                None => by_node.push((node, vec![movie])),
            }
        }
        try_join_all(by_node.into_iter().map(|(node, movies)| async move {
            let server = &self.cluster.shard(&node)?.primary;
            let mut client = server.get().await?;
            let transaction = client
                .transaction()
                .await
                .map_err(|err| rejected(server, err))?;
            for movie in &movies {
                movies::upsert(&transaction, movie)
                    .await
                    .map_err(|err| rejected(server, err))?;
            }
            transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err))?;
            progress(movies.len());
            Ok::<_, Error>(())
        }))
        .await?;
        Ok(())
    }

    /// Every movie on every shard, for building the search index.
    pub async fn all_movies(&self) -> Result<Vec<Movie>, Error> {
        let per_shard = try_join_all(self.cluster.shards().iter().map(|shard| async move {
            // The replica spares the primary a full scan; a replica that is
            // down must not stop the index from being built.
            if let Some(replica) = &shard.replica {
                match all_on(replica).await {
                    Ok(movies) => return Ok(movies),
                    Err(err) => {
                        tracing::warn!(error = %err, "reading movies from the primary instead")
                    }
                }
            }
            all_on(&shard.primary).await
        }))
        .await?;
        Ok(per_shard.into_iter().flatten().collect())
    }
}

async fn all_on(server: &Server) -> Result<Vec<Movie>, Error> {
    let client = server.get().await?;
    movies::all(&client)
        .await
        .map_err(|err| rejected(server, err))
}

/// A refusal by the database stays a refusal; a broken connection means the
/// node is unavailable, which callers retry or report as such.
fn rejected(server: &Server, err: tokio_postgres::Error) -> Error {
    match err.as_db_error() {
        Some(db) => Error::Rejected {
            component: server.component(),
            message: db.message().to_owned(),
        },
        None => Error::Shard(server.query_error(err)),
    }
}
