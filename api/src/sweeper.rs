//! Background upkeep of bookings on every instance: lapsed holds give their
//! seats back, and orders left pending by a crash or a hung request are
//! settled with the payment provider. Every step is idempotent, so all
//! instances may sweep at once.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Entry;
use crate::state::AppState;

/// How often lapsed holds are swept. Readers already treat a lapsed hold's
/// seats as free; sweeping refreshes cached seat maps and the search index.
const EXPIRY_PERIOD: Duration = Duration::from_secs(1);
/// How often pending orders and refunds are looked at.
const RECOVERY_PERIOD: Duration = Duration::from_secs(5);

pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
        let mut recovery = tokio::time::interval(RECOVERY_PERIOD);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = expiry.tick() => expire(&state).await,
                _ = recovery.tick() => recover(&state).await,
            }
        }
    })
}

async fn expire(state: &AppState) {
    match state.booking.expire_holds().await {
        Ok(showtimes) => {
            let entries: Vec<Entry> = showtimes
                .iter()
                .flat_map(|id| [Entry::Showtime(*id), Entry::SeatMap(*id)])
                .collect();
            state.cache.invalidate(&entries).await;
        }
        Err(err) => tracing::warn!(error = %err, "could not sweep lapsed holds"),
    }
}

async fn recover(state: &AppState) {
    match state.booking.recover(crate::routes::renderer()).await {
        Ok(0) => {}
        Ok(settled) => tracing::info!(settled, "settled orders left pending"),
        Err(err) => tracing::warn!(error = %err, "could not settle pending orders"),
    }
}
