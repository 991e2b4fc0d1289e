//! Accounts, sessions, one-time mail tokens and the user's bookings index,
//! on the node that owns the user's id; the email index on the node that
//! owns the address.
//!
//! Registration and a change of address write two nodes without a
//! distributed transaction: the index row is claimed first, then the user
//! row written. A crash in between leaves an index row whose user does not
//! carry that address; it is recognised as stale by every reader and
//! reclaimed by the next registration once it is old enough that no
//! registration can still be finishing it.

use chrono::{DateTime, Utc};
use marquee_sharding::{ids, placement::hash_key};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::store::{rejected, KeyLock};
use crate::{Error, Storage};

/// An account as stored. Erased accounts keep their id and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: Uuid,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub role: String,
    pub totp_secret: Option<Vec<u8>>,
    pub totp_pending: Option<Vec<u8>>,
    pub totp_last_step: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted: bool,
}

impl Account {
    pub fn is_active(&self) -> bool {
        !self.deleted && self.email.is_some()
    }
}

const ACCOUNT_COLUMNS: &str =
    "id, email, email_verified_at is not null, name, password_hash, role, \
     totp_secret, totp_pending, totp_last_step, created_at, updated_at, deleted_at is not null";

fn account_from_row(row: &Row) -> Account {
    Account {
        id: row.get(0),
        email: row.get(1),
        email_verified: row.get(2),
        name: row.get(3),
        password_hash: row.get(4),
        role: row.get(5),
        totp_secret: row.get(6),
        totp_pending: row.get(7),
        totp_last_step: row.get(8),
        created_at: row.get(9),
        updated_at: row.get(10),
        deleted: row.get(11),
    }
}

/// A registration.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    pub id: Uuid,
    /// Normalised (trimmed, lower-cased) by the caller.
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
}

/// What a registration found.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    Created(Account),
    /// The address already belongs to this account.
    Exists(Account),
}

/// A one-time secret sent by mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
    ChangeEmail,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::ChangeEmail => "change_email",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "verify_email" => Some(Self::VerifyEmail),
            "reset_password" => Some(Self::ResetPassword),
            "change_email" => Some(Self::ChangeEmail),
            _ => None,
        }
    }
}

/// A one-time secret that was presented and accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct UsedToken {
    pub user_id: Uuid,
    pub purpose: TokenPurpose,
    pub new_email: Option<String>,
}

/// A signed-in device.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub mfa: bool,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub refresh_hash: &'a [u8],
    pub mfa: bool,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub ttl: std::time::Duration,
}

/// What presenting a refresh secret did.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// The secret was current; it is replaced by the new one.
    Rotated(Session),
    /// The secret was the one replaced last: it was copied, and the session
    /// is now revoked.
    Reused { user_id: Uuid },
    /// Unknown, revoked, expired or wrong.
    Refused,
}

/// An entry of the user's bookings index.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingEntry {
    pub hold_id: Uuid,
    pub showtime_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// The customer a signed-in user's holds and orders are made out to.
pub fn customer_of(user: Uuid) -> String {
    format!("user:{user}")
}

/// The user a hold or order is made out to: `None` when a guest made it,
/// an error when it names a user by a malformed id.
pub fn user_of_customer(customer: &str) -> Option<Result<Uuid, uuid::Error>> {
    customer.strip_prefix("user:").map(str::parse)
}

/// Which of a user's bookings to list. The index's copy of an order's
/// status trails the order by the stream's delay, so a booking the stream
/// has not yet summarized is listed under any status and its live order
/// decides.
#[derive(Debug, Clone, Default)]
pub struct BookingFilter {
    /// `confirmed` or `cancelled`.
    pub status: Option<String>,
    /// Showtimes still to come (`true`) or past (`false`).
    pub upcoming: Option<bool>,
}

