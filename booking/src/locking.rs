//! The adaptive choice between optimistic and pessimistic seat locking.
//!
//! Each instance measures, per showtime, how many of its recent attempts
//! met contention: an optimistic attempt that collided, or a pessimistic one
//! that found a row locked or its first choice gone (the collision it would
//! have had). When the rate crosses `pessimistic_above`, the instance
//! switches the showtime's stored mode; every instance reads that mode in
//! the claim's own transaction, so they all follow. The way back needs the
//! rate under the much lower `optimistic_below` after a minimum dwell,
//! which keeps a showtime on the edge from flapping.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use marquee_storage::holds::{Contention, ContentionObserver, LockMode};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use uuid::Uuid;

use crate::settings::LockingSettings;
use crate::Error;

/// Showtimes tracked per instance before the ones idle longest are
/// forgotten.
const TRACKED_LIMIT: usize = 20_000;

#[derive(Debug)]
struct Tracker {
    recent: VecDeque<bool>,
    last_seen: DateTime<Utc>,
    /// The mode of the last claim, as counted in the mode gauge.
    mode: LockMode,
    /// The last switch this instance decided, and when.
    decided: Option<(LockMode, DateTime<Utc>)>,
}

/// What this instance has seen of one showtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub claims: usize,
    pub contended: usize,
}

impl Observed {
    pub fn rate(&self) -> f64 {
        if self.claims == 0 {
            0.0
        } else {
            self.contended as f64 / self.claims as f64
        }
    }
}

/// A daily window in minutes after midnight UTC; `from > to` crosses
/// midnight.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    from: u32,
    to: u32,
}

impl Window {
    fn parse(text: &str) -> Option<Self> {
        let (from, to) = text.split_once('-')?;
        let minutes = |time: &str| {
            NaiveTime::parse_from_str(time.trim(), "%H:%M")
                .ok()
                .map(|time| time.hour() * 60 + time.minute())
        };
        Some(Self {
            from: minutes(from)?,
            to: minutes(to)?,
        })
    }

