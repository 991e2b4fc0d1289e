use std::sync::Arc;

use marquee_booking::Booking;
use marquee_search::MovieIndex;
use marquee_storage::Storage;

use crate::auth::AuthState;
use crate::cache::Cache;
use crate::health::Readiness;
use crate::metrics::Metrics;

/// What handlers share, built once by [`crate::startup::Application::build`].
#[derive(Debug)]
pub struct AppState {
    pub storage: Storage,
    pub search: Arc<MovieIndex>,
    pub readiness: Readiness,
    pub metrics: Metrics,
    pub cache: Arc<Cache>,
    pub booking: Arc<Booking>,
    pub auth: Arc<AuthState>,
    pub inbox: Arc<crate::inbox::InboxHub>,
    /// Live seat changes for the showtimes watched here.
    pub seats: Arc<crate::seat_feed::SeatFeed>,
    /// Texts go out through it.
    pub sms: Arc<dyn marquee_sms::SmsProvider>,
    pub turnaround_minutes: u32,
    pub horizon_days: u32,
    /// Subscriptions one account may hold.
    pub max_subscriptions: i64,
}
