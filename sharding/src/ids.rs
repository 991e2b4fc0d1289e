//! Ids that carry their own routing.
//!
//! A showtime, hold or order lives with its movie, and the hot paths reach
//! it by id alone: no directory lookup, no scatter. Such a *scoped* id
//! starts with the 8-byte routing hash of its parent (the movie), so
//! routing it is one array read, and a movie pinned to a dedicated node
//! takes its children along, since overrides are keyed by that hash. The
//! other 8 bytes are a millisecond timestamp and randomness, keeping ids of
//! one parent roughly time-ordered in their index.
//!
//! Scoped ids are valid UUID strings but not RFC 9562 versions: every bit
//! of the prefix is needed for routing.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::placement::hash_key;

/// The routing hash of a top-level id (a movie, a theater, a user).
pub fn route_hash(id: Uuid) -> u64 {
    hash_key(id.as_bytes())
}

/// A new id routed with `parent`.
pub fn scoped(parent: Uuid) -> Uuid {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let random = Uuid::new_v4();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&route_hash(parent).to_be_bytes());
    // 48 bits of milliseconds last until the year 10889.
    let millis = (millis as u64).to_be_bytes();
    bytes[8..14].copy_from_slice(&millis[2..]);
    bytes[14..].copy_from_slice(&random.as_bytes()[..2]);
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
    fn scoped_ids_of_one_parent_are_distinct_and_time_ordered() {
        let movie = Uuid::now_v7();
        let first = scoped(movie);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = scoped(movie);
        assert_ne!(first, second);
        assert!(first < second);
        assert!(!is_scoped_to(first, Uuid::now_v7()));
    }
}
