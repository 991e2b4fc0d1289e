//! Choosing seats for a buyer who asked for "the best N together": one row,
//! side by side with no aisle between, never leaving a single seat stranded
//! beside the block, and wheelchair spaces only with their companion seats.
//!
//! The rules are pure functions of the layout and of which seats are
//! unavailable, so the same choice is made from a snapshot (optimistic) and
//! from a locked row (pessimistic).

use std::collections::HashSet;

use crate::layout::{seat_id, Seat, SeatKind, SeatLayout};

/// What a best-available request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BestRequest {
    pub count: usize,
    /// How many of the seats are wheelchair spaces; each comes with a
    /// companion seat beside it inside the block.
    pub wheelchair: usize,
}

/// Seats side by side in one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub row: String,
    pub seats: Vec<String>,
    /// Lower is better: distance from the ideal row, then from the centre.
    pub score: f64,
}

/// Where in the auditorium people prefer to sit, as a fraction of the rows
/// counted from the screen.
const IDEAL_ROW: f64 = 0.6;

/// Every acceptable block, best first.
pub fn best_blocks(
    layout: &SeatLayout,
    unavailable: &dyn Fn(&str) -> bool,
    request: BestRequest,
) -> Vec<Block> {
    let mut blocks = Vec::new();
    let rows = layout.rows.len().max(1);
    for (index, row) in layout.rows.iter().enumerate() {
        blocks.extend(row_blocks(
            &row.label,
            &row.seats,
            unavailable,
            request,
            row_score(index, rows),
        ));
    }
    blocks.sort_by(|a, b| a.score.total_cmp(&b.score));
    blocks
}

/// The best acceptable block in one row.
pub fn best_in_row(
    layout: &SeatLayout,
    label: &str,
    unavailable: &dyn Fn(&str) -> bool,
    request: BestRequest,
) -> Option<Block> {
    let rows = layout.rows.len().max(1);
    let (index, row) = layout
        .rows
        .iter()
        .enumerate()
        .find(|(_, row)| row.label == label)?;
    row_blocks(
        label,
        &row.seats,
        unavailable,
        request,
        row_score(index, rows),
    )
    .into_iter()
    .min_by(|a, b| a.score.total_cmp(&b.score))
}

fn row_score(index: usize, rows: usize) -> f64 {
    let position = index as f64 / (rows.saturating_sub(1).max(1)) as f64;
    (position - IDEAL_ROW).abs() * 2.0
}

fn row_blocks(
    label: &str,
    seats: &[Seat],
    unavailable: &dyn Fn(&str) -> bool,
    request: BestRequest,
    row_score: f64,
) -> Vec<Block> {
    let count = request.count;
    if count == 0 || seats.len() < count {
        return Vec::new();
    }
    let mut sorted: Vec<&Seat> = seats.iter().collect();
    sorted.sort_by_key(|seat| seat.column);
    let free: Vec<bool> = sorted
        .iter()
        .map(|seat| !unavailable(&seat_id(label, &seat.number)))
        .collect();
    let adjacent = |i: usize| sorted[i + 1].column == sorted[i].column + 1;
    let first = f64::from(sorted[0].column);
    let last = f64::from(sorted[sorted.len() - 1].column);
    let centre = (first + last) / 2.0;
    let width = (last - first).max(1.0);
    let mut blocks = Vec::new();
    for start in 0..=sorted.len() - count {
        let end = start + count - 1;
        if !(start..=end).all(|i| free[i]) || !(start..end).all(adjacent) {
            continue;
        }
        let block = &sorted[start..=end];
        if !accessible_ok(block, request.wheelchair) {
            continue;
        }
        if strands_left(start, &free, &adjacent) || strands_right(end, &free, &adjacent) {
            continue;
        }
        let middle = f64::from(block[0].column + block[count - 1].column) / 2.0;
        blocks.push(Block {
            row: label.to_owned(),
            seats: block
                .iter()
                .map(|seat| seat_id(label, &seat.number))
                .collect(),
            score: row_score + (middle - centre).abs() / width,
        });
    }
    blocks
}

/// Wheelchair spaces and companion seats go together: a block has exactly
/// the wheelchair spaces asked for, each beside a companion seat in the
/// block, and takes no companion seat without its wheelchair space.
fn accessible_ok(block: &[&Seat], wheelchair: usize) -> bool {
    let spaces = block
        .iter()
        .filter(|seat| seat.kind == SeatKind::Wheelchair)
        .count();
    if spaces != wheelchair {
        return false;
    }
    let beside = |i: usize, kind: SeatKind| {
        (i > 0 && block[i - 1].kind == kind && block[i - 1].column + 1 == block[i].column)
            || (i + 1 < block.len()
                && block[i + 1].kind == kind
                && block[i].column + 1 == block[i + 1].column)
    };
    block.iter().enumerate().all(|(i, seat)| match seat.kind {
        SeatKind::Wheelchair => block.len() == 1 || beside(i, SeatKind::Companion),
        SeatKind::Companion => beside(i, SeatKind::Wheelchair),
        SeatKind::Standard | SeatKind::Premium => true,
    })
}

