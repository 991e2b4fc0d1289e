//! Accounts, sign-in, sessions and the gateway, against the real cluster,
//! the real Redis and the SMTP sink: every link a test follows is read from
//! the mail the service sent.

use std::time::Duration;

use marquee::settings::{AttemptLimit, Settings};
use marquee_auth::password::HashParams;
use marquee_auth::totp;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::booking::{hold, pay, show};
use crate::helpers::{assert_problem, recent_mail, spawn_app, spawn_app_with, TestApp};

pub const PASSWORD: &str = "correct horse battery staple";

/// Small hashing parameters: the defaults are checked in the auth crate,
/// and each test hashes a dozen times.
pub async fn accounts_app() -> TestApp {
    accounts_app_with(|_| {}).await
}

pub async fn accounts_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|settings| {
        settings.auth.hashing = HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        // Tests sign one account in many times a minute; the per-account
        // cap has a test of its own.
        settings.auth.account_attempts = AttemptLimit {
            per_minute: 60_000,
            burst: 1_000,
        };
        configure(settings);
    })
    .await
}

pub fn unique_email(label: &str) -> String {
    format!("{label}-{}@example.com", Uuid::new_v4().simple())
}

/// Undoes quoted-printable transfer encoding, which a relay may apply to
/// long lines.
fn unquote(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every message the sink holds for `to`, oldest first.
async fn mail_to(to: &str) -> Vec<String> {
    let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
    for path in recent_mail() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let text = unquote(&text);
        if text
            .lines()
            .any(|line| line.to_ascii_lowercase().starts_with("to:") && line.contains(to))
        {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            found.push((modified, text));
        }
    }
    found.sort_by_key(|entry| entry.0);
    found.into_iter().map(|(_, text)| text).collect()
}

/// Waits for the `count`th message to `to` whose subject contains
/// `subject`, and returns it.
pub async fn await_mail(to: &str, subject: &str, count: usize) -> String {
    for _ in 0..100 {
        let matching: Vec<String> = mail_to(to)
            .await
            .into_iter()
            .filter(|text| text.contains(subject))
            .collect();
        if matching.len() >= count {
            return matching[count - 1].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail {subject:?} #{count} reached {to}");
}

/// The one-time token a message carries.
pub fn token_in(mail: &str) -> String {
    mail.lines()
        .find_map(|line| line.split("token=").nth(1))
        .map(|token| token.trim().to_owned())
        .expect("the message carries a token")
}

pub async fn post(
    app: &TestApp,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("answer")
}

pub async fn get(app: &TestApp, path: &str, bearer: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("answer")
}

/// Registers, confirms the address from the mail, and signs in; the
/// sign-in's tokens.
pub async fn signed_up(app: &TestApp, label: &str) -> (String, Value) {
    let email = unique_email(label);
    let response = post(
        app,
        "/v1/auth/registrations",
        None,
        json!({"email": email, "password": PASSWORD, "name": "Ada Lovelace"}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 202);
    let mail = await_mail(&email, "Confirm your address", 1).await;
    let confirmed = post(
        app,
        "/v1/auth/email-verifications",
        None,
        json!({"token": token_in(&mail)}),
    )
    .await;
    assert_eq!(confirmed.status().as_u16(), 204);
    let tokens = sign_in(app, &email, PASSWORD, None).await;
    (email, tokens)
}

pub async fn sign_in(app: &TestApp, email: &str, password: &str, code: Option<&str>) -> Value {
    let mut body = json!({"email": email, "password": password});
    if let Some(code) = code {
        body["totp"] = json!(code);
    }
    let response = post(app, "/v1/auth/sessions", None, body).await;
    assert_eq!(response.status().as_u16(), 201, "sign-in refused");
    response.json().await.expect("json")
}

/// Holds `seats` as the signed-in owner of `bearer`.
pub async fn hold_as(
    app: &TestApp,
    bearer: &str,
    showtime: Uuid,
    seats: Value,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/showtimes/{showtime}/holds")))
        .bearer_auth(bearer)
        .json(&json!({ "seats": seats }))
        .send()
        .await
        .expect("answer")
}

/// Pays for a hold with the test visa card as the owner of `bearer`.
pub async fn pay_as(app: &TestApp, bearer: &str, hold_id: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/orders"))
        .bearer_auth(bearer)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"hold_id": hold_id, "payment": {"method": "card", "token": "tok_visa"}}))
        .send()
        .await
        .expect("answer")
}

/// Presents the refresh token of a sign-in's `tokens`.
async fn refresh(app: &TestApp, tokens: &Value) -> reqwest::Response {
    let body = json!({"refresh_token": tokens["refresh_token"]});
    post(app, "/v1/auth/refresh", None, body).await
}

pub fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().expect("access token")
}

/// The signed-in user's id, from a sign-in's tokens.
pub fn user_id(tokens: &Value) -> Uuid {
    tokens["user_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid")
}

/// Makes `email`'s account `role` through the operator token.
pub async fn promote(app: &TestApp, tokens: &Value, role: &str) {
    let response = app
        .client
        .put(app.url(&format!(
            "/v1/admin/users/{}/role",
            tokens["user_id"].as_str().expect("id")
        )))
        .bearer_auth(app.admin_token())
        .json(&json!({ "role": role }))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200);
}

