use std::collections::BTreeMap;
use std::sync::Arc;

use marquee_sharding::config::is_node_name;
use marquee_sharding::placement::SLOTS;
use marquee_sharding::{NodeId, Placement};
use marquee_storage::NodeRecord;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use crate::auth::AdminOnly;
use crate::body::{JsonBody, Validate};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;

#[derive(Debug)]
pub struct ShardsApi;

/// A shard node: its place in the map and what it holds.
#[derive(Debug, Object)]
struct NodeView {
    name: String,
    /// Relative share of keys; 0 while draining.
    weight: i32,
    /// `joining` (owns nothing yet), `active`, `draining` or `down`.
    state: String,
    /// Placement slots the node owns, out of `slots` in the map.
    slots: u64,
    /// Movies stored on the node's primary.
    movies: i64,
    showtimes: i64,
    /// Seats held, sold or blocked.
    seat_states: i64,
    orders: i64,
    theaters: i64,
    /// Accounts, erased ones included.
    accounts: i64,
    /// Orders confirmed over the last minute, per second.
    bookings_per_second: f64,
}

/// A node as a plan leaves it.
#[derive(Debug, Object)]
struct PlannedNode {
    name: String,
    weight: i32,
    state: String,
    slots: u64,
    /// Movies the node would hold.
    movies: i64,
}

/// The shard map in force and the load on each node.
#[derive(Debug, Object)]
struct ShardMapView {
    /// Incremented by every change to placement.
    version: i64,
    /// The number of slots keys hash into.
    slots: u64,
    nodes: Vec<NodeView>,
}

/// A node to add in a plan.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct NodeAddition {
    /// A node configured on every instance and not yet active: absent from
    /// the map or `joining`.
    #[oai(validator(min_length = 1, max_length = 63, pattern = r"^[A-Za-z0-9-]+$"))]
    name: String,
    #[oai(
        default = "default_weight",
        validator(minimum(value = "1"), maximum(value = "100"))
    )]
    #[serde(default = "default_weight")]
    weight: i32,
}

fn default_weight() -> i32 {
    1
}

/// Changes to consider; nothing is changed by planning.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct PlanRequest {
    #[oai(default, validator(max_items = 64))]
    #[serde(default)]
    add: Vec<NodeAddition>,
    /// Nodes to drain: they keep serving until their data has moved, but
    /// receive no new keys.
    #[oai(default, validator(max_items = 64, unique_items))]
    #[serde(default)]
    drain: Vec<String>,
}

impl Validate for PlanRequest {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (index, name) in self.drain.iter().enumerate() {
            if self.drain[..index].contains(name) {
                errors.push(FieldError::new(
                    format!("drain[{index}]"),
                    "is listed twice",
                ));
            }
        }
        for (index, node) in self.add.iter().enumerate() {
            if !is_node_name(&node.name) {
                errors.push(FieldError::new(
                    format!("add[{index}].name"),
                    "must be letters, digits and dashes",
                ));
            }
            if !(1..=100).contains(&node.weight) {
                errors.push(FieldError::new(
                    format!("add[{index}].weight"),
                    "must be between 1 and 100",
                ));
            }
        }
        errors
    }
}

/// Movies and slots that would move from one node to another.
#[derive(Debug, Object)]
struct Transfer {
    from: String,
    to: String,
    slots: u64,
    movies: u64,
}

/// What a change would move; nothing has been changed.
#[derive(Debug, Object)]
struct Plan {
    /// The map version the plan was computed against.
    based_on_version: i64,
    transfers: Vec<Transfer>,
    movies_moving: u64,
    movies_total: u64,
    /// Theaters, accounts and email index entries that would move, each
    /// with its screens, sessions, mailed tokens and bookings index.
    keys_moving: u64,
    /// The map as it would be after the change.
    nodes_after: Vec<PlannedNode>,
}

fn slot_counts(placement: &Placement) -> BTreeMap<String, u64> {
    placement
        .slot_counts()
        .into_iter()
        .map(|(node, slots)| (node.to_string(), slots as u64))
        .collect()
}

