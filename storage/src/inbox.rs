//! The in-app inbox of a signed-in user, on the node that owns the user.

use chrono::{DateTime, Utc};
use marquee_sharding::{ids, placement::hash_key};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::accounts::user_key;
use crate::{Error, Storage};

/// A notice in a user's inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `booking.confirmed`, `booking.cancelled`...
    pub kind: String,
    pub title: String,
    pub body: String,
    pub subject_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// A notice to file.
#[derive(Debug, Clone)]
pub struct NewNotice<'a> {
    pub user_id: Uuid,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub subject_id: Option<Uuid>,
}

const COLUMNS: &str = "id, user_id, kind, title, body, subject_id, created_at, read_at";

fn from_row(row: &Row) -> Notice {
    Notice {
        id: row.get(0),
        user_id: row.get(1),
        kind: row.get(2),
        title: row.get(3),
        body: row.get(4),
        subject_id: row.get(5),
        created_at: row.get(6),
        read_at: row.get(7),
    }
}

/// The id of the notice an event makes for a user: scoped to the user, so
/// it routes to the user's node, and the same however often the event is
/// delivered.
pub fn notice_id(user: Uuid, event: &str) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&ids::route_hash(user).to_be_bytes());
    bytes[8..].copy_from_slice(&hash_key(event.as_bytes()).to_be_bytes());
    Uuid::from_bytes(bytes)
}

impl Storage {
    /// Files a notice with id `id`; false if it was filed before.
    pub async fn file_notice(&self, id: Uuid, notice: &NewNotice<'_>) -> Result<bool, Error> {
        Ok(!self
            .write_key(
                user_key(&notice.user_id),
                "insert into inbox (id, user_id, kind, title, body, subject_id) \
                 values ($1, $2, $3, $4, $5, $6) on conflict (id) do nothing returning 1",
                &[
                    &id,
                    &notice.user_id,
                    &notice.kind,
                    &notice.title,
                    &notice.body,
                    &notice.subject_id,
                ],
            )
            .await?
            .is_empty())
    }

    /// The user's notices filed after `after` (a notice id), oldest first,
    /// or the newest `limit` when `after` is absent.
    pub async fn notices(
        &self,
        user: Uuid,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Notice>, Error> {
        let rows = match after {
            Some(after) => {
                self.read_key(
                    ids::route_hash(user),
                    "account",
                    &format!(
                        "select {COLUMNS} from inbox where user_id = $1 \
                         and (created_at, id) > (select created_at, id from inbox where id = $2 and user_id = $1) \
                         order by created_at, id limit $3"
                    ),
                    &[&user, &after, &limit],
                )
                .await?
            }
            None => {
                let mut rows = self
                    .read_key(
                        ids::route_hash(user),
                        "account",
                        &format!(
                            "select {COLUMNS} from inbox where user_id = $1 \
                             order by created_at desc, id desc limit $2"
                        ),
                        &[&user, &limit],
                    )
                    .await?;
                rows.reverse();
                rows
            }
        };
        Ok(rows.iter().map(from_row).collect())
    }

    /// Marks the user's notices up to and including `up_to` read; how many
    /// changed.
    pub async fn mark_notices_read(&self, user: Uuid, up_to: Uuid) -> Result<u64, Error> {
        Ok(self
            .write_key(
                user_key(&user),
                "update inbox set read_at = now() where user_id = $1 and read_at is null \
                 and (created_at, id) <= (select created_at, id from inbox where id = $2 and user_id = $1) \
                 returning 1",
                &[&user, &up_to],
            )
            .await?
            .len() as u64)
    }
}
