//! Live seat maps: whoever watches a showtime hears of each change to its
//! seats within a second, on whichever instance they reached.
//!
//! Every hold, sale and release writes a `seats.*` event on the showtime
//! in the same transaction, and the relay publishes it to the catalog
//! topic, which every instance follows (`catalog_stream`). Changes to a
//! showtime nobody watches here are skipped; for one that is watched, the
//! states are read once per batch of changes, however many watch it, and
//! fanned out. A watcher gets the current states when it connects, so a
//! change lost with a broker restart is made good by the next one or by
//! reconnecting. A hold that lapses writes nothing until the sweeper
//! tidies it, so each watched showtime is also read again the moment its
//! next hold lapses.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use marquee_storage::Storage;
use poem_openapi::Object;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Changes a slow watcher may fall behind by; past that it loses the
/// oldest and goes on from the oldest it still has.
const BACKLOG: usize = 16;
/// How long after a hold's lapse its showtime is read again: the database
/// counts a seat free only once its expiry is past.
const LAPSE_MARGIN: std::time::Duration = std::time::Duration::from_millis(20);

/// Which seats of a showtime are taken, and how many are free.
#[derive(Debug, Clone, Object)]
pub struct SeatStates {
    pub showtime_id: Uuid,
    pub seats_available: i32,
    /// Seat id (`B-7`) to `held`, `sold` or `blocked`; a seat not listed
    /// is free.
    pub taken: BTreeMap<String, String>,
    pub at: DateTime<Utc>,
}

pub struct SeatFeed {
    storage: Storage,
    watched: Mutex<HashMap<Uuid, broadcast::Sender<Arc<SeatStates>>>>,
    /// When each watched showtime's next hold lapses, for the read that
    /// shows its seats free at that moment rather than at the next sweep.
    lapses: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl std::fmt::Debug for SeatFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeatFeed").finish_non_exhaustive()
    }
}

impl SeatFeed {
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            watched: Mutex::new(HashMap::new()),
            lapses: Mutex::new(HashMap::new()),
        }
    }

    /// The showtime's current states, read from its shard. A watched
    /// showtime is read again the moment its next hold lapses.
    pub async fn states(
        self: &Arc<Self>,
        showtime: Uuid,
    ) -> Result<Option<SeatStates>, marquee_storage::Error> {
        let (map, lapse) = futures::try_join!(
            self.storage.seat_map(showtime),
            self.storage.next_hold_lapse(showtime),
        )?;
        if let Some(lapse) = lapse {
            self.expect_lapse(showtime, lapse);
        }
        Ok(map.map(|(showtime, _, taken)| SeatStates {
            showtime_id: showtime.id,
            seats_available: showtime.seats_available,
            taken,
            at: Utc::now(),
        }))
    }

    /// Reads and publishes the showtime's states just after `at`, unless
    /// an earlier read is due, which schedules the next one itself.
    fn expect_lapse(self: &Arc<Self>, showtime: Uuid, at: DateTime<Utc>) {
        if !self.is_watched(showtime) {
            return;
        }
        {
            let mut lapses = lock(&self.lapses);
            if lapses.get(&showtime).is_some_and(|due| *due <= at) {
                return;
            }
            lapses.insert(showtime, at);
        }
        let feed = Arc::clone(self);
        tokio::spawn(async move {
            let wait = (at - Utc::now()).to_std().unwrap_or_default() + LAPSE_MARGIN;
            tokio::time::sleep(wait).await;
            {
                let mut lapses = lock(&feed.lapses);
                if lapses.get(&showtime) == Some(&at) {
                    lapses.remove(&showtime);
                }
            }
            feed.publish(showtime).await;
        });
    }

    /// Subscribes to the showtime's changes; dropping the receiver stops
    /// watching.
    pub fn watch(&self, showtime: Uuid) -> broadcast::Receiver<Arc<SeatStates>> {
        let mut watched = lock(&self.watched);
        watched.retain(|_, sender| sender.receiver_count() > 0);
        watched
            .entry(showtime)
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe()
    }

    /// Whether anyone here watches the showtime.
    pub fn is_watched(&self, showtime: Uuid) -> bool {
        lock(&self.watched)
            .get(&showtime)
            .is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// Reads the showtime's states and sends them to its watchers.
    pub async fn publish(self: &Arc<Self>, showtime: Uuid) {
        match self.states(showtime).await {
            Ok(Some(states)) => {
                if let Some(sender) = lock(&self.watched).get(&showtime) {
                    let _ = sender.send(Arc::new(states));
                }
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, %showtime, "seat states unreadable; the next change retries")
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