/// Enrols a second factor and returns its secret.
pub async fn enrol_totp(app: &TestApp, tokens: &Value) -> Vec<u8> {
    let enrolment: Value = post(
        app,
        "/v1/me/totp",
        Some(access(tokens)),
        json!({ "password": PASSWORD }),
    )
    .await
    .json()
    .await
    .expect("json");
    let secret =
        totp::decode_secret(enrolment["secret"].as_str().expect("secret")).expect("base32");
    assert!(enrolment["otpauth_uri"]
        .as_str()
        .expect("uri")
        .starts_with("otpauth://totp/Marquee:"));
    let code = totp::code_at(&secret, chrono::Utc::now().timestamp());
    let confirmed = post(
        app,
        "/v1/me/totp/confirmation",
        Some(access(tokens)),
        json!({ "code": code }),
    )
    .await;
    assert_eq!(confirmed.status().as_u16(), 204);
    secret
}

/// A fresh code from a later time step than any used so far.
async fn next_code(secret: &[u8]) -> String {
    let now = chrono::Utc::now().timestamp();
    let wait = 30 - now % 30;
    tokio::time::sleep(Duration::from_secs(u64::try_from(wait).unwrap_or(30) + 1)).await;
    totp::code_at(secret, chrono::Utc::now().timestamp())
}

#[tokio::test]
async fn a_new_account_confirms_its_address_by_mail_and_then_signs_in() {
    let app = accounts_app().await;
    let email = unique_email("new");
    let registered = post(
        &app,
        "/v1/auth/registrations",
        None,
        json!({"email": email.to_uppercase(), "password": PASSWORD, "name": "Ada"}),
    )
    .await;
    assert_eq!(registered.status().as_u16(), 202);

    let early = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_problem(early, 403).await;

    let mail = await_mail(&email, "Confirm your address", 1).await;
    let token = token_in(&mail);
    let confirmed = post(
        &app,
        "/v1/auth/email-verifications",
        None,
        json!({ "token": token }),
    )
    .await;
    assert_eq!(confirmed.status().as_u16(), 204);
    let again = post(
        &app,
        "/v1/auth/email-verifications",
        None,
        json!({ "token": token }),
    )
    .await;
    assert_problem(again, 422).await;

    let tokens = sign_in(&app, &email, PASSWORD, None).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["role"], "customer");
    assert_eq!(tokens["expires_in"], 300);
    let me: Value = get(&app, "/v1/me", access(&tokens))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], email);
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["name"], "Ada");

    let stored: String = app
        .state
        .storage
        .account(user_id(&tokens))
        .await
        .expect("read")
        .expect("account")
        .password_hash
        .expect("hash");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains(PASSWORD));
}

#[tokio::test]
async fn registering_an_address_twice_answers_the_same_and_tells_the_owner_by_mail() {
    let app = accounts_app().await;
    let (email, _) = signed_up(&app, "twice").await;
    let fresh = unique_email("fresh");
    let body =
        |email: &str| json!({"email": email, "password": "another long password", "name": "Eve"});
    let first = post(&app, "/v1/auth/registrations", None, body(&fresh)).await;
    let second = post(&app, "/v1/auth/registrations", None, body(&email)).await;
    assert_eq!(first.status(), second.status());
    let (first, second): (Value, Value) = (
        first.json().await.expect("json"),
        second.json().await.expect("json"),
    );
    assert_eq!(
        first, second,
        "the answer reveals nothing about the address"
    );
    let notice = await_mail(&email, "Someone tried to register", 1).await;
    assert!(!notice.contains("token="));
    // The original password still works; the attempt changed nothing.
    sign_in(&app, &email, PASSWORD, None).await;
}

#[tokio::test]
async fn sign_in_failures_read_the_same_for_unknown_addresses_and_wrong_passwords() {
    let app = accounts_app().await;
    let (email, _) = signed_up(&app, "enum").await;
    let wrong = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": "not the password"}),
    )
    .await;
    let unknown = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": unique_email("nobody"), "password": "not the password"}),
    )
    .await;
    let wrong = assert_problem(wrong, 401).await;
    let unknown = assert_problem(unknown, 401).await;
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_eq!(wrong["type"], unknown["type"]);
}

#[tokio::test]
async fn repeated_failed_sign_ins_lock_the_address_with_growing_waits() {
    let app = accounts_app_with(|settings| {
        settings.auth.lockout.free_attempts = 3;
        settings.auth.lockout.base_delay_ms = 2000;
    })
    .await;
    let (email, _) = signed_up(&app, "lock").await;
    let attempt = |password: &'static str| {
        let email = email.clone();
        let app = &app;
        async move {
            post(
                app,
                "/v1/auth/sessions",
                None,
                json!({"email": email, "password": password}),
            )
            .await
        }
    };
    for _ in 0..4 {
        assert_eq!(attempt("wrong password!").await.status().as_u16(), 401);
    }
    // Locked now: even the right password waits, and says how long.
    let locked = attempt(PASSWORD).await;
    assert_eq!(locked.status().as_u16(), 429);
    let wait: u64 = locked.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=2).contains(&wait),
        "first lock is the base delay: {wait}"
    );
    assert_problem(locked, 429).await;

    // An unknown address locks the same way, so locking reveals nothing.
    let nobody = unique_email("nobody");
    for _ in 0..4 {
        post(
            &app,
            "/v1/auth/sessions",
            None,
            json!({"email": nobody, "password": "wrong password!"}),
        )
        .await;
    }
    let unknown_locked = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": nobody, "password": "x"}),
    )
    .await;
    assert_eq!(unknown_locked.status().as_u16(), 429);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(attempt("wrong password!").await.status().as_u16(), 401);
    let doubled = attempt(PASSWORD).await;
    assert_eq!(doubled.status().as_u16(), 429);
    let wait: u64 = doubled.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((3..=4).contains(&wait), "the next lock doubles: {wait}");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let back = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(back.status().as_u16(), 201);
}

