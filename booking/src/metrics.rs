//! What a hot release looks like from outside: waiting rooms, their lines,
//! waiting-list offers, admissions at the door and the limits buyers hit.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::Error;

#[derive(Debug, Clone)]
pub(crate) struct HotMetrics {
    pub rooms_active: IntGauge,
    pub rooms_turned_on: IntCounterVec,
    pub admitted: IntCounter,
    pub sold_out_told: IntCounter,
    pub offers: IntCounter,
    pub admissions: IntCounterVec,
    pub limits: IntCounterVec,
}

impl HotMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, Error> {
        let metrics = Self {
            rooms_active: IntGauge::new(
                "waiting_rooms_active",
                "Showtimes whose waiting room is on, as last counted by this instance",
            )
            .map_err(metrics_error)?,
            rooms_turned_on: IntCounterVec::new(
                Opts::new(
                    "waiting_rooms_turned_on_total",
                    "Waiting rooms this instance turned on, by why: staff or demand",
                ),
                &["reason"],
            )
            .map_err(metrics_error)?,
            admitted: IntCounter::new(
                "waiting_room_admitted_total",
                "People let out of waiting rooms' lines with a pass",
            )
            .map_err(metrics_error)?,
            sold_out_told: IntCounter::new(
                "waiting_room_sold_out_total",
                "People still in line when their showtime sold out, told so",
            )
            .map_err(metrics_error)?,
            offers: IntCounter::new(
                "waitlist_offers_total",
                "Holds offered to parties on waiting lists",
            )
            .map_err(metrics_error)?,
            admissions: IntCounterVec::new(
                Opts::new(
                    "door_scans_total",
                    "Tickets scanned at the door, by outcome: admitted, recorded, already_admitted, void, closed or refused",
                ),
                &["outcome"],
            )
            .map_err(metrics_error)?,
            limits: IntCounterVec::new(
                Opts::new(
                    "hold_limits_total",
                    "Holds and payments refused by a limit, by the limit: email, address, device, live_holds, card or places",
                ),
                &["limit"],
            )
            .map_err(metrics_error)?,
        };
        for collector in [
            Box::new(metrics.rooms_active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.rooms_turned_on.clone()),
            Box::new(metrics.admitted.clone()),
            Box::new(metrics.sold_out_told.clone()),
            Box::new(metrics.offers.clone()),
            Box::new(metrics.admissions.clone()),
            Box::new(metrics.limits.clone()),
        ] {
            registry.register(collector).map_err(metrics_error)?;
        }
        Ok(metrics)
    }
}

fn metrics_error(err: prometheus::Error) -> Error {
    Error::Settings(format!("metrics: {err}"))
}
