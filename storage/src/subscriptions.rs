//! What signed-in users subscribed to hear about, the alerts those
//! subscriptions raised, and each user's notification preferences; all on
//! the node that owns the user.

use chrono::{DateTime, Utc};
use marquee_sharding::{ids, ShardNode};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::accounts::user_key;
use crate::store::rejected;
use crate::{Error, Storage};

/// A point and the distance around it that counts as near.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub latitude: f64,
    pub longitude: f64,
    pub radius_km: f64,
}

/// What a subscription matches: every filter it sets must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub movie_id: Option<Uuid>,
    /// Lower-cased words that must all appear in the title.
    pub title_words: Vec<String>,
    pub genre: Option<String>,
    /// Lower-cased.
    pub city: Option<String>,
    pub near: Option<Near>,
    pub theater_id: Option<Uuid>,
    pub format: Option<String>,
    /// Watches this sold-out showtime for freed seats.
    pub showtime_id: Option<Uuid>,
}

impl Filter {
    /// A filter on what a movie is, not where or how it plays: it is told
    /// about new releases rather than about each new showtime.
    pub fn is_movie_level(&self) -> bool {
        self.movie_id.is_none()
            && self.city.is_none()
            && self.near.is_none()
            && self.theater_id.is_none()
            && self.format.is_none()
            && self.showtime_id.is_none()
            && (!self.title_words.is_empty() || self.genre.is_some())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: Uuid,
    pub user_id: Uuid,
    pub filter: Filter,
    pub created_at: DateTime<Utc>,
}

/// An alert a subscription raises: written once per `id`, with its change
/// event, which the notification service delivers.
#[derive(Debug, Clone)]
pub struct Alert {
    pub id: Uuid,
    pub user_id: Uuid,
    pub subscription_id: Uuid,
    /// What the notification service needs: kind, title, body, subject.
    pub payload: serde_json::Value,
    /// A seat watch is spent by its alert.
    pub spends_subscription: bool,
}

/// The channels a user wants notices on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub email: bool,
    pub sms: bool,
    pub in_app: bool,
    /// E.164, confirmed by a code sent to it; SMS goes nowhere else.
    pub phone: Option<String>,
}

/// What became of a typed-back phone code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneCheck {
    /// The number is confirmed.
    Confirmed,
    /// The code is wrong; more tries are left.
    Wrong,
    /// No code is waiting, it lapsed, or it was tried too often: ask for
    /// another.
    Spent,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            email: true,
            sms: false,
            in_app: true,
            phone: None,
        }
    }
}

const COLUMNS: &str = "id, user_id, movie_id, title_words, genre, city, latitude, longitude, \
                       radius_km, theater_id, format, showtime_id, created_at";

fn from_row(row: &Row) -> Subscription {
    let latitude: Option<f64> = row.get(6);
    let longitude: Option<f64> = row.get(7);
    let radius_km: Option<f64> = row.get(8);
    let near = match (latitude, longitude, radius_km) {
        (Some(latitude), Some(longitude), Some(radius_km)) => Some(Near {
            latitude,
            longitude,
            radius_km,
        }),
        _ => None,
    };
    Subscription {
        id: row.get(0),
        user_id: row.get(1),
        filter: Filter {
            movie_id: row.get(2),
            title_words: row.get::<_, Option<Vec<String>>>(3).unwrap_or_default(),
            genre: row.get(4),
            city: row.get(5),
            near,
            theater_id: row.get(9),
            format: row.get(10),
            showtime_id: row.get(11),
        },
        created_at: row.get(12),
    }
}

impl Storage {
    /// Stores a subscription unless the user already has `cap`; the count
    /// and the insert run under the user's lock, so parallel requests
    /// cannot pass the cap together.
    pub async fn subscribe(
        &self,
        user: Uuid,
        filter: &Filter,
        cap: i64,
    ) -> Result<Subscription, Error> {
        let id = ids::scoped(user);
        let filter = filter.clone();
        self.in_key_transaction(user_key(&user), move |transaction, server| {
            let filter = filter.clone();
            Box::pin(async move {
                let held: i64 = transaction
                    .query_one(
                        "select count(*) from subscriptions where user_id = $1",
                        &[&user],
                    )
                    .await
                    .map_err(|err| rejected(server, err))?
                    .get(0);
                if held >= cap {
                    return Err(Error::Conflict(format!(
                        "an account may hold {cap} subscriptions; delete one before adding another"
                    )));
                }
                let words = (!filter.title_words.is_empty()).then_some(&filter.title_words);
                let row = transaction
                    .query_one(
                        &format!(
                            "insert into subscriptions (id, user_id, movie_id, title_words, genre, city, \
                             latitude, longitude, radius_km, theater_id, format, showtime_id) \
                             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) returning {COLUMNS}"
                        ),
                        &[
                            &id,
                            &user,
                            &filter.movie_id,
                            &words,
                            &filter.genre,
                            &filter.city,
                            &filter.near.map(|near| near.latitude),
                            &filter.near.map(|near| near.longitude),
                            &filter.near.map(|near| near.radius_km),
                            &filter.theater_id,
                            &filter.format,
                            &filter.showtime_id,
                        ],
                    )
                    .await
                    .map_err(|err| rejected(server, err))?;
                Ok(from_row(&row))
            })
        })
        .await
    }