#[tokio::test]
async fn a_refresh_token_works_once_and_its_reuse_signs_the_session_out() {
    let app = accounts_app().await;
    let (_, tokens) = signed_up(&app, "refresh").await;
    let first = tokens["refresh_token"].as_str().expect("refresh");
    let rotated = post(
        &app,
        "/v1/auth/refresh",
        None,
        json!({ "refresh_token": first }),
    )
    .await;
    assert_eq!(rotated.status().as_u16(), 200);
    let rotated: Value = rotated.json().await.expect("json");
    let second = rotated["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(second, first);
    assert_eq!(
        get(&app, "/v1/me", access(&rotated))
            .await
            .status()
            .as_u16(),
        200
    );

    // The first token again: it was copied. The session ends, so the
    // legitimate holder of the second token is signed out too.
    let reused = post(
        &app,
        "/v1/auth/refresh",
        None,
        json!({ "refresh_token": first }),
    )
    .await;
    assert_problem(reused, 401).await;
    let after = post(
        &app,
        "/v1/auth/refresh",
        None,
        json!({ "refresh_token": second }),
    )
    .await;
    assert_problem(after, 401).await;

    // A made-up token and a garbled one are refused alike.
    let garbled = post(
        &app,
        "/v1/auth/refresh",
        None,
        json!({ "refresh_token": "nonsense" }),
    )
    .await;
    assert_problem(garbled, 401).await;
}

#[tokio::test]
async fn the_refresh_cookie_is_secure_and_refreshes_on_its_own() {
    let app = accounts_app().await;
    let email = {
        let (email, _) = signed_up(&app, "cookie").await;
        email
    };
    let response = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for part in [
        "__Host-marquee_refresh=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Domain"));
    let value = cookie.split(';').next().expect("pair").to_owned();
    let refreshed = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .header("cookie", value)
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(refreshed.status().as_u16(), 200);
    let tokens: Value = refreshed.json().await.expect("json");
    let logout = post(&app, "/v1/auth/logout", Some(access(&tokens)), json!({})).await;
    assert_eq!(logout.status().as_u16(), 204);
    let cleared = logout.headers()["set-cookie"].to_str().expect("ascii");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let dead = refresh(&app, &tokens).await;
    assert_problem(dead, 401).await;
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session() {
    let app = accounts_app().await;
    let (email, phone) = signed_up(&app, "everywhere").await;
    let laptop = sign_in(&app, &email, PASSWORD, None).await;
    let sessions: Value = get(&app, "/v1/me/sessions", access(&laptop))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(sessions.as_array().expect("list").len(), 2);
    assert_eq!(
        sessions
            .as_array()
            .expect("list")
            .iter()
            .filter(|s| s["current"] == true)
            .count(),
        1
    );
    let revoked: Value = app
        .client
        .delete(app.url("/v1/me/sessions"))
        .bearer_auth(access(&laptop))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(revoked["revoked"], 2);
    for tokens in [&phone, &laptop] {
        let refresh = refresh(&app, tokens).await;
        assert_problem(refresh, 401).await;
    }
}

#[tokio::test]
async fn a_forgotten_password_is_reset_by_mail_and_every_session_ends() {
    let app = accounts_app().await;
    let (email, tokens) = signed_up(&app, "reset").await;
    let unknown = post(
        &app,
        "/v1/auth/password-resets",
        None,
        json!({"email": unique_email("ghost")}),
    )
    .await;
    let known = post(
        &app,
        "/v1/auth/password-resets",
        None,
        json!({ "email": email }),
    )
    .await;
    assert_eq!(unknown.status().as_u16(), 202);
    assert_eq!(known.status().as_u16(), 202);
    let (unknown, known): (Value, Value) = (
        unknown.json().await.expect("json"),
        known.json().await.expect("json"),
    );
    assert_eq!(unknown, known);

    let mail = await_mail(&email, "Reset your password", 1).await;
    let token = token_in(&mail);
    let weak = post(
        &app,
        "/v1/auth/password-resets/confirmation",
        None,
        json!({"token": token, "new_password": "short"}),
    )
    .await;
    let weak = assert_problem(weak, 422).await;
    assert_eq!(weak["errors"][0]["field"], "new_password");

    let reset = post(
        &app,
        "/v1/auth/password-resets/confirmation",
        None,
        json!({"token": token, "new_password": "a brand new passphrase"}),
    )
    .await;
    assert_eq!(reset.status().as_u16(), 204);
    let old_session = refresh(&app, &tokens).await;
    assert_problem(old_session, 401).await;
    let old_password = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_problem(old_password, 401).await;
    sign_in(&app, &email, "a brand new passphrase", None).await;
    await_mail(&email, "Your password was changed", 1).await;
}

#[tokio::test]
async fn profile_password_and_address_changes_need_the_password_and_a_confirmed_link() {
    let app = accounts_app().await;
    let (email, tokens) = signed_up(&app, "profile").await;
    let bearer = access(&tokens).to_owned();
    let renamed: Value = app
        .client
        .patch(app.url("/v1/me"))
        .bearer_auth(&bearer)
        .json(&json!({"name": "Grace Hopper"}))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(renamed["name"], "Grace Hopper");

    let new_email = unique_email("moved");
    let refused = post(
        &app,
        "/v1/me/email",
        Some(&bearer),
        json!({"new_email": new_email, "password": "wrong password"}),
    )
    .await;
    assert_problem(refused, 422).await;
    let asked = post(
        &app,
        "/v1/me/email",
        Some(&bearer),
        json!({"new_email": new_email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(asked.status().as_u16(), 202);
    await_mail(&email, "Your address is being changed", 1).await;
    let me: Value = get(&app, "/v1/me", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        me["email"], email,
        "nothing changes before the link is opened"
    );
    let link = await_mail(&new_email, "Confirm your new address", 1).await;
    let confirmed = post(
        &app,
        "/v1/auth/email-verifications",
        None,
        json!({"token": token_in(&link)}),
    )
    .await;
    assert_eq!(confirmed.status().as_u16(), 204);
    let me: Value = get(&app, "/v1/me", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], new_email);
    let old = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_problem(old, 401).await;

    let other = sign_in(&app, &new_email, PASSWORD, None).await;
    let changed = app
        .client
        .put(app.url("/v1/me/password"))
        .bearer_auth(&bearer)
        .json(&json!({"current_password": PASSWORD, "new_password": "yet another passphrase"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(changed.status().as_u16(), 204);
    let other_refresh = refresh(&app, &other).await;
    assert_problem(other_refresh, 401).await;
    let own_refresh = refresh(&app, &tokens).await;
    assert_eq!(
        own_refresh.status().as_u16(),
        200,
        "the changing session stays"
    );
    sign_in(&app, &new_email, "yet another passphrase", None).await;
}

#[tokio::test]
async fn deleting_an_account_erases_its_personal_data_and_keeps_its_orders_anonymous() {
    let app = accounts_app().await;
    let (email, tokens) = signed_up(&app, "erase").await;
    let bearer = access(&tokens).to_owned();
    let user = user_id(&tokens);
    let (showtime, _) = show(&app, 4, 8).await;
    let held = hold_as(&app, &bearer, showtime, json!(["A-1", "A-2"])).await;
    assert_eq!(held.status().as_u16(), 201);
    let held: Value = held.json().await.expect("json");
    assert!(
        held.get("booking_token").is_none(),
        "the account is the token"
    );
    let paid = pay_as(&app, &bearer, json!(held["hold"]["id"])).await;
    assert_eq!(paid.status().as_u16(), 201);
    let order: Value = paid.json().await.expect("json");

    let subscribed = post(
        &app,
        "/v1/me/subscriptions",
        Some(&bearer),
        json!({"title_words": "heat"}),
    )
    .await;
    assert_eq!(subscribed.status().as_u16(), 201);
    let export = get(&app, "/v1/me/export", &bearer).await;
    assert!(export.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment"));
    let export: Value = export.json().await.expect("json");
    assert_eq!(export["profile"]["email"], email);
    assert_eq!(export["bookings"][0]["order"]["id"], order["id"]);
    assert_eq!(export["sessions"].as_array().expect("sessions").len(), 1);
    assert_eq!(export["subscriptions"][0]["title_words"], json!(["heat"]));
    assert_eq!(export["preferences"]["email"], true);

    let mut activity = Value::Null;
    for _ in 0..50 {
        let export: Value = get(&app, "/v1/me/export", &bearer)
            .await
            .json()
            .await
            .expect("json");
        activity = export["activity"].clone();
        if activity.to_string().contains("account.email_verified") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        activity.to_string().contains("account.email_verified"),
        "events about the account, not only by it: {activity}"
    );
    let wrong = post(
        &app,
        "/v1/me/deletion",
        Some(&bearer),
        json!({"password": "not my password"}),
    )
    .await;
    assert_problem(wrong, 422).await;
    let deleted = post(
        &app,
        "/v1/me/deletion",
        Some(&bearer),
        json!({ "password": PASSWORD }),
    )
    .await;
    assert_eq!(deleted.status().as_u16(), 204);

    let account = app
        .state
        .storage
        .account(user)
        .await
        .expect("read")
        .expect("tombstone");
    assert_eq!(account.email, None);
    assert_eq!(account.name, None);
    assert_eq!(account.password_hash, None);
    assert!(account.deleted);
    assert_eq!(
        app.state.storage.subscriptions(user).await.expect("read"),
        Vec::new(),
        "subscriptions go with the account"
    );
    assert_eq!(
        app.state
            .storage
            .account_by_email(&email)
            .await
            .expect("read"),
        None
    );
    let trail = app
        .state
        .storage
        .audit_log(&marquee_storage::audit::AuditFilter {
            subject: Some(user),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert!(trail.iter().any(|r| r.entry.action == "account.deleted"));
    assert!(
        trail.iter().all(|r| r.entry.ip.is_none()),
        "erasure scrubs addresses from the account's audit trail"
    );
    assert_problem(get(&app, "/v1/me", &bearer).await, 401).await;
    let login = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_problem(login, 401).await;

    // The order stays, for the books, naming the erased account by id only.
    let kept: Value = app
        .client
        .get(app.url(&format!(
            "/v1/admin/orders/{}",
            order["id"].as_str().expect("id")
        )))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(kept["status"], "confirmed");
    assert!(!kept.to_string().contains(&email));
    let stored = app
        .state
        .storage
        .order(order["id"].as_str().expect("id").parse().expect("uuid"))
        .await
        .expect("read")
        .expect("order");
    assert_eq!(stored.customer, format!("user:{user}"));

    // The address is free again.
    let again = post(
        &app,
        "/v1/auth/registrations",
        None,
        json!({"email": email, "password": PASSWORD, "name": "New"}),
    )
    .await;
    assert_eq!(again.status().as_u16(), 202);
    await_mail(&email, "Confirm your address", 2).await;
}

#[tokio::test]
async fn another_user_never_reads_or_changes_my_holds_orders_sessions_or_profile() {
    let app = accounts_app().await;
    let (_, mine) = signed_up(&app, "owner").await;
    let (_, theirs) = signed_up(&app, "stranger").await;
    let (me, them) = (access(&mine).to_owned(), access(&theirs).to_owned());
    let (showtime, _) = show(&app, 4, 8).await;
    let held: Value = hold_as(&app, &me, showtime, json!(["B-1"]))
        .await
        .json()
        .await
        .expect("json");
    let hold_id = held["hold"]["id"].as_str().expect("id").to_owned();
    let second: Value = hold_as(&app, &me, showtime, json!(["B-3"]))
        .await
        .json()
        .await
        .expect("json");

    let denied = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        assert!(status == 403 || status == 404, "a stranger got {status}");
        let body = assert_problem(response, status).await;
        assert!(body.get("seats").is_none() && body.get("hold").is_none());
    };
    denied(get(&app, &format!("/v1/holds/{hold_id}"), &them).await).await;
    denied(
        post(
            &app,
            &format!("/v1/holds/{hold_id}/extension"),
            Some(&them),
            json!({}),
        )
        .await,
    )
    .await;
    denied(
        app.client
            .delete(app.url(&format!("/v1/holds/{hold_id}")))
            .bearer_auth(&them)
            .send()
            .await
            .expect("answer"),
    )
    .await;
    let stolen = pay_as(&app, &them, json!(hold_id)).await;
    denied(stolen).await;

    let paid = pay_as(&app, &me, json!(second["hold"]["id"])).await;
    assert_eq!(paid.status().as_u16(), 201);
    let order: Value = paid.json().await.expect("json");
    let order_id = order["id"].as_str().expect("id");
    denied(get(&app, &format!("/v1/orders/{order_id}"), &them).await).await;
    denied(
        post(
            &app,
            &format!("/v1/orders/{order_id}/cancellation"),
            Some(&them),
            json!({}),
        )
        .await,
    )
    .await;
    // A guest's booking token is no key to an account's order either.
    let (_, guest_token) =
        crate::booking::held(&app, showtime, "guest@example.com", &["C-1"]).await;
    let with_token = app
        .client
        .get(app.url(&format!("/v1/orders/{order_id}")))
        .header("Booking-Token", guest_token)
        .send()
        .await
        .expect("answer");
    denied(with_token).await;

    // Sessions and profile are the caller's own.
    let my_sessions: Value = get(&app, "/v1/me/sessions", &me)
        .await
        .json()
        .await
        .expect("json");
    let my_session = my_sessions[0]["id"].as_str().expect("id");
    denied(
        app.client
            .delete(app.url(&format!("/v1/me/sessions/{my_session}")))
            .bearer_auth(&them)
            .send()
            .await
            .expect("answer"),
    )
    .await;
    let their_profile: Value = get(&app, "/v1/me", &them).await.json().await.expect("json");
    assert_eq!(their_profile["id"], theirs["user_id"]);
    let their_bookings: Value = get(&app, "/v1/me/bookings", &them)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        their_bookings["bookings"].as_array().expect("list").len(),
        0
    );
    let their_export: Value = get(&app, "/v1/me/export", &them)
        .await
        .json()
        .await
        .expect("json");
    assert!(!their_export.to_string().contains(order_id));

    // The owner still sees everything, and nothing of theirs changed.
    assert_eq!(
        get(&app, &format!("/v1/holds/{hold_id}"), &me)
            .await
            .status()
            .as_u16(),
        200
    );
    let mine_listed: Value = get(&app, "/v1/me/bookings", &me)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(mine_listed["bookings"][0]["order"]["id"], order["id"]);
    let fetched: Value = get(&app, &format!("/v1/orders/{order_id}"), &me)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(fetched["status"], "confirmed");

    // Customers reach no staff route.
    assert_problem(get(&app, "/v1/admin/users", &me).await, 403).await;
    assert_problem(
        get(&app, &format!("/v1/admin/orders/{order_id}"), &me).await,
        403,
    )
    .await;
}

#[tokio::test]
async fn staff_routes_need_the_right_role_and_a_two_factor_sign_in() {
    let app = accounts_app().await;
    let (email, tokens) = signed_up(&app, "support").await;
    promote(&app, &tokens, "support").await;
    // Promotion signs the account out; the new role comes with a new sign-in.
    let refresh = refresh(&app, &tokens).await;
    assert_problem(refresh, 401).await;
    let without_code = sign_in(&app, &email, PASSWORD, None).await;
    assert_eq!(without_code["role"], "support");
    assert_eq!(without_code["mfa"], false);
    let refused = assert_problem(
        get(&app, "/v1/admin/users", access(&without_code)).await,
        403,
    )
    .await;
    assert!(refused["detail"]
        .as_str()
        .expect("detail")
        .contains("two-factor"));

    let secret = enrol_totp(&app, &without_code).await;
    // The factor is on now: replacing it needs a session signed in with it.
    let replace = post(
        &app,
        "/v1/me/totp",
        Some(access(&without_code)),
        json!({ "password": PASSWORD }),
    )
    .await;
    assert_problem(replace, 403).await;
    let no_code = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_problem(no_code, 401).await;
    let bad_code = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD, "totp": "000000"}),
    )
    .await;
    assert_problem(bad_code, 401).await;
    let code = next_code(&secret).await;
    let staff = sign_in(&app, &email, PASSWORD, Some(&code)).await;
    assert_eq!(staff["mfa"], true);
    let replayed = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD, "totp": code}),
    )
    .await;
    assert_problem(replayed, 401).await;

    let users = get(
        &app,
        &format!("/v1/admin/users?email={email}"),
        access(&staff),
    )
    .await;
    assert_eq!(users.status().as_u16(), 200);
    let users: Value = users.json().await.expect("json");
    assert_eq!(users["users"][0]["two_factor"], true);
    // Support is not admin.
    let (_, customer) = signed_up(&app, "customer").await;
    let promote_attempt = app
        .client
        .put(app.url(&format!(
            "/v1/admin/users/{}/role",
            customer["user_id"].as_str().expect("id")
        )))
        .bearer_auth(access(&staff))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .expect("answer");
    assert_problem(promote_attempt, 403).await;
    assert_problem(get(&app, "/v1/admin/audit", access(&staff)).await, 403).await;
    assert_problem(get(&app, "/v1/admin/shards", access(&staff)).await, 403).await;
    // The operator token is staff, never a customer.
    assert_problem(get(&app, "/v1/me", &app.admin_token()).await, 403).await;
}

#[tokio::test]
async fn admins_read_an_audit_log_of_sign_ins_and_admin_changes() {
    let app = accounts_app().await;
    let (email, tokens) = signed_up(&app, "audited").await;
    let user = tokens["user_id"].as_str().expect("id").to_owned();
    post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": "not the password"}),
    )
    .await;
    promote(&app, &tokens, "admin").await;
    let admin = sign_in(&app, &email, PASSWORD, None).await;
    let secret = enrol_totp(&app, &admin).await;
    let admin = sign_in(&app, &email, PASSWORD, Some(&next_code(&secret).await)).await;
    let hours: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|day| json!({"day": day, "opens": "06:00", "closes": "02:00"}))
        .collect();
    let theater = post(
        &app,
        "/v1/admin/theaters",
        Some(access(&admin)),
        json!({
            "name": "Audit Hall", "country": "US", "region": "MA", "city": "Boston",
            "street": "1 Main St", "postcode": "02108", "latitude": 42.36, "longitude": -71.06,
            "timezone": "America/New_York", "opening_hours": hours
        }),
    )
    .await;
    assert_eq!(theater.status().as_u16(), 201);

    let mut entries = Value::Null;
    for _ in 0..50 {
        entries = get(&app, "/v1/admin/audit?limit=200", access(&admin))
            .await
            .json()
            .await
            .expect("json");
        let actions: Vec<&str> = entries["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        if actions.contains(&"POST /v1/admin/theaters") && actions.contains(&"account.totp_enabled")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = entries["entries"].as_array().expect("entries");
    let find = |action: &str, outcome: &str| {
        list.iter()
            .find(|e| e["action"] == action && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} in {entries}"))
    };
    let failed = find("auth.login", "failure");
    assert_eq!(failed["target"], user);
    assert!(failed["ip"].as_str().is_some());
    assert!(failed["request_id"].as_str().is_some());
    let role = find("PUT /v1/admin/users/{id}/role", "success");
    assert_eq!(role["actor_role"], "operator");
    let created = find("POST /v1/admin/theaters", "success");
    assert_eq!(created["actor_id"], user);
    assert_eq!(created["actor_role"], "admin");
    find("account.register", "success");

    let mine: Value = get(
        &app,
        &format!("/v1/admin/audit?actor={user}&action=auth.login"),
        access(&admin),
    )
    .await
    .json()
    .await
    .expect("json");
    assert!(mine["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e["actor_id"] == user.as_str() && e["action"] == "auth.login"));
}

#[tokio::test]
async fn a_bad_or_expired_access_token_is_refused_before_any_handler() {
    let app = accounts_app().await;
    let (_, tokens) = signed_up(&app, "tampered").await;
    let token = access(&tokens);
    let mut tampered = token.to_owned();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let refused = assert_problem(get(&app, "/v1/me", &tampered).await, 401).await;
    assert!(refused["detail"]
        .as_str()
        .expect("detail")
        .contains("not valid"));
    let expired = app
        .state
        .auth
        .gatekeeper
        .signer
        .sign(&marquee_auth::access::Claims {
            user: user_id(&tokens),
            session: Uuid::new_v4(),
            role: marquee_auth::access::Role::Admin,
            mfa: true,
            issued_at: 1,
            expires_at: 2,
        });
    assert_problem(get(&app, "/v1/me", &expired).await, 401).await;
    // Public routes answer a bad token with 401 too, rather than silently
    // serving the caller as a guest.
    let public = app
        .client
        .get(app.url("/v1/movies"))
        .bearer_auth(&tampered)
        .send()
        .await
        .expect("answer");
    assert_problem(public, 401).await;
    let anonymous = app.get("/v1/movies").await;
    assert_eq!(anonymous.status().as_u16(), 200);
}

#[tokio::test]
async fn a_signed_in_user_past_their_burst_is_limited_and_told_when_to_retry() {
    let app = accounts_app_with(|settings| {
        settings.auth.user_rate_limit.per_second = 1;
        settings.auth.user_rate_limit.burst = 12;
    })
    .await;
    let (_, tokens) = signed_up(&app, "busy").await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(get(&app, "/v1/me", access(&tokens)).await.status().as_u16());
    }
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (12..=13).contains(&allowed),
        "burst of 12 at 1/s: {statuses:?}"
    );
    let limited = get(&app, "/v1/me", access(&tokens)).await;
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429).await;
    // Limits are per user: another user from the same address is served.
    let (_, other) = signed_up(&app, "calm").await;
    assert_eq!(
        get(&app, "/v1/me", access(&other)).await.status().as_u16(),
        200
    );
}

