//! Waking the clients that wait on a user's inbox, long-polls and event
//! streams, on whichever instance they reached. Filing a notice rings the
//! user's bell: the instance that filed it wakes its own waiters at once and
//! publishes the user's id on the deployment's Redis channel, and every
//! instance wakes its waiters for that user. Without Redis, waiters look
//! again every few seconds, so a notice is late, never lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::{Notify, OnceCell};
use uuid::Uuid;

/// How often a waiter looks at the inbox even when no bell rang: the bound
/// on lateness while Redis is away.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Bells are forgotten once nobody waits on them; the map is swept of such
/// entries after this many new ones.
const SWEEP_EVERY: usize = 1024;

pub struct InboxHub {
    client: Option<redis::Client>,
    channel: String,
    timeout: Duration,
    publisher: OnceCell<ConnectionManager>,
    bells: Mutex<Bells>,
}

#[derive(Default)]
struct Bells {
    by_user: HashMap<Uuid, Weak<Notify>>,
    added: usize,
}

impl std::fmt::Debug for InboxHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxHub")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl InboxHub {
    pub fn new(client: Option<redis::Client>, key_prefix: &str, timeout: Duration) -> Self {
        Self {
            client,
            channel: format!("{key_prefix}inbox"),
            timeout,
            publisher: OnceCell::new(),
            bells: Mutex::new(Bells::default()),
        }
    }

    /// The user's bell, notified whenever a notice for the user is filed.
    /// Waiters hold it; it is dropped with the last of them.
    pub fn bell(&self, user: Uuid) -> Arc<Notify> {
        let mut bells = self
            .bells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bell) = bells.by_user.get(&user).and_then(Weak::upgrade) {
            return bell;
        }
        bells.added += 1;
        if bells.added.is_multiple_of(SWEEP_EVERY) {
            bells.by_user.retain(|_, bell| bell.strong_count() > 0);
        }
        let bell = Arc::new(Notify::new());
        bells.by_user.insert(user, Arc::downgrade(&bell));
        bell
    }

    fn wake(&self, user: Uuid) {
        let bell = self
            .bells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_user
            .get(&user)
            .and_then(Weak::upgrade);
        if let Some(bell) = bell {
            bell.notify_waiters();
        }
    }

    /// Listens on the deployment's channel until aborted, reconnecting
    /// after a failure; nothing to do without Redis.
    pub fn spawn_listener(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let Some(client) = self.client.clone() else {
                return;
            };
            loop {
                if let Err(err) = self.listen(&client).await {
                    tracing::debug!(error = %err, "inbox bells from Redis stopped; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    async fn listen(&self, client: &redis::Client) -> Result<(), redis::RedisError> {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let user: String = message.get_payload()?;
            if let Ok(user) = user.parse() {
                self.wake(user);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl marquee_notifications::Bell for InboxHub {
    async fn ring(&self, user: Uuid) {
        self.wake(user);
        let Some(client) = self.client.as_ref() else {
            return;
        };
        let publish = async {
            let mut publisher = self
                .publisher
                .get_or_try_init(|| ConnectionManager::new(client.clone()))
                .await?
                .clone();
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(user.to_string())
                .query_async::<i64>(&mut publisher)
                .await
        };
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "inbox bell not published"),
            Err(_) => tracing::debug!("inbox bell not published in time"),
        }
    }
}
