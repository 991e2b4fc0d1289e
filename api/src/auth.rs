//! Who is calling, and what each route lets them do.
//!
//! The edge reads the `Authorization` header once per request: a signed
//! access token (`mqa1.…`) becomes a [`Principal::User`], the configured
//! operator token a [`Principal::Operator`]. Handlers then declare who may
//! call them by the security scheme they take:
//!
//! - [`SignedIn`]: any signed-in user, acting on their own data;
//! - [`Staff`]: support or admin users who passed two-factor sign-in, or
//!   the operator token;
//! - [`AdminOnly`]: admin users who passed two-factor sign-in, or the
//!   operator token;
//! - [`DoorStaff`]: scanner, support or admin users who passed two-factor
//!   sign-in, or the operator token: the door routes.
//!
//! Routes that take none of them are public; a test walks the spec so that
//! no route is public by accident.

use std::net::IpAddr;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use marquee_auth::access::{AccessSigner, Claims, Role};
use marquee_storage::audit::AuditEntry;
use poem::{IntoResponse, Request};
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::edge::RequestId;
use crate::problem::ApiError;
use crate::settings::AuthSettings;
use crate::state::AppState;

/// The caller, as established by the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    User(Claims),
    /// The configured operator token: automation and first set-up. It acts
    /// with admin rights and every use is audited.
    Operator,
}

impl Principal {
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Self::User(claims) => Some(claims.user),
            Self::Operator => None,
        }
    }

    pub fn role_name(&self) -> &'static str {
        match self {
            Self::User(claims) => claims.role.as_str(),
            Self::Operator => "operator",
        }
    }
}

/// Verifies credentials and derives per-user secrets.
#[derive(Debug)]
pub struct Gatekeeper {
    pub signer: AccessSigner,
    operator_token: SecretString,
    owner_key: hmac::Key,
}

impl Gatekeeper {
    pub fn new(
        settings: &AuthSettings,
        operator_token: SecretString,
    ) -> Result<Self, marquee_auth::Error> {
        let previous: Vec<&str> = settings
            .previous_signing_secrets
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        let signer =
            AccessSigner::from_secrets(settings.signing_secret.expose_secret(), &previous)?;
        let owner_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            settings.owner_secret.expose_secret().as_bytes(),
        );
        Ok(Self {
            signer,
            operator_token,
            owner_key,
        })
    }

    /// The principal an `Authorization` header names. `Ok(None)` when there
    /// is no bearer credential; an access token that does not verify is an
    /// error, so a client with an expired token learns it at once.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        now: i64,
    ) -> Result<Option<Principal>, String> {
        let Some(token) = header.and_then(|value| value.strip_prefix("Bearer ")) else {
            return Ok(None);
        };
        let token = token.trim();
        if token.starts_with("mqa1.") {
            return self
                .signer
                .verify(token, now)
                .map(|claims| Some(Principal::User(claims)))
                .map_err(|err| format!("the access token is not valid: {err}"));
        }
        if constant_time_eq(
            self.operator_token.expose_secret().as_bytes(),
            token.as_bytes(),
        ) {
            return Ok(Some(Principal::Operator));
        }
        Ok(None)
    }

    /// The booking token of a signed-in user's holds: derived from the user
    /// id with a server key, so holds and orders of the account need no
    /// token of their own, and no other user can derive it.
    pub fn owner_token(&self, user: Uuid) -> String {
        let tag = hmac::sign(&self.owner_key, user.as_bytes());
        format!("usr_{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }
}

/// Compares in constant time, so response timing does not reveal how much
/// of a guessed token was right.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = u8::from(expected.len() != given.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(0);
    }
    difference == 0
}

fn reject(err: ApiError) -> poem::Error {
    poem::Error::from_response(err.into_response())
}

fn principal(req: &Request) -> Option<&Principal> {
    req.extensions().get::<Principal>()
}

fn missing() -> poem::Error {
    reject(ApiError::unauthorized(
        "this route needs `Authorization: Bearer <access token>`; sign in at POST /v1/auth/sessions",
    ))
}

fn staff_principal(req: &Request, admin_only: bool) -> poem::Result<Principal> {
    match principal(req) {
        Some(Principal::Operator) => Ok(Principal::Operator),
        Some(Principal::User(claims)) => {
            let allowed = if admin_only {
                claims.role == Role::Admin
            } else {
                claims.role.is_staff()
            };
            if !allowed {
                Err(reject(ApiError::forbidden(if admin_only {
                    "this route is for admins"
                } else {
                    "this route is for support staff and admins"
                })))
            } else if !claims.mfa {
                Err(reject(ApiError::forbidden(
                    "staff routes need a session signed in with a two-factor code; enrol at POST /v1/me/totp and sign in again",
                )))
            } else {
                Ok(Principal::User(*claims))
            }
        }
        None => Err(missing()),
    }
}

