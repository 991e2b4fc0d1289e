//! The waiting list of a sold-out showtime: parties in the order they
//! joined, each offered a hold on seats together when seats free up, on the
//! movie's node. An offer is recorded with the alert that tells the party,
//! in one transaction, so a party is told of every offer exactly as often
//! as it is made.

use chrono::{DateTime, Utc};
use marquee_sharding::ids;
use serde_json::json;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::store::{rejected, Outcome};
use crate::{outbox, Error, Storage};

/// A party on a waiting list.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: Uuid,
    pub showtime_id: Uuid,
    pub user_id: Uuid,
    pub party_size: i32,
    pub wheelchair_spaces: i32,
    /// `waiting`, `offered`, `fulfilled`, `declined`, `expired` or `left`.
    pub state: String,
    pub joined_at: DateTime<Utc>,
    pub hold_id: Option<Uuid>,
    pub offer_expires_at: Option<DateTime<Utc>>,
    pub offers: i32,
    /// Parties still on the list that joined before this one.
    pub ahead: i64,
}

/// What became of a request to join.
#[derive(Debug, Clone, PartialEq)]
pub enum Joining {
    /// On the list: a new entry, or the party's from before.
    Entry(Entry),
    /// The showtime has started.
    Started,
}

/// An offer to record: the hold placed for the party and what to tell it.
#[derive(Debug, Clone)]
pub struct Offer<'a> {
    pub entry: Uuid,
    pub hold: Uuid,
    pub expires_at: DateTime<Utc>,
    pub title: &'a str,
    pub body: &'a str,
}

const ENTRY_COLUMNS: &str = "e.id, e.showtime_id, e.user_id, e.party_size, e.wheelchair_spaces, \
     e.state, e.joined_at, e.hold_id, e.offer_expires_at, e.offers, \
     (select count(*) from waitlist_entries b where b.showtime_id = e.showtime_id \
         and b.state in ('waiting', 'offered') and b.joined_at < e.joined_at)";

fn entry(row: &Row) -> Entry {
    Entry {
        id: row.get(0),
        showtime_id: row.get(1),
        user_id: row.get(2),
        party_size: row.get(3),
        wheelchair_spaces: row.get(4),
        state: row.get(5),
        joined_at: row.get(6),
        hold_id: row.get(7),
        offer_expires_at: row.get(8),
        offers: row.get(9),
        ahead: row.get(10),
    }
}

impl Storage {
    async fn movie_of_showtime(&self, showtime: Uuid) -> Result<Uuid, Error> {
        Ok(self
            .showtime(showtime)
            .await?
            .ok_or(Error::NotFound {
                what: "showtime",
                id: showtime,
            })?
            .movie_id)
    }

    /// Puts a party on a showtime's waiting list, or answers the entry the
    /// user already has.
    pub async fn join_waitlist(
        &self,
        showtime: Uuid,
        user: Uuid,
        party_size: i32,
        wheelchair_spaces: i32,
    ) -> Result<Joining, Error> {
        let movie = self.movie_of_showtime(showtime).await?;
        self.in_movie_transaction(showtime, movie, |transaction| {
            Box::pin(async move {
                let started: bool = transaction
                    .query_one(
                        "select starts_at <= now() from showtimes where id = $1",
                        &[&showtime],
                    )
                    .await?
                    .get(0);
                if started {
                    return Ok(Outcome::Rollback(Joining::Started));
                }
                let existing = transaction
                    .query_opt(
                        &format!(
                            "select {ENTRY_COLUMNS} from waitlist_entries e \
                             where e.showtime_id = $1 and e.user_id = $2 \
                                 and e.state in ('waiting', 'offered')"
                        ),
                        &[&showtime, &user],
                    )
                    .await?;
                if let Some(existing) = existing {
                    return Ok(Outcome::Rollback(Joining::Entry(entry(&existing))));
                }
                let id = ids::scoped(movie);
                transaction
                    .execute(
                        "insert into waitlist_entries (id, showtime_id, movie_id, user_id, party_size, \
                             wheelchair_spaces, state) \
                         values ($1, $2, $3, $4, $5, $6, 'waiting')",
                        &[&id, &showtime, &movie, &user, &party_size, &wheelchair_spaces],
                    )
                    .await?;
                let row = transaction
                    .query_one(
                        &format!("select {ENTRY_COLUMNS} from waitlist_entries e where e.id = $1"),
                        &[&id],
                    )
                    .await?;
                Ok(Outcome::Commit(Joining::Entry(entry(&row))))
            })
        })
        .await
    }

    /// An entry by its id.
    pub async fn waitlist_entry(&self, id: Uuid) -> Result<Option<Entry>, Error> {
        let server = self.scoped_primary(id)?;
        server
            .get()
            .await?
            .query_opt(
                &format!("select {ENTRY_COLUMNS} from waitlist_entries e where e.id = $1"),
                &[&id],
            )
            .await
            .map(|row| row.as_ref().map(entry))
            .map_err(|err| rejected(server, err))
    }