    /// The user's subscriptions, oldest first.
    pub async fn subscriptions(&self, user: Uuid) -> Result<Vec<Subscription>, Error> {
        Ok(self
            .read_key(
                ids::route_hash(user),
                "account",
                &format!(
                    "select {COLUMNS} from subscriptions where user_id = $1 order by created_at, id"
                ),
                &[&user],
            )
            .await?
            .iter()
            .map(from_row)
            .collect())
    }

    /// Deletes one of the user's subscriptions; false if it had none with
    /// that id.
    pub async fn unsubscribe(&self, user: Uuid, id: Uuid) -> Result<bool, Error> {
        Ok(!self
            .write_key(
                user_key(&user),
                "delete from subscriptions where id = $2 and user_id = $1 returning 1",
                &[&user, &id],
            )
            .await?
            .is_empty())
    }

    /// Subscriptions on `node` that may match new showtimes of `movies` at
    /// `theaters`: the cheap filters are applied here, the rest by the
    /// caller. Seat watches and movie-level subscriptions (which hear of
    /// releases) are not among them.
    pub async fn showtime_subscriptions(
        &self,
        node: &ShardNode,
        movies: &[Uuid],
        theaters: &[Uuid],
    ) -> Result<Vec<Subscription>, Error> {
        on_node(
            node,
            "showtime_id is null \
             and (movie_id is null or movie_id = any($1)) \
             and (theater_id is null or theater_id = any($2)) \
             and (movie_id is not null or city is not null or latitude is not null \
                  or theater_id is not null or format is not null)",
            &[&movies, &theaters],
        )
        .await
    }

    /// Movie-level subscriptions on `node` (title words or genre only),
    /// which hear about new releases.
    pub async fn release_subscriptions(
        &self,
        node: &ShardNode,
    ) -> Result<Vec<Subscription>, Error> {
        on_node(
            node,
            "showtime_id is null and movie_id is null and city is null and latitude is null \
             and theater_id is null and format is null \
             and (title_words is not null or genre is not null)",
            &[],
        )
        .await
    }

    /// The seat watches on `node`.
    pub async fn seat_watches(&self, node: &ShardNode) -> Result<Vec<Subscription>, Error> {
        on_node(node, "showtime_id is not null", &[]).await
    }

    /// Raises an alert and writes its change event, in one statement under
    /// the user's lock; false if it was raised before or its subscription
    /// was deleted since the scanner read it. A seat watch's alert deletes
    /// the watch with it.
    pub async fn raise_alert(&self, alert: &Alert) -> Result<bool, Error> {
        Ok(!self
            .write_key(
                user_key(&alert.user_id),
                "with raised as ( \
                     insert into subscription_alerts (id, user_id, subscription_id) \
                     select $2, $1, $3 where exists \
                         (select 1 from subscriptions where id = $3 and user_id = $1) \
                     on conflict (id) do nothing returning id), \
                 spent as ( \
                     delete from subscriptions where id = $3 and user_id = $1 and $5 \
                     and exists (select 1 from raised) returning id) \
                 insert into outbox (aggregate, aggregate_id, event, payload) \
                 select 'user', $1, 'alert.raised', $4 from raised returning 1",
                &[
                    &alert.user_id,
                    &alert.id,
                    &alert.subscription_id,
                    &alert.payload,
                    &alert.spends_subscription,
                ],
            )
            .await?
            .is_empty())
    }

    /// Deletes a seat watch whose showtime has begun or is gone.
    pub async fn drop_watch(&self, user: Uuid, id: Uuid) -> Result<(), Error> {
        self.write_key(
            user_key(&user),
            "delete from subscriptions where id = $2 and user_id = $1 returning 1",
            &[&user, &id],
        )
        .await?;
        Ok(())
    }

    /// The user's notification preferences; the defaults for an unknown
    /// user.
    pub async fn preferences(&self, user: Uuid) -> Result<Preferences, Error> {
        Ok(self
            .read_key(
                ids::route_hash(user),
                "account",
                "select notify_email, notify_sms, notify_in_app, \
                 case when phone_verified_at is not null then phone end \
                 from users where id = $1",
                &[&user],
            )
            .await?
            .first()
            .map(|row| Preferences {
                email: row.get(0),
                sms: row.get(1),
                in_app: row.get(2),
                phone: row.get(3),
            })
            .unwrap_or_default())
    }

