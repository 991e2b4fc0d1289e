//! Moving one movie's data to another node while reads and writes go on.
//!
//! A move is a state machine recorded in the catalog's `shard_moves`:
//!
//! 1. `copying`: the movie's rows are copied to the target while the source
//!    keeps serving.
//! 2. `fenced`: the source refuses further writes for the movie (see
//!    [`crate::movies::upsert_unless_fenced`]); the frozen rows are copied
//!    again and compared.
//! 3. `cut_over`: one catalog transaction points the movie at the target and
//!    bumps the shard map version; requests routed by the old map hit the
//!    fence, reload the map and retry on the target.
//! 4. `done`: the source's copy is deleted; its fence stays, so a request
//!    routed by a map older than the move is still refused there.
//!
//! A crash leaves the move in its last recorded state. [`Storage::resume_moves`]
//! rolls back a move caught `copying` (nothing was fenced, the source still
//! owns everything) and finishes one that was `fenced` or `cut_over`; every
//! step is idempotent, so resuming twice is harmless.

use marquee_sharding::NodeId;
use uuid::Uuid;

use crate::store::{bump_map_version, rejected};
use crate::{movie_data, movies};
use crate::{Error, Storage};

/// A move as recorded in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub id: Uuid,
    pub movie: Uuid,
    pub source: NodeId,
    pub target: NodeId,
    pub state: String,
}

/// Where a movie lives after a move, and under which map version.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    pub movie: Uuid,
    pub from: NodeId,
    pub to: NodeId,
    pub map_version: i64,
}

impl Storage {
    /// Moves a movie's data to `target`: to a dedicated node, or back to the
    /// node its id hashes to, which removes its override.
    pub async fn move_movie(&self, movie: Uuid, target: NodeId) -> Result<Moved, Error> {
        self.load_placement().await?;
        let map = self.shard_map().await?;
        if !map
            .nodes
            .iter()
            .any(|node| node.name == target.as_str() && node.effective_weight() > 0)
        {
            return Err(Error::NodeNotActive(target.to_string()));
        }
        self.move_to(movie, target).await
    }

