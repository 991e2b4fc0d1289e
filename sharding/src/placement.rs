//! Consistent hashing over a fixed set of slots.
//!
//! A key hashes to one of [`SLOTS`] slots; each slot belongs to the node with
//! the highest weighted rendezvous score for it. This is consistent hashing
//! with 2^18 virtual nodes shared by all members, and it keeps the properties
//! a ring has while fixing the ring's weak points:
//!
//! - balance: every node owns close to `weight / total` of the slots (with 70
//!   nodes, each owns ~3,700 slots, so the busiest is within a few percent of
//!   the mean), where a ring's random arcs need hundreds of points per node;
//! - movement: a new node takes exactly the slots it now wins, about
//!   `1/(N+1)` of them, from every other node in proportion; a node whose
//!   weight drops to 0 (draining) hands its slots to the others the same way;
//! - lookup: one hash and one array read, whatever the number of nodes.
//!
//! The hash is SipHash-1-3 with fixed keys, never `RandomState`: placement
//! must be identical in every process and every release, so the keys and
//! [`SLOTS`] are part of the on-disk format and must never change.

use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

use siphasher::sip::SipHasher13;

const SIP_KEY_0: u64 = 0x6d61_7271_7565_6500; // "marquee\0"
const SIP_KEY_1: u64 = 0x7368_6172_6469_6e67; // "sharding"

/// Slots are addressed by the top bits of a key's hash.
const SLOT_BITS: u32 = 18;

/// The number of slots keys are spread over.
pub const SLOTS: usize = 1 << SLOT_BITS;

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

/// Hashes a routing key (the bytes of an id).
pub fn hash_key(key: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(SIP_KEY_0, SIP_KEY_1);
    hasher.write(key);
    hasher.finish()
}

/// The slot a hashed key falls in.
fn slot_of(hash: u64) -> usize {
    (hash >> (64 - SLOT_BITS)) as usize
}