/// What the stream tells the bookings index of an order.
#[derive(Debug, Clone)]
pub struct BookingSummary {
    pub user_id: Uuid,
    pub hold_id: Uuid,
    pub order_id: Uuid,
    pub status: String,
    pub starts_at: DateTime<Utc>,
    /// The order's `updated_at`: an older summary never replaces a newer.
    pub as_of: DateTime<Utc>,
}

/// How old an index row must be before a registration may take it over:
/// longer than any registration takes between claiming and writing.
const STALE_INDEX_AFTER: &str = "1 minute";

fn to_interval(duration: std::time::Duration) -> String {
    format!("{} milliseconds", duration.as_millis())
}

/// Locks for a write to an account: the user row, found by the user's id,
/// a session's id or a mailed token's id; the email index entry.
const LOCK_USER: &str = "select 1 from users where id = $1 for update";
const LOCK_SESSION_USER: &str =
    "select 1 from users where id = (select user_id from sessions where id = $1) for update";
const LOCK_TOKEN_USER: &str =
    "select 1 from users where id = (select user_id from user_tokens where id = $1) for update";
const LOCK_EMAIL: &str = "select 1 from user_emails where email = $1 for update";

pub(crate) fn user_key(user: &Uuid) -> KeyLock<'_> {
    KeyLock {
        hash: ids::route_hash(*user),
        kind: "account",
        lock: LOCK_USER,
        param: user,
    }
}

/// A session or mailed token, whose id carries its user's routing hash.
fn scoped_key<'a>(id: &'a Uuid, lock: &'static str) -> KeyLock<'a> {
    KeyLock {
        hash: ids::scoped_route_hash(*id),
        kind: "account",
        lock,
        param: id,
    }
}

fn email_key<'a>(email: &'a &'a str) -> KeyLock<'a> {
    KeyLock {
        hash: hash_key(email.as_bytes()),
        kind: "address",
        lock: LOCK_EMAIL,
        param: email,
    }
}

impl Storage {
    pub async fn account(&self, id: Uuid) -> Result<Option<Account>, Error> {
        Ok(self
            .read_key(
                ids::route_hash(id),
                "account",
                &format!("select {ACCOUNT_COLUMNS} from users where id = $1"),
                &[&id],
            )
            .await?
            .first()
            .map(account_from_row))
    }

    /// The live account that has this (normalised) address, if any.
    pub async fn account_by_email(&self, email: &str) -> Result<Option<Account>, Error> {
        let Some(user) = self.email_owner(email).await? else {
            return Ok(None);
        };
        Ok(self
            .account(user)
            .await?
            .filter(|account| account.is_active() && account.email.as_deref() == Some(email)))
    }

    async fn email_owner(&self, email: &str) -> Result<Option<Uuid>, Error> {
        Ok(self
            .read_key(
                hash_key(email.as_bytes()),
                "address",
                "select user_id from user_emails where email = $1",
                &[&email],
            )
            .await?
            .first()
            .map(|row| row.get(0)))
    }

    /// Claims `email` for `user` in the email index: a free address, a row
    /// already pointing at `user`, or a stale row is taken; an address of
    /// another live account is not, and its owner is returned.
    async fn claim_email(&self, email: &str, user: Uuid) -> Result<Option<Uuid>, Error> {
        let key = &email;
        loop {
            let inserted = self
                .write_key(
                    email_key(key),
                    "insert into user_emails (email, user_id) values ($1, $2) \
                     on conflict do nothing returning 1",
                    &[&email, &user],
                )
                .await?;
            if !inserted.is_empty() {
                return Ok(None);
            }
            let rows = self
                .read_key(
                    hash_key(email.as_bytes()),
                    "address",
                    &format!(
                        "select user_id, created_at < now() - interval '{STALE_INDEX_AFTER}' \
                         from user_emails where email = $1"
                    ),
                    &[&email],
                )
                .await?;
            // Released since the insert found it taken: claim it again.
            let Some(row) = rows.first() else {
                continue;
            };
            let (holder, old_enough): (Uuid, bool) = (row.get(0), row.get(1));
            if holder == user {
                return Ok(None);
            }
            let live = self.account(holder).await?.is_some_and(|account| {
                account.is_active() && account.email.as_deref() == Some(email)
            });
            if live || !old_enough {
                return Ok(Some(holder));
            }
            let taken = self
                .write_key(
                    email_key(key),
                    "update user_emails set user_id = $3, created_at = now() \
                     where email = $1 and user_id = $2 returning 1",
                    &[&email, &holder, &user],
                )
                .await?;
            return Ok(if taken.is_empty() { Some(holder) } else { None });
        }
    }

