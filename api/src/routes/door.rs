//! Tickets at the door: admitting a scanned code, uploading what an
//! offline scanner admitted, the signed list of a showtime's voided
//! tickets, and the key set scanners verify codes and lists with.
//!
//! Door routes are for the `scanner` role (and other staff) signed in with
//! two factors, or the operator token.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::{DoorStaff, Principal};
use crate::body::{JsonBody, Validate};
use crate::problem::{ApiError, FieldError, FirstAdmission};
use crate::state::AppState;
use marquee_booking::door::DoorScan;
use marquee_storage::door::{Admission as StoredAdmission, Admit, Void};

#[derive(Debug)]
pub struct DoorApi;

/// Admissions in one upload from an offline scanner. With codes of at most
/// 512 characters (a genuine one is under 400), any upload the schema allows fits in the request
/// body limit (64 KiB by default), so a long offline spell is uploaded in
/// batches rather than refused as too large.
const MAX_SYNC: usize = 100;

/// A code scanned at a showtime's door.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct CheckinBody {
    /// The ticket's QR payload, `MQT2.…`.
    #[oai(validator(min_length = 1, max_length = 512))]
    code: String,
    /// The showtime this door admits to.
    showtime_id: Uuid,
    /// The scanner's own name for itself, such as `screen-3-left`.
    #[oai(validator(min_length = 1, max_length = 64))]
    device_id: String,
}

impl Validate for CheckinBody {
    fn validate(&self) -> Vec<FieldError> {
        device_problems("device_id", &self.device_id)
            .into_iter()
            .chain(code_problems("code", &self.code))
            .collect()
    }
}

/// One admission an offline scanner made.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct OfflineAdmission {
    #[oai(validator(min_length = 1, max_length = 512))]
    code: String,
    /// When the scanner let the ticket in, by its clock.
    admitted_at: DateTime<Utc>,
}

/// What an offline scanner admitted while it had no link.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    #[oai(validator(min_length = 1, max_length = 64))]
    device_id: String,
    #[oai(validator(min_items = 1, max_items = 100))]
    admissions: Vec<OfflineAdmission>,
}

impl Validate for SyncBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = device_problems("device_id", &self.device_id);
        if self.admissions.len() > MAX_SYNC {
            errors.push(FieldError::new(
                "admissions",
                format!("at most {MAX_SYNC} per upload"),
            ));
        }
        for (index, admission) in self.admissions.iter().enumerate() {
            errors.extend(code_problems(
                &format!("admissions[{index}].code"),
                &admission.code,
            ));
        }
        errors
    }
}

fn device_problems(field: &str, device: &str) -> Vec<FieldError> {
    if device.bytes().all(|b| b.is_ascii_graphic()) {
        Vec::new()
    } else {
        vec![FieldError::new(
            field,
            "printable ASCII without spaces, such as screen-3-left",
        )]
    }
}

fn code_problems(field: &str, code: &str) -> Vec<FieldError> {
    if code.bytes().all(|b| b.is_ascii_graphic()) {
        Vec::new()
    } else {
        vec![FieldError::new(field, "not a ticket code")]
    }
}

/// A ticket that went in.
#[derive(Debug, Clone, Object)]
pub struct Admission {
    ticket_id: Uuid,
    order_id: Uuid,
    showtime_id: Uuid,
    seat: String,
    admitted_at: DateTime<Utc>,
    device_id: String,
    /// Whether an offline scanner admitted it and uploaded it later.
    offline: bool,
}

impl From<StoredAdmission> for Admission {
    fn from(admission: StoredAdmission) -> Self {
        Self {
            ticket_id: admission.ticket_id,
            order_id: admission.order_id,
            showtime_id: admission.showtime_id,
            seat: admission.seat,
            admitted_at: admission.admitted_at,
            device_id: admission.device_id,
            offline: admission.offline,
        }
    }
}

/// What became of one uploaded admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum SyncOutcome {
    /// Recorded now.
    Admitted,
    /// Recorded by an earlier upload of the same admission.
    Recorded,
    /// The ticket had gone in before, elsewhere or at another time:
    /// `first_admission` says where.
    Duplicate,
    /// The ticket was cancelled, or its order is not confirmed.
    Void,
    /// The time is outside the showtime's door hours, or ahead of the
    /// server's clock.
    OutOfHours,
    /// The code does not verify.
    Invalid,
}

#[derive(Debug, Clone, Object)]
pub struct SyncResult {
    /// Position in the upload.
    index: u32,
    outcome: SyncOutcome,
    #[oai(skip_serializing_if_is_none)]
    ticket_id: Option<Uuid>,
    detail: String,
    #[oai(skip_serializing_if_is_none)]
    first_admission: Option<Admission>,
}

#[derive(Debug, Clone, Object)]
pub struct SyncReport {
    results: Vec<SyncResult>,
}

/// A voided ticket.
#[derive(Debug, Clone, Object)]
pub struct VoidedTicket {
    ticket_id: Uuid,
    version: i64,
    reason: String,
}

