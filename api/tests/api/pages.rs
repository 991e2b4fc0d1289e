//! The pages that account mail links open, followed from the real mail as
//! a person would: open the link, then submit the form.

use serde_json::{json, Value};

use crate::accounts::{accounts_app, await_mail, post, sign_in, signed_up, unique_email, PASSWORD};
use crate::helpers::{assert_problem, TestApp};

/// The link a message carries, as a path and query on this service.
fn link_in(app: &TestApp, mail: &str) -> String {
    let base = app.schema.settings.auth.public_url.trim_end_matches('/');
    mail.lines()
        .find_map(|line| line.trim().strip_prefix(base))
        .map(str::to_owned)
        .expect("the message carries a link to this service")
}

fn hidden_token(page: &str) -> String {
    let marker = "name=\"token\" value=\"";
    let start = page.find(marker).expect("the form carries the token") + marker.len();
    let end = start + page[start..].find('"').expect("closing quote");
    page[start..end].to_owned()
}

async fn open(app: &TestApp, path: &str) -> (u16, String, String) {
    let response = app.get(path).await;
    let status = response.status().as_u16();
    let policy = response
        .headers()
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/html")),
        "{path} answers HTML"
    );
    (status, policy, response.text().await.expect("page"))
}

async fn submit(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = app
        .client
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    (status, response.text().await.expect("page"))
}

#[tokio::test]
async fn the_confirmation_link_opens_a_page_whose_button_confirms_the_address() {
    let app = accounts_app().await;
    let email = unique_email("page");
    let registered = post(
        &app,
        "/v1/auth/registrations",
        None,
        json!({"email": email, "password": PASSWORD, "name": "Ada"}),
    )
    .await;
    assert_eq!(registered.status().as_u16(), 202);
    let mail = await_mail(&email, "Confirm your address", 1).await;
    let link = link_in(&app, &mail);
    assert!(link.starts_with("/verify-email?token="), "{link}");

    let (status, policy, page) = open(&app, &link).await;
    assert_eq!(status, 200);
    assert!(page.contains("<form method=\"post\" action=\"/verify-email\">"));
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(policy.contains("form-action 'self'"), "{policy}");
    let early = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_problem(early, 403).await;

    let token = hidden_token(&page);
    let (status, confirmed) = submit(&app, "/verify-email", &[("token", &token)]).await;
    assert_eq!(status, 200, "{confirmed}");
    assert!(confirmed.contains("Your address is confirmed"));
    sign_in(&app, &email, PASSWORD, None).await;

    let (status, again) = submit(&app, "/verify-email", &[("token", &token)]).await;
    assert_eq!(status, 422);
    assert!(again.contains("invalid, used or expired"), "{again}");
}

#[tokio::test]
async fn the_reset_link_opens_a_form_that_sets_a_new_password_the_policy_allows() {
    let app = accounts_app().await;
    let (email, _) = signed_up(&app, "page-reset").await;
    let asked = post(
        &app,
        "/v1/auth/password-resets",
        None,
        json!({ "email": email }),
    )
    .await;
    assert_eq!(asked.status().as_u16(), 202);
    let mail = await_mail(&email, "Reset your password", 1).await;
    let link = link_in(&app, &mail);
    assert!(link.starts_with("/reset-password?token="), "{link}");

    let (status, policy, page) = open(&app, &link).await;
    assert_eq!(status, 200);
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(page.contains("autocomplete=\"new-password\""));
    let token = hidden_token(&page);

    let (status, differ) = submit(
        &app,
        "/reset-password",
        &[
            ("token", &token),
            ("new_password", "a brand new passphrase"),
            ("repeat_password", "a different passphrase"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(differ.contains("The two passwords differ"));
    let (status, weak) = submit(
        &app,
        "/reset-password",
        &[
            ("token", &token),
            ("new_password", "short"),
            ("repeat_password", "short"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(weak.contains("role=\"alert\""), "{weak}");
    assert!(weak.contains("aria-invalid=\"true\""));

    let (status, done) = submit(
        &app,
        "/reset-password",
        &[
            ("token", &token),
            ("new_password", "a brand new passphrase"),
            ("repeat_password", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("Your password is changed"));
    let old = post(
        &app,
        "/v1/auth/sessions",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_problem(old, 401).await;
    sign_in(&app, &email, "a brand new passphrase", None).await;
}

#[tokio::test]
async fn a_bad_link_gets_a_page_that_says_so_and_changes_nothing() {
    let app = accounts_app().await;
    let (status, _, page) = open(&app, "/verify-email").await;
    assert_eq!(status, 400);
    assert!(page.contains("This link is incomplete"));
    let (status, _, page) = open(&app, "/reset-password?token=").await;
    assert_eq!(status, 400);
    assert!(page.contains("This link is incomplete"));

    let forged = "\"><script>alert(1)</script>";
    let (status, _, page) = open(&app, &format!("/verify-email?token={}", urlencode(forged))).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&quot;&gt;&lt;script&gt;"));
    let (status, refused) = submit(&app, "/verify-email", &[("token", forged)]).await;
    assert_eq!(status, 422);
    assert!(refused.contains("invalid, used or expired"));
    assert!(!refused.contains("<script>"));
    let (status, refused) = submit(
        &app,
        "/reset-password",
        &[
            ("token", "0123"),
            ("new_password", "a brand new passphrase"),
            ("repeat_password", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(refused.contains("invalid, used or expired"));
    let (status, missing) = submit(&app, "/reset-password", &[("token", "x")]).await;
    assert_eq!(status, 400);
    assert!(missing.contains("This link is incomplete"));
}

#[tokio::test]
async fn the_pages_stylesheet_is_served_and_other_methods_get_a_problem() {
    let app = accounts_app().await;
    let css = app.get("/assets/pages.css").await;
    assert_eq!(css.status().as_u16(), 200);
    assert!(css
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/css")));
    let deleted = app
        .client
        .delete(app.url("/verify-email"))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        deleted
            .headers()
            .get("allow")
            .and_then(|value| value.to_str().ok()),
        Some("GET, POST, HEAD")
    );
    let problem: Value = assert_problem(deleted, 405).await;
    assert_eq!(problem["instance"], "/verify-email");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
