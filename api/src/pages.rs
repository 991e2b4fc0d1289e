//! The pages account mail links open: confirming an address and setting a
//! new password. Plain HTML forms that work without script, served under
//! a policy that allows only their own stylesheet and posting back to
//! themselves.
//!
//! Opening a link never changes anything by itself: mail scanners follow
//! links, so the page asks for a press of a button (or a new password) and
//! the change happens on the form's POST, through the same code as the
//! JSON routes.

use std::sync::Arc;

use marquee_auth::password::PasswordPolicy;
use poem::http::{header, StatusCode};
use poem::web::{Data, Form, Query};
use poem::{handler, Request, Response, Route};
use serde::Deserialize;

use crate::problem::ApiError;
use crate::state::AppState;

/// Paths served here, with their methods, for the edge's route table.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/verify-email", &["GET", "POST"]),
    ("/reset-password", &["GET", "POST"]),
    (STYLESHEET, &["GET"]),
];

const STYLESHEET: &str = "/assets/pages.css";

/// The policy of every page: nothing but the stylesheet, and forms that
/// post back to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Whether `path` is one of these pages, whose answers stay HTML.
pub fn is_page(path: &str) -> bool {
    ROUTES.iter().any(|(route, _)| *route == path)
}

/// Adds the pages to the application's routes.
pub fn mount(route: Route) -> Route {
    route
        .at("/verify-email", poem::get(confirm_form).post(confirm))
        .at("/reset-password", poem::get(reset_form).post(reset))
        .at(STYLESHEET, poem::get(stylesheet))
}

#[derive(Debug, Deserialize)]
struct Link {
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfirmForm {
    token: String,
}

#[derive(Debug, Deserialize)]
struct ResetForm {
    token: String,
    new_password: String,
    repeat_password: String,
}

#[handler]
fn confirm_form(link: Option<Query<Link>>) -> Response {
    let Some(token) = link
        .and_then(|Query(link)| link.token)
        .filter(|t| !t.is_empty())
    else {
        return incomplete_link("Confirm your address");
    };
    page(
        StatusCode::OK,
        "Confirm your address",
        &format!(
            "<p>Press the button to confirm this address for your Marquee account.</p>\
             <form method=\"post\" action=\"/verify-email\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <button type=\"submit\">Confirm my address</button>\
             </form>",
            token = escape(&token)
        ),
    )
}

#[handler]
async fn confirm(
    state: Data<&Arc<AppState>>,
    req: &Request,
    form: poem::Result<Form<ConfirmForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return incomplete_link("Confirm your address");
    };
    match state.confirm_address(req, &form.token).await {
        Ok(()) => page(
            StatusCode::OK,
            "Address confirmed",
            "<p role=\"status\">Your address is confirmed. You can sign in now.</p>",
        ),
        Err(err) => refused("Confirm your address", &err),
    }
}

#[handler]
fn reset_form(link: Option<Query<Link>>) -> Response {
    let Some(token) = link
        .and_then(|Query(link)| link.token)
        .filter(|t| !t.is_empty())
    else {
        return incomplete_link("Choose a new password");
    };
    password_form(StatusCode::OK, &token, &[])
}

#[handler]
async fn reset(
    state: Data<&Arc<AppState>>,
    req: &Request,
    form: poem::Result<Form<ResetForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return incomplete_link("Choose a new password");
    };
    if form.new_password != form.repeat_password {
        return password_form(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form.token,
            &["The two passwords differ; type the same one twice.".to_owned()],
        );
    }
    match state
        .reset_password_with(req, &form.token, &form.new_password)
        .await
    {
        Ok(()) => page(
            StatusCode::OK,
            "Password changed",
            "<p role=\"status\">Your password is changed, and every device that was signed in \
             has been signed out. Sign in with the new password.</p>",
        ),
        Err(err) => {
            let problem = err.problem();
            let password_problems: Vec<String> = problem
                .errors
                .iter()
                .flatten()
                .filter(|field| field.field == "new_password")
                .map(|field| field.message.clone())
                .collect();
            if password_problems.is_empty() {
                refused("Choose a new password", &err)
            } else {
                password_form(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &form.token,
                    &password_problems,
                )
            }
        }
    }
}

#[handler]
fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(include_str!("pages.css"))
}

fn password_form(status: StatusCode, token: &str, problems: &[String]) -> Response {
    let policy = PasswordPolicy::default();
    let (alert, described) = if problems.is_empty() {
        (String::new(), "aria-describedby=\"hint\"")
    } else {
        let items: String = problems
            .iter()
            .map(|problem| format!("<li>{}</li>", escape(problem)))
            .collect();
        (
            format!("<div class=\"alert\" id=\"problems\" role=\"alert\"><ul>{items}</ul></div>"),
            "aria-describedby=\"problems hint\" aria-invalid=\"true\"",
        )
    };
    let limits = format!(
        "required minlength=\"{}\" maxlength=\"{}\"",
        policy.min_length, policy.max_length
    );
    page(
        status,
        "Choose a new password",
        &format!(
            "{alert}<form method=\"post\" action=\"/reset-password\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <label for=\"new_password\">New password</label>\
             <input id=\"new_password\" name=\"new_password\" type=\"password\" \
                 autocomplete=\"new-password\" {limits} {described}>\
             <p class=\"hint\" id=\"hint\">At least {min} characters; a phrase of a few \
                 words is easy to remember and hard to guess.</p>\
             <label for=\"repeat_password\">The same password again</label>\
             <input id=\"repeat_password\" name=\"repeat_password\" type=\"password\" \
                 autocomplete=\"new-password\" {limits}>\
             <button type=\"submit\">Set the new password</button>\
             </form>",
            token = escape(token),
            min = policy.min_length,
        ),
    )
}

fn incomplete_link(title: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        title,
        "<div class=\"alert\" role=\"alert\"><p>This link is incomplete. Open the whole link \
         from the message, or copy all of it into the address bar.</p></div>",
    )
}

/// A refusal as a page: the problem's own words, which are written for
/// people and never carry internal detail.
fn refused(title: &str, err: &ApiError) -> Response {
    let problem = err.problem();
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let detail = problem
        .detail
        .as_deref()
        .unwrap_or("the request was refused");
    let mut detail = escape(detail);
    if let Some(first) = detail.get(..1) {
        detail = first.to_uppercase() + &detail[1..];
    }
    page(
        status,
        title,
        &format!("<div class=\"alert\" role=\"alert\"><p>{detail}.</p></div>"),
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header("content-security-policy", CONTENT_SECURITY_POLICY)
        .body(format!(
            "<!doctype html>\
             <html lang=\"en\">\
             <head>\
             <meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\">\
             <title>{title} · Marquee</title>\
             <link rel=\"stylesheet\" href=\"{STYLESHEET}\">\
             </head>\
             <body>\
             <header><a href=\"/docs\">Marquee</a></header>\
             <main><h1>{title}</h1>{body}</main>\
             </body>\
             </html>",
            title = escape(title)
        ))
}

/// Text made safe to place in HTML content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
