//! The oversold check. Two views must agree after a storm: the tickets of
//! the confirmed orders buyers received, where no seat may appear twice,
//! and each showtime's seat map, which must count as sold exactly the
//! seats of those orders.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde::Deserialize;

/// The seats of confirmed orders, by showtime id.
#[derive(Debug, Default)]
pub struct Ledger {
    sold: HashMap<String, Vec<String>>,
}

/// A seat sold to more than one confirmed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversold {
    pub showtime: String,
    pub seat: String,
    pub orders: usize,
}

/// A showtime whose seat map counts a different number of sold seats than
/// the confirmed orders hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    pub showtime: String,
    pub map_sold: u64,
    pub ordered: usize,
}

impl Ledger {
    pub fn record(&mut self, showtime: &str, seats: impl IntoIterator<Item = String>) {
        self.sold
            .entry(showtime.to_owned())
            .or_default()
            .extend(seats);
    }

    /// Every seat in more than one confirmed order.
    pub fn oversold(&self) -> Vec<Oversold> {
        let mut found = Vec::new();
        for (showtime, seats) in &self.sold {
            let mut orders: BTreeMap<&str, usize> = BTreeMap::new();
            for seat in seats {
                *orders.entry(seat).or_insert(0) += 1;
            }
            found.extend(orders.into_iter().filter(|(_, count)| *count > 1).map(
                |(seat, orders)| Oversold {
                    showtime: showtime.clone(),
                    seat: seat.to_owned(),
                    orders,
                },
            ));
        }
        found.sort_by(|a, b| (&a.showtime, &a.seat).cmp(&(&b.showtime, &b.seat)));
        found
    }

    /// Seats sold twice count once for each extra sale.
    pub fn oversold_seats(&self) -> usize {
        self.oversold().iter().map(|o| o.orders - 1).sum()
    }

    /// Tickets across every confirmed order.
    pub fn seats(&self) -> usize {
        self.sold.values().map(Vec::len).sum()
    }

    /// The showtimes whose seat map disagrees with the orders; a showtime
    /// nobody bought must show nothing sold.
    pub fn disagreements(&self, maps: &[(String, Counts)]) -> Vec<Disagreement> {
        maps.iter()
            .filter_map(|(showtime, counts)| {
                let ordered = self.sold.get(showtime).map_or(0, Vec::len);
                (counts.sold != ordered as u64).then(|| Disagreement {
                    showtime: showtime.clone(),
                    map_sold: counts.sold,
                    ordered,
                })
            })
            .collect()
    }
}

/// A seat map's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Counts {
    pub free: u64,
    pub held: u64,
    pub sold: u64,
    pub blocked: u64,
}

#[derive(Deserialize)]
struct SeatMap {
    counts: Counts,
}

/// The seat maps of `showtimes`, a few requests at a time.
pub async fn seat_maps(
    client: &reqwest::Client,
    base: &str,
    showtimes: &[String],
) -> anyhow::Result<Vec<(String, Counts)>> {
    futures::stream::iter(showtimes)
        .map(|showtime| async move {
            let url = format!("{base}/v1/showtimes/{showtime}/seats");
            let response = client.get(&url).send().await?;
            let status = response.status();
            anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
            let map: SeatMap = response.json().await?;
            Ok((showtime.clone(), map.counts))
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seats(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    fn sold(count: u64) -> Counts {
        Counts {
            sold: count,
            ..Counts::default()
        }
    }

    #[test]
    fn a_seat_in_two_orders_is_oversold() {
        let mut ledger = Ledger::default();
        ledger.record("s1", seats(&["A-1", "A-2"]));
        ledger.record("s1", seats(&["A-2", "A-3"]));
        ledger.record("s2", seats(&["A-2"]));
        assert_eq!(
            ledger.oversold(),
            vec![Oversold {
                showtime: "s1".to_owned(),
                seat: "A-2".to_owned(),
                orders: 2,
            }]
        );
        assert_eq!(ledger.oversold_seats(), 1);
        assert_eq!(ledger.seats(), 5);
    }

    #[test]
    fn the_same_seat_at_different_showtimes_is_not_oversold() {
        let mut ledger = Ledger::default();
        ledger.record("s1", seats(&["A-1", "A-2"]));
        ledger.record("s2", seats(&["A-1", "A-2"]));
        assert!(ledger.oversold().is_empty());
        assert_eq!(ledger.oversold_seats(), 0);
    }

    #[test]
    fn a_seat_sold_three_times_counts_two_extra_sales() {
        let mut ledger = Ledger::default();
        for _ in 0..3 {
            ledger.record("s1", seats(&["B-7"]));
        }
        assert_eq!(ledger.oversold_seats(), 2);
    }

    #[test]
    fn seat_maps_must_count_exactly_the_ordered_seats() {
        let mut ledger = Ledger::default();
        ledger.record("s1", seats(&["A-1", "A-2"]));
        ledger.record("s2", seats(&["A-1", "A-2"]));
        let maps = vec![
            ("s1".to_owned(), sold(2)),
            ("s2".to_owned(), sold(3)),
            ("s3".to_owned(), sold(0)),
            ("s4".to_owned(), sold(1)),
        ];
        assert_eq!(
            ledger.disagreements(&maps),
            vec![
                Disagreement {
                    showtime: "s2".to_owned(),
                    map_sold: 3,
                    ordered: 2,
                },
                Disagreement {
                    showtime: "s4".to_owned(),
                    map_sold: 1,
                    ordered: 0,
                },
            ]
        );
    }
}
