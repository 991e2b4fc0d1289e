//! Tickets at the door: admissions, recorded once per ticket on the node of
//! its movie, and the versioned list of a showtime's voided tickets that
//! offline scanners keep.
//!
//! An admission and the void of a ticket lock the same ticket row, so a
//! ticket is either cancelled before it went in, or went in and cannot be
//! cancelled by its customer afterwards.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::outbox;
use crate::store::{rejected, Outcome};
use crate::{Error, Storage};

/// A scan to record.
#[derive(Debug, Clone)]
pub struct Scan<'a> {
    pub ticket: Uuid,
    pub showtime: Uuid,
    pub device: &'a str,
    /// The door staff's user id, or `operator`.
    pub scanned_by: &'a str,
    /// When an offline scanner let the ticket in; `None` for a scan made
    /// now.
    pub offline_at: Option<DateTime<Utc>>,
    /// How long before the start the doors take the showtime's tickets.
    pub opens_before: Duration,
    /// How far ahead of the server's clock an offline time may be.
    pub clock_skew: Duration,
}

/// A recorded admission.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub ticket_id: Uuid,
    pub showtime_id: Uuid,
    pub order_id: Uuid,
    pub seat: String,
    pub admitted_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub device_id: String,
    pub offline: bool,
}

/// Why a genuine code does not get in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Void {
    /// No ticket with this id was issued here.
    Unknown,
    /// The ticket was cancelled (and refunded, as the policy allowed).
    Cancelled,
    /// Its order is not confirmed.
    NotConfirmed,
}

/// What a scan came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    /// The ticket went in now.
    Admitted(Admission),
    /// This scan was recorded before: an offline upload sent again.
    Recorded(Admission),
    /// The ticket went in earlier, as recorded.
    AlreadyAdmitted(Admission),
    Void(Void),
    /// The doors do not take this showtime's tickets at this time.
    Closed {
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    },
    /// An offline time later than the server's clock allows.
    FromTheFuture,
}

/// A showtime's voided tickets after a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Revocations {
    pub showtime_id: Uuid,
    /// The version these lead up to; the next request asks from here.
    pub version: i64,
    /// `(version, ticket, reason)`, oldest first.
    pub voided: Vec<(i64, Uuid, String)>,
    /// More voids exist past `version`.
    pub more: bool,
}

const ADMISSION_COLUMNS: &str = "ticket_id, showtime_id, order_id, seat, admitted_at, \
     recorded_at, device_id, offline";

fn admission(row: &tokio_postgres::Row) -> Admission {
    Admission {
        ticket_id: row.get(0),
        showtime_id: row.get(1),
        order_id: row.get(2),
        seat: row.get(3),
        admitted_at: row.get(4),
        recorded_at: row.get(5),
        device_id: row.get(6),
        offline: row.get(7),
    }
}