/// Sends `count` reset requests for fresh addresses; their statuses.
async fn reset_requests(app: &TestApp, count: usize, label: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        let body = json!({"email": unique_email(label)});
        let response = post(app, "/v1/auth/password-resets", None, body).await;
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn credential_routes_have_a_tighter_limit_per_address() {
    let app = spawn_app_with(|settings| {
        settings.auth.credential_rate_limit.per_second = 1;
        settings.auth.credential_rate_limit.burst = 5;
    })
    .await;
    let statuses = reset_requests(&app, 10, "flood").await;
    assert!(
        statuses.iter().filter(|s| **s == 202).count() <= 6,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    // Browsing is not held back by it.
    assert_eq!(app.get("/v1/movies").await.status().as_u16(), 200);
}

#[tokio::test]
async fn configured_origins_get_cors_headers_and_others_do_not() {
    let app = spawn_app_with(|settings| {
        settings.http.cors_origins = vec!["https://tickets.example.com".to_owned()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/auth/sessions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://tickets.example.com")
        .await
        .expect("answer");
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://tickets.example.com"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let foreign = preflight("https://evil.example.net").await.expect("answer");
    assert!(!foreign
        .headers()
        .contains_key("access-control-allow-origin"));
    let served = app
        .client
        .get(app.url("/v1/movies"))
        .header("origin", "https://tickets.example.com")
        .send()
        .await
        .expect("answer");
    assert_eq!(
        served.headers()["access-control-allow-origin"],
        "https://tickets.example.com"
    );
    for header in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "strict-transport-security",
    ] {
        assert!(served.headers().contains_key(header), "missing {header}");
    }
}

#[tokio::test]
async fn guests_still_buy_with_a_booking_token_and_must_give_an_address() {
    let app = spawn_app().await;
    let (showtime, _) = show(&app, 3, 6).await;
    let anonymous = hold(&app, showtime, json!({"seats": ["A-1"]})).await;
    let problem = assert_problem(anonymous, 422).await;
    assert_eq!(problem["errors"][0]["field"], "email");
    let (held, token) = crate::booking::held(&app, showtime, "guest@example.com", &["A-2"]).await;
    let paid = pay(&app, &held, &token, &Uuid::new_v4().to_string(), "tok_visa").await;
    assert_eq!(paid.status().as_u16(), 201);
}

#[tokio::test]
async fn rate_limits_hold_on_each_instance_while_redis_is_unreachable() {
    let app = spawn_app_with(|settings| {
        settings.redis.url = "redis://127.0.0.1:1/".to_owned().into();
        settings.auth.credential_rate_limit.per_second = 1;
        settings.auth.credential_rate_limit.burst = 3;
    })
    .await;
    let statuses = reset_requests(&app, 6, "offline").await;
    assert_eq!(&statuses[..3], &[202, 202, 202], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn guesses_sent_in_parallel_are_capped_per_account() {
    let app = accounts_app_with(|settings| {
        settings.auth.account_attempts = AttemptLimit {
            per_minute: 6,
            burst: 5,
        };
        settings.auth.credential_rate_limit.per_second = 10_000;
        settings.auth.credential_rate_limit.burst = 10_000;
    })
    .await;
    let (email, _) = signed_up(&app, "parallel").await;
    let guesses = (0..20).map(|i| {
        let body = json!({"email": email, "password": format!("guess number {i}")});
        let app = &app;
        async move {
            post(app, "/v1/auth/sessions", None, body)
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "at most the burst is checked: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn links_mailed_before_a_password_change_stop_working() {
    let app = accounts_app().await;
    let (email, tokens) = signed_up(&app, "stale-links").await;
    let bearer = access(&tokens).to_owned();
    post(
        &app,
        "/v1/auth/password-resets",
        None,
        json!({ "email": email }),
    )
    .await;
    let reset = token_in(&await_mail(&email, "Reset your password", 1).await);
    let moved = unique_email("hijack");
    post(
        &app,
        "/v1/me/email",
        Some(&bearer),
        json!({"new_email": moved, "password": PASSWORD}),
    )
    .await;
    let change = token_in(&await_mail(&moved, "Confirm your new address", 1).await);

    let changed = app
        .client
        .put(app.url("/v1/me/password"))
        .bearer_auth(&bearer)
        .json(&json!({"current_password": PASSWORD, "new_password": "a fresh passphrase here"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(changed.status().as_u16(), 204);
    let late_reset = post(
        &app,
        "/v1/auth/password-resets/confirmation",
        None,
        json!({"token": reset, "new_password": "an attacker passphrase"}),
    )
    .await;
    assert_problem(late_reset, 422).await;
    let late_change = post(
        &app,
        "/v1/auth/email-verifications",
        None,
        json!({ "token": change }),
    )
    .await;
    assert_problem(late_change, 422).await;
    let me: Value = get(&app, "/v1/me", &bearer)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], email);
}

#[tokio::test]
async fn a_reset_refused_for_its_password_leaves_the_link_usable() {
    let app = accounts_app().await;
    let email = format!("walter.white.{}@example.com", Uuid::new_v4().simple());
    let local = email.split('@').next().expect("local part").to_owned();
    post(
        &app,
        "/v1/auth/registrations",
        None,
        json!({"email": email, "password": PASSWORD, "name": "W"}),
    )
    .await;
    post(
        &app,
        "/v1/auth/password-resets",
        None,
        json!({ "email": email }),
    )
    .await;
    let token = token_in(&await_mail(&email, "Reset your password", 1).await);
    let same_as_address = post(
        &app,
        "/v1/auth/password-resets/confirmation",
        None,
        json!({"token": token, "new_password": local}),
    )
    .await;
    assert_problem(same_as_address, 422).await;
    let reset = post(
        &app,
        "/v1/auth/password-resets/confirmation",
        None,
        json!({"token": token, "new_password": "a perfectly fine passphrase"}),
    )
    .await;
    assert_eq!(reset.status().as_u16(), 204);
}

#[tokio::test]
async fn without_configured_origins_no_origin_may_read_answers() {
    let app = spawn_app().await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/auth/refresh"))
        .header("origin", "https://anywhere.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("answer");
    assert!(!preflight
        .headers()
        .contains_key("access-control-allow-origin"));
    let read = app
        .client
        .get(app.url("/v1/movies"))
        .header("origin", "https://anywhere.example.com")
        .send()
        .await
        .expect("answer");
    assert!(!read.headers().contains_key("access-control-allow-origin"));
    assert!(!read
        .headers()
        .contains_key("access-control-allow-credentials"));
}

/// `GET /v1/me/bookings` with a query, until it lists `count` bookings or
/// ten seconds pass: the index learns of orders from the change stream.
async fn bookings_listed(app: &TestApp, bearer: &str, query: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed: Value = get(app, &format!("/v1/me/bookings{query}"), bearer)
            .await
            .json()
            .await
            .expect("json");
        let bookings = listed["bookings"].as_array().cloned().unwrap_or_default();
        if bookings.len() == count || std::time::Instant::now() > deadline {
            return bookings;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn my_bookings_are_listed_by_status_and_date_from_what_the_stream_told_the_index() {
    let app = accounts_app().await;
    let (_, tokens) = signed_up(&app, "lister").await;
    let me = access(&tokens).to_owned();
    let user = user_id(&tokens);
    let (showtime, _) = show(&app, 4, 8).await;
    let mut orders = Vec::new();
    for seat in ["B-1", "B-3"] {
        let held: Value = hold_as(&app, &me, showtime, json!([seat]))
            .await
            .json()
            .await
            .expect("json");
        let paid: Value = pay_as(&app, &me, held["hold"]["id"].clone())
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(paid["status"], "confirmed", "{paid}");
        orders.push((held["hold"]["id"].clone(), paid["id"].clone()));
    }
    // A hold that is never paid has no order to list.
    let unpaid: Value = hold_as(&app, &me, showtime, json!(["B-5"]))
        .await
        .json()
        .await
        .expect("json");
    let (kept, dropped) = (&orders[0], &orders[1]);
    let cancelled = post(
        &app,
        &format!(
            "/v1/orders/{}/cancellation",
            dropped.1.as_str().expect("id")
        ),
        Some(&me),
        json!({}),
    )
    .await;
    assert_eq!(cancelled.status().as_u16(), 200);

    let only_cancelled = bookings_listed(&app, &me, "?status=cancelled", 1).await;
    assert_eq!(only_cancelled.len(), 1, "{only_cancelled:?}");
    assert_eq!(only_cancelled[0]["order"]["id"], dropped.1);
    let only_confirmed = bookings_listed(&app, &me, "?status=confirmed", 1).await;
    assert_eq!(only_confirmed.len(), 1, "{only_confirmed:?}");
    assert_eq!(only_confirmed[0]["order"]["id"], kept.1);
    assert_eq!(
        bookings_listed(&app, &me, "?upcoming=true", 2).await.len(),
        2
    );
    assert!(bookings_listed(&app, &me, "?upcoming=false", 0)
        .await
        .is_empty());

    // The index itself knows the kept order is confirmed: asked for
    // cancelled bookings, it offers the cancelled one and the unpaid hold,
    // which no order event has summarized, and not the kept one.
    let storage = &app.state.storage;
    let cancelled_filter = marquee_storage::accounts::BookingFilter {
        status: Some("cancelled".to_owned()),
        upcoming: None,
    };
    let mut expected = vec![
        dropped.0.as_str().expect("id").to_owned(),
        unpaid["hold"]["id"].as_str().expect("id").to_owned(),
    ];
    expected.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let offered = loop {
        let mut offered: Vec<String> = storage
            .user_bookings(user, &cancelled_filter, 10)
            .await
            .expect("index")
            .iter()
            .map(|entry| entry.hold_id.to_string())
            .collect();
        offered.sort();
        if offered == expected || std::time::Instant::now() > deadline {
            break offered;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(offered, expected);

    // A summary older than the stored one, as a replayed event would
    // bring, changes nothing.
    storage
        .summarize_booking(&marquee_storage::accounts::BookingSummary {
            user_id: user,
            hold_id: dropped.0.as_str().expect("id").parse().expect("uuid"),
            order_id: dropped.1.as_str().expect("id").parse().expect("uuid"),
            status: "confirmed".to_owned(),
            starts_at: chrono::Utc::now(),
            as_of: chrono::DateTime::UNIX_EPOCH,
        })
        .await
        .expect("summary");
    let still = bookings_listed(&app, &me, "?status=cancelled", 1).await;
    assert_eq!(still[0]["order"]["id"], dropped.1);
    assert!(storage
        .user_bookings(user, &cancelled_filter, 10)
        .await
        .expect("index")
        .iter()
        .any(|entry| entry.hold_id.to_string() == dropped.0.as_str().expect("id")));
}
