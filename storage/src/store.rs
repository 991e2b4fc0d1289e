use std::collections::HashMap;
use std::sync::Arc;

use futures::future::{join_all, try_join_all};
use marquee_sharding::{ids, Cluster, NodeId, Placement, Routing, Server};
use uuid::Uuid;

use crate::key_data;
use crate::layout::SeatLayout;
use crate::migrations::{self, Migration};
use crate::movies::{self, Movie, NewMovie};
use crate::showtimes;
use crate::Error;

/// A node as the catalog's registry records it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub name: String,
    pub weight: i32,
    /// `joining` (configured, owns nothing yet), `active`, `draining` or `down`.
    pub state: String,
}

impl NodeRecord {
    /// Only active nodes receive keys; a draining node keeps its data until
    /// it has moved, but owns no slots.
    pub fn effective_weight(&self) -> u32 {
        if self.state == "active" {
            u32::try_from(self.weight).unwrap_or(0)
        } else {
            0
        }
    }
}

/// The catalog's shard map: a version and the node registry.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardMap {
    pub version: i64,
    pub nodes: Vec<NodeRecord>,
}

impl ShardMap {
    pub fn placement(&self) -> Placement {
        Placement::new(
            self.nodes
                .iter()
                .map(|node| (NodeId::new(&node.name), node.effective_weight())),
        )
    }
}

/// Rows a shard primary holds and the bookings it confirms.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLoad {
    pub node: NodeId,
    pub movies: i64,
    pub showtimes: i64,
    /// Seats held, sold or blocked.
    pub seat_states: i64,
    pub orders: i64,
    pub theaters: i64,
    /// Accounts, erased ones included.
    pub accounts: i64,
    /// Orders confirmed over the last minute, per second.
    pub bookings_per_second: f64,
}

/// How a unit of work inside [`Storage::in_movie_transaction`] ends: a
/// refusal found half-way rolls back whatever the work wrote before it.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    Commit(T),
    Rollback(T),
}

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
    /// Layout snapshots by content hash: immutable, so never stale.
    layouts: Arc<std::sync::Mutex<HashMap<String, Arc<SeatLayout>>>>,
    /// What never changes about a showtime, for the hot booking paths.
    facts: Arc<std::sync::Mutex<HashMap<Uuid, ShowtimeFacts>>>,
}

/// A showtime's movie and layout: fixed when it is scheduled.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowtimeFacts {
    pub movie_id: Uuid,
    pub layout_id: String,
}

/// Distinct layouts are a few per screen; past this many the cache starts
/// over rather than growing without bound.
const LAYOUT_CACHE_LIMIT: usize = 10_000;

/// Showtimes whose facts an instance keeps; past this the cache starts
/// over.
const FACTS_CACHE_LIMIT: usize = 200_000;

/// How a write reaches a theater, an account or an email index entry: the
/// key's routing hash, and a statement taking `param` that locks its root
/// row (theater, user or index entry) against a rebalance's fence.
pub(crate) struct KeyLock<'a> {
    pub hash: u64,
    pub kind: &'static str,
    pub lock: &'static str,
    pub param: &'a (dyn tokio_postgres::types::ToSql + Sync),
}

impl KeyLock<'_> {
    fn describe(&self) -> String {
        format!("{} {:?}", self.kind, self.param)
    }
}

/// Takes a key's lock, then reads its fence: the node it moved to, if it
/// moved. Sent together and run in order, so the fence is read once the
/// lock is held and a fence committed by a move is always seen.
async fn lock_key(
    transaction: &deadpool_postgres::Transaction<'_>,
    key: &KeyLock<'_>,
) -> Result<Option<String>, tokio_postgres::Error> {
    let (lock, fence) = futures::try_join!(
        transaction.prepare_cached(key.lock),
        transaction.prepare_cached(key_data::FENCE),
    )?;
    let hash = key_data::stored_hash(key.hash);
    let lock_params = [key.param];
    let fence_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&hash];
    let (_, fence) = futures::try_join!(
        transaction.query(&lock, &lock_params),
        transaction.query_opt(&fence, &fence_params),
    )?;
    Ok(fence.map(|row| row.get(0)))
}