#[OpenApi(tag = "ApiTags::Shards")]
impl ShardsApi {
    /// The shard map in force: version, nodes, their slots and their load.
    #[oai(path = "/v1/admin/shards", method = "get")]
    async fn shard_map(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
    ) -> Result<Json<ShardMapView>, ApiError> {
        let map = state.storage.shard_map().await?;
        let loads = state.storage.node_loads().await?;
        let slots = slot_counts(&map.placement());
        let nodes = map
            .nodes
            .into_iter()
            .map(|node| {
                let load = loads.iter().find(|load| load.node.as_str() == node.name);
                NodeView {
                    slots: slots.get(&node.name).copied().unwrap_or(0),
                    movies: load.map_or(0, |load| load.movies),
                    showtimes: load.map_or(0, |load| load.showtimes),
                    seat_states: load.map_or(0, |load| load.seat_states),
                    orders: load.map_or(0, |load| load.orders),
                    theaters: load.map_or(0, |load| load.theaters),
                    accounts: load.map_or(0, |load| load.accounts),
                    bookings_per_second: load.map_or(0.0, |load| load.bookings_per_second),
                    name: node.name,
                    weight: node.weight,
                    state: node.state,
                }
            })
            .collect();
        Ok(Json(ShardMapView {
            version: map.version,
            slots: SLOTS as u64,
            nodes,
        }))
    }

    /// A dry run: what adding or draining nodes would move, node by node.
    /// Nothing is changed; an empty request plans no change.
    #[oai(path = "/v1/admin/shards/plan", method = "post")]
    async fn plan(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        body: JsonBody<PlanRequest>,
    ) -> Result<Json<Plan>, ApiError> {
        let request = body.0;
        let map = state.storage.shard_map().await?;
        let after = apply_changes(&state, &map.nodes, &request)?;
        let keys_moving = state.storage.keys_moving(&after).await?;
        let before_placement = map.placement();
        let after_map = marquee_storage::ShardMap {
            version: map.version,
            nodes: after,
        };
        let after_placement = after_map.placement();
        let ids = state.storage.movie_ids().await?;
        let mut plan = tokio::task::spawn_blocking(move || {
            compute_plan(&before_placement, &after_map, &after_placement, &ids)
        })
        .await?;
        plan.keys_moving = keys_moving;
        Ok(Json(plan))
    }
}

/// The registry as it would be after the request. A node nobody configured
/// or that is not in the map, or a change that contradicts the map (a node
/// already active, draining every node), conflicts with the cluster: 409.
fn apply_changes(
    state: &AppState,
    nodes: &[NodeRecord],
    request: &PlanRequest,
) -> Result<Vec<NodeRecord>, ApiError> {
    let mut after = nodes.to_vec();
    for addition in &request.add {
        if state
            .storage
            .cluster()
            .shard(&NodeId::new(&addition.name))
            .is_err()
        {
            return Err(ApiError::conflict(format!(
                "node {} has no connection details in the configuration",
                addition.name
            )));
        }
        if after
            .iter()
            .any(|node| node.name == addition.name && node.state == "active")
        {
            return Err(ApiError::conflict(format!(
                "node {} is already active",
                addition.name
            )));
        }
        after.retain(|node| node.name != addition.name);
        after.push(NodeRecord {
            name: addition.name.clone(),
            weight: addition.weight,
            state: "active".to_owned(),
        });
    }
    for name in &request.drain {
        match after.iter_mut().find(|node| &node.name == name) {
            None => {
                return Err(ApiError::conflict(format!(
                    "node {name} is not in the shard map"
                )))
            }
            Some(node) => node.state = "draining".to_owned(),
        }
    }
    if after.iter().all(|node| node.effective_weight() == 0) {
        return Err(ApiError::conflict("the last active node cannot be drained"));
    }
    after.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(after)
}

