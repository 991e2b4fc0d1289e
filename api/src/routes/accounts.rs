//! Accounts: registration with a verified address, sign-in with optional
//! two-factor codes, rotating refresh tokens, profile, address and password
//! changes, password reset by mail, erasure and export.
//!
//! Nothing here tells a caller whether an address has an account:
//! registration and reset requests answer 202 whatever the address, a
//! failed sign-in says "the email or password is wrong", and a sign-in for
//! an unknown address still spends one password verification.

use std::sync::Arc;

use aws_lc_rs::digest;
use chrono::{DateTime, Utc};
use marquee_auth::access::{Claims, Role};
use marquee_auth::{opaque, password, totp};
use marquee_notify::Mail;
use marquee_sharding::ids;
use marquee_storage::accounts::{
    Account, BookingFilter, NewAccount, NewSession, Registered, Rotation, Session, TokenPurpose,
};
use marquee_storage::audit::AuditFilter;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::bookings::Order;
use super::subscriptions::{PreferencesView, SubscriptionView};
use super::ApiTags;
use crate::auth::{audit, audit_now, client_ip, AdminOnly, Principal, SignedIn, Staff};
use crate::body::{JsonBody, Validate};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;

#[derive(Debug)]
pub struct AccountsApi;

/// The refresh cookie. `__Host-` binds it to this origin over HTTPS, with
/// no `Domain` and `Path=/`.
pub const REFRESH_COOKIE: &str = "__Host-marquee_refresh";

fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The shape of an address; checked in code, as on the booking routes.
pub(crate) fn email_ok(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    (1..=64).contains(&local.len())
        && (3..=189).contains(&domain.len())
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

fn check_email(field: &str, email: &str, errors: &mut Vec<FieldError>) {
    if !email_ok(email.trim()) {
        errors.push(FieldError::new(
            field,
            "an email address such as ada@example.com",
        ));
    }
}

fn check_password(field: &str, password: &str, email: &str, errors: &mut Vec<FieldError>) {
    if let Err(violation) =
        password::check_policy(password, email, &password::PasswordPolicy::default())
    {
        errors.push(FieldError::new(field, violation.to_string()));
    }
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    let length = name.trim().chars().count();
    if !(1..=100).contains(&length) || name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "1 to 100 characters, without control characters",
        ));
    }
}

/// A password field, unchecked beyond its size: checking a stored
/// password against today's policy would lock out older accounts.
fn check_given_password(field: &str, password: &str, errors: &mut Vec<FieldError>) {
    if password.is_empty() || password.chars().count() > 1024 {
        errors.push(FieldError::new(field, "1 to 1024 characters"));
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct RegistrationBody {
    /// The address to sign in with; a message to it confirms it.
    #[oai(validator(max_length = 254))]
    email: String,
    /// At least 12 characters; not the address, not a common password.
    #[oai(validator(max_length = 1024))]
    password: String,
    #[oai(validator(max_length = 100))]
    name: String,
}

impl Validate for RegistrationBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_email("email", &self.email, &mut errors);
        check_password("password", &self.password, &self.email, &mut errors);
        check_name(&self.name, &mut errors);
        errors
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    #[oai(validator(max_length = 254))]
    email: String,
}

impl Validate for EmailBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_email("email", &self.email, &mut errors);
        errors
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// The token from the message's link.
    #[oai(validator(max_length = 200))]
    token: String,
}

impl Validate for TokenBody {
    fn validate(&self) -> Vec<FieldError> {
        if opaque::parse(&self.token).is_some() {
            Vec::new()
        } else {
            vec![FieldError::new("token", "not a token this service issued")]
        }
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    #[oai(validator(max_length = 254))]
    email: String,
    #[oai(validator(max_length = 1024))]
    password: String,
    /// The six-digit code from the authenticator app, for accounts with
    /// two-factor sign-in.
    #[oai(validator(max_length = 6))]
    #[serde(default, deserialize_with = "super::present")]
    totp: Option<String>,
}

impl Validate for LoginBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_email("email", &self.email, &mut errors);
        check_given_password("password", &self.password, &mut errors);
        errors
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    /// The refresh token; may be left out when the refresh cookie is sent.
    #[oai(validator(max_length = 200))]
    #[serde(default, deserialize_with = "super::present")]
    refresh_token: Option<String>,
}

impl Validate for RefreshBody {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    #[oai(validator(max_length = 200))]
    token: String,
    #[oai(validator(max_length = 1024))]
    new_password: String,
}

impl Validate for ResetBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if opaque::parse(&self.token).is_none() {
            errors.push(FieldError::new("token", "not a token this service issued"));
        }
        check_password("new_password", &self.new_password, "", &mut errors);
        errors
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    #[oai(validator(max_length = 100))]
    name: String,
}

impl Validate for ProfileBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_name(&self.name, &mut errors);
        errors
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct EmailChangeBody {
    #[oai(validator(max_length = 254))]
    new_email: String,
    #[oai(validator(max_length = 1024))]
    password: String,
}

impl Validate for EmailChangeBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_email("new_email", &self.new_email, &mut errors);
        check_given_password("password", &self.password, &mut errors);
        errors
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct PasswordChangeBody {
    #[oai(validator(max_length = 1024))]
    current_password: String,
    #[oai(validator(max_length = 1024))]
    new_password: String,
}

impl Validate for PasswordChangeBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_given_password("current_password", &self.current_password, &mut errors);
        check_password("new_password", &self.new_password, "", &mut errors);
        errors
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    #[oai(validator(max_length = 1024))]
    password: String,
}

impl Validate for PasswordBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_given_password("password", &self.password, &mut errors);
        errors
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    /// The six-digit code the authenticator app shows now.
    #[oai(validator(max_length = 6))]
    code: String,
}

impl Validate for CodeBody {
    fn validate(&self) -> Vec<FieldError> {
        if self.code.len() == 6 && self.code.bytes().all(|b| b.is_ascii_digit()) {
            Vec::new()
        } else {
            vec![FieldError::new("code", "six digits")]
        }
    }
}

