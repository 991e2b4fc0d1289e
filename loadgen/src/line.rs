//! A hot release through a waiting room, measured for fairness: clients
//! each get a device id, join the line of one showtime whose room is on,
//! wait for their pass by long-poll, then hold the best seats together for
//! their party and pay. The report says how fair it was: admission order
//! against arrival order (Spearman's rank correlation), time in line,
//! seats per client against the cap, and whether any seat sold twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::storm::admin::Admin;
use crate::storm::audit::{seat_maps, Ledger};
use crate::storm::checkout::Dice;
use crate::storm::{schedule, Policy, Ticker, Workload};

#[derive(Debug, Clone)]
pub struct Plan {
    pub base: String,
    pub admin_token: String,
    pub clients: usize,
    pub seats: usize,
    /// Parties are 1 to this many seats.
    pub max_party: u32,
    /// Seats one customer may hold or buy of a showtime, as the server is
    /// configured.
    pub cap: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub clients: usize,
    pub capacity: usize,
    /// Clients that got a place in line.
    pub joined: u64,
    /// Clients let out with a pass.
    pub admitted: u64,
    /// Clients that bought seats.
    pub bought: u64,
    /// Clients told the show sold out while in line.
    pub told_sold_out: u64,
    pub seats_sold: usize,
    /// Spearman's rank correlation of admission order against arrival
    /// order, over clients let out, ties averaged: people let out in the
    /// same second tie, so it stays below 1 even when nobody jumped the
    /// line.
    pub rank_correlation: f64,
    /// Pairs of clients let out strictly before someone who arrived
    /// earlier: 0 is first come, first served.
    pub inversions: usize,
    pub line_p50_s: f64,
    pub line_p99_s: f64,
    pub line_max_s: f64,
    /// Seats bought by a client, as a histogram.
    pub seats_per_client: BTreeMap<usize, usize>,
    /// Clients with more seats than the cap.
    pub over_cap: usize,
    pub oversold: usize,
    /// Seat maps that disagree with the orders.
    pub seat_map_mismatches: usize,
    pub errors: u64,
    pub seconds: f64,
}

#[derive(Debug, Default)]
struct Progress {
    joined: AtomicU64,
    admitted: AtomicU64,
    bought: AtomicU64,
    told: AtomicU64,
    errors: AtomicU64,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Visit {
    /// Arrival order: the place's number.
    number: Option<i64>,
    admitted_at: Option<String>,
    line: Option<Duration>,
    seats: Vec<String>,
}

pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(plan.clients > 0, "a line needs clients");
    let client = crate::client_builder().http1_only().build()?;
    let admin = Admin::new(client.clone(), &plan.base, &plan.admin_token);
    let run = crate::storm::run_id();
    let showtimes = schedule::create(
        &admin,
        &crate::storm::Plan {
            base: plan.base.clone(),
            admin_token: plan.admin_token.clone(),
            workload: Workload::Rush,
            policy: Policy::Auto,
            buyers: plan.clients,
            showtimes: 1,
            seats_per_showtime: plan.seats,
            seats_per_buyer: 2,
            duration: Duration::ZERO,
        },
        &run,
    )
    .await?;
    let showtime = showtimes[0].clone();
    admin
        .put(
            &format!("/v1/admin/showtimes/{showtime}/waiting-room"),
            &json!({"mode": "on"}),
        )
        .await?;
    eprintln!(
        "setup: one showtime of {} seats, its waiting room on",
        plan.seats
    );

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let ticker = Ticker::start({
        let progress = Arc::clone(&progress);
        let clients = plan.clients;
        move || {
            let at = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            format!(
                "line {:.0}s: {}/{clients} joined, {} let out, {} bought, {} told sold out, {} errors",
                started.elapsed().as_secs_f64(),
                at(&progress.joined),
                at(&progress.admitted),
                at(&progress.bought),
                at(&progress.told),
                at(&progress.errors),
            )
        }
    });
    let visits: Vec<_> = (0..plan.clients)
        .map(|index| {
            let (client, progress) = (client.clone(), Arc::clone(&progress));
            let (base, showtime, max_party) = (plan.base.clone(), showtime.clone(), plan.max_party);
            tokio::spawn(async move {
                let mut dice = Dice::seeded(0x9E37_79B9 ^ index as u64);
                visit(
                    &client, &base, &showtime, index, max_party, &mut dice, &progress,
                )
                .await
                .unwrap_or_else(|err| {
                    eprintln!("client {index}: {err}");
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    Visit::default()
                })
            })
        })
        .collect();
    let mut done = Vec::with_capacity(visits.len());
    for visit in visits {
        done.push(visit.await?);
    }
    drop(ticker);
    let seconds = started.elapsed().as_secs_f64();