    /// A showtime's live entries (waiting or offered), in the order they
    /// joined.
    pub async fn waitlist(&self, showtime: Uuid) -> Result<Vec<Entry>, Error> {
        let server = self.scoped_primary(showtime)?;
        Ok(server
            .get()
            .await?
            .query(
                &format!(
                    "select {ENTRY_COLUMNS} from waitlist_entries e \
                     where e.showtime_id = $1 and e.state in ('waiting', 'offered') \
                     order by e.joined_at, e.id"
                ),
                &[&showtime],
            )
            .await
            .map_err(|err| rejected(server, err))?
            .iter()
            .map(entry)
            .collect())
    }

    /// Takes an entry off the list at its owner's request (`left`), or
    /// declines its offer (`declined`); the entry as it was, whose hold the
    /// caller releases. `None` when it was no longer live.
    pub async fn end_waitlist_entry(
        &self,
        id: Uuid,
        user: Uuid,
        declined: bool,
    ) -> Result<Option<Entry>, Error> {
        let server = self.scoped_primary(id)?;
        let (state, from): (&str, &[&str]) = if declined {
            ("declined", &["offered"])
        } else {
            ("left", &["waiting", "offered"])
        };
        let from: Vec<&str> = from.to_vec();
        let client = server.get().await?;
        let before = client
            .query_opt(
                &format!(
                    "select {ENTRY_COLUMNS} from waitlist_entries e \
                     where e.id = $1 and e.user_id = $2 and e.state = any($3)"
                ),
                &[&id, &user, &from],
            )
            .await
            .map_err(|err| rejected(server, err))?
            .map(|row| entry(&row));
        let Some(before) = before else {
            return Ok(None);
        };
        let changed = client
            .execute(
                "update waitlist_entries set state = $3, updated_at = now() \
                 where id = $1 and state = $2",
                &[&id, &before.state, &state],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        Ok((changed == 1).then_some(before))
    }

    /// The showtimes that have anyone on their waiting lists, on every
    /// node, for the job that makes offers.
    pub async fn showtimes_with_waitlists(&self) -> Result<Vec<Uuid>, Error> {
        let mut showtimes = Vec::new();
        for shard in self.cluster().shards() {
            let server = &shard.primary;
            let rows = server
                .get()
                .await?
                .query(
                    "select distinct e.showtime_id from waitlist_entries e \
                     join showtimes s on s.id = e.showtime_id \
                     where e.state in ('waiting', 'offered') and s.starts_at > now()",
                    &[],
                )
                .await
                .map_err(|err| rejected(server, err))?;
            showtimes.extend(rows.iter().map(|row| row.get::<_, Uuid>(0)));
        }
        Ok(showtimes)
    }

    /// Closes the offers of a showtime that are over: `fulfilled` once the
    /// party paid, `expired` once its hold lapsed or was let go. The
    /// entries closed.
    pub async fn settle_offers(&self, showtime: Uuid) -> Result<Vec<Entry>, Error> {
        let server = self.scoped_primary(showtime)?;
        let rows = server
            .get()
            .await?
            .query(
                &format!(
                    "with settled as ( \
                         update waitlist_entries w set state = case when h.status = 'ordered' \
                             then 'fulfilled' else 'expired' end, updated_at = now() \
                         from holds h \
                         where w.showtime_id = $1 and w.state = 'offered' and h.id = w.hold_id \
                             and (h.status in ('ordered', 'released', 'expired') \
                                 or (h.status = 'active' and h.expires_at <= now())) \
                         returning w.id) \
                     select {ENTRY_COLUMNS} from waitlist_entries e \
                     where e.id in (select id from settled)"
                ),
                &[&showtime],
            )
            .await
            .map_err(|err| rejected(server, err))?;
        Ok(rows.iter().map(entry).collect())
    }

    /// Records an offer made to a waiting party, with the alert that tells
    /// it on its channels; false when the entry stopped waiting meanwhile,
    /// and the caller releases the hold.
    pub async fn record_offer(&self, offer: &Offer<'_>) -> Result<bool, Error> {
        let Some(current) = self.waitlist_entry(offer.entry).await? else {
            return Ok(false);
        };
        let movie = self.movie_of_showtime(current.showtime_id).await?;
        let (entry_id, hold, expires_at) = (offer.entry, offer.hold, offer.expires_at);
        let payload = json!({
            "kind": "waitlist_offer",
            "title": offer.title,
            "body": offer.body,
            "subject_id": hold,
        });
        let user = current.user_id;
        self.in_movie_transaction(entry_id, movie, |transaction| {
            let payload = payload.clone();
            Box::pin(async move {
                let offered = transaction
                    .execute(
                        "update waitlist_entries set state = 'offered', hold_id = $2, \
                             offer_expires_at = $3, offers = offers + 1, updated_at = now() \
                         where id = $1 and state = 'waiting'",
                        &[&entry_id, &hold, &expires_at],
                    )
                    .await?;
                if offered == 0 {
                    return Ok(Outcome::Rollback(false));
                }
                outbox::record_payload(transaction, "user", user, "alert.raised", &payload).await?;
                Ok(Outcome::Commit(true))
            })
        })
        .await
    }
}
