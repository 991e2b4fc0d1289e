//! The waiting list of a sold-out showtime. A signed-in customer joins
//! with the size of the party (and its wheelchair spaces); when seats free
//! up (a cancellation, a lapsed hold, a released block), the first party
//! that fits, in the order they joined, is offered a hold on seats together
//! for `waitlist.offer_ttl_seconds`, and told on its channels. A party that
//! does not fit is passed over and keeps its place; one whose offer lapses
//! or is declined leaves the list, and the seats go to the next.

use chrono::Utc;
use marquee_storage::holds::{NewHold, RoomEntry, SeatChoice};
use marquee_storage::seating::BestRequest;
use marquee_storage::waitlist::{Entry, Joining, Offer};
use uuid::Uuid;

use crate::{token_hash, Booking, Error};

/// Largest party on a waiting list: the most one customer may hold.
fn party_limit(booking: &Booking) -> usize {
    booking.settings.max_seats_per_customer
}

impl Booking {
    /// Puts a party on a showtime's waiting list, or answers its entry.
    pub async fn join_waitlist(
        &self,
        showtime: Uuid,
        user: Uuid,
        party_size: u32,
        wheelchair_spaces: u32,
    ) -> Result<Entry, Error> {
        let limit = party_limit(self);
        let party = usize::try_from(party_size).unwrap_or(usize::MAX);
        let wheelchair = usize::try_from(wheelchair_spaces).unwrap_or(usize::MAX);
        let mut fields = Vec::new();
        if party == 0 || party > limit {
            fields.push((
                "party_size".to_owned(),
                format!("1 to {limit}, the most one customer may hold"),
            ));
        }
        if wheelchair.saturating_mul(2) > party {
            fields.push((
                "wheelchair_spaces".to_owned(),
                "each wheelchair space needs its companion seat within the party".to_owned(),
            ));
        }
        if !fields.is_empty() {
            return Err(marquee_storage::Error::Invalid {
                detail: "the party cannot be put on the waiting list".to_owned(),
                fields,
            }
            .into());
        }
        let (party, wheelchair) = (
            i32::try_from(party).unwrap_or(i32::MAX),
            i32::try_from(wheelchair).unwrap_or(i32::MAX),
        );
        match self
            .storage
            .join_waitlist(showtime, user, party, wheelchair)
            .await?
        {
            Joining::Entry(entry) => Ok(entry),
            Joining::Started => Err(marquee_storage::Error::Conflict(format!(
                "showtime {showtime} has started; its waiting list is closed"
            ))
            .into()),
        }
    }

    /// A user's entry, to that user.
    pub async fn waitlist_entry(&self, id: Uuid, user: Uuid) -> Result<Entry, Error> {
        self.storage
            .waitlist_entry(id)
            .await?
            .filter(|entry| entry.user_id == user)
            .ok_or_else(|| {
                marquee_storage::Error::NotFound {
                    what: "waiting list entry",
                    id,
                }
                .into()
            })
    }

    /// A showtime's live entries, for staff.
    pub async fn waitlist(&self, showtime: Uuid) -> Result<Vec<Entry>, Error> {
        Ok(self.storage.waitlist(showtime).await?)
    }