#[derive(Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    /// `customer`, `support` or `admin`.
    #[oai(validator(max_length = 20))]
    role: String,
}

impl Validate for RoleBody {
    fn validate(&self) -> Vec<FieldError> {
        if self.role.parse::<Role>().is_ok() {
            Vec::new()
        } else {
            vec![FieldError::new("role", "customer, support or admin")]
        }
    }
}

/// What a registration or a mail request started.
#[derive(Debug, Object)]
struct Accepted {
    /// What happens next.
    detail: String,
}

/// Credentials for the API.
#[derive(Debug, Object)]
struct Tokens {
    /// Send as `Authorization: Bearer <access_token>`.
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Seconds the access token is valid for.
    expires_in: u64,
    /// Exchanged at POST /v1/auth/refresh for new tokens, once: each
    /// exchange returns a new one. Also set as an `HttpOnly` cookie.
    refresh_token: String,
    /// Seconds the refresh token is valid for.
    refresh_expires_in: u64,
    user_id: Uuid,
    role: String,
    /// Whether this session passed a two-factor check.
    mfa: bool,
}

/// The signed-in user's account.
#[derive(Debug, Object)]
struct Profile {
    id: Uuid,
    email: String,
    email_verified: bool,
    name: String,
    role: String,
    two_factor: bool,
    created_at: DateTime<Utc>,
}

impl Profile {
    fn of(account: &Account) -> Self {
        Self {
            id: account.id,
            email: account.email.clone().unwrap_or_default(),
            email_verified: account.email_verified,
            name: account.name.clone().unwrap_or_default(),
            role: account.role.clone(),
            two_factor: account.totp_secret.is_some(),
            created_at: account.created_at,
        }
    }
}

/// A signed-in device.
#[derive(Debug, Object)]
struct SessionView {
    id: Uuid,
    /// Whether this is the session making the request.
    current: bool,
    mfa: bool,
    #[oai(skip_serializing_if_is_none)]
    user_agent: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    ip: Option<String>,
    created_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl SessionView {
    fn of(session: &Session, current: Uuid) -> Self {
        Self {
            id: session.id,
            current: session.id == current,
            mfa: session.mfa,
            user_agent: session.user_agent.clone(),
            ip: session.ip.clone(),
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.expires_at,
        }
    }
}

#[derive(Debug, Object)]
struct Revoked {
    /// How many sessions were signed out.
    revoked: u64,
}

/// A second factor being enrolled.
#[derive(Debug, Object)]
struct TotpEnrolment {
    /// The shared secret, base32, for manual entry.
    secret: String,
    /// The same as an `otpauth://` URI, for a QR code.
    otpauth_uri: String,
}

/// One booking of the signed-in user.
#[derive(Debug, Object)]
struct BookingView {
    hold_id: Uuid,
    showtime_id: Uuid,
    created_at: DateTime<Utc>,
    order: Order,
}

/// An order status to list bookings by.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
enum BookingStatus {
    Confirmed,
    Cancelled,
}

impl BookingStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Object)]
struct BookingList {
    bookings: Vec<BookingView>,
}

/// Everything this service keeps about the signed-in user.
#[derive(Debug, Object)]
struct Export {
    exported_at: DateTime<Utc>,
    profile: Profile,
    sessions: Vec<SessionView>,
    bookings: Vec<BookingView>,
    /// Security events about this account: sign-ins, changes.
    activity: Vec<AuditView>,
    /// Notification channels and the confirmed phone number.
    preferences: PreferencesView,
    subscriptions: Vec<SubscriptionView>,
}

/// An account, for staff.
#[derive(Debug, Object)]
struct UserView {
    id: Uuid,
    email: String,
    email_verified: bool,
    name: String,
    role: String,
    two_factor: bool,
    created_at: DateTime<Utc>,
}

impl UserView {
    fn of(account: &Account) -> Self {
        let profile = Profile::of(account);
        Self {
            id: profile.id,
            email: profile.email,
            email_verified: profile.email_verified,
            name: profile.name,
            role: profile.role,
            two_factor: profile.two_factor,
            created_at: profile.created_at,
        }
    }
}

#[derive(Debug, Object)]
struct UserList {
    users: Vec<UserView>,
}

/// One audit log entry.
#[derive(Debug, Object)]
struct AuditView {
    id: Uuid,
    at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    actor_id: Option<Uuid>,
    actor_role: String,
    action: String,
    #[oai(skip_serializing_if_is_none)]
    target: Option<String>,
    outcome: String,
    #[oai(skip_serializing_if_is_none)]
    ip: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    request_id: Option<String>,
    detail: serde_json::Value,
}

#[derive(Debug, Object)]
struct AuditPage {
    entries: Vec<AuditView>,
    /// Pass as `before` for the next page; absent on the last.
    #[oai(skip_serializing_if_is_none)]
    next_before: Option<Uuid>,
}

