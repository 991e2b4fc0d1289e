//! Letting ticket holders in: a code is checked against the key set, then
//! the first scan of a valid ticket is recorded on its movie's node.
//! Scanners that lost their link keep working from a signed list of the
//! showtime's voided tickets and upload what they admitted when they are
//! back.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use marquee_storage::door::{Admit, Revocations, Scan};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::tickets::{verify_document, PublicKey};
use crate::{Booking, Error};

/// Prefix of what a revocation list's signature covers, so a signature
/// over a list can never pass for one over a ticket code.
const LIST_PREFIX: &str = "MQR1.";
/// Voided tickets in one list; a scanner asks again from the version it
/// got for the rest.
const LIST_LIMIT: i64 = 5_000;

/// One scan at the door.
#[derive(Debug, Clone)]
pub struct DoorScan<'a> {
    pub code: &'a str,
    /// The showtime the door admits to; `None` when an offline scanner
    /// uploads, which checked that itself.
    pub showtime: Option<Uuid>,
    pub device: &'a str,
    pub scanned_by: &'a str,
    /// When an offline scanner let the ticket in.
    pub offline_at: Option<DateTime<Utc>>,
}

/// A showtime's voided tickets, as signed for offline scanners.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedRevocations {
    pub revocations: Revocations,
    pub issued_at: DateTime<Utc>,
    /// The signed document: [`RevocationDocument`] as JSON, base64url.
    pub document: String,
    pub kid: String,
    pub signature: String,
}

/// What a revocation list says, as a scanner reads it after checking the
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationDocument {
    pub showtime: Uuid,
    pub since: i64,
    pub version: i64,
    pub voided: Vec<Uuid>,
    pub more: bool,
    pub issued_at: DateTime<Utc>,
}

/// Reads a revocation list the way a scanner does: the document only if
/// the signature verifies with the key set.
pub fn open_revocations(
    keys: &[PublicKey],
    document: &str,
    kid: &str,
    signature: &str,
) -> Option<RevocationDocument> {
    let signed = format!("{LIST_PREFIX}{document}");
    if !verify_document(keys, kid, signed.as_bytes(), signature) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(document).ok()?).ok()
}

impl Booking {
    /// Checks a code and records the scan: the first scan of a valid
    /// ticket while the doors take its showtime admits it.
    pub async fn check_in(&self, scan: &DoorScan<'_>) -> Result<Admit, Error> {
        let claims = self.signer.verify(scan.code, Utc::now()).map_err(|err| {
            self.hot.admissions.with_label_values(&["refused"]).inc();
            Error::BadCode(err)
        })?;
        if let Some(showtime) = scan.showtime {
            if claims.showtime != showtime {
                return Err(Error::OtherShowtime {
                    ticket_showtime: claims.showtime,
                    door_showtime: showtime,
                });
            }
        }
        let door = &self.settings.door;
        let admit = self
            .storage
            .admit(&Scan {
                ticket: claims.ticket,
                showtime: claims.showtime,
                device: scan.device,
                scanned_by: scan.scanned_by,
                offline_at: scan.offline_at,
                opens_before: Duration::minutes(door.opens_minutes_before),
                clock_skew: Duration::seconds(door.clock_skew_seconds),
            })
            .await?;
        let outcome = match &admit {
            Admit::Admitted(_) => "admitted",
            Admit::Recorded(_) => "recorded",
            Admit::AlreadyAdmitted(_) => "already_admitted",
            Admit::Void(_) => "void",
            Admit::Closed { .. } | Admit::FromTheFuture => "closed",
        };
        self.hot.admissions.with_label_values(&[outcome]).inc();
        Ok(admit)
    }

    /// The showtime's tickets voided after `since`, signed; `None` when the
    /// showtime does not exist.
    pub async fn revocations(
        &self,
        showtime: Uuid,
        since: i64,
    ) -> Result<Option<SignedRevocations>, Error> {
        let Some(revocations) = self
            .storage
            .revocations(showtime, since.max(0), LIST_LIMIT)
            .await?
        else {
            return Ok(None);
        };
        let issued_at = Utc::now();
        let document = RevocationDocument {
            showtime,
            since: since.max(0),
            version: revocations.version,
            voided: revocations
                .voided
                .iter()
                .map(|(_, ticket, _)| *ticket)
                .collect(),
            more: revocations.more,
            issued_at,
        };
        let document = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&document)
                .unwrap_or_else(|err| unreachable!("a revocation list serialises: {err}")),
        );
        let (kid, signature) = self
            .signer
            .sign_document(format!("{LIST_PREFIX}{document}").as_bytes());
        Ok(Some(SignedRevocations {
            revocations,
            issued_at,
            document,
            kid,
            signature,
        }))
    }
}