    fn contains(self, minute: u32) -> bool {
        if self.from <= self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

#[derive(Debug)]
pub struct Controller {
    settings: LockingSettings,
    peaks: Vec<Window>,
    showtimes: Mutex<HashMap<Uuid, Tracker>>,
    claims: IntCounterVec,
    conflicts: IntCounterVec,
    switches: IntCounterVec,
    modes: IntGaugeVec,
}

fn must<T>(result: prometheus::Result<T>) -> T {
    result.unwrap_or_else(|err| unreachable!("metric definitions are static and valid: {err}"))
}

impl Controller {
    /// Registers the controller's metrics in `registry`.
    pub fn new(settings: LockingSettings, registry: &Registry) -> Result<Self, Error> {
        let peaks = settings
            .peak_hours
            .iter()
            .map(|text| {
                Window::parse(text).ok_or_else(|| {
                    Error::Settings(format!(
                        "booking.locking.peak_hours entry {text:?} is not HH:MM-HH:MM"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let claims = must(IntCounterVec::new(
            Opts::new(
                "seat_claims_total",
                "Seat claims (holds) by locking mode and outcome: held or refused",
            ),
            &["mode", "outcome"],
        ));
        let conflicts = must(IntCounterVec::new(
            Opts::new(
                "seat_claim_conflicts_total",
                "Claim attempts that met contention: an optimistic retry, or a pessimistic row found locked",
            ),
            &["mode"],
        ));
        let switches = must(IntCounterVec::new(
            Opts::new(
                "seat_locking_switches_total",
                "Showtimes switched between locking modes by this instance, by the mode switched to",
            ),
            &["to"],
        ));
        let modes = must(IntGaugeVec::new(
            Opts::new(
                "seat_locking_showtimes",
                "Showtimes this instance claimed seats of recently, by the mode of their last claim",
            ),
            &["mode"],
        ));
        for collector in [
            Box::new(claims.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(conflicts.clone()),
            Box::new(switches.clone()),
            Box::new(modes.clone()),
        ] {
            registry
                .register(collector)
                .map_err(|err| Error::Settings(format!("metrics: {err}")))?;
        }
        Ok(Self {
            settings,
            peaks,
            showtimes: Mutex::new(HashMap::new()),
            claims,
            conflicts,
            switches,
            modes,
        })
    }

    /// Whether `now` falls in configured peak hours.
    pub fn is_peak(&self, now: DateTime<Utc>) -> bool {
        let minute = now.hour() * 60 + now.minute();
        self.peaks.iter().any(|window| window.contains(minute))
    }

    /// Counts a finished claim by the mode it ran in and its outcome.
    pub fn claimed(&self, contention: &Contention, held: bool) {
        self.claims
            .with_label_values(&[
                contention.mode.as_str(),
                if held { "held" } else { "refused" },
            ])
            .inc();
    }

    /// Records one attempt at a showtime's seats as it happens; the mode to
    /// switch the showtime to, if any, with the conflict rate that decided
    /// it. Attempts rather than whole claims are the samples, so a storm
    /// turns a showtime pessimistic within its first few collisions.
    pub fn observe_attempt(
        &self,
        showtime: Uuid,
        contention: &Contention,
        collided: bool,
        now: DateTime<Utc>,
    ) -> Option<(LockMode, f64)> {
        let mode = contention.mode.as_str();
        if collided {
            self.conflicts.with_label_values(&[mode]).inc();
        }
        let Ok(mut showtimes) = self.showtimes.lock() else {
            return None;
        };
        if showtimes.len() >= TRACKED_LIMIT && !showtimes.contains_key(&showtime) {
            self.forget_idle(&mut showtimes);
        }
        let tracker = showtimes.entry(showtime).or_insert_with(|| {
            self.modes.with_label_values(&[mode]).inc();
            Tracker {
                recent: VecDeque::with_capacity(self.settings.window),
                last_seen: now,
                mode: contention.mode,
                decided: None,
            }
        });
        tracker.last_seen = now;
        tracker.recent.push_back(collided);
        while tracker.recent.len() > self.settings.window.max(1) {
            tracker.recent.pop_front();
        }
        let observed = observed(tracker);
        let switch = self.decide(contention, &observed, now);
        if let Some(mode) = switch {
            tracker.recent.clear();
            tracker.decided = Some((mode, now));
        }
        let current = switch.unwrap_or(contention.mode);
        if tracker.mode != current {
            self.modes.with_label_values(&[tracker.mode.as_str()]).dec();
            self.modes.with_label_values(&[current.as_str()]).inc();
            tracker.mode = current;
        }
        switch.map(|mode| (mode, observed.rate()))
    }

    /// Forgets the half of the tracked showtimes idle longest.
    fn forget_idle(&self, showtimes: &mut HashMap<Uuid, Tracker>) {
        let mut seen: Vec<DateTime<Utc>> = showtimes.values().map(|t| t.last_seen).collect();
        seen.sort_unstable();
        let cutoff = seen[seen.len() / 2];
        showtimes.retain(|_, tracker| {
            let keep = tracker.last_seen > cutoff;
            if !keep {
                self.modes.with_label_values(&[tracker.mode.as_str()]).dec();
            }
            keep
        });
    }

    fn decide(
        &self,
        contention: &Contention,
        observed: &Observed,
        now: DateTime<Utc>,
    ) -> Option<LockMode> {
        if !contention.auto || observed.claims < self.settings.min_samples {
            return None;
        }
        let dwell = (now - contention.since).num_seconds();
        match contention.stored {
            LockMode::Optimistic if observed.rate() >= self.settings.pessimistic_above => {
                Some(LockMode::Pessimistic)
            }
            LockMode::Pessimistic
                if !self.is_peak(now)
                    && dwell
                        >= i64::try_from(self.settings.min_dwell_seconds).unwrap_or(i64::MAX)
                    && observed.rate() <= self.settings.optimistic_below =>
            {
                Some(LockMode::Optimistic)
            }
            _ => None,
        }
    }

    /// Counts a switch this instance made.
    pub fn switched(&self, to: LockMode) {
        self.switches.with_label_values(&[to.as_str()]).inc();
    }

    /// What this instance has seen of a showtime lately.
    pub fn observed(&self, showtime: Uuid) -> Observed {
        self.showtimes
            .lock()
            .ok()
            .and_then(|showtimes| showtimes.get(&showtime).map(observed))
            .unwrap_or(Observed {
                claims: 0,
                contended: 0,
            })
    }
}

impl ContentionObserver for Controller {
    fn observe(
        &self,
        showtime: Uuid,
        contention: &Contention,
        collided: bool,
    ) -> Option<(LockMode, f64)> {
        self.observe_attempt(showtime, contention, collided, Utc::now())
    }

    fn decided(&self, showtime: Uuid) -> Option<(LockMode, DateTime<Utc>)> {
        self.showtimes
            .lock()
            .ok()
            .and_then(|showtimes| showtimes.get(&showtime).and_then(|t| t.decided))
    }
}

fn observed(tracker: &Tracker) -> Observed {
    Observed {
        claims: tracker.recent.len(),
        contended: tracker.recent.iter().filter(|c| **c).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(settings: LockingSettings) -> Controller {
        Controller::new(settings, &Registry::new()).unwrap_or_else(|err| panic!("{err}"))
    }

    fn contention(stored: LockMode, since: DateTime<Utc>) -> Contention {
        Contention {
            mode: stored,
            auto: true,
            stored,
            since,
            attempts: 1,
            conflicts: 0,
            switched: None,
        }
    }

    #[test]
    fn steady_collisions_switch_a_showtime_to_pessimistic() {
        let controller = controller(LockingSettings::default());
        let showtime = Uuid::new_v4();
        let now = Utc::now();
        let mut switched = None;
        for i in 0..10 {
            switched = controller.observe_attempt(
                showtime,
                &contention(LockMode::Optimistic, now),
                i % 2 == 0,
                now,
            );
        }
        assert_eq!(switched.map(|(mode, _)| mode), Some(LockMode::Pessimistic));
    }

    #[test]
    fn rare_conflicts_keep_a_showtime_optimistic() {
        let controller = controller(LockingSettings::default());
        let showtime = Uuid::new_v4();
        let now = Utc::now();
        for i in 0..100 {
            let switched = controller.observe_attempt(
                showtime,
                &contention(LockMode::Optimistic, now),
                i % 10 == 0,
                now,
            );
            assert_eq!(switched, None, "claim {i}");
        }
    }

    #[test]
    fn the_way_back_waits_for_the_dwell_and_a_calm_window() {
        let controller = controller(LockingSettings::default());
        let showtime = Uuid::new_v4();
        let now = Utc::now();
        let just_switched = now - chrono::Duration::seconds(5);
        for _ in 0..20 {
            let switched = controller.observe_attempt(
                showtime,
                &contention(LockMode::Pessimistic, just_switched),
                false,
                now,
            );
            assert_eq!(switched, None, "too soon after the last switch");
        }
        let long_ago = now - chrono::Duration::seconds(60);
        let switched = controller.observe_attempt(
            showtime,
            &contention(LockMode::Pessimistic, long_ago),
            false,
            now,
        );
        assert_eq!(switched.map(|(mode, _)| mode), Some(LockMode::Optimistic));
    }

    #[test]
    fn a_switch_applies_on_this_instance_before_it_is_stored() {
        let controller = controller(LockingSettings::default());
        let showtime = Uuid::new_v4();
        let now = Utc::now();
        assert_eq!(controller.decided(showtime), None);
        for _ in 0..10 {
            controller.observe_attempt(showtime, &contention(LockMode::Optimistic, now), true, now);
        }
        assert_eq!(
            controller.decided(showtime).map(|(mode, _)| mode),
            Some(LockMode::Pessimistic)
        );
    }

    #[test]
    fn a_fixed_policy_is_never_switched() {
        let controller = controller(LockingSettings::default());
        let showtime = Uuid::new_v4();
        let now = Utc::now();
        let mut fixed = contention(LockMode::Optimistic, now);
        fixed.auto = false;
        for _ in 0..50 {
            assert_eq!(
                controller.observe_attempt(showtime, &fixed, true, now),
                None
            );
        }
    }

    #[test]
    fn peak_windows_may_cross_midnight() {
        let controller = controller(LockingSettings {
            peak_hours: vec!["22:30-01:00".to_owned()],
            ..LockingSettings::default()
        });
        let at = |h, m| {
            chrono::NaiveDate::from_ymd_opt(2026, 12, 18)
                .and_then(|d| d.and_hms_opt(h, m, 0))
                .map(|t| t.and_utc())
                .unwrap_or_default()
        };
        assert!(controller.is_peak(at(23, 0)));
        assert!(controller.is_peak(at(0, 59)));
        assert!(!controller.is_peak(at(1, 0)));
        assert!(!controller.is_peak(at(22, 29)));
        assert!(Controller::new(
            LockingSettings {
                peak_hours: vec!["25:00-26:00".to_owned()],
                ..LockingSettings::default()
            },
            &Registry::new()
        )
        .is_err());
    }
}