/// A showtime's tickets voided after a version, signed for scanners that
/// work offline. Verify `signature` over `MQR1.` followed by `document`
/// with the key `key_id` of the key set; `document` is the same list as
/// base64url JSON.
#[derive(Debug, Clone, Object)]
pub struct RevocationList {
    showtime_id: Uuid,
    since: i64,
    /// Ask with `since` set to this next time.
    version: i64,
    /// More voided tickets exist past `version`: ask again at once.
    more: bool,
    voided: Vec<VoidedTicket>,
    issued_at: DateTime<Utc>,
    document: String,
    key_id: String,
    signature: String,
}

/// A public key, as a JSON Web Key (RFC 8037).
#[derive(Debug, Clone, Object)]
pub struct TicketKey {
    /// `OKP`.
    kty: String,
    /// `Ed25519`.
    crv: String,
    /// `EdDSA`.
    alg: String,
    /// `sig`.
    #[oai(rename = "use")]
    key_use: String,
    kid: String,
    /// The public key, base64url.
    x: String,
    /// `current` signs new tickets; `previous` only verifies older ones.
    status: String,
    /// When a previous key stops verifying codes.
    #[oai(skip_serializing_if_is_none)]
    verify_until: Option<DateTime<Utc>>,
}

/// The keys that verify ticket codes and revocation lists.
#[derive(Debug, Clone, Object)]
pub struct TicketKeySet {
    keys: Vec<TicketKey>,
    /// `MQT2.<kid>.<payload>.<signature>`: the signature covers everything
    /// before its dot.
    code_format: String,
}

fn scanned_by(principal: &Principal) -> String {
    principal
        .user_id()
        .map_or_else(|| "operator".to_owned(), |id| id.to_string())
}

fn first_admission(admission: &StoredAdmission) -> FirstAdmission {
    FirstAdmission {
        admitted_at: admission.admitted_at,
        device_id: admission.device_id.clone(),
        offline: admission.offline,
    }
}

fn void_detail(void: Void) -> &'static str {
    match void {
        Void::Unknown => "no such ticket was issued for this showtime; do not admit",
        Void::Cancelled => "the ticket was cancelled and refunded; do not admit",
        Void::NotConfirmed => "the ticket's order is not confirmed; do not admit",
    }
}

#[OpenApi]
impl DoorApi {
    /// Admit a ticket
    ///
    /// The first scan of a valid ticket while the doors take its showtime
    /// (from `booking.door.opens_minutes_before` the start until its end)
    /// admits it. A ticket scanned again is refused with when and by which
    /// device it first went in; a cancelled ticket, a door that is not
    /// open for the showtime, and a code for another showtime are refused
    /// with why.
    #[oai(path = "/v1/checkins", method = "post", tag = "ApiTags::Door")]
    async fn check_in(
        &self,
        state: Data<&Arc<AppState>>,
        door: DoorStaff,
        body: JsonBody<CheckinBody>,
    ) -> Result<Json<Admission>, ApiError> {
        let body = body.0;
        let scanned_by = scanned_by(&door.0);
        let admit = state
            .booking
            .check_in(&DoorScan {
                code: &body.code,
                showtime: Some(body.showtime_id),
                device: &body.device_id,
                scanned_by: &scanned_by,
                offline_at: None,
            })
            .await?;
        match admit {
            Admit::Admitted(admission) | Admit::Recorded(admission) => {
                Ok(Json(Admission::from(admission)))
            }
            Admit::AlreadyAdmitted(first) => Err(ApiError::already_admitted(
                format!(
                    "seat {} was already admitted at {} by device {}; do not admit again",
                    first.seat,
                    first.admitted_at.format("%H:%M:%S UTC"),
                    first.device_id
                ),
                first_admission(&first),
            )),
            Admit::Void(void) => Err(ApiError::conflict_of("ticket-void", void_detail(void))),
            Admit::Closed {
                opens_at,
                closes_at,
            } => Err(ApiError::conflict_of(
                "doors-closed",
                format!(
                    "the doors take this showtime's tickets from {} until {}",
                    opens_at.format("%Y-%m-%d %H:%M UTC"),
                    closes_at.format("%Y-%m-%d %H:%M UTC")
                ),
            )),
            Admit::FromTheFuture => Err(ApiError::conflict_of(
                "doors-closed",
                "the admission time is ahead of the server's clock",
            )),
        }
    }

