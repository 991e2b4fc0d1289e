//! One purchase as a person makes it: hold the best seats together, then
//! pay. Only what may succeed on a second try is retried: a hold the server
//! refused as selling fast ("try again"), and a payment whose answer never
//! came, with the same idempotency key so it is never charged twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

/// Holds sent again after "try again" before the buyer gives up.
const HOLD_RETRIES: u32 = 4;
/// Payment requests sent with one idempotency key.
const ORDER_ATTEMPTS: u32 = 3;
/// The first pause before a retry; it doubles with each one, plus up to as
/// much again at random so refused buyers do not return together.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// How the server words a contended claim worth retrying, and a showtime
/// with no block of seats left.
const TRY_AGAIN: &str = "try again";
const NO_SEATS: &str = "adjacent seats";

/// Totals every buyer adds to, read while the storm runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub bought: AtomicU64,
    pub sold_out: AtomicU64,
    pub gave_up: AtomicU64,
    pub retries: AtomicU64,
    pub errors: AtomicU64,
    /// Buyers that will not try again.
    pub finished: AtomicU64,
    statuses: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut statuses) = self.statuses.lock() {
            *statuses.entry(what).or_insert(0) += 1;
        }
    }

    /// Unexpected answers, by step and status, such as `hold 503`.
    pub fn errors_by_status(&self) -> BTreeMap<String, u64> {
        self.statuses
            .lock()
            .map(|statuses| statuses.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
pub enum Outcome {
    Bought { seats: Vec<String>, took: Duration },
    SoldOut,
    GaveUp,
    Failed,
}

#[derive(Deserialize)]
struct HoldCreated {
    hold: Hold,
    booking_token: String,
}

#[derive(Deserialize)]
struct Hold {
    id: String,
}

#[derive(Deserialize)]
struct Order {
    status: String,
    tickets: Vec<Ticket>,
}

#[derive(Deserialize)]
struct Ticket {
    seat: String,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    detail: String,
}

#[derive(Debug)]
pub struct Checkout {
    client: reqwest::Client,
    base: String,
    seats_per_buyer: u32,
    pub counters: Counters,
}

impl Checkout {
    pub fn new(client: reqwest::Client, base: &str, seats_per_buyer: u32) -> Self {
        Self {
            client,
            base: base.to_owned(),
            seats_per_buyer,
            counters: Counters::default(),
        }
    }

    /// Holds the best seats together at `showtime` and pays for them.
    pub async fn purchase(&self, showtime: &str, email: &str, dice: &mut Dice) -> Outcome {
        let started = Instant::now();
        let hold = match self.hold(showtime, email, dice).await {
            Ok(hold) => hold,
            Err(outcome) => return outcome,
        };
        match self.pay(&hold, dice).await {
            Some(seats) => {
                self.counters.bought.fetch_add(1, Ordering::Relaxed);
                Outcome::Bought {
                    seats,
                    took: started.elapsed(),
                }
            }
            None => Outcome::Failed,
        }
    }

    async fn hold(
        &self,
        showtime: &str,
        email: &str,
        dice: &mut Dice,
    ) -> Result<HoldCreated, Outcome> {
        let url = format!("{}/v1/showtimes/{showtime}/holds", self.base);
        let body = json!({"email": email, "best_available": {"count": self.seats_per_buyer}});
        let mut retries = 0;
        loop {
            let response = match self.client.post(&url).json(&body).send().await {
                Ok(response) => response,
                Err(err) => {
                    // The hold may exist; sending it again would hold more
                    // seats, so the buyer stops here.
                    self.counters.error(format!("hold {}", transport(&err)));
                    return Err(Outcome::Failed);
                }
            };
            let status = response.status().as_u16();
            if status == 201 {
                return response.json::<HoldCreated>().await.map_err(|_| {
                    self.counters.error("hold 201 unreadable".to_owned());
                    Outcome::Failed
                });
            }
            let detail = match response.json::<Problem>().await {
                Ok(problem) if status == 409 => problem.detail,
                _ => String::new(),
            };
            if detail.contains(NO_SEATS) {
                self.counters.sold_out.fetch_add(1, Ordering::Relaxed);
                return Err(Outcome::SoldOut);
            }
            if !detail.contains(TRY_AGAIN) {
                self.counters.error(format!("hold {status}"));
                return Err(Outcome::Failed);
            }
            if retries == HOLD_RETRIES {
                self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
                return Err(Outcome::GaveUp);
            }
            retries += 1;
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff(retries, dice)).await;
        }
    }

    /// The seats of the confirmed order, or `None` when it failed.
    async fn pay(&self, hold: &HoldCreated, dice: &mut Dice) -> Option<Vec<String>> {
        let url = format!("{}/v1/orders", self.base);
        let key = uuid::Uuid::new_v4().to_string();
        // A card of its own per buyer, as in a real rush: one card pays for
        // no more seats of a showtime than one customer may.
        let card = format!("tok_visa_{}", hold.hold.id);
        let body = json!({"hold_id": hold.hold.id, "payment": {"method": "card", "token": card}});
        for attempt in 1..=ORDER_ATTEMPTS {
            if attempt > 1 {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(attempt - 1, dice)).await;
            }
            let sent = self
                .client
                .post(&url)
                .header("Booking-Token", &hold.booking_token)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(err) => {
                    self.counters.error(format!("order {}", transport(&err)));
                    continue;
                }
            };
            let status = response.status().as_u16();
            match status {
                201 => {
                    let Ok(order) = response.json::<Order>().await else {
                        self.counters.error("order 201 unreadable".to_owned());
                        return None;
                    };
                    if order.status != "confirmed" {
                        self.counters.error(format!("order 201 {}", order.status));
                        return None;
                    }
                    return Some(order.tickets.into_iter().map(|t| t.seat).collect());
                }
                // A retry that finds the first request still running is
                // told so with 409; its answer comes to the next retry.
                409 if attempt > 1 => self.counters.error(format!("order {status}")),
                500.. => self.counters.error(format!("order {status}")),
                _ => {
                    self.counters.error(format!("order {status}"));
                    return None;
                }
            }
        }
        None
    }
}