    let mut ledger = Ledger::default();
    let mut seats_per_client = BTreeMap::new();
    for visit in &done {
        if !visit.seats.is_empty() {
            ledger.record(&showtime, visit.seats.iter().cloned());
        }
        *seats_per_client.entry(visit.seats.len()).or_insert(0) += 1;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let maps = seat_maps(&client, &plan.base, std::slice::from_ref(&showtime)).await?;
    let mut lines: Vec<f64> = done
        .iter()
        .filter_map(|visit| visit.line.map(|line| line.as_secs_f64()))
        .collect();
    lines.sort_by(f64::total_cmp);
    let pairs: Vec<(f64, String)> = done
        .iter()
        .filter_map(|visit| Some((visit.number? as f64, visit.admitted_at.clone()?)))
        .collect();
    Ok(Report {
        clients: plan.clients,
        capacity: plan.seats,
        joined: progress.joined.load(Ordering::Relaxed),
        admitted: progress.admitted.load(Ordering::Relaxed),
        bought: progress.bought.load(Ordering::Relaxed),
        told_sold_out: progress.told.load(Ordering::Relaxed),
        seats_sold: ledger.seats(),
        rank_correlation: spearman(&pairs),
        inversions: inversions(&pairs),
        line_p50_s: nearest(&lines, 0.5),
        line_p99_s: nearest(&lines, 0.99),
        line_max_s: lines.last().copied().unwrap_or(0.0),
        over_cap: done
            .iter()
            .filter(|visit| visit.seats.len() > plan.cap)
            .count(),
        seats_per_client,
        oversold: ledger.oversold_seats(),
        seat_map_mismatches: ledger.disagreements(&maps).len(),
        errors: progress.errors.load(Ordering::Relaxed),
        seconds,
    })
}

async fn visit(
    client: &reqwest::Client,
    base: &str,
    showtime: &str,
    index: usize,
    max_party: u32,
    dice: &mut Dice,
    progress: &Progress,
) -> anyhow::Result<Visit> {
    let device: Value = expect(client.post(format!("{base}/v1/devices")), 201).await?;
    let device = device["device_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no device id"))?
        .to_owned();
    let joined_at = Instant::now();
    let place: Value = expect(
        client
            .post(format!("{base}/v1/showtimes/{showtime}/queue"))
            .header("Device-Id", &device),
        200,
    )
    .await?;
    progress.joined.fetch_add(1, Ordering::Relaxed);
    let id = place["id"].as_str().unwrap_or_default().to_owned();
    let mut visit = Visit {
        number: place["number"].as_i64(),
        ..Visit::default()
    };
    let mut view = place;
    let pass = loop {
        match view["state"].as_str() {
            Some("admitted") => break view["pass"].as_str().unwrap_or_default().to_owned(),
            Some("sold_out") => {
                progress.told.fetch_add(1, Ordering::Relaxed);
                return Ok(visit);
            }
            Some("waiting") => {}
            other => anyhow::bail!("place {id} became {other:?}"),
        }
        let ahead = view["ahead"].as_u64().unwrap_or(u64::MAX);
        view = expect(
            client
                .get(format!(
                    "{base}/v1/showtimes/{showtime}/queue/{id}?wait=25&ahead={ahead}"
                ))
                .header("Device-Id", &device),
            200,
        )
        .await?;
    };
    progress.admitted.fetch_add(1, Ordering::Relaxed);
    visit.line = Some(joined_at.elapsed());
    visit.admitted_at = view["admitted_at"].as_str().map(str::to_owned);
    let party = 1 + dice.below(u64::from(max_party.max(1))) as u32;
    let email = format!("line.{index}@example.com");
    // A party that finds no seats together settles for one seat, as people
    // do when a show is nearly full; one that finds none leaves the line.
    let mut held = None;
    for count in [party, 1] {
        let response = client
            .post(format!("{base}/v1/showtimes/{showtime}/holds"))
            .header("Device-Id", &device)
            .header("Queue-Pass", &pass)
            .json(&json!({"email": email, "best_available": {"count": count}}))
            .send()
            .await?;
        if response.status().as_u16() == 201 {
            held = Some(response.json::<Value>().await?);
            break;
        }
    }
    let Some(held) = held else {
        client
            .delete(format!("{base}/v1/showtimes/{showtime}/queue/{id}"))
            .header("Device-Id", &device)
            .send()
            .await?;
        return Ok(visit);
    };
    let order: Value = expect(
        client
            .post(format!("{base}/v1/orders"))
            .header(
                "Booking-Token",
                held["booking_token"].as_str().unwrap_or_default(),
            )
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({
                "hold_id": held["hold"]["id"],
                "payment": {"method": "card", "token": format!("tok_visa_line{index}")}
            })),
        201,
    )
    .await?;
    progress.bought.fetch_add(1, Ordering::Relaxed);
    visit.seats = order["seats"]
        .as_array()
        .map(|seats| {
            seats
                .iter()
                .filter_map(|seat| seat.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(visit)
}

async fn expect(request: reqwest::RequestBuilder, status: u16) -> anyhow::Result<Value> {
    let response = request.send().await?;
    let got = response.status().as_u16();
    let text = response.text().await?;
    anyhow::ensure!(got == status, "answered {got}: {text}");
    Ok(serde_json::from_str(&text)?)
}

fn nearest(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Ranks from 1, ties sharing the mean of the ranks they span.
fn ranks<T: PartialOrd>(values: &[T]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| {
        values[*a]
            .partial_cmp(&values[*b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        let mean = (start + end) as f64 / 2.0 + 1.0;
        for &index in &order[start..=end] {
            ranks[index] = mean;
        }
        start = end + 1;
    }
    ranks
}

/// Pairs where the later arrival was let out strictly first.
fn inversions(pairs: &[(f64, String)]) -> usize {
    let mut count = 0;
    for (index, (arrived, admitted)) in pairs.iter().enumerate() {
        for (other_arrived, other_admitted) in &pairs[index + 1..] {
            let (early, late) = if arrived < other_arrived {
                (admitted, other_admitted)
            } else {
                (other_admitted, admitted)
            };
            if late < early {
                count += 1;
            }
        }
    }
    count
}

/// Spearman's rank correlation of the pairs' two orders, ties averaged.
fn spearman(pairs: &[(f64, String)]) -> f64 {
    if pairs.len() < 2 {
        return 1.0;
    }
    let arrival: Vec<f64> = pairs.iter().map(|(number, _)| *number).collect();
    let admission: Vec<&String> = pairs.iter().map(|(_, at)| at).collect();
    let (a, b) = (ranks(&arrival), ranks(&admission));
    let n = a.len() as f64;
    let (mean_a, mean_b) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let covariance: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - mean_a) * (y - mean_b))
        .sum();
    let spread =
        |ranks: &[f64], mean: f64| ranks.iter().map(|x| (x - mean).powi(2)).sum::<f64>().sqrt();
    let denominator = spread(&a, mean_a) * spread(&b, mean_b);
    if denominator == 0.0 {
        1.0
    } else {
        covariance / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(admissions: &[&str]) -> Vec<(f64, String)> {
        admissions
            .iter()
            .enumerate()
            .map(|(number, at)| ((number + 1) as f64, (*at).to_owned()))
            .collect()
    }

    #[test]
    fn first_come_first_served_correlates_fully_and_reversed_negatively() {
        assert!((spearman(&pairs(&["1", "2", "3", "4"])) - 1.0).abs() < 1e-9);
        assert!((spearman(&pairs(&["4", "3", "2", "1"])) + 1.0).abs() < 1e-9);
    }

    #[test]
    fn admissions_in_one_batch_tie_and_still_correlate_in_order() {
        let rho = spearman(&pairs(&["1", "1", "2", "2", "3", "3"]));
        assert!(rho > 0.9 && rho <= 1.0, "{rho}");
    }

    #[test]
    fn only_a_later_arrival_let_out_strictly_first_is_an_inversion() {
        assert_eq!(inversions(&pairs(&["1", "1", "2", "3"])), 0);
        assert_eq!(inversions(&pairs(&["2", "1", "3", "3"])), 1);
        assert_eq!(inversions(&pairs(&["3", "2", "1"])), 3);
    }

    #[test]
    fn tied_values_share_the_mean_rank() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 30.0]), vec![1.0, 2.5, 2.5, 4.0]);
    }
}