impl Storage {
    pub fn new(cluster: Arc<Cluster>, schema: impl Into<String>) -> Self {
        Self {
            cluster,
            schema: schema.into(),
            layouts: Arc::default(),
            facts: Arc::default(),
        }
    }

    /// A showtime's movie and layout, read once per instance.
    pub(crate) async fn showtime_facts(&self, id: Uuid) -> Result<Option<ShowtimeFacts>, Error> {
        let cached = self
            .facts
            .lock()
            .map(|facts| facts.get(&id).cloned())
            .unwrap_or_default();
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(showtime) = self.showtime(id).await? else {
            return Ok(None);
        };
        let facts = ShowtimeFacts {
            movie_id: showtime.movie_id,
            layout_id: showtime.layout_id,
        };
        if let Ok(mut cache) = self.facts.lock() {
            if cache.len() >= FACTS_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(id, facts.clone());
        }
        Ok(Some(facts))
    }

    /// The layout a showtime is sold under, by its content hash.
    pub(crate) async fn layout_by_id(
        &self,
        showtime: Uuid,
        layout_id: &str,
    ) -> Result<Arc<SeatLayout>, Error> {
        let cached = self
            .layouts
            .lock()
            .map(|layouts| layouts.get(layout_id).cloned())
            .unwrap_or_default();
        if let Some(layout) = cached {
            return Ok(layout);
        }
        let server = &self
            .cluster
            .route_hash(ids::scoped_route_hash(showtime))?
            .primary;
        let layout = showtimes::layout(&server.get().await?, layout_id)
            .await
            .map_err(|err| rejected(server, err))?
            .ok_or(Error::NotFound {
                what: "showtime",
                id: showtime,
            })?;
        let layout = Arc::new(layout);
        if let Ok(mut layouts) = self.layouts.lock() {
            if layouts.len() >= LAYOUT_CACHE_LIMIT {
                layouts.clear();
            }
            layouts.insert(layout_id.to_owned(), Arc::clone(&layout));
        }
        Ok(layout)
    }

