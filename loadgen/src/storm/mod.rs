//! A purchase storm: many buyers racing for the seats of fresh showtimes,
//! each holding the best seats together and paying, as fast as the server
//! answers. It reports confirmed bookings per second, the latency of a
//! whole purchase, what contention cost (client retries, the server's
//! claim conflicts, `auto` locking switches), and whether any seat was
//! sold twice.
//!
//! - [`admin`]: staff calls with the admin token.
//! - [`schedule`]: the theaters, screens, movies and showtimes of a run.
//! - [`checkout`]: one buyer's hold and payment, and its retries.
//! - [`metrics`]: the server's claim counters, before and after.
//! - [`audit`]: the oversold check against orders and seat maps.

pub mod admin;
pub mod audit;
pub mod checkout;
pub mod metrics;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use self::audit::Ledger;
use self::checkout::{Checkout, Dice, Outcome};
use self::metrics::Scrape;

/// Seat maps are cached for up to five seconds; the check reads them after
/// this long so every change of the run shows.
const SEAT_MAP_SETTLE: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Every buyer tries once, all at the same moment, mostly for the same
    /// few seats: a release-night rush. Ends when every buyer is done.
    Rush,
    /// Buyers keep buying, each time at a showtime drawn at random, for a
    /// fixed time: an ordinary busy evening.
    Spread,
}

/// A showtime's seat-locking policy, as the admin API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Auto,
    Optimistic,
    Pessimistic,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Auto => "auto",
            Policy::Optimistic => "optimistic",
            Policy::Pessimistic => "pessimistic",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub base: String,
    pub admin_token: String,
    pub workload: Workload,
    pub policy: Policy,
    /// Concurrent buyers; each waits for its purchase before the next.
    pub buyers: usize,
    pub showtimes: usize,
    pub seats_per_showtime: usize,
    pub seats_per_buyer: u32,
    /// How long spread buyers keep buying.
    pub duration: Duration,
}

/// What a storm measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: Workload,
    pub policy: Policy,
    pub buyers: usize,
    pub showtimes: usize,
    pub seats_per_showtime: usize,
    pub seats_per_buyer: u32,
    pub setup_seconds: f64,
    /// From the first purchase to the last buyer's end.
    pub seconds: f64,
    /// Confirmed orders.
    pub bookings: u64,
    pub bookings_per_second: f64,
    /// Tickets in confirmed orders.
    pub seats_sold: usize,
    /// Latency of a confirmed purchase: hold, its retries, and payment.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Holds refused because no block of seats was left.
    pub sold_out: u64,
    /// Buyers who stopped after every "try again" retry was refused too.
    pub gave_up: u64,
    /// Requests sent again: holds after "try again", lost payment answers.
    pub client_retries: u64,
    /// Claim attempts that met contention on the server.
    pub server_conflicts: u64,
    pub conflicts_by_mode: BTreeMap<String, u64>,
    /// Claims (holds, granted or refused) by the locking mode that ran them.
    pub claims_by_mode: BTreeMap<String, u64>,
    /// Showtimes `auto` switched between locking modes.
    pub switches: u64,
    pub switches_to: BTreeMap<String, u64>,
    /// Unexpected answers: any status besides a hold, an order, sold out
    /// and "try again", and requests with no answer.
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    /// Extra sales of seats already in a confirmed order; anything but 0
    /// is a bug.
    pub oversold: usize,
    /// Showtimes whose seat map does not count as sold exactly the seats of
    /// their confirmed orders; anything but 0 is a bug.
    pub seat_map_mismatches: usize,
    pub seat_map_sold: u64,
    /// Seats left free; best-available never strands a single seat, so a
    /// sold-out showtime can keep a few.
    pub seat_map_free: u64,
    /// Seats still held after the run: holds whose payment failed.
    pub seat_map_held: u64,
}

/// Prints a line to stderr every second until dropped.
#[derive(Debug)]
pub(crate) struct Ticker(tokio::task::JoinHandle<()>);

