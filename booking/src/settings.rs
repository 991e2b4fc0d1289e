//! Booking settings, read once with the rest of the configuration.

use serde::Deserialize;

/// Holds, locking, payment and cancellation rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How long a hold keeps its seats.
    pub hold_ttl_seconds: u64,
    /// How much longer a hold lasts after its one extension.
    pub hold_extension_seconds: u64,
    /// Seats in one hold.
    pub max_seats_per_hold: usize,
    /// Seats one customer may hold or own for one showtime, against
    /// scalping.
    pub max_seats_per_customer: usize,
    /// How long a hold's seats are kept once payment starts, whatever the
    /// hold's own expiry.
    pub payment_window_seconds: u64,
    /// A pending order older than this is taken over by the recovery
    /// sweeper, which finds out from the provider what happened.
    pub recovery_after_seconds: u64,
    pub locking: LockingSettings,
    pub cancellation: CancellationSettings,
    /// Secret from which the ticket signing key is derived. Every instance
    /// needs the same one; scanners verify with the public key.
    pub ticket_signing_secret: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            hold_ttl_seconds: 600,
            hold_extension_seconds: 300,
            max_seats_per_hold: 10,
            max_seats_per_customer: 10,
            payment_window_seconds: 300,
            recovery_after_seconds: 60,
            locking: LockingSettings::default(),
            cancellation: CancellationSettings::default(),
            ticket_signing_secret: "marquee-local-ticket-signing-secret".to_owned(),
        }
    }
}

/// When a showtime under `auto` switches between optimistic and
/// pessimistic locking.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockingSettings {
    /// Recent claims per showtime the conflict rate is measured over.
    pub window: usize,
    /// Claims needed before the rate counts.
    pub min_samples: usize,
    /// Conflict rate at which a showtime turns pessimistic.
    pub pessimistic_above: f64,
    /// Conflict rate below which it turns optimistic again, after at least
    /// `min_dwell_seconds` in pessimistic mode: the gap and the dwell are the
    /// hysteresis that keeps a showtime from flapping.
    pub optimistic_below: f64,
    pub min_dwell_seconds: u64,
    /// Optimistic attempts before a buyer is told to try again.
    pub optimistic_attempts: u32,
    /// Daily windows, `HH:MM-HH:MM` in UTC (may cross midnight), during
    /// which every `auto` showtime is pessimistic from the first claim.
    pub peak_hours: Vec<String>,
}

impl Default for LockingSettings {
    fn default() -> Self {
        Self {
            window: 40,
            min_samples: 10,
            pessimistic_above: 0.2,
            optimistic_below: 0.05,
            min_dwell_seconds: 30,
            optimistic_attempts: 8,
            peak_hours: Vec::new(),
        }
    }
}

/// Who may cancel until when, and for how much back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CancellationSettings {
    /// Customers cannot cancel later than this before the show.
    pub cutoff_minutes: i64,
    /// Refund tiers: the first whose `min_minutes_before` the cancellation
    /// meets applies.
    pub tiers: Vec<RefundTier>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundTier {
    pub min_minutes_before: i64,
    pub refund_percent: u32,
}

impl Default for CancellationSettings {
    fn default() -> Self {
        Self {
            cutoff_minutes: 20,
            tiers: vec![
                RefundTier {
                    min_minutes_before: 120,
                    refund_percent: 100,
                },
                RefundTier {
                    min_minutes_before: 20,
                    refund_percent: 50,
                },
            ],
        }
    }
}

impl CancellationSettings {
    /// The refund for a customer cancelling `minutes_before` the show;
    /// `None` once the cutoff has passed.
    pub fn refund_percent(&self, minutes_before: i64) -> Option<u32> {
        if minutes_before < self.cutoff_minutes {
            return None;
        }
        let mut tiers = self.tiers.clone();
        tiers.sort_by_key(|tier| std::cmp::Reverse(tier.min_minutes_before));
        Some(
            tiers
                .iter()
                .find(|tier| minutes_before >= tier.min_minutes_before)
                .map_or(0, |tier| tier.refund_percent.min(100)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tiers_refund_in_full_early_and_half_late() {
        let policy = CancellationSettings::default();
        assert_eq!(policy.refund_percent(24 * 60), Some(100));
        assert_eq!(policy.refund_percent(120), Some(100));
        assert_eq!(policy.refund_percent(119), Some(50));
        assert_eq!(policy.refund_percent(20), Some(50));
        assert_eq!(policy.refund_percent(19), None);
    }

    #[test]
    fn a_cancellation_below_every_tier_refunds_nothing() {
        let policy = CancellationSettings {
            cutoff_minutes: 0,
            tiers: vec![RefundTier {
                min_minutes_before: 60,
                refund_percent: 80,
            }],
        };
        assert_eq!(policy.refund_percent(30), Some(0));
        assert_eq!(policy.refund_percent(60), Some(80));
    }
}