#[derive(Debug, ApiResponse)]
enum AcceptedResponse {
    /// Accepted; the outcome arrives by mail.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

#[derive(Debug, ApiResponse)]
enum SignedInResponse {
    /// Signed in. The refresh token is also set as a cookie.
    #[oai(status = 201)]
    Created(Json<Tokens>, #[oai(header = "Set-Cookie")] String),
}

#[derive(Debug, ApiResponse)]
enum RefreshedResponse {
    /// New tokens; the presented refresh token no longer works.
    #[oai(status = 200)]
    Ok(Json<Tokens>, #[oai(header = "Set-Cookie")] String),
}

#[derive(Debug, ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

#[derive(Debug, ApiResponse)]
enum SignedOut {
    /// Signed out; the refresh cookie is cleared.
    #[oai(status = 204)]
    NoContent(#[oai(header = "Set-Cookie")] String),
}

#[derive(Debug, ApiResponse)]
enum ExportResponse {
    /// The account's data, as a JSON download.
    #[oai(status = 200)]
    Ok(Json<Export>, #[oai(header = "Content-Disposition")] String),
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// The lockout and rate-limit key of an address: its hash, so Redis never
/// holds addresses.
fn email_key(email: &str) -> String {
    let hash = digest::digest(&digest::SHA256, email.as_bytes());
    super::hex(&hash.as_ref()[..16])
}

fn refresh_cookie(state: &AppState, token: &str, max_age: u64) -> String {
    let secure = if state.auth.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{REFRESH_COOKIE}={token}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}"
    )
}

/// The refresh token from the `Cookie` header, if the browser sent it.
fn refresh_from_cookie(req: &Request) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == REFRESH_COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

fn wrong_credentials() -> ApiError {
    ApiError::unauthorized("the email or password is wrong")
}

fn locked(wait: std::time::Duration) -> ApiError {
    ApiError::too_many_requests(
        "too many failed or simultaneous sign-ins for this account; wait before trying again",
        wait.as_secs_f64().ceil().max(1.0) as u64,
    )
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "account operation failed");
    ApiError::internal()
}

fn token_invalid() -> ApiError {
    ApiError::unprocessable(
        "the link is invalid, used or expired; ask for a new one",
        vec![FieldError::new("token", "invalid, used or expired")],
    )
}

impl AppState {
    /// Creates a one-time token and mails its link.
    async fn mail_token(
        &self,
        account: &Account,
        to: &str,
        purpose: TokenPurpose,
        new_email: Option<&str>,
    ) -> Result<(), ApiError> {
        let settings = &self.auth.settings;
        let (ttl, subject, path, what) = match purpose {
            TokenPurpose::VerifyEmail => (
                settings.verification_ttl(),
                "Confirm your address",
                "verify-email",
                "confirm this address for your Marquee account",
            ),
            TokenPurpose::ChangeEmail => (
                settings.verification_ttl(),
                "Confirm your new address",
                "verify-email",
                "make this the address of your Marquee account",
            ),
            TokenPurpose::ResetPassword => (
                settings.reset_ttl(),
                "Reset your password",
                "reset-password",
                "choose a new password for your Marquee account",
            ),
        };
        // Only the newest link of a kind works.
        self.storage
            .void_user_tokens(account.id, &[purpose])
            .await?;
        let (token, stored) = opaque::generate(ids::scoped(account.id)).map_err(internal)?;
        self.storage
            .create_user_token(
                stored.id,
                account.id,
                purpose,
                &stored.secret_hash,
                new_email,
                ttl,
            )
            .await?;
        let lifetime = match ttl.as_secs() / 60 {
            minutes if minutes >= 120 => format!("{} hours", minutes / 60),
            minutes => format!("{minutes} minutes"),
        };
        self.auth.mailer.send_later(Mail {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text: format!(
                "Hello {name},\n\nOpen this link to {what}:\n\n{base}/{path}?token={token}\n\n\
                 Or send the token to the API: {token}\n\n\
                 The link works once, for {lifetime}. If you did not ask for this, ignore this message.\n",
                name = account.name.as_deref().unwrap_or("there"),
                base = settings.public_url.trim_end_matches('/'),
            ),
            ..Mail::default()
        });
        Ok(())
    }

    fn notify(&self, account: &Account, subject: &str, text: &str) {
        if let Some(email) = account.email.as_deref() {
            self.auth.mailer.send_later(Mail {
                to: email.to_owned(),
                subject: subject.to_owned(),
                text: format!(
                    "Hello {},\n\n{text}\n\nIf this was not you, reset your password at once.\n",
                    account.name.as_deref().unwrap_or("there")
                ),
                ..Mail::default()
            });
        }
    }

    /// Spends a confirmation link: a new account's address, or the new
    /// address of a change. The JSON route and the page the mail links to
    /// both come here.
    pub(crate) async fn confirm_address(&self, req: &Request, token: &str) -> Result<(), ApiError> {
        let (id, hash) = opaque::parse(token).ok_or_else(token_invalid)?;
        let purposes = [TokenPurpose::VerifyEmail, TokenPurpose::ChangeEmail];
        // Both changes can be made twice without harm, so they come first
        // and the link is spent after: a change refused for now (another
        // account took the address, a rebalance is running) leaves it
        // usable.
        let token = self
            .storage
            .peek_user_token(id, &hash, &purposes)
            .await?
            .ok_or_else(token_invalid)?;
        match (token.purpose, token.new_email) {
            (TokenPurpose::ChangeEmail, Some(new_email)) => {
                self.storage.change_email(token.user_id, &new_email).await?;
                self.storage
                    .void_user_tokens(
                        token.user_id,
                        &[TokenPurpose::ChangeEmail, TokenPurpose::ResetPassword],
                    )
                    .await?;
                account_event(self, req, None, "account.email_changed", token.user_id);
            }
            _ => {
                self.storage.mark_email_verified(token.user_id).await?;
                account_event(self, req, None, "account.email_verified", token.user_id);
            }
        }
        self.storage.use_user_token(id, &hash, &purposes).await?;
        Ok(())
    }

    /// Sets a new password with a reset link, confirms the address (the
    /// link proved it) and signs out every session. The JSON route and the
    /// page the mail links to both come here.
    pub(crate) async fn reset_password_with(
        &self,
        req: &Request,
        token: &str,
        new_password: &str,
    ) -> Result<(), ApiError> {
        let (id, hash) = opaque::parse(token).ok_or_else(token_invalid)?;
        let purposes = [TokenPurpose::ResetPassword];
        // Everything that can refuse the request is checked before the link
        // is spent, so a refused password leaves it usable.
        let token = self
            .storage
            .peek_user_token(id, &hash, &purposes)
            .await?
            .ok_or_else(token_invalid)?;
        let account = self
            .storage
            .account(token.user_id)
            .await?
            .filter(Account::is_active)
            .ok_or_else(token_invalid)?;
        let hashed = self.hash_new_password(&account, new_password).await?;
        self.storage
            .use_user_token(id, &hash, &purposes)
            .await?
            .ok_or_else(token_invalid)?;
        self.storage.set_password_hash(account.id, &hashed).await?;
        self.storage.mark_email_verified(account.id).await?;
        self.storage.revoke_sessions(account.id, None).await?;
        self.storage
            .void_user_tokens(
                account.id,
                &[TokenPurpose::ChangeEmail, TokenPurpose::ResetPassword],
            )
            .await?;
        if let Some(email) = account.email.as_deref() {
            self.auth
                .lockout
                .succeeded(&format!("email:{}", email_key(email)))
                .await;
        }
        self.notify(
            &account,
            "Your password was changed",
            "The password of your Marquee account was reset, and every device was signed out.",
        );
        account_event(self, req, None, "account.password_reset", account.id);
        Ok(())
    }