    /// Upload offline admissions
    ///
    /// What a scanner admitted while it had no link, each at the time it
    /// gives. Uploading the same admissions again is harmless: they come
    /// back as `recorded`. Each result says what became of one admission;
    /// a ticket admitted elsewhere first is a `duplicate`, with that first
    /// admission.
    #[oai(path = "/v1/checkins/sync", method = "post", tag = "ApiTags::Door")]
    async fn sync(
        &self,
        state: Data<&Arc<AppState>>,
        door: DoorStaff,
        body: JsonBody<SyncBody>,
    ) -> Result<Json<SyncReport>, ApiError> {
        let body = body.0;
        let scanned_by = scanned_by(&door.0);
        let mut results = Vec::with_capacity(body.admissions.len());
        for (index, offline) in body.admissions.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let admit = state
                .booking
                .check_in(&DoorScan {
                    code: &offline.code,
                    showtime: None,
                    device: &body.device_id,
                    scanned_by: &scanned_by,
                    offline_at: Some(offline.admitted_at),
                })
                .await;
            let result = match admit {
                Err(marquee_booking::Error::BadCode(reason)) => SyncResult {
                    index,
                    outcome: SyncOutcome::Invalid,
                    ticket_id: None,
                    detail: format!("the code is refused: {reason}"),
                    first_admission: None,
                },
                Err(err) => return Err(err.into()),
                Ok(Admit::Admitted(admission)) => SyncResult {
                    index,
                    outcome: SyncOutcome::Admitted,
                    ticket_id: Some(admission.ticket_id),
                    detail: "recorded".to_owned(),
                    first_admission: None,
                },
                Ok(Admit::Recorded(admission)) => SyncResult {
                    index,
                    outcome: SyncOutcome::Recorded,
                    ticket_id: Some(admission.ticket_id),
                    detail: "recorded by an earlier upload".to_owned(),
                    first_admission: None,
                },
                Ok(Admit::AlreadyAdmitted(first)) => SyncResult {
                    index,
                    outcome: SyncOutcome::Duplicate,
                    ticket_id: Some(first.ticket_id),
                    detail: format!(
                        "seat {} went in before, at {} by device {}",
                        first.seat,
                        first.admitted_at.format("%H:%M:%S UTC"),
                        first.device_id
                    ),
                    first_admission: Some(Admission::from(first)),
                },
                Ok(Admit::Void(void)) => SyncResult {
                    index,
                    outcome: SyncOutcome::Void,
                    ticket_id: None,
                    detail: void_detail(void).to_owned(),
                    first_admission: None,
                },
                Ok(Admit::Closed {
                    opens_at,
                    closes_at,
                }) => SyncResult {
                    index,
                    outcome: SyncOutcome::OutOfHours,
                    ticket_id: None,
                    detail: format!(
                        "the doors took this showtime's tickets from {} until {}",
                        opens_at.format("%Y-%m-%d %H:%M UTC"),
                        closes_at.format("%Y-%m-%d %H:%M UTC")
                    ),
                    first_admission: None,
                },
                Ok(Admit::FromTheFuture) => SyncResult {
                    index,
                    outcome: SyncOutcome::OutOfHours,
                    ticket_id: None,
                    detail: "the admission time is ahead of the server's clock".to_owned(),
                    first_admission: None,
                },
            };
            results.push(result);
        }
        Ok(Json(SyncReport { results }))
    }

    /// Voided tickets of a showtime
    ///
    /// The showtime's tickets cancelled after version `since`, signed with
    /// the ticket key, so a scanner that loses its link still refuses
    /// them. Ask with the `version` of the last answer to get only what
    /// changed.
    #[oai(
        path = "/v1/showtimes/:id/revocations",
        method = "get",
        tag = "ApiTags::Door"
    )]
    async fn revocations(
        &self,
        state: Data<&Arc<AppState>>,
        _door: DoorStaff,
        id: Path<Uuid>,
        /// The version the scanner holds; 0 for the whole list.
        #[oai(default, validator(minimum(value = "0")))]
        since: Query<i64>,
    ) -> Result<Json<RevocationList>, ApiError> {
        let signed = state
            .booking
            .revocations(id.0, since.0)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("showtime {} does not exist", id.0)))?;
        let list = signed.revocations;
        Ok(Json(RevocationList {
            showtime_id: list.showtime_id,
            since: since.0,
            version: list.version,
            more: list.more,
            voided: list
                .voided
                .into_iter()
                .map(|(version, ticket_id, reason)| VoidedTicket {
                    ticket_id,
                    version,
                    reason,
                })
                .collect(),
            issued_at: signed.issued_at,
            document: signed.document,
            key_id: signed.kid,
            signature: signed.signature,
        }))
    }

    /// Ticket signing keys
    ///
    /// The public keys that verify ticket codes and revocation lists
    /// offline: the current key, and keys rotated out that still verify
    /// the tickets they signed until `verify_until`.
    #[oai(
        path = "/v1/tickets/signing-key",
        method = "get",
        tag = "ApiTags::Door"
    )]
    async fn signing_keys(
        &self,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<TicketKeySet>, ApiError> {
        let keys = state
            .booking
            .signer()
            .key_set(Utc::now())
            .into_iter()
            .map(|key| TicketKey {
                kty: "OKP".to_owned(),
                crv: "Ed25519".to_owned(),
                alg: "EdDSA".to_owned(),
                key_use: "sig".to_owned(),
                kid: key.kid,
                x: key.x,
                status: if key.current { "current" } else { "previous" }.to_owned(),
                verify_until: key.verify_until,
            })
            .collect();
        Ok(Json(TicketKeySet {
            keys,
            code_format: "MQT2.<kid>.<payload>.<signature>".to_owned(),
        }))
    }
}
