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
    /// needs the same one; scanners verify with the public keys. There is
    /// no default: the local cluster generates one.
    pub ticket_signing_secret: String,
    /// Keys that signed tickets before the last rotation, verifying until
    /// their date.
    pub previous_ticket_keys: Vec<crate::tickets::PreviousKey>,
    pub door: DoorSettings,
    pub fairness: FairnessSettings,
    pub waiting_room: WaitingRoomSettings,
    pub waitlist: WaitlistSettings,
    /// How long one instance may take to settle a stale order before
    /// another may take it over.
    pub recovery_lease_seconds: u64,
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
            ticket_signing_secret: String::new(),
            previous_ticket_keys: Vec::new(),
            door: DoorSettings::default(),
            fairness: FairnessSettings::default(),
            waiting_room: WaitingRoomSettings::default(),
            waitlist: WaitlistSettings::default(),
            recovery_lease_seconds: 30,
        }
    }
}

/// When the doors take tickets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DoorSettings {
    /// Doors admit a showtime's tickets from this long before it starts
    /// until it ends.
    pub opens_minutes_before: i64,
    /// How far ahead of the server's clock an offline scanner's admission
    /// time may be.
    pub clock_skew_seconds: i64,
}

impl Default for DoorSettings {
    fn default() -> Self {
        Self {
            opens_minutes_before: 180,
            clock_skew_seconds: 300,
        }
    }
}

/// When a showtime's waiting room turns on by itself, and how fast its
/// line moves.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaitingRoomSettings {
    /// Whether rooms turn on by themselves when demand crosses the rate
    /// below; staff can always turn one on or off.
    pub auto: bool,
    /// Hold attempts per second, per seat left, at which a room turns on.
    pub attempts_per_seat_left: f64,
    /// Fewer hold attempts per second than this never turn a room on.
    pub min_attempts_per_second: f64,
    /// People let out of the line per second at most.
    pub admit_per_second: f64,
    /// Most people choosing seats and paying at once: passes out and not
    /// yet used or lapsed, and never more than seats left.
    pub checkout_capacity: i64,
    /// How long a pass lets its holder start a hold.
    pub pass_ttl_seconds: u64,
    /// Places one network address may have in one line.
    pub max_places_per_address: usize,
}

impl Default for WaitingRoomSettings {
    fn default() -> Self {
        Self {
            auto: true,
            attempts_per_seat_left: 0.5,
            min_attempts_per_second: 20.0,
            admit_per_second: 20.0,
            checkout_capacity: 200,
            pass_ttl_seconds: 120,
            max_places_per_address: 20,
        }
    }
}

/// Offers to parties on a sold-out showtime's waiting list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaitlistSettings {
    /// How long a party has to pay for the seats it is offered.
    pub offer_ttl_seconds: u64,
}

impl Default for WaitlistSettings {
    fn default() -> Self {
        Self {
            offer_ttl_seconds: 900,
        }
    }
}

/// Limits that keep one buyer from holding a show without paying,
/// whatever the addresses typed. A network address (a whole IPv6 /64) may
/// be shared by an office or a mobile carrier's customers, so its limits
/// are wider than a device's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairnessSettings {
    /// Seats of one showtime held and not yet paid from one device id.
    pub max_unpaid_seats_per_device: usize,
    /// Holds alive at once from one device id, across every showtime.
    pub max_live_holds_per_device: usize,
    /// Seats of one showtime held and not yet paid from one network
    /// address.
    pub max_unpaid_seats_per_address: usize,
    /// Holds alive at once from one network address, across every
    /// showtime.
    pub max_live_holds_per_address: usize,
}

impl Default for FairnessSettings {
    fn default() -> Self {
        Self {
            max_unpaid_seats_per_device: 10,
            max_live_holds_per_device: 6,
            max_unpaid_seats_per_address: 40,
            max_live_holds_per_address: 12,
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
