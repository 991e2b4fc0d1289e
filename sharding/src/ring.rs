//! Consistent hashing with virtual nodes.
//!
//! Every node owns `vnodes_per_weight * weight` points on a 64-bit circle; a
//! key belongs to the first point at or after its hash. Adding a node moves
//! only the keys that now fall on its points, about `1/(N+1)` of them.
//!
//! The hash is SipHash-1-3 with fixed keys, never `RandomState`: placement
//! must be identical in every process and every release, so the keys below are
//! part of the on-disk format and must never change.

use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

use siphasher::sip::SipHasher13;

const SIP_KEY_0: u64 = 0x6d61_7271_7565_6500; // "marquee\0"
const SIP_KEY_1: u64 = 0x7368_6172_6469_6e67; // "sharding"

/// Virtual nodes per unit of weight; 512 keeps the busiest node within a few
/// percent of the mean at the brief's scale (see the balance property test).
pub const DEFAULT_VNODES_PER_WEIGHT: u32 = 512;

/// The name of a shard node, such as `shard-0`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(Arc::from(name.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes a routing key (the bytes of an id) onto the circle.
pub fn hash_key(key: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(SIP_KEY_0, SIP_KEY_1);
    hasher.write(key);
    hasher.finish()
}

fn vnode_point(node: &NodeId, replica: u32) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(SIP_KEY_0, SIP_KEY_1);
    hasher.write(node.as_str().as_bytes());
    hasher.write_u8(b'#');
    hasher.write_u32(replica);
    hasher.finish()
}

/// An immutable ring; build a new one when membership or weights change.
#[derive(Clone)]
pub struct HashRing {
    points: Vec<u64>,
    owners: Vec<u32>,
    nodes: Vec<NodeId>,
}

impl fmt::Debug for HashRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashRing")
            .field("nodes", &self.nodes)
            .field("points", &self.points.len())
            .finish()
    }
}

impl HashRing {
    /// Builds a ring from `(node, weight)` pairs. Nodes with weight 0 own no
    /// keys, which is how a draining node is taken out of placement.
    pub fn new(nodes: impl IntoIterator<Item = (NodeId, u32)>, vnodes_per_weight: u32) -> Self {
        let mut members: Vec<(NodeId, u32)> = nodes.into_iter().collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        members.dedup_by(|a, b| a.0 == b.0);

        let mut ring: Vec<(u64, u32)> = Vec::new();
        for (index, (node, weight)) in members.iter().enumerate() {
            let owner = u32::try_from(index).unwrap_or(u32::MAX);
            for replica in 0..weight.saturating_mul(vnodes_per_weight) {
                ring.push((vnode_point(node, replica), owner));
            }
        }
        // Ties between points of different nodes are broken by node order, so
        // the ring is the same whatever order the nodes were given in.
        ring.sort_unstable();
        ring.dedup_by_key(|(point, _)| *point);

        Self {
            points: ring.iter().map(|(point, _)| *point).collect(),
            owners: ring.iter().map(|(_, owner)| *owner).collect(),
            nodes: members.into_iter().map(|(node, _)| node).collect(),
        }
    }

    /// Every node known to the ring, including those with weight 0.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The node owning a hashed key, or `None` when no node has weight.
    pub fn route_hash(&self, hash: u64) -> Option<&NodeId> {
        if self.points.is_empty() {
            return None;
        }
        let slot = self.points.partition_point(|point| *point < hash);
        let slot = if slot == self.points.len() { 0 } else { slot };
        self.nodes.get(self.owners[slot] as usize)
    }

    /// The node owning a routing key.
    pub fn route(&self, key: &[u8]) -> Option<&NodeId> {
        self.route_hash(hash_key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn ring_of(count: usize) -> HashRing {
        HashRing::new(
            (0..count).map(|i| (NodeId::new(format!("shard-{i}")), 1)),
            DEFAULT_VNODES_PER_WEIGHT,
        )
    }

    #[test]
    fn known_keys_keep_their_placement_across_releases() {
        let ring = ring_of(3);
        let placements: Vec<(u64, &str)> = (0u64..8)
            .map(|key| {
                (
                    key,
                    ring.route(&key.to_be_bytes()).map_or("", NodeId::as_str),
                )
            })
            .collect();
        assert_eq!(hash_key(b"movie-42"), 6_202_746_924_280_562_621);
        assert_eq!(
            placements,
            vec![
                (0, "shard-2"),
                (1, "shard-1"),
                (2, "shard-1"),
                (3, "shard-2"),
                (4, "shard-0"),
                (5, "shard-0"),
                (6, "shard-0"),
                (7, "shard-1"),
            ]
        );
    }

    #[test]
    fn node_order_does_not_change_placement() {
        let forward = ring_of(5);
        let backward = HashRing::new(
            (0..5).rev().map(|i| (NodeId::new(format!("shard-{i}")), 1)),
            DEFAULT_VNODES_PER_WEIGHT,
        );
        for key in 0u64..10_000 {
            assert_eq!(
                forward.route(&key.to_le_bytes()),
                backward.route(&key.to_le_bytes())
            );
        }
    }

    #[test]
    fn an_empty_ring_routes_nowhere() {
        let ring = HashRing::new(Vec::new(), DEFAULT_VNODES_PER_WEIGHT);
        assert!(ring.route(b"anything").is_none());
    }

    #[test]
    fn a_zero_weight_node_owns_no_keys() {
        let ring = HashRing::new(
            [(NodeId::new("a"), 1), (NodeId::new("draining"), 0)],
            DEFAULT_VNODES_PER_WEIGHT,
        );
        for key in 0u64..10_000 {
            assert_eq!(
                ring.route(&key.to_le_bytes()).map(NodeId::as_str),
                Some("a")
            );
        }
    }

    #[test]
    fn the_busiest_node_holds_at_most_ten_percent_over_the_mean_of_a_million_keys() {
        let ring = ring_of(10);
        let mut counts: HashMap<&NodeId, u64> = HashMap::new();
        for key in 0u64..1_000_000 {
            if let Some(node) = ring.route(&key.to_le_bytes()) {
                *counts.entry(node).or_default() += 1;
            }
        }
        let max = counts.values().copied().max().unwrap_or(0) as f64;
        let mean = 1_000_000.0 / 10.0;
        assert!(
            max / mean <= 1.10,
            "busiest node holds {:.3}x the mean",
            max / mean
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn adding_a_node_moves_only_keys_onto_it(nodes in 2usize..12, seed in any::<u64>()) {
            let before = ring_of(nodes);
            let after = ring_of(nodes + 1);
            let added = NodeId::new(format!("shard-{nodes}"));
            let keys = 20_000u64;
            let mut moved = 0u64;
            for i in 0..keys {
                let key = (seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes();
                let (was, is) = (before.route(&key), after.route(&key));
                if was != is {
                    prop_assert_eq!(is, Some(&added));
                    moved += 1;
                }
            }
            let expected = keys as f64 / (nodes as f64 + 1.0);
            let ratio = moved as f64 / expected;
            prop_assert!((0.75..=1.25).contains(&ratio), "moved {moved}, expected about {expected:.0}");
        }
    }
}