    async fn release_email(&self, email: &str, user: Uuid) -> Result<(), Error> {
        self.write_key(
            email_key(&email),
            "delete from user_emails where email = $1 and user_id = $2",
            &[&email, &user],
        )
        .await?;
        Ok(())
    }

    /// Creates an account, unless the address already has one; waits out a
    /// rebalance, which places accounts by the registry it scanned.
    pub async fn register(&self, new: &NewAccount<'_>) -> Result<Registered, Error> {
        self.unless_rebalancing(|| self.register_now(new)).await
    }

    async fn register_now(&self, new: &NewAccount<'_>) -> Result<Registered, Error> {
        if let Some(holder) = self.claim_email(new.email, new.id).await? {
            return match self.account(holder).await? {
                Some(account) => Ok(Registered::Exists(account)),
                // Another registration of the address is still finishing.
                None => Err(Error::Conflict(
                    "a registration for this address is in progress; retry shortly".to_owned(),
                )),
            };
        }
        let rows = self
            .write_key(
                user_key(&new.id),
                &format!(
                    "with created as ( \
                         insert into users (id, email, name, password_hash) values ($1, $2, $3, $4) \
                         returning *), \
                     told as ( \
                         insert into outbox (aggregate, aggregate_id, event) \
                         select 'account', id, 'account.registered' from created) \
                     select {ACCOUNT_COLUMNS} from created"
                ),
                &[&new.id, &new.email, &new.name, &new.password_hash],
            )
            .await?;
        Ok(Registered::Created(account_from_row(&rows[0])))
    }

    /// Stores a one-time secret. `id` is scoped to the user, so presenting
    /// the token later reaches the user's node without a lookup.
    pub async fn create_user_token(
        &self,
        id: Uuid,
        user: Uuid,
        purpose: TokenPurpose,
        secret_hash: &[u8],
        new_email: Option<&str>,
        ttl: std::time::Duration,
    ) -> Result<(), Error> {
        self.write_key(
            user_key(&user),
            "insert into user_tokens (id, user_id, purpose, secret_hash, new_email, expires_at) \
             values ($1, $2, $3, $4, $5, now() + $6::text::interval)",
            &[
                &id,
                &user,
                &purpose.as_str(),
                &secret_hash,
                &new_email,
                &to_interval(ttl),
            ],
        )
        .await?;
        Ok(())
    }

    /// What a one-time secret would allow, without spending it: callers
    /// check what can still fail first, so a refused request leaves the
    /// link usable.
    pub async fn peek_user_token(
        &self,
        id: Uuid,
        secret_hash: &[u8],
        purposes: &[TokenPurpose],
    ) -> Result<Option<UsedToken>, Error> {
        let names: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
        let rows = self
            .read_key(
                ids::scoped_route_hash(id),
                "account",
                &format!("select user_id, purpose, new_email from user_tokens where {LIVE_TOKEN}"),
                &[&id, &secret_hash, &names],
            )
            .await?;
        Ok(rows.first().and_then(used_token_from_row))
    }

    /// Voids every unspent one-time secret of `user` for `purposes`: after
    /// a password or address change, links mailed before it must not work.
    pub async fn void_user_tokens(
        &self,
        user: Uuid,
        purposes: &[TokenPurpose],
    ) -> Result<(), Error> {
        let names: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
        self.write_key(
            user_key(&user),
            "update user_tokens set used_at = now() \
             where user_id = $1 and used_at is null and purpose = any($2)",
            &[&user, &names],
        )
        .await?;
        Ok(())
    }