impl Ticker {
    pub(crate) fn start(line: impl Fn() -> String + Send + 'static) -> Self {
        Self(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                eprintln!("{}", line());
            }
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one buyer took home.
#[derive(Debug, Default)]
struct Basket {
    latencies_us: Vec<u32>,
    /// Showtime index and seats of each confirmed order.
    orders: Vec<(usize, Vec<String>)>,
}

pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(plan.buyers > 0, "a storm needs buyers");
    anyhow::ensure!(plan.showtimes > 0, "a storm needs showtimes");
    anyhow::ensure!(
        (1..=10).contains(&plan.seats_per_buyer),
        "a buyer may hold 1 to 10 seats"
    );
    // HTTP/1.1 gives each buyer a connection of their own, as separate
    // people have; over HTTP/2 every buyer would share one.
    let client = crate::client_builder().http1_only().build()?;
    let admin = admin::Admin::new(client.clone(), &plan.base, &plan.admin_token);
    let run_id = run_id();
    let label = format!("{:?} {}", plan.workload, plan.policy.as_str()).to_lowercase();

    let setup = Instant::now();
    let showtimes = Arc::new(schedule::create(&admin, plan, &run_id).await?);
    let setup_seconds = setup.elapsed().as_secs_f64();
    eprintln!(
        "setup: {} showtimes of {} seats, locking {}, in {setup_seconds:.1}s",
        showtimes.len(),
        plan.seats_per_showtime,
        plan.policy.as_str()
    );
    open_connections(&client, &plan.base, &showtimes, plan.buyers).await;

    let before = scrape(&client, &plan.base).await?;
    let checkout = Arc::new(Checkout::new(
        client.clone(),
        &plan.base,
        plan.seats_per_buyer,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let ticker = Ticker::start({
        let checkout = Arc::clone(&checkout);
        let buyers = plan.buyers as u64;
        let label = label.clone();
        move || {
            let c = &checkout.counters;
            let bought = c.bought.load(Ordering::Relaxed);
            let elapsed = started.elapsed().as_secs_f64();
            format!(
                "{label} {elapsed:.0}s: {bought} bought ({:.0}/s), {} sold out, {} retries, \
                 {} gave up, {} errors, {} buyers still buying",
                bought as f64 / elapsed,
                c.sold_out.load(Ordering::Relaxed),
                c.retries.load(Ordering::Relaxed),
                c.gave_up.load(Ordering::Relaxed),
                c.errors.load(Ordering::Relaxed),
                buyers.saturating_sub(c.finished.load(Ordering::Relaxed)),
            )
        }
    });
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    let buyers: Vec<_> = (0..plan.buyers)
        .map(|buyer| {
            let (checkout, showtimes, stop) = (
                Arc::clone(&checkout),
                Arc::clone(&showtimes),
                Arc::clone(&stop),
            );
            let workload = plan.workload;
            tokio::spawn(async move {
                let mut dice =
                    Dice::seeded(seed ^ (buyer as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let mut basket = Basket::default();
                for purchase in 0u64.. {
                    let showtime = dice.below(showtimes.len() as u64) as usize;
                    // One customer per purchase: the per-customer seat
                    // limit is not what a storm measures.
                    let email = format!("storm.{buyer}.{purchase}@example.com");
                    let outcome = checkout
                        .purchase(&showtimes[showtime], &email, &mut dice)
                        .await;
                    if let Outcome::Bought { seats, took } = outcome {
                        basket
                            .latencies_us
                            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                        basket.orders.push((showtime, seats));
                    }
                    if workload == Workload::Rush || stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                checkout.counters.finished.fetch_add(1, Ordering::Relaxed);
                basket
            })
        })
        .collect();
    if plan.workload == Workload::Spread {
        tokio::time::sleep(plan.duration).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut latencies_us = Vec::new();
    let mut ledger = Ledger::default();
    for basket in futures::future::join_all(buyers).await {
        let basket = basket?;
        latencies_us.extend(basket.latencies_us);
        for (showtime, seats) in basket.orders {
            ledger.record(&showtimes[showtime], seats);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(ticker);
    let after = scrape(&client, &plan.base).await?;

    let oversold = ledger.oversold();
    for seat in oversold.iter().take(20) {
        eprintln!(
            "OVERSOLD: seat {} of showtime {} is in {} confirmed orders",
            seat.seat, seat.showtime, seat.orders
        );
    }
    eprintln!(
        "checking seat maps of {} showtimes in {}s",
        showtimes.len(),
        SEAT_MAP_SETTLE.as_secs()
    );
    tokio::time::sleep(SEAT_MAP_SETTLE).await;
    let mut maps = audit::seat_maps(&client, &plan.base, &showtimes).await?;
    if !ledger.disagreements(&maps).is_empty() {
        // A cached map read just before its expiry can lag; a second read
        // after another expiry tells lag from a real disagreement.
        tokio::time::sleep(SEAT_MAP_SETTLE).await;
        maps = audit::seat_maps(&client, &plan.base, &showtimes).await?;
    }
    let disagreements = ledger.disagreements(&maps);
    for disagreement in disagreements.iter().take(20) {
        eprintln!(
            "SEAT MAP DISAGREES: showtime {} shows {} sold, its confirmed orders hold {}",
            disagreement.showtime, disagreement.map_sold, disagreement.ordered
        );
    }

    latencies_us.sort_unstable();
    let counters = &checkout.counters;
    let bookings = latencies_us.len() as u64;
    let grown =
        |name, label| metrics::growth(&before.by_label(name, label), &after.by_label(name, label));
    let conflicts_by_mode = grown(metrics::CONFLICTS, "mode");
    let claims_by_mode = grown(metrics::CLAIMS, "mode");
    let switches_to = grown(metrics::SWITCHES, "to");
    let report = Report {
        workload: plan.workload,
        policy: plan.policy,
        buyers: plan.buyers,
        showtimes: plan.showtimes,
        seats_per_showtime: plan.seats_per_showtime,
        seats_per_buyer: plan.seats_per_buyer,
        setup_seconds,
        seconds,
        bookings,
        bookings_per_second: bookings as f64 / seconds,
        seats_sold: ledger.seats(),
        p50_ms: crate::percentile(&latencies_us, 0.50),
        p90_ms: crate::percentile(&latencies_us, 0.90),
        p99_ms: crate::percentile(&latencies_us, 0.99),
        max_ms: crate::percentile(&latencies_us, 1.0),
        sold_out: counters.sold_out.load(Ordering::Relaxed),
        gave_up: counters.gave_up.load(Ordering::Relaxed),
        client_retries: counters.retries.load(Ordering::Relaxed),
        server_conflicts: conflicts_by_mode.values().sum(),
        conflicts_by_mode,
        claims_by_mode,
        switches: switches_to.values().sum(),
        switches_to,
        errors: counters.errors.load(Ordering::Relaxed),
        errors_by_status: counters.errors_by_status(),
        oversold: ledger.oversold_seats(),
        seat_map_mismatches: disagreements.len(),
        seat_map_sold: maps.iter().map(|(_, counts)| counts.sold).sum(),
        seat_map_free: maps.iter().map(|(_, counts)| counts.free).sum(),
        seat_map_held: maps.iter().map(|(_, counts)| counts.held).sum(),
    };
    eprintln!(
        "{label}: {} bookings ({} seats) in {:.1}s = {:.1}/s, p50 {:.1} ms, p99 {:.1} ms, \
         {} sold out, {} retries, {} conflicts, {} switches, {} errors",
        report.bookings,
        report.seats_sold,
        report.seconds,
        report.bookings_per_second,
        report.p50_ms,
        report.p99_ms,
        report.sold_out,
        report.client_retries,
        report.server_conflicts,
        report.switches,
        report.errors
    );
    eprintln!(
        "oversold: {} (seat maps: {} sold, {} held, {} free; {} disagree with the orders)",
        report.oversold,
        report.seat_map_sold,
        report.seat_map_held,
        report.seat_map_free,
        report.seat_map_mismatches
    );
    Ok(report)
}

/// Buyers look at a seat map before sales open, as people do, so each has
/// a connection ready and the storm measures purchases, not handshakes. A
/// buyer who could not connect yet tries again with the first purchase.
async fn open_connections(
    client: &reqwest::Client,
    base: &str,
    showtimes: &[String],
    buyers: usize,
) {
    let looks = (0..buyers).map(|buyer| async move {
        let url = format!(
            "{base}/v1/showtimes/{}/seats",
            showtimes[buyer % showtimes.len()]
        );
        let response = client.get(&url).send().await?;
        let status = response.status();
        response.bytes().await?;
        anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
        anyhow::Ok(())
    });
    let failed: Vec<anyhow::Error> = futures::future::join_all(looks)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if let Some(first) = failed.first() {
        eprintln!(
            "{} of {buyers} buyers could not open a connection before the storm: {first:#}",
            failed.len()
        );
    }
}

async fn scrape(client: &reqwest::Client, base: &str) -> anyhow::Result<Scrape> {
    let response = client.get(format!("{base}/metrics")).send().await?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "GET /metrics answered {status}");
    Ok(Scrape::parse(&response.text().await?))
}

/// A short tag that names this run's theaters and movies.
pub(crate) fn run_id() -> String {
    let seconds = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    format!("{seconds:x}")
}