    /// A live account, for a signed-in user; gone accounts answer 401, so a
    /// client signs in again rather than retrying.
    async fn live_account(&self, user: Uuid) -> Result<Account, ApiError> {
        self.storage
            .account(user)
            .await?
            .filter(Account::is_active)
            .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))
    }

    /// Checks the password a signed-in user confirms an action with; a
    /// wrong one is a 422 naming `field`.
    async fn check_own_password(
        &self,
        account: &Account,
        password: &str,
        field: &str,
    ) -> Result<(), ApiError> {
        let key = format!("user:{}", account.id);
        self.auth.admit_attempt(&key).await.map_err(locked)?;
        let ok = self
            .auth
            .hasher
            .verify(password, account.password_hash.as_deref())
            .await
            .map_err(internal)?;
        if ok {
            self.auth.lockout.succeeded(&key).await;
            Ok(())
        } else {
            self.auth.lockout.failed(&key).await;
            Err(ApiError::unprocessable(
                format!("the {} is wrong", field.replace('_', " ")),
                vec![FieldError::new(field, "wrong password")],
            ))
        }
    }

    /// The hash of a new password, once the policy allows it for this
    /// account.
    async fn hash_new_password(
        &self,
        account: &Account,
        password: &str,
    ) -> Result<String, ApiError> {
        let mut errors = Vec::new();
        check_password(
            "new_password",
            password,
            account.email.as_deref().unwrap_or_default(),
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(ApiError::unprocessable(
                "the new password is not allowed",
                errors,
            ));
        }
        self.auth.hasher.hash(password).await.map_err(internal)
    }

    /// Opens a session and signs its first tokens.
    async fn open_session(
        &self,
        req: &Request,
        account: &Account,
        mfa: bool,
    ) -> Result<(Tokens, String), ApiError> {
        let settings = &self.auth.settings;
        let id = ids::scoped(account.id);
        let (refresh, stored) = opaque::generate(id).map_err(internal)?;
        let user_agent = req
            .headers()
            .get(poem::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(200).collect::<String>());
        let ip = client_ip(req).map(|ip| ip.to_string());
        self.storage
            .create_session(&NewSession {
                id,
                user_id: account.id,
                refresh_hash: &stored.secret_hash,
                mfa,
                user_agent: user_agent.as_deref(),
                ip: ip.as_deref(),
                ttl: settings.refresh_ttl(),
            })
            .await?;
        Ok(self.tokens(account, id, mfa, refresh))
    }

    fn tokens(
        &self,
        account: &Account,
        session: Uuid,
        mfa: bool,
        refresh: String,
    ) -> (Tokens, String) {
        let settings = &self.auth.settings;
        let role = account.role.parse::<Role>().unwrap_or(Role::Customer);
        let issued_at = now();
        let access_token = self.auth.gatekeeper.signer.sign(&Claims {
            user: account.id,
            session,
            role,
            mfa,
            issued_at,
            expires_at: issued_at + i64::try_from(settings.access_ttl_seconds).unwrap_or(300),
        });
        let refresh_ttl = settings.refresh_ttl().as_secs();
        let cookie = refresh_cookie(self, &refresh, refresh_ttl);
        (
            Tokens {
                access_token,
                token_type: "Bearer".to_owned(),
                expires_in: settings.access_ttl_seconds,
                refresh_token: refresh,
                refresh_expires_in: refresh_ttl,
                user_id: account.id,
                role: role.as_str().to_owned(),
                mfa,
            },
            cookie,
        )
    }