/// Whether taking seats from `start` on leaves the seat just left of it as
/// a free seat with no free neighbour.
fn strands_left(start: usize, free: &[bool], adjacent: &dyn Fn(usize) -> bool) -> bool {
    if start == 0 || !adjacent(start - 1) || !free[start - 1] {
        return false;
    }
    let lone = start - 1;
    !(lone > 0 && adjacent(lone - 1) && free[lone - 1])
}

fn strands_right(end: usize, free: &[bool], adjacent: &dyn Fn(usize) -> bool) -> bool {
    let last = free.len() - 1;
    if end == last || !adjacent(end) || !free[end + 1] {
        return false;
    }
    let lone = end + 1;
    !(lone < last && adjacent(lone) && free[lone + 1])
}

/// Seats of `wanted` that the layout does not have, and ones named twice.
pub fn unknown_or_repeated(layout: &SeatLayout, wanted: &[String]) -> Vec<(usize, String)> {
    let mut seen = HashSet::new();
    wanted
        .iter()
        .enumerate()
        .filter_map(|(i, seat)| {
            if layout.kind_of(seat).is_none() {
                Some((i, format!("{seat} is not a seat of this showtime")))
            } else if !seen.insert(seat.as_str()) {
                Some((i, format!("{seat} is asked for twice")))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::SeatRow;

    fn row(label: &str, kinds: &[(u16, SeatKind)]) -> SeatRow {
        SeatRow {
            label: label.to_owned(),
            seats: kinds
                .iter()
                .enumerate()
                .map(|(i, (column, kind))| Seat {
                    number: (i + 1).to_string(),
                    column: *column,
                    kind: *kind,
                })
                .collect(),
        }
    }

    fn plain(label: &str, seats: u16) -> SeatRow {
        row(
            label,
            &(1..=seats)
                .map(|c| (c, SeatKind::Standard))
                .collect::<Vec<_>>(),
        )
    }

    fn two(count: usize) -> BestRequest {
        BestRequest {
            count,
            wheelchair: 0,
        }
    }

    #[test]
    fn the_best_block_is_central_in_the_preferred_row() {
        let layout = SeatLayout {
            rows: (0..6)
                .map(|r| plain(&format!("{}", (b'A' + r) as char), 10))
                .collect(),
        };
        let best = &best_blocks(&layout, &|_| false, two(2))[0];
        assert_eq!(best.row, "D");
        assert_eq!(best.seats, vec!["D-5", "D-6"]);
    }

    #[test]
    fn a_block_never_leaves_a_single_seat_beside_it() {
        let layout = SeatLayout {
            rows: vec![plain("A", 5)],
        };
        let taken = |seat: &str| seat == "A-1";
        let blocks = best_blocks(&layout, &taken, two(2));
        let starts: Vec<&str> = blocks.iter().map(|b| b.seats[0].as_str()).collect();
        // would strand A-2 between a sold seat and the block.
        assert!(starts.contains(&"A-2"));
        assert!(starts.contains(&"A-4"));
        assert!(!starts.contains(&"A-3"));
    }

    #[test]
    fn an_aisle_splits_a_row_into_separate_blocks() {
        let layout = SeatLayout {
            rows: vec![row(
                "A",
                &[
                    (1, SeatKind::Standard),
                    (2, SeatKind::Standard),
                    (4, SeatKind::Standard),
                    (5, SeatKind::Standard),
                ],
            )],
        };
        let blocks = best_blocks(&layout, &|_| false, two(3));
        assert!(blocks.is_empty(), "{blocks:?}");
        assert_eq!(best_blocks(&layout, &|_| false, two(2)).len(), 2);
    }

    #[test]
    fn wheelchair_spaces_come_only_with_their_companion_seats() {
        let layout = SeatLayout {
            rows: vec![row(
                "A",
                &[
                    (1, SeatKind::Wheelchair),
                    (2, SeatKind::Companion),
                    (3, SeatKind::Standard),
                    (4, SeatKind::Standard),
                    (5, SeatKind::Standard),
                ],
            )],
        };
        let ordinary = best_blocks(&layout, &|_| false, two(2));
        assert!(ordinary
            .iter()
            .all(|b| !b.seats.contains(&"A-1".to_owned()) && !b.seats.contains(&"A-2".to_owned())));
        let accessible = best_blocks(
            &layout,
            &|_| false,
            BestRequest {
                count: 2,
                wheelchair: 1,
            },
        );
        assert_eq!(accessible.len(), 1);
        assert_eq!(accessible[0].seats, vec!["A-1", "A-2"]);
    }

    #[test]
    fn unknown_and_repeated_seats_are_named() {
        let layout = SeatLayout {
            rows: vec![plain("A", 3)],
        };
        let wanted = ["A-1", "Z-9", "A-1"].map(str::to_owned);
        let problems = unknown_or_repeated(&layout, &wanted);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].0, 1);
        assert_eq!(problems[1].0, 2);
    }
}