    /// Spends a one-time secret: it must exist, be unexpired, unused, of
    /// one of `purposes`, and match. Spent at most once even when presented
    /// twice at the same moment: the second update finds it used. The
    /// stored hash is compared in the query: it is SHA-256 of a random
    /// secret, so how long a mismatch takes tells a guesser nothing.
    pub async fn use_user_token(
        &self,
        id: Uuid,
        secret_hash: &[u8],
        purposes: &[TokenPurpose],
    ) -> Result<Option<UsedToken>, Error> {
        let names: Vec<&str> = purposes.iter().map(|p| p.as_str()).collect();
        let rows = self
            .write_key(
                scoped_key(&id, LOCK_TOKEN_USER),
                &format!(
                    "update user_tokens set used_at = now() where {LIVE_TOKEN} \
                     returning user_id, purpose, new_email"
                ),
                &[&id, &secret_hash, &names],
            )
            .await?;
        Ok(rows.first().and_then(used_token_from_row))
    }

    /// Changes a live account and records `event` (which names the
    /// change, never the data) in the same statement.
    async fn update_account(
        &self,
        user: Uuid,
        event: &'static str,
        assignments: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Account, Error> {
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&user];
        all.extend_from_slice(params);
        all.push(&event);
        let event_param = all.len();
        self.write_key(
            user_key(&user),
            &format!(
                "with changed as ( \
                     update users set {assignments}, updated_at = now() \
                     where id = $1 and deleted_at is null returning *), \
                 told as ( \
                     insert into outbox (aggregate, aggregate_id, event) \
                     select 'account', id, ${event_param}::text from changed) \
                 select {ACCOUNT_COLUMNS} from changed"
            ),
            &all,
        )
        .await?
        .first()
        .map(account_from_row)
        .ok_or(Error::NotFound {
            what: "account",
            id: user,
        })
    }

    pub async fn mark_email_verified(&self, user: Uuid) -> Result<Account, Error> {
        self.update_account(
            user,
            "account.email_verified",
            "email_verified_at = coalesce(email_verified_at, now())",
            &[],
        )
        .await
    }

    pub async fn set_name(&self, user: Uuid, name: &str) -> Result<Account, Error> {
        self.update_account(user, "account.profile_changed", "name = $2", &[&name])
            .await
    }

    pub async fn set_password_hash(&self, user: Uuid, hash: &str) -> Result<Account, Error> {
        self.update_account(
            user,
            "account.password_changed",
            "password_hash = $2",
            &[&hash],
        )
        .await
    }

    pub async fn set_role(&self, user: Uuid, role: &str) -> Result<Account, Error> {
        self.update_account(user, "account.role_changed", "role = $2", &[&role])
            .await
    }

    /// Starts enrolling a second factor; the secret counts once confirmed.
    pub async fn set_totp_pending(&self, user: Uuid, secret: &[u8]) -> Result<Account, Error> {
        self.update_account(
            user,
            "account.two_factor_started",
            "totp_pending = $2",
            &[&secret],
        )
        .await
    }

    /// Makes the pending secret the account's second factor.
    pub async fn confirm_totp(&self, user: Uuid, step: i64) -> Result<Account, Error> {
        self.update_account(
            user,
            "account.two_factor_enabled",
            "totp_secret = totp_pending, totp_pending = null, totp_last_step = $2",
            &[&step],
        )
        .await
    }

    /// Records a used code's time step; false when it (or a later one) was
    /// already used, so one code never works twice.
    pub async fn spend_totp_step(&self, user: Uuid, step: i64) -> Result<bool, Error> {
        Ok(!self
            .write_key(
                user_key(&user),
                "update users set totp_last_step = $2 where id = $1 \
                 and (totp_last_step is null or totp_last_step < $2) returning 1",
                &[&user, &step],
            )
            .await?
            .is_empty())
    }