    /// Sets the user's channels; false if there is no live account. SMS
    /// cannot be chosen without a confirmed number.
    pub async fn set_preferences(
        &self,
        user: Uuid,
        email: bool,
        sms: bool,
        in_app: bool,
    ) -> Result<bool, Error> {
        let rows = self
            .write_key(
                user_key(&user),
                "update users set notify_email = $2, notify_sms = $3, notify_in_app = $4, \
                 updated_at = now() where id = $1 and deleted_at is null \
                 and (not $3 or phone_verified_at is not null) returning 1",
                &[&user, &email, &sms, &in_app],
            )
            .await?;
        if rows.is_empty() && sms && self.account(user).await?.is_some() {
            return Err(Error::Invalid {
                detail: "SMS needs a confirmed phone number".to_owned(),
                fields: vec![(
                    "sms".to_owned(),
                    "confirm a number first: POST /v1/me/phone, then the code it receives"
                        .to_owned(),
                )],
            });
        }
        Ok(!rows.is_empty())
    }

    /// Records a code sent to `phone` for the user to type back, unless
    /// one was sent less than `cooldown_seconds` ago: then the seconds left
    /// to wait, and nothing changes.
    pub async fn start_phone_check(
        &self,
        user: Uuid,
        phone: &str,
        code_hash: &[u8],
        cooldown_seconds: f64,
    ) -> Result<Option<i64>, Error> {
        // The cooldown is checked in the update itself, so two requests at
        // once cannot both send a code. A cooldown that ends between the
        // update and the read of its remainder is tried again.
        for _ in 0..2 {
            let started = self
                .write_key(
                    user_key(&user),
                    "update users set phone_pending = $2, phone_code_hash = $3, \
                     phone_code_sent_at = now(), phone_code_attempts = 0 \
                     where id = $1 and deleted_at is null \
                     and (phone_code_sent_at is null \
                          or phone_code_sent_at <= now() - make_interval(secs => $4)) \
                     returning 1",
                    &[&user, &phone, &code_hash, &cooldown_seconds],
                )
                .await?;
            if !started.is_empty() {
                return Ok(None);
            }
            let waiting = self
                .read_key(
                    ids::route_hash(user),
                    "account",
                    "select ceil(extract(epoch from phone_code_sent_at \
                         + make_interval(secs => $2) - now()))::bigint \
                     from users where id = $1 \
                     and phone_code_sent_at > now() - make_interval(secs => $2)",
                    &[&user, &cooldown_seconds],
                )
                .await?;
            if let Some(row) = waiting.first() {
                return Ok(Some(row.get::<_, i64>(0).max(1)));
            }
        }
        Ok(None)
    }

    /// Checks a typed-back code: a code lapses after `ttl_seconds` and after
    /// `max_attempts` tries.
    pub async fn finish_phone_check(
        &self,
        user: Uuid,
        code_hash: &[u8],
        ttl_seconds: f64,
        max_attempts: i32,
    ) -> Result<PhoneCheck, Error> {
        let rows = self
            .write_key(
                user_key(&user),
                "update users set \
                     phone = case when phone_code_hash = $2 then phone_pending else phone end, \
                     phone_verified_at = case when phone_code_hash = $2 then now() else phone_verified_at end, \
                     phone_pending = case when phone_code_hash = $2 then null else phone_pending end, \
                     phone_code_hash = case when phone_code_hash = $2 then null else phone_code_hash end, \
                     phone_code_attempts = phone_code_attempts + 1, updated_at = now() \
                 where id = $1 and deleted_at is null and phone_code_hash is not null \
                 and phone_code_sent_at > now() - make_interval(secs => $3) \
                 and phone_code_attempts < $4 \
                 returning phone_code_hash is null",
                &[&user, &code_hash, &ttl_seconds, &max_attempts],
            )
            .await?;
        Ok(match rows.first().map(|row| row.get::<_, bool>(0)) {
            Some(true) => PhoneCheck::Confirmed,
            Some(false) => PhoneCheck::Wrong,
            None => PhoneCheck::Spent,
        })
    }
}

/// The subscriptions on one node that satisfy `condition`, for the scanner,
/// which reads every node's.
async fn on_node(
    node: &ShardNode,
    condition: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Subscription>, Error> {
    let server = &node.primary;
    let client = server.get().await?;
    Ok(client
        .query(
            &format!("select {COLUMNS} from subscriptions where {condition}"),
            params,
        )
        .await
        .map_err(|err| rejected(server, err))?
        .iter()
        .map(from_row)
        .collect())
}