async fn check_door(req: &Request, _: Bearer) -> poem::Result<Principal> {
    match principal(req) {
        Some(Principal::Operator) => Ok(Principal::Operator),
        Some(Principal::User(claims)) if !claims.role.admits_tickets() => Err(reject(
            ApiError::forbidden("this route is for door staff (the scanner role) and other staff"),
        )),
        Some(Principal::User(claims)) if !claims.mfa => Err(reject(ApiError::forbidden(
            "door routes need a session signed in with a two-factor code; enrol at POST /v1/me/totp and sign in again",
        ))),
        Some(Principal::User(claims)) => Ok(Principal::User(*claims)),
        None => Err(missing()),
    }
}

async fn check_signed_in(req: &Request, _: Bearer) -> poem::Result<Claims> {
    match principal(req) {
        Some(Principal::User(claims)) => Ok(*claims),
        Some(Principal::Operator) => Err(reject(ApiError::forbidden(
            "the operator token acts for staff, not for a customer; sign in as the customer",
        ))),
        None => Err(missing()),
    }
}

async fn check_staff(req: &Request, _: Bearer) -> poem::Result<Principal> {
    staff_principal(req, false)
}

async fn check_admin(req: &Request, _: Bearer) -> poem::Result<Principal> {
    staff_principal(req, true)
}

/// A signed-in user (any role) acting on their own data.
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "customer",
    ty = "bearer",
    bearer_format = "mqa1 access token",
    checker = "check_signed_in"
)]
pub struct SignedIn(pub Claims);

/// Support staff or admins signed in with two factors, or the operator token.
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "staff",
    ty = "bearer",
    bearer_format = "mqa1 access token of a support or admin user, or the operator token",
    checker = "check_staff"
)]
pub struct Staff(pub Principal);

/// Admins signed in with two factors, or the operator token.
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "admin",
    ty = "bearer",
    bearer_format = "mqa1 access token of an admin user, or the operator token",
    checker = "check_admin"
)]
pub struct AdminOnly(pub Principal);

/// Door staff (the scanner role), support staff or admins signed in with
/// two factors, or the operator token.
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "door",
    ty = "bearer",
    bearer_format = "mqa1 access token of a scanner, support or admin user, or the operator token",
    checker = "check_door"
)]
pub struct DoorStaff(pub Principal);

/// Where a request came from, for the audit log and rate limits.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.remote_addr()
        .as_socket_addr()
        .map(std::net::SocketAddr::ip)
}

fn audit_entry(
    req: &Request,
    actor: Option<&Principal>,
    action: &str,
    target: Option<String>,
    outcome: &'static str,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        actor_id: actor.and_then(Principal::user_id),
        actor_role: actor.map_or("anonymous", Principal::role_name).to_owned(),
        action: action.to_owned(),
        target,
        outcome,
        ip: client_ip(req).map(|ip| ip.to_string()),
        request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
        detail,
    }
}

/// Records an action before going on, for the one that must be in the log
/// before what follows it: an erasure, which then scrubs the entry too.
pub async fn audit_now(
    state: &AppState,
    req: &Request,
    actor: Option<&Principal>,
    action: &str,
    target: Option<String>,
) -> Result<(), ApiError> {
    let entry = audit_entry(req, actor, action, target, "success", serde_json::json!({}));
    Ok(state.storage.audit(&entry).await?)
}

/// Records an action in the audit log without holding up the answer; a
/// failure to record is logged with the whole entry, so nothing is lost
/// silently.
pub fn audit(
    state: &AppState,
    req: &Request,
    actor: Option<&Principal>,
    action: &str,
    target: Option<String>,
    outcome: &'static str,
    detail: serde_json::Value,
) {
    record_later(
        &state.storage,
        audit_entry(req, actor, action, target, outcome, detail),
    );
}

/// Writes an audit entry in the background; an entry that cannot be
/// written goes to the service log whole.
pub fn record_later(storage: &marquee_storage::Storage, entry: AuditEntry) {
    let storage = storage.clone();
    tokio::spawn(async move {
        if let Err(err) = storage.audit(&entry).await {
            tracing::error!(error = %err, entry = ?entry, "audit entry not recorded");
        }
    });
}

/// Everything account routes and the edge share.
#[derive(Debug)]
pub struct AuthState {
    pub gatekeeper: Gatekeeper,
    pub hasher: marquee_auth::password::PasswordHasher,
    pub settings: AuthSettings,
    pub mailer: marquee_notify::Mailer,
    pub lockout: marquee_ratelimit::Lockout,
    /// Credential checks per account (`auth.account_attempts`).
    pub attempts: marquee_ratelimit::RateLimiter,
}

impl AuthState {
    /// Admits one password or code check for `key`, or says how long to
    /// wait: the account is locked after repeated failures, or too many
    /// checks are already under way.
    pub async fn admit_attempt(&self, key: &str) -> Result<(), std::time::Duration> {
        if let Some(wait) = self.lockout.check(key).await {
            return Err(wait);
        }
        let limit = marquee_ratelimit::Limit {
            per_second: f64::from(self.settings.account_attempts.per_minute) / 60.0,
            burst: self.settings.account_attempts.burst,
        };
        match self.attempts.acquire(&limit, key).await {
            marquee_ratelimit::Decision::Allowed => Ok(()),
            marquee_ratelimit::Decision::Limited { retry_after } => Err(retry_after),
        }
    }
}