    /// Moves an account to a new address: the new one is claimed first, so
    /// the account is never without an index entry. The new entry is a new
    /// key, so this too waits out a rebalance.
    pub async fn change_email(&self, user: Uuid, new_email: &str) -> Result<Account, Error> {
        self.unless_rebalancing(|| self.change_email_now(user, new_email))
            .await
    }

    async fn change_email_now(&self, user: Uuid, new_email: &str) -> Result<Account, Error> {
        let before =
            self.account(user)
                .await?
                .filter(Account::is_active)
                .ok_or(Error::NotFound {
                    what: "account",
                    id: user,
                })?;
        if self.claim_email(new_email, user).await?.is_some() {
            return Err(Error::Conflict(
                "another account uses this address".to_owned(),
            ));
        }
        let account = self
            .update_account(
                user,
                "account.email_changed",
                "email = $2, email_verified_at = now()",
                &[&new_email],
            )
            .await?;
        if let Some(old) = before.email.as_deref().filter(|old| *old != new_email) {
            self.release_email(old, user).await?;
        }
        Ok(account)
    }

    /// Erases an account's personal data. Its bookings, payments and
    /// tickets stay on their movie shards, where they name the user by id
    /// only, which from now on identifies nobody.
    pub async fn erase_account(&self, user: Uuid) -> Result<(), Error> {
        let Some(account) = self.account(user).await? else {
            return Err(Error::NotFound {
                what: "account",
                id: user,
            });
        };
        self.in_key_transaction(user_key(&user), |transaction, server| {
            Box::pin(async move {
                for statement in [
                    "update users set email = null, email_verified_at = null, name = null, \
                         password_hash = null, totp_secret = null, totp_pending = null, \
                         phone = null, phone_pending = null, phone_code_hash = null, \
                         phone_verified_at = null, deleted_at = coalesce(deleted_at, now()), updated_at = now() where id = $1",
                    "update sessions set revoked_at = now(), user_agent = null, ip = null \
                         where user_id = $1",
                    "delete from user_tokens where user_id = $1",
                    "delete from subscriptions where user_id = $1",
                    "delete from subscription_alerts where user_id = $1",
                    "insert into outbox (aggregate, aggregate_id, event) \
                         values ('account', $1, 'account.erased')",
                ] {
                    transaction
                        .execute(statement, &[&user])
                        .await
                        .map_err(|err| rejected(server, err))?;
                }
                Ok(())
            })
        })
        .await?;
        if let Some(email) = account.email.as_deref() {
            self.release_email(email, user).await?;
        }
        // The audit log keeps what happened to the account, but no longer
        // where from.
        let catalog = self.cluster().catalog();
        let subject = user.to_string();
        catalog
            .get()
            .await?
            .execute(
                "update audit_log set ip = null where actor_id = $1 or target = $2",
                &[&user, &subject],
            )
            .await
            .map_err(|err| rejected(catalog, err))?;
        Ok(())
    }

    pub async fn create_session(&self, new: &NewSession<'_>) -> Result<Session, Error> {
        let rows = self
            .write_key(
                user_key(&new.user_id),
                &format!(
                    "insert into sessions (id, user_id, refresh_hash, mfa, user_agent, ip, expires_at) \
                     values ($1, $2, $3, $4, $5, $6, now() + $7::text::interval) \
                     returning {SESSION_COLUMNS}"
                ),
                &[
                    &new.id,
                    &new.user_id,
                    &new.refresh_hash,
                    &new.mfa,
                    &new.user_agent,
                    &new.ip,
                    &to_interval(new.ttl),
                ],
            )
            .await?;
        Ok(session_from_row(&rows[0]))
    }

