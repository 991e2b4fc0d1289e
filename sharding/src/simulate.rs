//! Balance and movement of placement at a given scale, without a cluster:
//! what `marquee shards simulate` prints.

use crate::placement::{NodeId, Placement};

/// How evenly keys spread over nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    pub nodes: usize,
    pub keys: u64,
    /// Keys on the busiest node over the mean.
    pub max_over_mean: f64,
    /// Keys on the idlest node over the mean.
    pub min_over_mean: f64,
}

/// What adding nodes moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Movement {
    pub from_nodes: usize,
    pub to_nodes: usize,
    /// Share of keys that changed node.
    pub moved: f64,
    /// The least any scheme must move: the new nodes' fair share.
    pub ideal: f64,
    /// Keys that moved between two nodes that both existed before.
    pub moved_between_old_nodes: u64,
}

pub fn node_names(count: usize) -> Vec<(NodeId, u32)> {
    (0..count)
        .map(|i| (NodeId::new(format!("node-{i:03}")), 1))
        .collect()
}

/// Keys spread like real ids: distinct and well mixed.
fn key(i: u64) -> [u8; 8] {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes()
}

pub fn balance(placement: &Placement, keys: u64) -> Balance {
    let nodes = placement.nodes();
    let mut counts = vec![0u64; nodes.len()];
    for i in 0..keys {
        if let Some(node) = placement.route(&key(i)) {
            if let Ok(index) = nodes.binary_search(node) {
                counts[index] += 1;
            }
        }
    }
    let mean = keys as f64 / nodes.len().max(1) as f64;
    Balance {
        nodes: nodes.len(),
        keys,
        max_over_mean: counts.iter().copied().max().unwrap_or(0) as f64 / mean,
        min_over_mean: counts.iter().copied().min().unwrap_or(0) as f64 / mean,
    }
}

pub fn movement(before: &Placement, after: &Placement, keys: u64) -> Movement {
    let old: Vec<&NodeId> = before.nodes().iter().collect();
    let mut moved = 0u64;
    let mut between_old = 0u64;
    for i in 0..keys {
        let (was, is) = (before.route(&key(i)), after.route(&key(i)));
        if was != is {
            moved += 1;
            if is.is_some_and(|node| old.contains(&node)) {
                between_old += 1;
            }
        }
    }
    let (from, to) = (before.nodes().len(), after.nodes().len());
    Movement {
        from_nodes: from,
        to_nodes: to,
        moved: moved as f64 / keys as f64,
        ideal: to.saturating_sub(from) as f64 / to.max(1) as f64,
        moved_between_old_nodes: between_old,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_from_four_to_five_nodes_moves_a_fifth_and_nothing_between_old_nodes() {
        let before = Placement::new(node_names(4));
        let after = Placement::new(node_names(5));

        let report = movement(&before, &after, 200_000);

        assert_eq!(report.moved_between_old_nodes, 0);
        assert!(
            (report.moved / report.ideal - 1.0).abs() < 0.1,
            "{report:?}"
        );
    }

    #[test]
    fn balance_reports_the_spread_around_the_mean() {
        let report = balance(&Placement::new(node_names(8)), 400_000);

        assert!(
            report.max_over_mean >= 1.0 && report.max_over_mean < 1.1,
            "{report:?}"
        );
        assert!(
            report.min_over_mean <= 1.0 && report.min_over_mean > 0.9,
            "{report:?}"
        );
    }
}