    /// Opens a transaction on `client` with `movie` locked against a move,
    /// answering it and whether the movie's row is on this node. When the
    /// movie was fenced here (it moved), the transaction is dropped, the map
    /// reloaded, and `None` tells the caller to retry on the new node.
    pub(crate) async fn begin_on_movie<'a>(
        &self,
        client: &'a mut deadpool_postgres::Client,
        server: &Server,
        movie: Uuid,
        exclusive: bool,
        attempt: &mut u32,
    ) -> Result<Option<(deadpool_postgres::Transaction<'a>, bool)>, Error> {
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(server, err))?;
        match movies::lock_unfenced(&transaction, movie, exclusive)
            .await
            .map_err(|err| rejected(server, err))?
        {
            Ok(exists) => Ok(Some((transaction, exists))),
            Err(moved_to) => {
                drop(transaction);
                self.after_stale_route(server, format!("movie {movie}"), moved_to, attempt)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Runs `work` in one transaction on the node of `route` (a scoped id of
    /// `movie`) with the movie locked against a move. A movie fenced there
    /// has moved: the map is reloaded and the work retried on its new node,
    /// so nothing is ever written on the wrong one.
    pub(crate) async fn in_movie_transaction<T>(
        &self,
        route: Uuid,
        movie: Uuid,
        work: impl for<'t> Fn(
            &'t deadpool_postgres::Transaction<'t>,
        ) -> futures::future::BoxFuture<
            't,
            Result<Outcome<T>, tokio_postgres::Error>,
        >,
    ) -> Result<T, Error> {
        let mut attempt = 0;
        loop {
            let server = &self
                .cluster
                .route_hash(ids::scoped_route_hash(route))?
                .primary;
            let mut client = server.get().await?;
            let Some((transaction, _)) = self
                .begin_on_movie(&mut client, server, movie, false, &mut attempt)
                .await?
            else {
                continue;
            };
            let outcome = work(&transaction)
                .await
                .map_err(|err| rejected(server, err))?;
            return match outcome {
                Outcome::Commit(value) => {
                    transaction
                        .commit()
                        .await
                        .map_err(|err| rejected(server, err))?;
                    Ok(value)
                }
                Outcome::Rollback(value) => Ok(value),
            };
        }
    }

    /// Opens a transaction on `client` with a key's root row locked against
    /// a rebalance's fence. When the key was fenced here (it moved), the
    /// transaction is dropped, the map reloaded, and `None` tells the caller
    /// to retry on the new node.
    async fn begin_on_key<'a>(
        &self,
        client: &'a mut deadpool_postgres::Client,
        server: &Server,
        key: &KeyLock<'_>,
        attempt: &mut u32,
    ) -> Result<Option<deadpool_postgres::Transaction<'a>>, Error> {
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(server, err))?;
        match lock_key(&transaction, key)
            .await
            .map_err(|err| rejected(server, err))?
        {
            None => Ok(Some(transaction)),
            Some(moved_to) => {
                drop(transaction);
                self.after_stale_route(server, key.describe(), moved_to, attempt)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Runs `work` in one transaction on the node that owns a theater, an
    /// account or an email index entry, with the key's root row locked
    /// against a rebalance's fence. A key fenced there has moved: the map
    /// is reloaded and the work retried on its new node, so nothing is ever
    /// written on the wrong one.
    pub(crate) async fn in_key_transaction<T>(
        &self,
        key: KeyLock<'_>,
        work: impl for<'t> Fn(
            &'t deadpool_postgres::Transaction<'t>,
            &'t Server,
        ) -> futures::future::BoxFuture<'t, Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut attempt = 0;
        loop {
            let server = &self.cluster.route_hash(key.hash)?.primary;
            let mut client = server.get().await?;
            let Some(transaction) = self
                .begin_on_key(&mut client, server, &key, &mut attempt)
                .await?
            else {
                continue;
            };
            let value = work(&transaction, server).await?;
            transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err))?;
            return Ok(value);
        }
    }

    /// Runs one statement, after the key's lock, on the node that owns the
    /// key; see [`Self::in_key_transaction`].
    pub(crate) async fn write_key(
        &self,
        key: KeyLock<'_>,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let mut attempt = 0;
        loop {
            let server = &self.cluster.route_hash(key.hash)?.primary;
            let mut client = server.get().await?;
            let Some(transaction) = self
                .begin_on_key(&mut client, server, &key, &mut attempt)
                .await?
            else {
                continue;
            };
            let statement = transaction
                .prepare_cached(sql)
                .await
                .map_err(|err| rejected(server, err))?;
            let rows = transaction
                .query(&statement, params)
                .await
                .map_err(|err| rejected(server, err))?;
            transaction
                .commit()
                .await
                .map_err(|err| rejected(server, err))?;
            return Ok(rows);
        }
    }

    /// Runs one read on the node that owns a key, then makes sure that
    /// node has not fenced it: a node whose copy moved away answers as if
    /// the key had nothing, so its answer only stands when no fence is
    /// there. The fence is read after the data, so a copy deleted in
    /// between is never mistaken for an empty one.
    pub(crate) async fn read_key(
        &self,
        hash: u64,
        kind: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let mut attempt = 0;
        loop {
            let server = &self.cluster.route_hash(hash)?.primary;
            let client = server.get().await?;
            let (statement, fence) = futures::try_join!(
                client.prepare_cached(sql),
                client.prepare_cached(key_data::FENCE),
            )
            .map_err(|err| rejected(server, err))?;
            // Sent together and run in order, in one round trip: the fence
            // is read after the data.
            let stored = key_data::stored_hash(hash);
            let fence_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&stored];
            let (rows, fence) = futures::try_join!(
                client.query(&statement, params),
                client.query_opt(&fence, &fence_params),
            )
            .map_err(|err| rejected(server, err))?;
            match fence {
                None => return Ok(rows),
                Some(fence) => {
                    self.after_stale_route(
                        server,
                        format!("{kind} with routing hash {hash:016x}"),
                        fence.get(0),
                        &mut attempt,
                    )
                    .await?
                }
            }
        }
    }

    /// Whether the node behind `client` still owns a key it was just read
    /// from: false, after reloading the map, when the node has fenced the
    /// key, and the caller reads again where it moved.
    pub(crate) async fn still_owns(
        &self,
        client: &deadpool_postgres::Client,
        server: &Server,
        hash: u64,
        kind: &'static str,
        attempt: &mut u32,
    ) -> Result<bool, Error> {
        match key_data::fenced(client, hash)
            .await
            .map_err(|err| rejected(server, err))?
        {
            None => Ok(true),
            Some(moved_to) => {
                self.after_stale_route(
                    server,
                    format!("{kind} with routing hash {hash:016x}"),
                    moved_to,
                    attempt,
                )
                .await?;
                Ok(false)
            }
        }
    }

    /// The schema this deployment's tables live in on every node; it
    /// also names the deployment in the change stream.
    pub fn schema(&self) -> &str {
        &self.schema
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

        self.register_nodes().await?;
        Ok(report)
    }

    /// Adds configured nodes missing from the registry and, if any were
    /// added, bumps the map version in the same transaction. The first
    /// nodes of a new cluster start active; a node added later joins with
    /// no keys, because making it own slots without moving their data would
    /// strand every row on those slots.
    async fn register_nodes(&self) -> Result<(), Error> {
        let catalog = self.cluster.catalog();
        let mut client = catalog.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(|err| rejected(catalog, err))?;
        // The map row serialises concurrent registrations.
        transaction
            .execute("select version from shard_map for update", &[])
            .await
            .map_err(|err| rejected(catalog, err))?;
        let existing: i64 = transaction
            .query_one("select count(*) from shard_nodes", &[])
            .await
            .map_err(|err| rejected(catalog, err))?
            .get(0);
        let state = if existing == 0 { "active" } else { "joining" };
        let mut added = 0;
        for shard in self.cluster.shards() {
            added += transaction
                .execute(
                    "insert into shard_nodes (name, state) values ($1, $2) on conflict (name) do nothing",
                    &[&shard.id().as_str(), &state],
                )
                .await
                .map_err(|err| rejected(catalog, err))?;
        }
        if added > 0 {
            bump_map_version(&transaction)
                .await
                .map_err(|err| rejected(catalog, err))?;
        }
        transaction
            .commit()
            .await
            .map_err(|err| rejected(catalog, err))
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

    /// The catalog's node registry and map version.
    pub async fn shard_map(&self) -> Result<ShardMap, Error> {
        let catalog = self.cluster.catalog();
        let client = catalog.get().await?;
        let version: i64 = client
            .query_one("select version from shard_map", &[])
            .await
            .map_err(|err| rejected(catalog, err))?
            .get(0);
        let nodes = client
            .query(
                "select name, weight, state from shard_nodes order by name",
                &[],
            )
            .await
            .map_err(|err| rejected(catalog, err))?
            .iter()
            .map(|row| NodeRecord {
                name: row.get(0),
                weight: row.get(1),
                state: row.get(2),
            })
            .collect();
        Ok(ShardMap { version, nodes })
    }

    /// Replaces routing with the catalog's shard map (node registry and
    /// per-movie overrides), so every instance places data the same way
    /// whatever order its configuration lists nodes.
    pub async fn load_placement(&self) -> Result<(), Error> {
        let map = self.shard_map().await?;
        for node in &map.nodes {
            if self.cluster.shard(&NodeId::new(&node.name)).is_err() {
                return Err(Error::UnconfiguredNode {
                    node: node.name.clone(),
                });
            }
        }
        let catalog = self.cluster.catalog();
        let client = catalog.get().await?;
        let mut overrides = client
            .query("select movie_id, node from movie_overrides", &[])
            .await
            .map_err(|err| rejected(catalog, err))?
            .iter()
            .map(|row| {
                let movie: Uuid = row.get(0);
                let node: String = row.get(1);
                (marquee_sharding::ids::route_hash(movie), NodeId::new(node))
            })
            .collect::<HashMap<u64, NodeId>>();
        let pins = client
            .query("select hash, node from route_pins", &[])
            .await
            .map_err(|err| rejected(catalog, err))?;
        for row in pins {
            let (hash, node): (i64, String) = (row.get(0), row.get(1));
            overrides
                .entry(u64::from_ne_bytes(hash.to_ne_bytes()))
                .or_insert_with(|| NodeId::new(node));
        }
        self.cluster.set_routing(Routing {
            version: map.version,
            placement: map.placement(),
            overrides,
        })?;
        Ok(())
    }

    /// What each shard primary holds and how busy it is, in shard order.
    pub async fn node_loads(&self) -> Result<Vec<NodeLoad>, Error> {
        try_join_all(self.cluster.shards().iter().map(|shard| async move {
            let client = shard.primary.get().await?;
            let row = client
                .query_one(
                    "select (select count(*) from movies), (select count(*) from showtimes), \
                         (select count(*) from seat_states), (select count(*) from orders), \
                         (select count(*) from orders where status = 'confirmed' \
                             and confirmed_at > now() - interval '60 seconds'), \
                         (select count(*) from theaters), (select count(*) from users)",
                    &[],
                )
                .await
                .map_err(|err| rejected(&shard.primary, err))?;
            let recent: i64 = row.get(4);
            Ok::<_, Error>(NodeLoad {
                node: shard.id().clone(),
                movies: row.get(0),
                showtimes: row.get(1),
                seat_states: row.get(2),
                orders: row.get(3),
                theaters: row.get(5),
                accounts: row.get(6),
                bookings_per_second: recent as f64 / 60.0,
            })
        }))
        .await
    }

    /// Every movie id on each shard primary, for planning moves.
    pub async fn movie_ids(&self) -> Result<Vec<(NodeId, Vec<Uuid>)>, Error> {
        try_join_all(self.cluster.shards().iter().map(|shard| async move {
            let client = shard.primary.get().await?;
            let ids = client
                .query("select id from movies", &[])
                .await
                .map_err(|err| rejected(&shard.primary, err))?
                .iter()
                .map(|row| row.get(0))
                .collect();
            Ok::<_, Error>((shard.id().clone(), ids))
        }))
        .await
    }

    pub(crate) fn movie_primary(&self, id: Uuid) -> Result<&Server, Error> {
        Ok(&self.cluster.route(id.as_bytes())?.primary)
    }

    /// The node that owns a movie, for logs and admin views.
    pub fn movie_node(&self, id: Uuid) -> Result<NodeId, Error> {
        Ok(self.movie_primary(id)?.node().clone())
    }

    /// Writes a movie on the node that owns it. A node that has fenced the
    /// movie (it moved) refuses; the shard map is reloaded and the write
    /// retried where the movie now lives.
    pub async fn upsert_movie(&self, movie: &NewMovie) -> Result<Movie, Error> {
        let mut attempt = 0;
        loop {
            let server = self.movie_primary(movie.id)?;
            let mut client = server.get().await?;
            let transaction = client
                .transaction()
                .await
                .map_err(|err| rejected(server, err))?;
            let outcome = movies::upsert_unless_fenced(&transaction, movie)
                .await
                .map_err(|err| rejected(server, err))?;
            match outcome {
                Ok(stored) => {
                    // The movie's row is locked until commit, and scheduling
                    // a showtime takes a share lock on it, so no showtime can
                    // slip in before the release date checked here.
                    if let Some(release) = stored.release_date {
                        let first = crate::showtimes::first_start(&transaction, movie.id)
                            .await
                            .map_err(|err| rejected(server, err))?;
                        if let Some(first) = first.filter(|first| first.date_naive() < release) {
                            return Err(Error::Conflict(format!(
                                "movie {} has a showtime on {}, before the new release date {release}; \
                                 move or delete it first",
                                movie.id,
                                first.date_naive()
                            )));
                        }
                    }
                    transaction
                        .commit()
                        .await
                        .map_err(|err| rejected(server, err))?;
                    return Ok(stored);
                }
                Err(moved_to) => {
                    drop(transaction);
                    self.after_stale_route(
                        server,
                        format!("movie {}", movie.id),
                        moved_to,
                        &mut attempt,
                    )
                    .await?;
                }
            }
        }
    }

    pub async fn movie(&self, id: Uuid) -> Result<Option<Movie>, Error> {
        let mut attempt = 0;
        loop {
            let server = self.movie_primary(id)?;
            let client = server.get().await?;
            if let Some(movie) = movies::get(&client, id)
                .await
                .map_err(|err| rejected(server, err))?
            {
                return Ok(Some(movie));
            }
            match movies::fenced(&client, id)
                .await
                .map_err(|err| rejected(server, err))?
            {
                None => return Ok(None),
                Some(moved_to) => {
                    self.after_stale_route(server, format!("movie {id}"), moved_to, &mut attempt)
                        .await?
                }
            }
        }
    }

    /// Reloads the shard map after a node refused a key it no longer owns.
    /// A move's cut-over lands in the catalog moments after the fence, so a
    /// few short waits cover it; past those the refusal stands.
    pub(crate) async fn after_stale_route(
        &self,
        server: &Server,
        key: String,
        moved_to: String,
        attempt: &mut u32,
    ) -> Result<(), Error> {
        const ATTEMPTS: u32 = 5;
        *attempt += 1;
        if *attempt >= ATTEMPTS {
            return Err(Error::StaleMap {
                component: server.component(),
                key,
                moved_to,
            });
        }
        tracing::debug!(%key, node = %server.node(), %moved_to, "stale shard map; reloading");
        if *attempt > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(20 << *attempt)).await;
        }
        self.load_placement().await
    }

    /// Writes many movies, grouped by shard, one transaction per shard and
    /// batch. `progress` is told how many rows each committed batch held. A
    /// movie fenced on its node fails the batch; running it again routes by
    /// the reloaded map.
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
        let outcome = try_join_all(by_node.into_iter().map(|(node, mut movies)| async move {
            let server = &self.cluster.shard(&node)?.primary;
            // Rows are written in id order, so two writers of the same
            // movies wait for each other in one order and cannot deadlock.
            movies.sort_by_key(|movie| movie.id);
            crate::retry::on_contention(|| async {
                let mut client = server.get().await?;
                let transaction = client
                    .transaction()
                    .await
                    .map_err(|err| rejected(server, err))?;
                for movie in &movies {
                    if let Err(moved_to) = movies::upsert_unless_fenced(&transaction, movie)
                        .await
                        .map_err(|err| rejected(server, err))?
                    {
                        return Err(Error::StaleMap {
                            component: server.component(),
                            key: format!("movie {}", movie.id),
                            moved_to,
                        });
                    }
                }
                transaction
                    .commit()
                    .await
                    .map_err(|err| rejected(server, err))
            })
            .await?;
            progress(movies.len());
            Ok::<_, Error>(())
        }))
        .await;
        if outcome.is_err() {
            self.load_placement().await?;
        }
        outcome.map(|_| ())
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

/// Bumps the shard map's version inside a catalog transaction that changes
/// placement, and returns the new version.
pub(crate) async fn bump_map_version(
    transaction: &deadpool_postgres::Transaction<'_>,
) -> Result<i64, tokio_postgres::Error> {
    let row = transaction
        .query_one(
            "update shard_map set version = version + 1, changed_at = now() returning version",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// A refusal by the database stays a refusal, and contention with another
/// transaction says so; a broken connection means the node is unavailable,
/// which callers retry or report as such.
pub(crate) fn rejected(server: &Server, err: tokio_postgres::Error) -> Error {
    if crate::retry::is_contention(&err) {
        return Error::Contended {
            component: server.component(),
            message: err
                .as_db_error()
                .map_or_else(|| err.to_string(), |db| db.message().to_owned()),
        };
    }
    match err.as_db_error() {
        Some(db) => Error::Rejected {
            component: server.component(),
            message: db.message().to_owned(),
        },
        None => Error::Shard(server.query_error(err)),
    }
}