    /// Replaces a session's refresh secret if `presented` is the current
    /// one; revokes the session if it is the one replaced last.
    pub async fn rotate_session(
        &self,
        id: Uuid,
        presented: &[u8],
        next: &[u8],
    ) -> Result<Rotation, Error> {
        let (presented, next) = (presented.to_vec(), next.to_vec());
        self.in_key_transaction(
            scoped_key(&id, LOCK_SESSION_USER),
            |transaction, server| {
                let (presented, next) = (presented.clone(), next.clone());
                Box::pin(async move {
                    let Some(row) = transaction
                        .query_opt(
                            "select user_id, refresh_hash = $2, coalesce(previous_hash = $2, false) \
                             from sessions where id = $1 and revoked_at is null and expires_at > now()",
                            &[&id, &presented],
                        )
                        .await
                        .map_err(|err| rejected(server, err))?
                    else {
                        return Ok(Rotation::Refused);
                    };
                    // Hashes of random secrets are compared in the query: a
                    // mismatch's timing tells a guesser nothing about a
                    // SHA-256 preimage.
                    let (user_id, current, previous): (Uuid, bool, bool) =
                        (row.get(0), row.get(1), row.get(2));
                    if current {
                        let row = transaction
                            .query_one(
                                &format!(
                                    "update sessions set previous_hash = refresh_hash, refresh_hash = $2, \
                                         last_used_at = now() where id = $1 \
                                     returning {SESSION_COLUMNS}"
                                ),
                                &[&id, &next],
                            )
                            .await
                            .map_err(|err| rejected(server, err))?;
                        Ok(Rotation::Rotated(session_from_row(&row)))
                    } else if previous {
                        transaction
                            .execute(
                                "update sessions set revoked_at = now() where id = $1",
                                &[&id],
                            )
                            .await
                            .map_err(|err| rejected(server, err))?;
                        Ok(Rotation::Reused { user_id })
                    } else {
                        Ok(Rotation::Refused)
                    }
                })
            },
        )
        .await
    }

    /// Revokes one session of `user`; false if it was not theirs or not live.
    pub async fn revoke_session(&self, user: Uuid, id: Uuid) -> Result<bool, Error> {
        Ok(!self
            .write_key(
                scoped_key(&id, LOCK_SESSION_USER),
                "update sessions set revoked_at = now() \
                 where id = $1 and user_id = $2 and revoked_at is null returning 1",
                &[&id, &user],
            )
            .await?
            .is_empty())
    }

    /// Revokes every live session of `user` but `keep`; how many.
    pub async fn revoke_sessions(&self, user: Uuid, keep: Option<Uuid>) -> Result<u64, Error> {
        Ok(self
            .write_key(
                user_key(&user),
                "update sessions set revoked_at = now() where user_id = $1 \
                 and revoked_at is null and ($2::uuid is null or id <> $2) returning 1",
                &[&user, &keep],
            )
            .await?
            .len() as u64)
    }

    /// A session, whether or not it is still live.
    pub async fn session_is_live(&self, id: Uuid) -> Result<bool, Error> {
        Ok(!self
            .read_key(
                ids::scoped_route_hash(id),
                "account",
                "select 1 from sessions where id = $1 and revoked_at is null and expires_at > now()",
                &[&id],
            )
            .await?
            .is_empty())
    }

    /// The live sessions of `user`, newest first.
    pub async fn sessions(&self, user: Uuid) -> Result<Vec<Session>, Error> {
        Ok(self
            .read_key(
                ids::route_hash(user),
                "account",
                &format!(
                    "select {SESSION_COLUMNS} from sessions where user_id = $1 \
                     and revoked_at is null and expires_at > now() order by last_used_at desc"
                ),
                &[&user],
            )
            .await?
            .iter()
            .map(session_from_row)
            .collect())
    }

    /// Adds a hold to the user's bookings index; a second call is a no-op.
    pub async fn index_booking(&self, user: Uuid, hold: Uuid, showtime: Uuid) -> Result<(), Error> {
        self.write_key(
            user_key(&user),
            "insert into user_bookings (user_id, hold_id, showtime_id) values ($1, $2, $3) \
             on conflict do nothing",
            &[&user, &hold, &showtime],
        )
        .await?;
        Ok(())
    }

