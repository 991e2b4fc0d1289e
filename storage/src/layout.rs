//! Seat layouts: rows of seats placed on a grid, where a skipped column is
//! an aisle or a gap. A layout is identified by a hash of its content, so
//! showtimes keep the exact layout they were sold under.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::Hasher;

use serde::{Deserialize, Serialize};
use siphasher::sip128::{Hasher128, SipHasher13};

/// What a seat is sold as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeatKind {
    Standard,
    Premium,
    Wheelchair,
    /// Beside a wheelchair space, for the person accompanying its user.
    Companion,
}

impl SeatKind {
    pub const ALL: [SeatKind; 4] = [
        SeatKind::Standard,
        SeatKind::Premium,
        SeatKind::Wheelchair,
        SeatKind::Companion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SeatKind::Standard => "standard",
            SeatKind::Premium => "premium",
            SeatKind::Wheelchair => "wheelchair",
            SeatKind::Companion => "companion",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    pub number: String,
    /// Position across the screen, from 1; columns skipped between two
    /// seats of a row are an aisle or a gap.
    pub column: u16,
    pub kind: SeatKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatRow {
    pub label: String,
    pub seats: Vec<Seat>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatLayout {
    pub rows: Vec<SeatRow>,
}

pub const MAX_ROWS: usize = 60;
pub const MAX_SEATS_PER_ROW: usize = 120;
pub const MAX_COLUMN: u16 = 200;

/// The id of a seat within a layout: row label and seat number, `F-12`.
pub fn seat_id(row: &str, number: &str) -> String {
    format!("{row}-{number}")
}

fn is_label(text: &str) -> bool {
    (1..=4).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl SeatLayout {
    pub fn capacity(&self) -> usize {
        self.rows.iter().map(|row| row.seats.len()).sum()
    }

    /// Every seat by id.
    pub fn seats(&self) -> impl Iterator<Item = (String, &SeatRow, &Seat)> {
        self.rows.iter().flat_map(|row| {
            row.seats
                .iter()
                .map(move |seat| (seat_id(&row.label, &seat.number), row, seat))
        })
    }

    pub fn kind_of(&self, seat: &str) -> Option<SeatKind> {
        let (row, number) = seat.split_once('-')?;
        self.rows
            .iter()
            .find(|r| r.label == row)?
            .seats
            .iter()
            .find(|s| s.number == number)
            .map(|s| s.kind)
    }

    /// The seat kinds present, each once.
    pub fn kinds(&self) -> BTreeSet<SeatKind> {
        self.seats().map(|(_, _, seat)| seat.kind).collect()
    }

    /// Every rule the layout breaks, as (field path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.rows.is_empty() || self.rows.len() > MAX_ROWS {
            problems.push((
                "layout.rows".to_owned(),
                format!("a screen has 1 to {MAX_ROWS} rows"),
            ));
        }
        let mut labels = HashSet::new();
        for (r, row) in self.rows.iter().enumerate() {
            let at = format!("layout.rows[{r}]");
            if !is_label(&row.label) {
                problems.push((
                    format!("{at}.label"),
                    "a row label is 1 to 4 letters or digits".to_owned(),
                ));
            } else if !labels.insert(row.label.as_str()) {
                problems.push((
                    format!("{at}.label"),
                    format!("row {} appears twice", row.label),
                ));
            }
            if row.seats.is_empty() || row.seats.len() > MAX_SEATS_PER_ROW {
                problems.push((
                    format!("{at}.seats"),
                    format!("a row has 1 to {MAX_SEATS_PER_ROW} seats"),
                ));
            }
            let mut numbers = HashSet::new();
            let mut previous_column = 0;
            for (s, seat) in row.seats.iter().enumerate() {
                let at = format!("{at}.seats[{s}]");
                if !is_label(&seat.number) {
                    problems.push((
                        format!("{at}.number"),
                        "a seat number is 1 to 4 letters or digits".to_owned(),
                    ));
                } else if !numbers.insert(seat.number.as_str()) {
                    problems.push((
                        format!("{at}.number"),
                        format!("seat {} appears twice in row {}", seat.number, row.label),
                    ));
                }
                if seat.column == 0 || seat.column > MAX_COLUMN || seat.column <= previous_column {
                    problems.push((
                        format!("{at}.column"),
                        format!("columns run from 1 to {MAX_COLUMN} and increase along a row"),
                    ));
                }
                previous_column = seat.column;
            }
            // A wheelchair space is sold with a companion seat beside it.
            for (s, seat) in row.seats.iter().enumerate() {
                if seat.kind != SeatKind::Wheelchair {
                    continue;
                }
                let beside = |other: &Seat| {
                    other.kind == SeatKind::Companion && other.column.abs_diff(seat.column) == 1
                };
                if !row.seats.iter().any(beside) {
                    problems.push((
                        format!("{at}.seats[{s}].kind"),
                        "a wheelchair space needs a companion seat directly beside it".to_owned(),
                    ));
                }
            }
        }
        problems
    }

    /// A content hash: equal layouts share an id on every node and release.
    pub fn layout_id(&self) -> String {
        let mut hasher = SipHasher13::new_with_keys(0x6d61_7271_7565_6500, 0x6c61_796f_7574_7321);
        for row in &self.rows {
            hasher.write(row.label.as_bytes());
            hasher.write_u8(0);
            for seat in &row.seats {
                hasher.write(seat.number.as_bytes());
                hasher.write_u8(0);
                hasher.write_u16(seat.column);
                hasher.write(seat.kind.as_str().as_bytes());
                hasher.write_u8(0);
            }
            hasher.write_u8(1);
        }
        format!("{:032x}", hasher.finish128().as_u128())
    }

    /// A realistic auditorium: rows lettered from the screen, an aisle
    /// after every `block` seats, premium rows at the back, and wheelchair
    /// spaces with companions at the ends of the front row.
    pub fn generate(rows: usize, seats_per_row: usize, block: usize, premium_rows: usize) -> Self {
        let letters: Vec<char> = ('A'..='Z').filter(|c| *c != 'I' && *c != 'O').collect();
        let rows = rows.clamp(1, letters.len());
        let seats_per_row = seats_per_row.clamp(4, MAX_SEATS_PER_ROW);
        let block = block.max(2);
        let rows = (0..rows)
            .map(|r| {
                let seats = (0..seats_per_row)
                    .map(|s| {
                        let kind = if r == 0 && (s < 2 || s >= seats_per_row - 2) {
                            if s == 0 || s == seats_per_row - 1 {
                                SeatKind::Wheelchair
                            } else {
                                SeatKind::Companion
                            }
                        } else if r + premium_rows >= rows {
                            SeatKind::Premium
                        } else {
                            SeatKind::Standard
                        };
                        let aisles = s / block;
                        Seat {
                            number: (s + 1).to_string(),
                            column: u16::try_from(s + 1 + aisles).unwrap_or(MAX_COLUMN),
                            kind,
                        }
                    })
                    .collect();
                SeatRow {
                    label: letters[r].to_string(),
                    seats,
                }
            })
            .collect();
        Self { rows }
    }
}

/// Prices in minor units per seat kind.
pub type Prices = BTreeMap<SeatKind, i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_layout_is_valid_and_counts_its_seats() {
        let layout = SeatLayout::generate(12, 18, 6, 2);
        assert_eq!(layout.problems(), Vec::<(String, String)>::new());
        assert_eq!(layout.capacity(), 12 * 18);
        assert_eq!(layout.kind_of("A-1"), Some(SeatKind::Wheelchair));
        assert_eq!(layout.kind_of("A-2"), Some(SeatKind::Companion));
        assert_eq!(layout.kind_of("M-18"), Some(SeatKind::Premium));
        assert_eq!(layout.kind_of("Z-1"), None);
        // Seat 7 starts the second block, one column past the aisle.
        assert_eq!(layout.rows[1].seats[6].column, 8);
    }

    #[test]
    fn equal_layouts_share_an_id_and_different_ones_do_not() {
        let a = SeatLayout::generate(10, 12, 4, 1);
        assert_eq!(
            a.layout_id(),
            SeatLayout::generate(10, 12, 4, 1).layout_id()
        );
        assert_ne!(
            a.layout_id(),
            SeatLayout::generate(10, 12, 4, 2).layout_id()
        );
    }

    #[test]
    fn broken_layouts_name_every_offending_field() {
        let mut layout = SeatLayout::generate(3, 6, 3, 0);
        layout.rows[1].label = "A".to_owned();
        layout.rows[2].seats[1].column = 1;
        layout.rows[0].seats[1].kind = SeatKind::Standard;
        let fields: Vec<String> = layout.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "layout.rows[0].seats[0].kind",
                "layout.rows[1].label",
                "layout.rows[2].seats[1].column",
            ]
        );
    }
}