impl Storage {
    /// Records a scan of a genuine code: the first scan of a valid ticket
    /// while the doors take its showtime admits it; any other is told why
    /// not. One transaction on the movie's node, with the ticket locked.
    pub async fn admit(&self, scan: &Scan<'_>) -> Result<Admit, Error> {
        let Some(showtime) = self.showtime(scan.showtime).await? else {
            return Ok(Admit::Void(Void::Unknown));
        };
        let (ticket, showtime_id, offline_at) = (scan.ticket, scan.showtime, scan.offline_at);
        let (opens_before, clock_skew) = (scan.opens_before, scan.clock_skew);
        let (device, scanned_by) = (scan.device.to_owned(), scan.scanned_by.to_owned());
        self.in_movie_transaction(ticket, showtime.movie_id, |transaction| {
            let (device, scanned_by) = (device.clone(), scanned_by.clone());
            Box::pin(async move {
                let found = transaction
                    .query_opt(
                        "select t.order_id, t.seat, t.status, o.status, s.starts_at, s.ends_at, now() \
                         from tickets t \
                         join orders o on o.id = t.order_id \
                         join showtimes s on s.id = t.showtime_id \
                         where t.id = $1 and t.showtime_id = $2 \
                         for update of t",
                        &[&ticket, &showtime_id],
                    )
                    .await?;
                let Some(row) = found else {
                    return Ok(Outcome::Rollback(Admit::Void(Void::Unknown)));
                };
                let (order, seat): (Uuid, String) = (row.get(0), row.get(1));
                let (ticket_status, order_status): (String, String) = (row.get(2), row.get(3));
                let (starts_at, ends_at, now): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) =
                    (row.get(4), row.get(5), row.get(6));
                let earlier = transaction
                    .query_opt(
                        &format!("select {ADMISSION_COLUMNS} from admissions where ticket_id = $1"),
                        &[&ticket],
                    )
                    .await?
                    .map(|row| admission(&row));
                let at = offline_at.unwrap_or(now);
                if let Some(earlier) = earlier {
                    // Times are kept to the microsecond.
                    let repeated = offline_at.is_some()
                        && earlier.device_id == device
                        && earlier.admitted_at.timestamp_micros() == at.timestamp_micros();
                    return Ok(Outcome::Rollback(if repeated {
                        Admit::Recorded(earlier)
                    } else {
                        Admit::AlreadyAdmitted(earlier)
                    }));
                }
                if ticket_status != "valid" {
                    return Ok(Outcome::Rollback(Admit::Void(Void::Cancelled)));
                }
                if order_status != "confirmed" {
                    return Ok(Outcome::Rollback(Admit::Void(Void::NotConfirmed)));
                }
                if at > now + clock_skew {
                    return Ok(Outcome::Rollback(Admit::FromTheFuture));
                }
                let opens_at = starts_at - opens_before;
                if at < opens_at || at > ends_at {
                    return Ok(Outcome::Rollback(Admit::Closed {
                        opens_at,
                        closes_at: ends_at,
                    }));
                }
                let row = transaction
                    .query_one(
                        &format!(
                            "insert into admissions (ticket_id, showtime_id, movie_id, order_id, seat, \
                                 admitted_at, device_id, scanned_by, offline) \
                             select $1, $2, movie_id, $3, $4, $5, $6, $7, $8 from showtimes where id = $2 \
                             returning {ADMISSION_COLUMNS}"
                        ),
                        &[
                            &ticket,
                            &showtime_id,
                            &order,
                            &seat,
                            &at,
                            &device,
                            &scanned_by,
                            &offline_at.is_some(),
                        ],
                    )
                    .await?;
                let admitted = admission(&row);
                outbox::record_payload(
                    transaction,
                    "ticket",
                    ticket,
                    "ticket.admitted",
                    &json!({
                        "ticket_id": ticket,
                        "order_id": order,
                        "showtime_id": showtime_id,
                        "seat": seat,
                        "admitted_at": at,
                        "offline": offline_at.is_some(),
                    }),
                )
                .await?;
                Ok(Outcome::Commit(Admit::Admitted(admitted)))
            })
        })
        .await
    }

    /// A showtime's voided tickets after `since`, at most `limit` of them;
    /// `None` when the showtime does not exist.
    pub async fn revocations(
        &self,
        showtime: Uuid,
        since: i64,
        limit: i64,
    ) -> Result<Option<Revocations>, Error> {
        let server = self.scoped_primary(showtime)?;
        let client = server.get().await?;
        let Some(head) = client
            .query_opt(
                "select revocation_version from showtimes where id = $1",
                &[&showtime],
            )
            .await
            .map_err(|err| rejected(server, err))?
        else {
            return Ok(None);
        };
        let head: i64 = head.get(0);
        let page = limit + 1;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&showtime, &since, &page];
        let rows = client
            .query(
                "select version, ticket_id, reason from ticket_revocations \
                 where showtime_id = $1 and version > $2 order by version limit $3",
                &params,
            )
            .await
            .map_err(|err| rejected(server, err))?;
        let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        let voided: Vec<(i64, Uuid, String)> = rows
            .iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let version = if more {
            voided.last().map_or(since, |(version, _, _)| *version)
        } else {
            head.max(since)
        };
        Ok(Some(Revocations {
            showtime_id: showtime,
            version,
            voided,
            more,
        }))
    }
}

/// Adds voided tickets to their showtime's list, inside the transaction
/// that voided them.
pub(crate) async fn revoke(
    client: &impl deadpool_postgres::GenericClient,
    showtime: Uuid,
    tickets: &[Uuid],
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    if tickets.is_empty() {
        return Ok(());
    }
    let count = i64::try_from(tickets.len()).unwrap_or(i64::MAX);
    client
        .execute(
            "with bumped as ( \
                 update showtimes set revocation_version = revocation_version + $3 \
                 where id = $1 returning revocation_version, movie_id) \
             insert into ticket_revocations (showtime_id, version, ticket_id, movie_id, reason) \
             select $1, bumped.revocation_version - $3 + voided.position, voided.id, \
                 bumped.movie_id, $4 \
             from bumped, unnest($2::uuid[]) with ordinality as voided (id, position)",
            &[&showtime, &tickets, &count, &reason],
        )
        .await?;
    Ok(())
}