/// Compares two placements slot by slot, and routes every stored movie
/// under the new one.
fn compute_plan(
    before: &Placement,
    after_map: &marquee_storage::ShardMap,
    after: &Placement,
    ids: &[(NodeId, Vec<uuid::Uuid>)],
) -> Plan {
    let mut transfers: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for slot in 0..SLOTS as u64 {
        let hash = slot << (64 - SLOTS.trailing_zeros());
        if let (Some(from), Some(to)) = (before.route_hash(hash), after.route_hash(hash)) {
            if from != to {
                transfers
                    .entry((from.to_string(), to.to_string()))
                    .or_default()
                    .0 += 1;
            }
        }
    }
    let (mut moving, mut total) = (0u64, 0u64);
    for (node, movies) in ids {
        for id in movies {
            total += 1;
            if let Some(to) = after.route(id.as_bytes()) {
                if to != node {
                    moving += 1;
                    transfers
                        .entry((node.to_string(), to.to_string()))
                        .or_default()
                        .1 += 1;
                }
            }
        }
    }
    let slots = slot_counts(after);
    Plan {
        based_on_version: after_map.version,
        transfers: transfers
            .into_iter()
            .map(|((from, to), (slots, movies))| Transfer {
                from,
                to,
                slots,
                movies,
            })
            .collect(),
        movies_moving: moving,
        movies_total: total,
        keys_moving: 0,
        nodes_after: after_map
            .nodes
            .iter()
            .map(|node| PlannedNode {
                name: node.name.clone(),
                weight: node.weight,
                state: node.state.clone(),
                slots: slots.get(&node.name).copied().unwrap_or(0),
                movies: ids
                    .iter()
                    .map(|(_, movies)| {
                        movies
                            .iter()
                            .filter(|id| {
                                after
                                    .route(id.as_bytes())
                                    .is_some_and(|n| n.as_str() == node.name)
                            })
                            .count() as i64
                    })
                    .sum(),
            })
            .collect(),
    }
}

/// Where to move a movie's data.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct PlacementRequest {
    /// An active node: a dedicated node for a hot movie, or the node its id
    /// hashes to, which removes the dedication.
    #[oai(validator(min_length = 1, max_length = 63, pattern = r"^[A-Za-z0-9-]+$"))]
    node: String,
}

impl Validate for PlacementRequest {
    fn validate(&self) -> Vec<FieldError> {
        if is_node_name(&self.node) {
            Vec::new()
        } else {
            vec![FieldError::new(
                "node",
                "must be letters, digits and dashes",
            )]
        }
    }
}

/// A completed rebalance.
#[derive(Debug, Object)]
struct RebalancedView {
    movies_moved: u64,
    /// Theaters, accounts and email index entries moved.
    keys_moved: u64,
    /// The shard map version with the new registry.
    map_version: i64,
}

/// A completed move.
#[derive(Debug, Object)]
struct MovedView {
    movie_id: uuid::Uuid,
    from: String,
    to: String,
    /// The shard map version that routes to the new node.
    map_version: i64,
}

#[OpenApi(tag = "ApiTags::Shards")]
impl PlacementApi {
    /// Executes a plan: moves every movie whose node changes, then every
    /// theater and account in batches, each while it keeps serving (a
    /// batch's writes wait while it is fenced and copied), then switches
    /// the registry in one step. New movies, theaters and accounts are
    /// refused with 503 until it finishes. Accepts the same body as the
    /// plan.
    #[oai(path = "/v1/admin/shards/rebalance", method = "post")]
    async fn rebalance(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        body: JsonBody<PlanRequest>,
    ) -> Result<Json<RebalancedView>, ApiError> {
        let map = state.storage.shard_map().await?;
        let after = apply_changes(&state, &map.nodes, &body.0)?;
        let done = state.storage.rebalance(after).await?;
        Ok(Json(RebalancedView {
            movies_moved: done.movies_moved,
            keys_moved: done.keys_moved,
            map_version: done.map_version,
        }))
    }

    /// Moves a movie's data to another node while it keeps serving: copy,
    /// fence writes, verify, cut over, clean up. Returns once the movie is
    /// served from the new node.
    #[oai(path = "/v1/admin/movies/:id/placement", method = "put")]
    async fn place_movie(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: poem_openapi::param::Path<uuid::Uuid>,
        body: JsonBody<PlacementRequest>,
    ) -> Result<Json<MovedView>, ApiError> {
        let node = NodeId::new(&body.0.node);
        if state.storage.cluster().shard(&node).is_err() {
            return Err(ApiError::conflict(format!("node {node} is not configured")));
        }
        let moved = state.storage.move_movie(id.0, node).await?;
        Ok(Json(MovedView {
            movie_id: moved.movie,
            from: moved.from.to_string(),
            to: moved.to.to_string(),
            map_version: moved.map_version,
        }))
    }
}

#[derive(Debug)]
pub struct PlacementApi;