    /// Takes the user's entry off the list (`declined` only lets an offer
    /// go), releasing any seats it was offered. `owner_token` is the
    /// account's booking token, which owns the offered hold.
    pub async fn end_waitlist_entry(
        &self,
        id: Uuid,
        user: Uuid,
        owner_token: &str,
        declined: bool,
    ) -> Result<Entry, Error> {
        self.waitlist_entry(id, user).await?;
        let entry = self
            .storage
            .end_waitlist_entry(id, user, declined)
            .await?
            .ok_or_else(|| {
                marquee_storage::Error::Conflict(if declined {
                    format!("entry {id} has no offer to decline")
                } else {
                    format!("entry {id} is no longer on the waiting list")
                })
            })?;
        if let Some(hold) = entry.hold_id.filter(|_| entry.state == "offered") {
            match self.release_hold(hold, owner_token).await {
                Ok(_) => {}
                Err(Error::Storage(marquee_storage::Error::Conflict(reason))) => {
                    tracing::info!(%hold, %reason, "an offered hold was not released");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(entry)
    }

    /// Offers freed seats to the parties waiting for each showtime, in the
    /// order they joined; `owner_token` gives an account's booking token.
    /// The number of offers made.
    pub async fn make_offers(
        &self,
        owner_token: &(dyn Fn(Uuid) -> String + Sync),
    ) -> Result<usize, Error> {
        let mut made = 0;
        for showtime in self.storage.showtimes_with_waitlists().await? {
            for closed in self.storage.settle_offers(showtime).await? {
                tracing::info!(%showtime, entry = %closed.id, "a waiting-list offer closed");
            }
            made += self.offer_showtime(showtime, owner_token).await?;
        }
        Ok(made)
    }

    async fn offer_showtime(
        &self,
        showtime: Uuid,
        owner_token: &(dyn Fn(Uuid) -> String + Sync),
    ) -> Result<usize, Error> {
        let Some(found) = self.storage.showtime(showtime).await? else {
            return Ok(0);
        };
        let mut free = usize::try_from(found.seats_available.max(0)).unwrap_or(0);
        let mut made = 0;
        // A party of a size that found no block together is followed only
        // by smaller ones in this pass.
        let mut too_big = usize::MAX;
        for entry in self.storage.waitlist(showtime).await? {
            let party = usize::try_from(entry.party_size).unwrap_or(usize::MAX);
            if free == 0 {
                break;
            }
            if entry.state != "waiting" || party > free || party >= too_big {
                continue;
            }
            let token = owner_token(entry.user_id);
            let hash = token_hash(&token);
            let customer = marquee_storage::accounts::customer_of(entry.user_id);
            let choice = SeatChoice::Best(BestRequest {
                count: party,
                wheelchair: usize::try_from(entry.wheelchair_spaces).unwrap_or(0),
            });
            let claim = self
                .storage
                .place_hold(&NewHold {
                    id: marquee_sharding::ids::sibling(showtime),
                    showtime_id: showtime,
                    customer: &customer,
                    token_hash: &hash,
                    choice: &choice,
                    ttl: std::time::Duration::from_secs(self.settings.waitlist.offer_ttl_seconds),
                    per_customer: self.settings.max_seats_per_customer,
                    claimants: &[],
                    room: RoomEntry::WaitingList,
                    peak: self.locking.is_peak(Utc::now()),
                    attempts: self.settings.locking.optimistic_attempts,
                    observer: &self.locking,
                })
                .await;
            let hold = match claim {
                Ok(claim) => claim.hold,
                Err(refused) => {
                    tracing::debug!(%showtime, entry = %entry.id, error = %refused.error, "a waiting party does not fit now");
                    too_big = too_big.min(party);
                    continue;
                }
            };
            let seats: Vec<&str> = hold.seats.iter().map(|seat| seat.seat.as_str()).collect();
            let title = "Seats for your party are held for you";
            let body = format!(
                "Seats {} of the showing at {} are held for you until {}. Pay for them in Marquee, \
                 or let them go so the next party can have them.",
                seats.join(", "),
                found.schedule.starts_at.format("%Y-%m-%d %H:%M UTC"),
                hold.expires_at.format("%H:%M UTC"),
            );
            let recorded = self
                .storage
                .record_offer(&Offer {
                    entry: entry.id,
                    hold: hold.id,
                    expires_at: hold.expires_at,
                    title,
                    body: &body,
                })
                .await?;
            if recorded {
                made += 1;
                self.hot.offers.inc();
                free = free.saturating_sub(hold.seats.len());
                tracing::info!(%showtime, entry = %entry.id, hold = %hold.id, "waiting-list offer made");
            } else {
                self.storage.release_hold(hold.id, &hash).await?;
            }
        }
        Ok(made)
    }
}
