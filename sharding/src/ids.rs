//! Ids that carry their own routing.
//!
//! A showtime, hold or order lives with its movie, and the hot paths reach
//! it by id alone: no directory lookup, no scatter. Such a *scoped* id
//! starts with the 8-byte routing hash of its parent (the movie), so
//! routing it is one array read, and a movie pinned to a dedicated node
//! takes its children along, since overrides are keyed by that hash. The
//! other 8 bytes are random: a release-night storm creates thousands of
//! holds and orders of one movie per second, and 64 random bits keep their
//! ids apart where a timestamp would leave too few bits for randomness.
//!
//! Scoped ids are valid UUID strings but not RFC 9562 versions: every bit
//! of the prefix is needed for routing.

use uuid::Uuid;

use crate::placement::hash_key;

/// The routing hash of a top-level id (a movie, a theater, a user).
pub fn route_hash(id: Uuid) -> u64 {
    hash_key(id.as_bytes())
}

/// A new id routed with `parent`.
pub fn scoped(parent: Uuid) -> Uuid {
    let random = Uuid::new_v4();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&route_hash(parent).to_be_bytes());
    // Bytes 6 and 8 of a v4 UUID carry its version and variant bits.
    bytes[8..12].copy_from_slice(&random.as_bytes()[..4]);
    bytes[12..].copy_from_slice(&random.as_bytes()[12..]);
    Uuid::from_bytes(bytes)
}

/// A new id routed with the same parent as `sibling`, for children of
/// children (an order of a hold) whose parent id is not at hand.
pub fn sibling(sibling: Uuid) -> Uuid {
    let random = Uuid::new_v4();
    let mut bytes = *sibling.as_bytes();
    bytes[8..12].copy_from_slice(&random.as_bytes()[..4]);
    bytes[12..].copy_from_slice(&random.as_bytes()[12..]);
    Uuid::from_bytes(bytes)
}

/// A scoped id whose last 8 bytes are chosen by the caller, for data that
/// must get the same id every time it is generated (demo catalogues).
pub fn scoped_stable(parent: Uuid, tail: u64) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&route_hash(parent).to_be_bytes());
    bytes[8..].copy_from_slice(&tail.to_be_bytes());
    Uuid::from_bytes(bytes)
}

/// The routing hash a scoped id carries.
pub fn scoped_route_hash(id: Uuid) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_be_bytes(prefix)
}

/// Whether `id` was scoped to `parent`.
pub fn is_scoped_to(id: Uuid, parent: Uuid) -> bool {
    scoped_route_hash(id) == route_hash(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, Placement};

    #[test]
    fn a_scoped_id_routes_to_the_node_of_its_parent() {
        let placement = Placement::new((0..5).map(|n| (NodeId::new(format!("n{n}")), 1)));
        for _ in 0..1_000 {
            let movie = Uuid::now_v7();
            let showtime = scoped(movie);
            assert_eq!(
                placement.route_hash(scoped_route_hash(showtime)),
                placement.route(movie.as_bytes())
            );
            assert!(is_scoped_to(showtime, movie));
        }
    }

    #[test]
    fn scoped_ids_of_one_parent_are_distinct() {
        let movie = Uuid::now_v7();
        let ids: std::collections::HashSet<Uuid> = (0..100_000).map(|_| scoped(movie)).collect();
        assert_eq!(ids.len(), 100_000);
        assert!(ids.iter().all(|id| is_scoped_to(*id, movie)));
        assert!(!is_scoped_to(scoped(movie), Uuid::now_v7()));
        let hold = scoped(movie);
        assert!(is_scoped_to(sibling(hold), movie));
        assert_ne!(sibling(hold), hold);
    }
}