    /// Moves a movie to any configured node, active or not; rebalancing
    /// fills a joining node this way before it becomes active.
    pub(crate) async fn move_to(&self, movie: Uuid, target: NodeId) -> Result<Moved, Error> {
        // An unreachable target is refused before anything is recorded, so
        // a move never starts that cannot finish.
        let target_primary = &self.cluster().shard(&target)?.primary;
        if let Err(err) = target_primary.get().await {
            return Err(Error::NodeUnreachable {
                node: target.to_string(),
                reason: err.to_string(),
            });
        }
        let source = self.movie_node(movie)?;
        let source_primary = &self.cluster().shard(&source)?.primary;
        let client = source_primary.get().await?;
        if movies::get(&client, movie)
            .await
            .map_err(|err| rejected(source_primary, err))?
            .is_none()
        {
            return Err(Error::MovieNotFound(movie));
        }
        if source == target {
            return Err(Error::AlreadyPlaced {
                movie,
                node: target.to_string(),
            });
        }
        let record = Move {
            id: Uuid::now_v7(),
            movie,
            source,
            target,
            state: "copying".to_owned(),
        };
        let catalog = self.cluster().catalog();
        let inserted = catalog
            .get()
            .await?
            .execute(
                "insert into shard_moves (id, movie_id, source, target, state) values ($1, $2, $3, $4, 'copying')",
                &[&record.id, &movie, &record.source.as_str(), &record.target.as_str()],
            )
            .await;
        if let Err(err) = inserted {
            return Err(match err.code() {
                Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    Error::MoveInProgress(movie)
                }
                _ => rejected(catalog, err),
            });
        }
        tracing::info!(%movie, from = %record.source, to = %record.target, "moving movie");
        self.drive(record).await
    }

    /// Finishes or rolls back moves a crash left open, movies' and key
    /// batches', and clears the flag of a rebalance that died; returns how
    /// many moves. A rebalance still beating is left to finish its own.
    pub async fn resume_moves(&self) -> Result<usize, Error> {
        if self.rebalance_alive().await? {
            return Ok(0);
        }
        let resumed = self.resume_movie_moves().await? + self.resume_key_moves().await?;
        if self.clear_dead_rebalance().await? {
            tracing::warn!("cleared the flag of a rebalance that stopped; run it again to finish");
        }
        Ok(resumed)
    }

    async fn resume_movie_moves(&self) -> Result<usize, Error> {
        let catalog = self.cluster().catalog();
        let rows = catalog
            .get()
            .await?
            .query(
                "select id, movie_id, source, target, state from shard_moves \
                 where state in ('copying', 'fenced', 'cut_over') order by started_at",
                &[],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        let open: Vec<Move> = rows
            .iter()
            .map(|row| Move {
                id: row.get(0),
                movie: row.get(1),
                source: NodeId::new(row.get::<_, String>(2)),
                target: NodeId::new(row.get::<_, String>(3)),
                state: row.get(4),
            })
            .collect();
        for record in &open {
            tracing::warn!(movie = %record.movie, state = %record.state, "resuming an interrupted move");
            if record.state == "copying" {
                self.roll_back(record).await?;
            } else {
                self.drive(record.clone()).await?;
            }
        }
        Ok(open.len())
    }

    async fn drive(&self, mut record: Move) -> Result<Moved, Error> {
        if record.state == "copying" {
            if let Err(err) = self.copy_and_fence(&record).await {
                self.roll_back(&record).await?;
                return Err(err);
            }
            self.set_state(&mut record, "fenced").await?;
        }
        if record.state == "fenced" {
            // The source is frozen now: this copy is final, and must match.
            self.copy(&record).await?;
            if !self.copies_match(&record).await? {
                self.roll_back(&record).await?;
                return Err(Error::MoveVerification {
                    movie: record.movie,
                    source_node: record.source.to_string(),
                    target: record.target.to_string(),
                });
            }
            self.cut_over(&record).await?;
            record.state = "cut_over".to_owned();
        }
        let target = &self.cluster().shard(&record.target)?.primary;
        movies::unfence(&target.get().await?, record.movie)
            .await
            .map_err(|err| rejected(target, err))?;
        self.load_placement().await?;
        let source = &self.cluster().shard(&record.source)?.primary;
        movie_data::delete(&source.get().await?, record.movie)
            .await
            .map_err(|err| rejected(source, err))?;
        self.set_state(&mut record, "done").await?;
        Ok(Moved {
            movie: record.movie,
            from: record.source,
            to: record.target,
            map_version: self.cluster().routing().version,
        })
    }

    async fn copy(&self, record: &Move) -> Result<(), Error> {
        let source = &self.cluster().shard(&record.source)?.primary;
        let target = &self.cluster().shard(&record.target)?.primary;
        let rows = movie_data::snapshot(&source.get().await?, record.movie)
            .await
            .map_err(|err| rejected(source, err))?;
        if !rows.has_movie() {
            return Err(Error::MovieNotFound(record.movie));
        }
        let mut client = target.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(target, err))?;
        movie_data::replace(&transaction, record.movie, &rows)
            .await
            .map_err(|err| rejected(target, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(target, err))
    }

    async fn copy_and_fence(&self, record: &Move) -> Result<(), Error> {
        self.copy(record).await?;
        let source = &self.cluster().shard(&record.source)?.primary;
        let mut client = source.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(source, err))?;
        movies::fence(&transaction, record.movie, record.target.as_str())
            .await
            .map_err(|err| rejected(source, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(source, err))
    }

    async fn copies_match(&self, record: &Move) -> Result<bool, Error> {
        let source = &self.cluster().shard(&record.source)?.primary;
        let target = &self.cluster().shard(&record.target)?.primary;
        let original = movie_data::snapshot(&source.get().await?, record.movie)
            .await
            .map_err(|err| rejected(source, err))?;
        let copy = movie_data::snapshot(&target.get().await?, record.movie)
            .await
            .map_err(|err| rejected(target, err))?;
        Ok(original.has_movie() && original == copy)
    }

    /// Points the movie at the target and bumps the map version, in one
    /// catalog transaction. A movie moving back to the node its id hashes
    /// to needs no override.
    async fn cut_over(&self, record: &Move) -> Result<(), Error> {
        let natural = self
            .cluster()
            .routing()
            .placement
            .route(record.movie.as_bytes())
            .cloned();
        let catalog = self.cluster().catalog();
        let mut client = catalog.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(catalog, err))?;
        if natural.as_ref() == Some(&record.target) {
            transaction
                .execute(
                    "delete from movie_overrides where movie_id = $1",
                    &[&record.movie],
                )
                .await
                .map_err(|err| rejected(catalog, err))?;
        } else {
            transaction
                .execute(
                    "insert into movie_overrides (movie_id, node) values ($1, $2) \
                     on conflict (movie_id) do update set node = excluded.node, updated_at = now()",
                    &[&record.movie, &record.target.as_str()],
                )
                .await
                .map_err(|err| rejected(catalog, err))?;
        }
        bump_map_version(&transaction)
            .await
            .map_err(|err| rejected(catalog, err))?;
        transaction
            .execute(
                "update shard_moves set state = 'cut_over', updated_at = now() where id = $1",
                &[&record.id],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        transaction
            .commit()
            .await
            .map_err(|err| rejected(catalog, err))
    }

    /// Undoes a move that has not cut over: the source owns the movie again.
    async fn roll_back(&self, record: &Move) -> Result<(), Error> {
        let source = &self.cluster().shard(&record.source)?.primary;
        let target = &self.cluster().shard(&record.target)?.primary;
        source
            .get()
            .await?
            .execute(
                "delete from movie_fences where movie_id = $1 and moved_to = $2",
                &[&record.movie, &record.target.as_str()],
            )
            .await
            .map_err(|err| rejected(source, err))?;
        movie_data::delete(&target.get().await?, record.movie)
            .await
            .map_err(|err| rejected(target, err))?;
        let mut record = record.clone();
        self.set_state(&mut record, "rolled_back").await?;
        tracing::warn!(movie = %record.movie, "move rolled back");
        Ok(())
    }

    async fn set_state(&self, record: &mut Move, state: &str) -> Result<(), Error> {
        let catalog = self.cluster().catalog();
        catalog
            .get()
            .await?
            .execute(
                "update shard_moves set state = $2, updated_at = now() where id = $1",
                &[&record.id, &state],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        record.state = state.to_owned();
        Ok(())
    }
}