    /// Writes what the stream says of a booking's order into the user's
    /// index entry. A summary older than the one stored changes nothing,
    /// so replays and reordering are harmless; an entry that is gone (its
    /// account erased) is not brought back.
    pub async fn summarize_booking(&self, summary: &BookingSummary) -> Result<(), Error> {
        self.write_key(
            user_key(&summary.user_id),
            "update user_bookings set order_id = $3, status = $4, starts_at = $5, as_of = $6 \
             where user_id = $1 and hold_id = $2 and (as_of is null or as_of < $6)",
            &[
                &summary.user_id,
                &summary.hold_id,
                &summary.order_id,
                &summary.status,
                &summary.starts_at,
                &summary.as_of,
            ],
        )
        .await?;
        Ok(())
    }

    /// The user's bookings index, newest first.
    pub async fn user_bookings(
        &self,
        user: Uuid,
        filter: &BookingFilter,
        limit: i64,
    ) -> Result<Vec<BookingEntry>, Error> {
        Ok(self
            .read_key(
                ids::route_hash(user),
                "account",
                "select hold_id, showtime_id, created_at from user_bookings where user_id = $1 \
                 and ($3::text is null or status is null or status = $3) \
                 and ($4::bool is null or case when $4 then starts_at is null or starts_at > now() \
                     else starts_at <= now() end) \
                 order by created_at desc limit $2",
                &[&user, &limit, &filter.status, &filter.upcoming],
            )
            .await?
            .iter()
            .map(|row| BookingEntry {
                hold_id: row.get(0),
                showtime_id: row.get(1),
                created_at: row.get(2),
            })
            .collect())
    }

    /// The newest accounts on every node, for staff. An account caught
    /// between a rebalance's copy and the deletion of its source is on two
    /// nodes for a moment, with the same rows; it is listed once.
    pub async fn recent_accounts(&self, limit: i64) -> Result<Vec<Account>, Error> {
        let sql = format!(
            "select {ACCOUNT_COLUMNS} from users where deleted_at is null \
             order by created_at desc limit $1"
        );
        let per_node = futures::future::join_all(self.cluster().shards().iter().map(|shard| {
            let sql = sql.as_str();
            async move {
                let server = &shard.primary;
                server
                    .get()
                    .await?
                    .query(sql, &[&limit])
                    .await
                    .map_err(|err| rejected(server, err))
            }
        }))
        .await;
        let mut seen = std::collections::HashSet::new();
        let mut accounts = Vec::new();
        for rows in per_node {
            accounts.extend(
                rows?
                    .iter()
                    .map(account_from_row)
                    .filter(|account| seen.insert(account.id)),
            );
        }
        accounts.sort_by_key(|account| std::cmp::Reverse(account.created_at));
        accounts.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(accounts)
    }
}

const SESSION_COLUMNS: &str =
    "id, user_id, mfa, user_agent, ip, created_at, last_used_at, expires_at";

/// The conditions of a live one-time secret, with its id, hash and
/// allowed purposes as `$1`..`$3`.
const LIVE_TOKEN: &str = "id = $1 and secret_hash = $2 and purpose = any($3) \
                          and used_at is null and expires_at > now()";

fn used_token_from_row(row: &Row) -> Option<UsedToken> {
    TokenPurpose::parse(row.get(1)).map(|purpose| UsedToken {
        user_id: row.get(0),
        purpose,
        new_email: row.get(2),
    })
}

fn session_from_row(row: &Row) -> Session {
    Session {
        id: row.get(0),
        user_id: row.get(1),
        mfa: row.get(2),
        user_agent: row.get(3),
        ip: row.get(4),
        created_at: row.get(5),
        last_used_at: row.get(6),
        expires_at: row.get(7),
    }
}