    async fn bookings_of(
        &self,
        user: Uuid,
        filter: &BookingFilter,
        limit: i64,
    ) -> Result<Vec<BookingView>, ApiError> {
        let entries = self.storage.user_bookings(user, filter, limit).await?;
        let orders = futures::future::join_all(
            entries
                .iter()
                .map(|entry| self.storage.order_of_hold(entry.hold_id)),
        )
        .await;
        let mut bookings = Vec::new();
        for (entry, order) in entries.iter().zip(orders) {
            // The live order decides for an entry the stream has not yet
            // brought up to date.
            if let Some(order) = order?.filter(|order| {
                filter
                    .status
                    .as_ref()
                    .is_none_or(|status| *status == order.status)
            }) {
                bookings.push(BookingView {
                    hold_id: entry.hold_id,
                    showtime_id: entry.showtime_id,
                    created_at: entry.created_at,
                    order: Order::from(&order),
                });
            }
        }
        Ok(bookings)
    }
}

/// Audits a successful action on an account.
fn account_event(
    state: &AppState,
    req: &Request,
    actor: Option<&Principal>,
    action: &str,
    account: Uuid,
) {
    audit(
        state,
        req,
        actor,
        action,
        Some(account.to_string()),
        "success",
        serde_json::json!({}),
    );
}

fn audit_view(record: marquee_storage::audit::AuditRecord) -> AuditView {
    AuditView {
        id: record.id,
        at: record.at,
        actor_id: record.entry.actor_id,
        actor_role: record.entry.actor_role,
        action: record.entry.action,
        target: record.entry.target,
        outcome: record.entry.outcome.to_owned(),
        ip: record.entry.ip,
        request_id: record.entry.request_id,
        detail: record.entry.detail,
    }
}

#[OpenApi]
impl AccountsApi {
    /// Register
    ///
    /// Creates an account and mails a link that confirms the address.
    /// Answers the same whether or not the address already has an account
    /// (its owner is told by mail instead), so the answer reveals nothing.
    #[oai(
        path = "/v1/auth/registrations",
        method = "post",
        tag = "ApiTags::Accounts"
    )]
    async fn register(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<RegistrationBody>,
    ) -> Result<AcceptedResponse, ApiError> {
        let body = body.0;
        let email = normalize_email(&body.email);
        // Hashing comes first on every path, so an existing address does
        // not answer faster than a new one.
        let hash = state
            .auth
            .hasher
            .hash(&body.password)
            .await
            .map_err(internal)?;
        let registered = state
            .storage
            .register(&NewAccount {
                id: Uuid::now_v7(),
                email: &email,
                name: body.name.trim(),
                password_hash: &hash,
            })
            .await?;
        match registered {
            Registered::Created(account) => {
                state
                    .mail_token(&account, &email, TokenPurpose::VerifyEmail, None)
                    .await?;
                account_event(&state, req, None, "account.register", account.id);
            }
            Registered::Exists(account) => {
                state.notify(
                    &account,
                    "Someone tried to register with your address",
                    "Someone tried to create a Marquee account with this address, which already has one. \
                     If it was you, sign in, or reset your password if you forgot it.",
                );
                audit(
                    &state,
                    req,
                    None,
                    "account.register",
                    Some(account.id.to_string()),
                    "failure",
                    serde_json::json!({"reason": "address in use"}),
                );
            }
        }
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            detail: "if the address can be used, a message with a confirmation link is on its way"
                .to_owned(),
        })))
    }

    /// Ask for a new confirmation link
    #[oai(
        path = "/v1/auth/verification-requests",
        method = "post",
        tag = "ApiTags::Accounts"
    )]
    async fn resend_verification(
        &self,
        state: Data<&Arc<AppState>>,
        body: JsonBody<EmailBody>,
    ) -> Result<AcceptedResponse, ApiError> {
        let email = normalize_email(&body.0.email);
        if let Some(account) = state.storage.account_by_email(&email).await? {
            if !account.email_verified {
                state
                    .mail_token(&account, &email, TokenPurpose::VerifyEmail, None)
                    .await?;
            }
        }
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            detail: "if the address has an unconfirmed account, a new link is on its way"
                .to_owned(),
        })))
    }

    /// Confirm an address
    ///
    /// Spends the token from a confirmation message: a new account's
    /// address, or the new address of a change.
    #[oai(
        path = "/v1/auth/email-verifications",
        method = "post",
        tag = "ApiTags::Accounts"
    )]
    async fn verify_email(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<TokenBody>,
    ) -> Result<Done, ApiError> {
        state.confirm_address(req, &body.0.token).await?;
        Ok(Done::NoContent)
    }

    /// Sign in
    ///
    /// Exchanges an address and password (and, for accounts with two-factor
    /// sign-in, a code) for an access token and a refresh token. Repeated
    /// failures for one address lock it for a growing time (429 with
    /// `Retry-After`), whether or not it has an account.
    #[oai(path = "/v1/auth/sessions", method = "post", tag = "ApiTags::Accounts")]
    async fn login(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<LoginBody>,
    ) -> Result<SignedInResponse, ApiError> {
        let body = body.0;
        let email = normalize_email(&body.email);
        let key = format!("email:{}", email_key(&email));
        let auth = &state.auth;
        if let Err(wait) = auth.admit_attempt(&key).await {
            audit(
                &state,
                req,
                None,
                "auth.login",
                None,
                "denied",
                serde_json::json!({"reason": "locked or too many at once"}),
            );
            return Err(locked(wait));
        }
        let account = state.storage.account_by_email(&email).await?;
        let verified = auth
            .hasher
            .verify(
                &body.password,
                account.as_ref().and_then(|a| a.password_hash.as_deref()),
            )
            .await
            .map_err(internal)?;
        let account = match account {
            Some(account) if verified => account,
            other => {
                auth.lockout.failed(&key).await;
                let target = other.map(|account| account.id.to_string());
                audit(
                    &state,
                    req,
                    None,
                    "auth.login",
                    target,
                    "failure",
                    serde_json::json!({"reason": "wrong password"}),
                );
                return Err(wrong_credentials());
            }
        };
        if !account.email_verified {
            return Err(ApiError::forbidden(
                "confirm your address first: open the link we mailed, or ask for a new one at POST /v1/auth/verification-requests",
            ));
        }
        let mfa = match (&account.totp_secret, body.totp.as_deref()) {
            (None, _) => false,
            (Some(_), None) => {
                return Err(ApiError::unauthorized(
                    "this account signs in with a two-factor code: send `totp` with the code from the authenticator app",
                ))
            }
            (Some(secret), Some(code)) => {
                let step = totp::verify(secret, code, now(), account.totp_last_step);
                let spent = match step {
                    Some(step) => state.storage.spend_totp_step(account.id, step).await?,
                    None => false,
                };
                if !spent {
                    auth.lockout.failed(&key).await;
                    audit(&state, req, None, "auth.login", Some(account.id.to_string()), "failure", serde_json::json!({"reason": "wrong code"}));
                    return Err(ApiError::unauthorized("the two-factor code is wrong or was already used"));
                }
                true
            }
        };
        auth.lockout.succeeded(&key).await;
        if let Some(hash) = account.password_hash.as_deref() {
            if auth.hasher.needs_rehash(hash) {
                let rehashed = auth.hasher.hash(&body.password).await.map_err(internal)?;
                state
                    .storage
                    .set_password_hash(account.id, &rehashed)
                    .await?;
            }
        }
        let (tokens, cookie) = state.open_session(req, &account, mfa).await?;
        let principal = Principal::User(Claims {
            user: account.id,
            session: Uuid::nil(),
            role: account.role.parse().unwrap_or(Role::Customer),
            mfa,
            issued_at: 0,
            expires_at: 0,
        });
        audit(
            &state,
            req,
            Some(&principal),
            "auth.login",
            Some(account.id.to_string()),
            "success",
            serde_json::json!({"mfa": mfa}),
        );
        Ok(SignedInResponse::Created(Json(tokens), cookie))
    }

    /// Refresh
    ///
    /// Exchanges a refresh token (from the body or the refresh cookie) for
    /// new tokens. Each refresh token works once; presenting one that was
    /// already exchanged means it was copied, and signs the session out.
    #[oai(path = "/v1/auth/refresh", method = "post", tag = "ApiTags::Accounts")]
    async fn refresh(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<RefreshBody>,
    ) -> Result<RefreshedResponse, ApiError> {
        let presented = body
            .0
            .refresh_token
            .or_else(|| refresh_from_cookie(req))
            .ok_or_else(|| ApiError::unauthorized("send `refresh_token` or the refresh cookie"))?;
        let refused = || ApiError::unauthorized("the refresh token is not valid; sign in again");
        let (session, hash) = opaque::parse(&presented).ok_or_else(refused)?;
        let (next, stored) = opaque::generate(session).map_err(internal)?;
        match state
            .storage
            .rotate_session(session, &hash, &stored.secret_hash)
            .await?
        {
            Rotation::Rotated(session) => {
                let account = state.live_account(session.user_id).await?;
                let (tokens, cookie) = state.tokens(&account, session.id, session.mfa, next);
                Ok(RefreshedResponse::Ok(Json(tokens), cookie))
            }
            Rotation::Reused { user_id } => {
                audit(
                    &state,
                    req,
                    None,
                    "auth.refresh_reused",
                    Some(user_id.to_string()),
                    "denied",
                    serde_json::json!({"session": session}),
                );
                Err(refused())
            }
            Rotation::Refused => Err(refused()),
        }
    }

    /// Sign out
    ///
    /// Ends this session: its refresh token stops working and the cookie is
    /// cleared. The access token lapses within its lifetime.
    #[oai(path = "/v1/auth/logout", method = "post", tag = "ApiTags::Accounts")]
    async fn logout(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        caller: SignedIn,
    ) -> Result<SignedOut, ApiError> {
        state
            .storage
            .revoke_session(caller.0.user, caller.0.session)
            .await?;
        account_event(
            &state,
            req,
            Some(&Principal::User(caller.0)),
            "auth.logout",
            caller.0.user,
        );
        Ok(SignedOut::NoContent(refresh_cookie(&state, "", 0)))
    }

    /// Reset a forgotten password
    ///
    /// Mails a reset link if the address has an account; answers the same
    /// either way.
    #[oai(
        path = "/v1/auth/password-resets",
        method = "post",
        tag = "ApiTags::Accounts"
    )]
    async fn request_reset(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<EmailBody>,
    ) -> Result<AcceptedResponse, ApiError> {
        let email = normalize_email(&body.0.email);
        if let Some(account) = state.storage.account_by_email(&email).await? {
            state
                .mail_token(&account, &email, TokenPurpose::ResetPassword, None)
                .await?;
            account_event(&state, req, None, "account.reset_requested", account.id);
        }
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            detail: "if the address has an account, a reset link is on its way".to_owned(),
        })))
    }

    /// Set a new password with a reset link
    ///
    /// Also confirms the address (the link proved it) and signs out every
    /// session.
    #[oai(
        path = "/v1/auth/password-resets/confirmation",
        method = "post",
        tag = "ApiTags::Accounts"
    )]
    async fn reset_password(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<ResetBody>,
    ) -> Result<Done, ApiError> {
        let body = body.0;
        state
            .reset_password_with(req, &body.token, &body.new_password)
            .await?;
        Ok(Done::NoContent)
    }

    /// My profile
    #[oai(path = "/v1/me", method = "get", tag = "ApiTags::Accounts")]
    async fn me(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
    ) -> Result<Json<Profile>, ApiError> {
        Ok(Json(Profile::of(&state.live_account(caller.0.user).await?)))
    }

    /// Update my profile
    #[oai(path = "/v1/me", method = "patch", tag = "ApiTags::Accounts")]
    async fn update_me(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        body: JsonBody<ProfileBody>,
    ) -> Result<Json<Profile>, ApiError> {
        state.live_account(caller.0.user).await?;
        let account = state
            .storage
            .set_name(caller.0.user, body.0.name.trim())
            .await?;
        Ok(Json(Profile::of(&account)))
    }

    /// Change my address
    ///
    /// Mails a confirmation link to the new address; the change happens
    /// when it is opened. The current address is told.
    #[oai(path = "/v1/me/email", method = "post", tag = "ApiTags::Accounts")]
    async fn change_email(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        caller: SignedIn,
        body: JsonBody<EmailChangeBody>,
    ) -> Result<AcceptedResponse, ApiError> {
        let account = state.live_account(caller.0.user).await?;
        state
            .check_own_password(&account, &body.0.password, "password")
            .await?;
        let new_email = normalize_email(&body.0.new_email);
        if account.email.as_deref() == Some(new_email.as_str()) {
            return Err(ApiError::unprocessable(
                "this is already the account's address",
                vec![FieldError::new("new_email", "same as the current address")],
            ));
        }
        state
            .mail_token(
                &account,
                &new_email,
                TokenPurpose::ChangeEmail,
                Some(&new_email),
            )
            .await?;
        state.notify(&account, "Your address is being changed", "Someone asked to move your Marquee account to another address; it changes once the link sent there is opened.");
        account_event(
            &state,
            req,
            Some(&Principal::User(caller.0)),
            "account.email_change_requested",
            account.id,
        );
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            detail: "a confirmation link is on its way to the new address".to_owned(),
        })))
    }

    /// Change my password
    ///
    /// Every other session is signed out.
    #[oai(path = "/v1/me/password", method = "put", tag = "ApiTags::Accounts")]
    async fn change_password(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        caller: SignedIn,
        body: JsonBody<PasswordChangeBody>,
    ) -> Result<Done, ApiError> {
        let body = body.0;
        let account = state.live_account(caller.0.user).await?;
        state
            .check_own_password(&account, &body.current_password, "current_password")
            .await?;
        let hashed = state
            .hash_new_password(&account, &body.new_password)
            .await?;
        state.storage.set_password_hash(account.id, &hashed).await?;
        state
            .storage
            .revoke_sessions(account.id, Some(caller.0.session))
            .await?;
        state
            .storage
            .void_user_tokens(
                account.id,
                &[TokenPurpose::ChangeEmail, TokenPurpose::ResetPassword],
            )
            .await?;
        state.notify(&account, "Your password was changed", "The password of your Marquee account was changed, and your other devices were signed out.");
        account_event(
            &state,
            req,
            Some(&Principal::User(caller.0)),
            "account.password_changed",
            account.id,
        );
        Ok(Done::NoContent)
    }

    /// Delete my account
    ///
    /// Erases the account's personal data and signs out everywhere. Orders,
    /// payments and tickets stay, as the law requires, naming the account
    /// only by an id that no longer identifies anyone.
    #[oai(path = "/v1/me/deletion", method = "post", tag = "ApiTags::Accounts")]
    async fn delete_me(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        caller: SignedIn,
        body: JsonBody<PasswordBody>,
    ) -> Result<SignedOut, ApiError> {
        let account = state.live_account(caller.0.user).await?;
        state
            .check_own_password(&account, &body.0.password, "password")
            .await?;
        state.notify(
            &account,
            "Your account was deleted",
            "Your Marquee account and its personal data were deleted.",
        );
        audit_now(
            &state,
            req,
            Some(&Principal::User(caller.0)),
            "account.deleted",
            Some(account.id.to_string()),
        )
        .await?;
        state.storage.erase_account(account.id).await?;
        Ok(SignedOut::NoContent(refresh_cookie(&state, "", 0)))
    }

    /// Export my data
    #[oai(path = "/v1/me/export", method = "get", tag = "ApiTags::Accounts")]
    async fn export(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
    ) -> Result<ExportResponse, ApiError> {
        let account = state.live_account(caller.0.user).await?;
        let sessions = state.storage.sessions(account.id).await?;
        let bookings = state
            .bookings_of(account.id, &BookingFilter::default(), 1000)
            .await?;
        let preferences = state.storage.preferences(account.id).await?;
        let subscriptions = state.storage.subscriptions(account.id).await?;
        let activity = state
            .storage
            .audit_log(&AuditFilter {
                subject: Some(account.id),
                limit: 1000,
                ..AuditFilter::default()
            })
            .await?;
        Ok(ExportResponse::Ok(
            Json(Export {
                exported_at: Utc::now(),
                profile: Profile::of(&account),
                sessions: sessions
                    .iter()
                    .map(|session| SessionView::of(session, caller.0.session))
                    .collect(),
                bookings,
                activity: activity.into_iter().map(audit_view).collect(),
                preferences: preferences.into(),
                subscriptions: subscriptions
                    .into_iter()
                    .map(SubscriptionView::from)
                    .collect(),
            }),
            format!(
                "attachment; filename=\"marquee-account-{}.json\"",
                account.id
            ),
        ))
    }

    /// My sessions
    #[oai(path = "/v1/me/sessions", method = "get", tag = "ApiTags::Accounts")]
    async fn sessions(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
    ) -> Result<Json<Vec<SessionView>>, ApiError> {
        let sessions = state.storage.sessions(caller.0.user).await?;
        Ok(Json(
            sessions
                .iter()
                .map(|session| SessionView::of(session, caller.0.session))
                .collect(),
        ))
    }

    /// Sign out everywhere
    ///
    /// Ends every session of the account, this one included.
    #[oai(path = "/v1/me/sessions", method = "delete", tag = "ApiTags::Accounts")]
    async fn sign_out_everywhere(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        caller: SignedIn,
    ) -> Result<Json<Revoked>, ApiError> {
        let revoked = state.storage.revoke_sessions(caller.0.user, None).await?;
        audit(
            &state,
            req,
            Some(&Principal::User(caller.0)),
            "auth.logout_everywhere",
            Some(caller.0.user.to_string()),
            "success",
            serde_json::json!({"revoked": revoked}),
        );
        Ok(Json(Revoked { revoked }))
    }

    /// Sign out one session
    #[oai(
        path = "/v1/me/sessions/:id",
        method = "delete",
        tag = "ApiTags::Accounts"
    )]
    async fn sign_out_session(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        id: Path<Uuid>,
    ) -> Result<Done, ApiError> {
        if !ids::is_scoped_to(id.0, caller.0.user)
            || !state.storage.revoke_session(caller.0.user, id.0).await?
        {
            return Err(ApiError::not_found(format!(
                "session {} does not exist",
                id.0
            )));
        }
        Ok(Done::NoContent)
    }

    /// Start two-factor sign-in
    ///
    /// Returns a new secret for an authenticator app. It takes effect once
    /// a code from the app is confirmed; sign in again with a code then.
    /// Replacing a second factor that is already on needs a session signed
    /// in with it.
    #[oai(path = "/v1/me/totp", method = "post", tag = "ApiTags::Accounts")]
    async fn enrol_totp(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        body: JsonBody<PasswordBody>,
    ) -> Result<Json<TotpEnrolment>, ApiError> {
        let account = state.live_account(caller.0.user).await?;
        if account.totp_secret.is_some() && !caller.0.mfa {
            return Err(ApiError::forbidden(
                "two-factor sign-in is already on; replacing it needs a session signed in with a code",
            ));
        }
        state
            .check_own_password(&account, &body.0.password, "password")
            .await?;
        let secret = totp::generate_secret().map_err(internal)?;
        state.storage.set_totp_pending(account.id, &secret).await?;
        Ok(Json(TotpEnrolment {
            secret: totp::encode_secret(&secret),
            otpauth_uri: totp::provisioning_uri(
                &secret,
                &state.auth.settings.totp_issuer,
                account.email.as_deref().unwrap_or_default(),
            ),
        }))
    }

    /// Confirm two-factor sign-in
    #[oai(
        path = "/v1/me/totp/confirmation",
        method = "post",
        tag = "ApiTags::Accounts"
    )]
    async fn confirm_totp(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        caller: SignedIn,
        body: JsonBody<CodeBody>,
    ) -> Result<Done, ApiError> {
        let account = state.live_account(caller.0.user).await?;
        let pending = account.totp_pending.as_deref().ok_or_else(|| {
            ApiError::conflict("no two-factor enrolment is pending; start one at POST /v1/me/totp")
        })?;
        let step = totp::verify(pending, &body.0.code, now(), account.totp_last_step).ok_or_else(
            || {
                ApiError::unprocessable(
                    "the code does not match; check the app's clock and try the current code",
                    vec![FieldError::new("code", "does not match")],
                )
            },
        )?;
        state.storage.confirm_totp(account.id, step).await?;
        // Sessions opened without the new factor end; this one stays so the
        // user can sign in again with a code.
        state
            .storage
            .revoke_sessions(account.id, Some(caller.0.session))
            .await?;
        state.notify(
            &account,
            "Two-factor sign-in is on",
            "Signing in to your Marquee account now needs a code from your authenticator app, and your other devices were signed out.",
        );
        account_event(
            &state,
            req,
            Some(&Principal::User(caller.0)),
            "account.totp_enabled",
            account.id,
        );
        Ok(Done::NoContent)
    }

    /// My bookings
    ///
    /// Orders placed while signed in, newest first. `status` keeps
    /// confirmed or cancelled orders; `upcoming` keeps showtimes still to
    /// come (`true`) or past (`false`). The bookings index learns of a
    /// cancellation from the change stream, within about a second.
    #[oai(path = "/v1/me/bookings", method = "get", tag = "ApiTags::Accounts")]
    async fn my_bookings(
        &self,
        state: Data<&Arc<AppState>>,
        caller: SignedIn,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "200"))
        )]
        limit: Query<i64>,
        status: Query<Option<BookingStatus>>,
        upcoming: Query<Option<bool>>,
    ) -> Result<Json<BookingList>, ApiError> {
        let filter = BookingFilter {
            status: status.0.map(|status| status.as_str().to_owned()),
            upcoming: upcoming.0,
        };
        Ok(Json(BookingList {
            bookings: state.bookings_of(caller.0.user, &filter, limit.0).await?,
        }))
    }

    /// Accounts, for staff
    ///
    /// One account by `email`, or the newest accounts.
    #[oai(path = "/v1/admin/users", method = "get", tag = "ApiTags::Admin")]
    async fn users(
        &self,
        state: Data<&Arc<AppState>>,
        _staff: Staff,
        #[oai(validator(max_length = 254))] email: Query<Option<String>>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "200"))
        )]
        limit: Query<i64>,
    ) -> Result<Json<UserList>, ApiError> {
        let accounts = match email.0 {
            Some(email) => state
                .storage
                .account_by_email(&normalize_email(&email))
                .await?
                .into_iter()
                .collect(),
            None => state.storage.recent_accounts(limit.0).await?,
        };
        Ok(Json(UserList {
            users: accounts.iter().map(UserView::of).collect(),
        }))
    }

    /// An account, for staff
    #[oai(path = "/v1/admin/users/:id", method = "get", tag = "ApiTags::Admin")]
    async fn user(
        &self,
        state: Data<&Arc<AppState>>,
        _staff: Staff,
        id: Path<Uuid>,
    ) -> Result<Json<UserView>, ApiError> {
        let account = state
            .storage
            .account(id.0)
            .await?
            .filter(Account::is_active)
            .ok_or_else(|| ApiError::not_found(format!("account {} does not exist", id.0)))?;
        Ok(Json(UserView::of(&account)))
    }

    /// Change an account's role
    ///
    /// The account's sessions are signed out, so the new role applies from
    /// its next sign-in.
    #[oai(
        path = "/v1/admin/users/:id/role",
        method = "put",
        tag = "ApiTags::Admin"
    )]
    async fn set_role(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        id: Path<Uuid>,
        body: JsonBody<RoleBody>,
    ) -> Result<Json<UserView>, ApiError> {
        state
            .storage
            .account(id.0)
            .await?
            .filter(Account::is_active)
            .ok_or_else(|| ApiError::not_found(format!("account {} does not exist", id.0)))?;
        let account = state.storage.set_role(id.0, &body.0.role).await?;
        state.storage.revoke_sessions(id.0, None).await?;
        Ok(Json(UserView::of(&account)))
    }

    /// The audit log
    ///
    /// Security-relevant and administrative actions, newest first.
    #[oai(path = "/v1/admin/audit", method = "get", tag = "ApiTags::Admin")]
    async fn audit_log(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminOnly,
        actor: Query<Option<Uuid>>,
        #[oai(validator(max_length = 100))] action: Query<Option<String>>,
        before: Query<Option<Uuid>>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "200"))
        )]
        limit: Query<i64>,
    ) -> Result<Json<AuditPage>, ApiError> {
        let records = state
            .storage
            .audit_log(&AuditFilter {
                actor_id: actor.0,
                subject: None,
                action: action.0,
                before: before.0,
                limit: limit.0,
            })
            .await?;
        let full = i64::try_from(records.len()).unwrap_or(i64::MAX) == limit.0;
        let next_before = records.last().filter(|_| full).map(|record| record.id);
        Ok(Json(AuditPage {
            entries: records.into_iter().map(audit_view).collect(),
            next_before,
        }))
    }
}

fn default_limit() -> i64 {
    50
}