/// Weighted rendezvous score of a node for a slot: the node with the highest
/// score owns the slot. `weight / -ln(u)` with `u` uniform in (0, 1) makes a
/// node win in proportion to its weight.
fn score(node: &NodeId, slot: u32, weight: u32) -> f64 {
    let mut hasher = SipHasher13::new_with_keys(SIP_KEY_0, SIP_KEY_1);
    hasher.write(node.as_str().as_bytes());
    hasher.write_u8(0xff);
    hasher.write_u32(slot);
    let uniform = ((hasher.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -uniform.ln()
}

/// Which node owns each slot; immutable, rebuilt when membership changes.
#[derive(Clone)]
pub struct Placement {
    owners: Vec<u16>,
    nodes: Vec<NodeId>,
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Placement")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// A slot nobody owns: every node has weight 0.
const UNOWNED: u16 = u16::MAX;

impl Placement {
    /// Builds the slot table from `(node, weight)` pairs. Nodes with weight 0
    /// own nothing, which is how a draining node leaves placement. At most
    /// 65,535 nodes; extra nodes are ignored.
    pub fn new(nodes: impl IntoIterator<Item = (NodeId, u32)>) -> Self {
        let mut members: Vec<(NodeId, u32)> = nodes.into_iter().collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        members.dedup_by(|a, b| a.0 == b.0);
        members.truncate(usize::from(UNOWNED));

        let owners = (0..SLOTS as u32)
            .map(|slot| {
                members
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, weight))| *weight > 0)
                    .map(|(index, (node, weight))| (score(node, slot, *weight), index))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map_or(UNOWNED, |(_, index)| index as u16)
            })
            .collect();
        Self {
            owners,
            nodes: members.into_iter().map(|(node, _)| node).collect(),
        }
    }

    /// Every node known to the placement, including those with weight 0.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The node owning a hashed key, or `None` when no node has weight.
    pub fn route_hash(&self, hash: u64) -> Option<&NodeId> {
        self.nodes.get(usize::from(self.owners[slot_of(hash)]))
    }

    /// The node owning a routing key.
    pub fn route(&self, key: &[u8]) -> Option<&NodeId> {
        self.route_hash(hash_key(key))
    }

    /// How many slots each node owns, in node order.
    pub fn slot_counts(&self) -> Vec<(NodeId, usize)> {
        let mut counts = vec![0usize; self.nodes.len()];
        for owner in &self.owners {
            if let Some(count) = counts.get_mut(usize::from(*owner)) {
                *count += 1;
            }
        }
        self.nodes.iter().cloned().zip(counts).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn placement_of(count: usize) -> Placement {
        Placement::new((0..count).map(|i| (NodeId::new(format!("shard-{i}")), 1)))
    }

    fn key(i: u64) -> [u8; 8] {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes()
    }

    #[test]
    fn known_keys_keep_their_placement_across_releases() {
        let placement = placement_of(3);
        let placements: Vec<(u64, &str)> = (0u64..8)
            .map(|key| {
                (
                    key,
                    placement
                        .route(&key.to_be_bytes())
                        .map_or("", NodeId::as_str),
                )
            })
            .collect();
        assert_eq!(hash_key(b"movie-42"), 6_202_746_924_280_562_621);
        assert_eq!(
            placements,
            vec![
                (0, "shard-2"),
                (1, "shard-0"),
                (2, "shard-1"),
                (3, "shard-2"),
                (4, "shard-1"),
                (5, "shard-0"),
                (6, "shard-1"),
                (7, "shard-0"),
            ]
        );
    }

    #[test]
    fn node_order_does_not_change_placement() {
        let forward = placement_of(5);
        let backward = Placement::new((0..5).rev().map(|i| (NodeId::new(format!("shard-{i}")), 1)));
        for i in 0..10_000 {
            assert_eq!(forward.route(&key(i)), backward.route(&key(i)));
        }
    }

    #[test]
    fn no_weighted_node_means_no_route() {
        assert!(Placement::new(Vec::new()).route(b"anything").is_none());
        assert!(Placement::new([(NodeId::new("a"), 0)])
            .route(b"anything")
            .is_none());
    }

    #[test]
    fn a_zero_weight_node_owns_no_keys() {
        let placement = Placement::new([(NodeId::new("a"), 1), (NodeId::new("draining"), 0)]);
        for i in 0..10_000 {
            assert_eq!(placement.route(&key(i)).map(NodeId::as_str), Some("a"));
        }
    }

    #[test]
    fn a_node_with_double_weight_owns_about_twice_the_slots() {
        let placement = Placement::new([(NodeId::new("big"), 2), (NodeId::new("small"), 1)]);
        let counts: HashMap<String, usize> = placement
            .slot_counts()
            .into_iter()
            .map(|(node, count)| (node.to_string(), count))
            .collect();
        let ratio = counts["big"] as f64 / counts["small"] as f64;
        assert!((1.9..=2.1).contains(&ratio), "big/small = {ratio:.3}");
    }

    fn busiest_over_mean(nodes: usize, keys: u64) -> f64 {
        let placement = placement_of(nodes);
        let mut counts: HashMap<&NodeId, u64> = HashMap::new();
        for i in 0..keys {
            if let Some(node) = placement.route(&key(i)) {
                *counts.entry(node).or_default() += 1;
            }
        }
        counts.values().copied().max().unwrap_or(0) as f64 / (keys as f64 / nodes as f64)
    }

    #[test]
    fn the_busiest_node_holds_at_most_ten_percent_over_the_mean_of_a_million_keys() {
        for nodes in [3, 20, 70] {
            let ratio = busiest_over_mean(nodes, 1_000_000);
            assert!(
                ratio <= 1.10,
                "{nodes} nodes: busiest holds {ratio:.3}x the mean"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn adding_a_node_moves_a_share_of_one_over_n_plus_one_and_only_onto_it(nodes in 2usize..40, seed in any::<u64>()) {
            let before = placement_of(nodes);
            let after = placement_of(nodes + 1);
            let added = NodeId::new(format!("shard-{nodes}"));
            let keys = 1_000_000u64;
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
            prop_assert!((0.90..=1.10).contains(&ratio), "moved {}, expected about {:.0}", moved, expected);
        }

        #[test]
        fn draining_a_node_moves_only_its_own_keys(nodes in 2usize..20, drained in 0usize..20) {
            let drained = drained % nodes;
            let before = placement_of(nodes);
            let after = Placement::new((0..nodes).map(|i| (NodeId::new(format!("shard-{i}")), u32::from(i != drained))));
            let gone = NodeId::new(format!("shard-{drained}"));
            for i in 0..100_000 {
                let (was, is) = (before.route(&key(i)), after.route(&key(i)));
                if was != is {
                    prop_assert_eq!(was, Some(&gone));
                }
                prop_assert_ne!(is, Some(&gone));
            }
        }
    }
}
