//! Background upkeep of bookings on every instance: lapsed holds give their
//! seats back, orders left pending by a crash or a hung request are settled
//! with the payment provider (one instance per order, by lease), waiting
//! rooms' lines move on, and freed seats are offered to waiting lists.
//! Every step is idempotent or claims its work, so all instances may sweep
//! at once.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Entry;
use crate::state::AppState;

/// How often lapsed holds are swept. Readers already treat a lapsed hold's
/// seats as free; sweeping tells live seat maps, refreshes cached ones and
/// the search index, well within a second of the lapse.
const EXPIRY_PERIOD: Duration = Duration::from_millis(250);
/// How often waiting rooms' lines move and waiting lists get offers.
const HOT_RELEASE_PERIOD: Duration = Duration::from_secs(1);
/// How often pending orders and refunds are looked at.
const RECOVERY_PERIOD: Duration = Duration::from_secs(5);

pub fn spawn(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
        let mut recovery = tokio::time::interval(RECOVERY_PERIOD);
        let mut hot = tokio::time::interval(HOT_RELEASE_PERIOD);
        for interval in [&mut expiry, &mut recovery, &mut hot] {
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = expiry.tick() => expire(&state).await,
                _ = recovery.tick() => recover(&state).await,
                _ = hot.tick() => hot_release(&state).await,
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

async fn hot_release(state: &AppState) {
    if let Err(err) = state.booking.tick_rooms().await {
        tracing::warn!(error = %err, "could not move waiting rooms' lines");
    }
    let owner_token = |user| state.auth.gatekeeper.owner_token(user);
    match state.booking.make_offers(&owner_token).await {
        Ok(0) => {}
        Ok(made) => {
            tracing::info!(made, "offered freed seats to waiting lists");
        }
        Err(err) => tracing::warn!(error = %err, "could not make waiting-list offers"),
    }
}