fn transport(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect error"
    } else {
        "transport error"
    }
}

/// The pause before retry `retry` (from 1): doubling, with jitter.
fn backoff(retry: u32, dice: &mut Dice) -> Duration {
    let base = FIRST_BACKOFF * 2u32.pow(retry.saturating_sub(1).min(10));
    let jitter = dice.below(base.as_micros().max(1) as u64);
    base + Duration::from_micros(jitter)
}

/// A small random source (`SplitMix64`) for jitter and the choice of
/// showtime, one per buyer so buyers share no lock.
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    pub fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`; `bound` must not be zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_as_much_again() {
        let mut dice = Dice::seeded(7);
        for retry in 1..=4 {
            let base = FIRST_BACKOFF * 2u32.pow(retry - 1);
            for _ in 0..100 {
                let pause = backoff(retry, &mut dice);
                assert!(
                    pause >= base && pause < base * 2,
                    "retry {retry}: {pause:?}"
                );
            }
        }
    }

    #[test]
    fn dice_cover_every_showtime_evenly() {
        let mut dice = Dice::seeded(42);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[dice.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn errors_are_counted_by_step_and_status() {
        let counters = Counters::default();
        counters.error("hold 503".to_owned());
        counters.error("hold 503".to_owned());
        counters.error("order timeout".to_owned());
        assert_eq!(counters.errors.load(Ordering::Relaxed), 3);
        let by_status = counters.errors_by_status();
        assert_eq!(by_status.get("hold 503"), Some(&2));
        assert_eq!(by_status.get("order timeout"), Some(&1));
    }
}
