//! The gateway: what every request passes through before and after its
//! handler. A request id and tracing span, authentication of the bearer
//! credential, rate limits (per address, per user, and tighter on routes
//! that take credentials), the body limit, problem rendering, security
//! headers, the audit of admin changes, and metrics.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;
use uuid::Uuid;

use marquee_ratelimit::{Decision, Limit, RateLimiter};
use marquee_storage::audit::AuditEntry;
use marquee_storage::Storage;

use crate::auth::{record_later, AuthState, Principal};
use crate::metrics::Metrics;
use crate::problem::{self, ApiError, Problem};

/// The id of the request being served, echoed in `X-Request-Id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

/// Accepts a caller's id only if it is short, printable ASCII, so it cannot
/// forge log lines or bloat headers.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned)
}

/// Path templates and their methods, taken from the OpenAPI spec, for metric
/// labels (bounded cardinality) and for the `Allow` header of 405 answers.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<(String, Vec<Segment>, String)>,
}

#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    Parameter,
}

impl RouteTable {
    /// Reads `paths` of an OpenAPI document, plus routes served outside it.
    pub fn from_spec(spec: &serde_json::Value, extra: &[(&str, &[&str])]) -> Self {
        let mut entries: Vec<(String, Vec<String>)> = spec
            .get("paths")
            .and_then(serde_json::Value::as_object)
            .map(|paths| {
                paths
                    .iter()
                    .map(|(path, operations)| {
                        let methods = operations
                            .as_object()
                            .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                            .unwrap_or_default();
                        (path.clone(), methods)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (path, methods) in extra {
            entries.push((
                (*path).to_owned(),
                methods.iter().map(|m| (*m).to_owned()).collect(),
            ));
        }
        let routes = entries
            .into_iter()
            .map(|(template, mut methods)| {
                if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
                    methods.push("HEAD".to_owned());
                }
                let segments = template
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Parameter
                        } else {
                            Segment::Literal(s.to_owned())
                        }
                    })
                    .collect();
                (template, segments, methods.join(", "))
            })
            .collect();
        Self { routes }
    }

    /// The template and allowed methods of a concrete path. Literal routes
    /// win over parameterised ones, as in the router.
    pub fn lookup(&self, path: &str) -> Option<(&str, &str)> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes
            .iter()
            .filter(|(_, segments, _)| {
                segments.len() == parts.len()
                    && segments
                        .iter()
                        .zip(&parts)
                        .all(|(segment, part)| match segment {
                            Segment::Literal(literal) => literal == part,
                            Segment::Parameter => true,
                        })
            })
            .min_by_key(|(_, segments, _)| {
                segments
                    .iter()
                    .filter(|s| **s == Segment::Parameter)
                    .count()
            })
            .map(|(template, _, allow)| (template.as_str(), allow.as_str()))
    }
}

/// Paths that probes and scrapers call; they are never rate limited.
fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The rate limits the edge applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Every request, by client address.
    pub per_address: Limit,
    /// Requests of a signed-in user, by user id, whatever the address.
    pub per_user: Limit,
    /// Routes that take credentials, by client address, on top of the rest:
    /// password guessing is slow however many addresses it uses, and the
    /// lockout stops it per account.
    pub credentials: Limit,
}

/// Everything the edge needs, shared by all requests.
#[derive(Debug)]
pub struct Edge {
    pub routes: RouteTable,
    pub limiter: RateLimiter,
    pub limits: Limits,
    pub auth: Arc<AuthState>,
    /// Where changes made through admin routes are audited.
    pub storage: Storage,
    pub metrics: Metrics,
    pub hsts: bool,
    /// Bodies declared larger than this are refused before they are read;
    /// bodies without a length are cut off at the same size as they stream.
    pub max_body_bytes: usize,
}

/// The first query parameter whose value holds a NUL character. No text
/// column can store one, so every route refuses it here, by name, rather
/// than each handler knowing it. A query can only carry NUL as `%00`.
fn nul_parameter(req: &Request) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        value.contains("%00").then(|| name.to_owned())
    })
}

/// Wraps the application endpoint in the edge.
pub fn wrap<E: Endpoint + 'static>(inner: E, edge: Arc<Edge>) -> impl Endpoint<Output = Response> {
    let inner = Arc::new(inner);
    poem::endpoint::make(move |req: Request| {
        let (inner, edge) = (Arc::clone(&inner), Arc::clone(&edge));
        async move { Ok::<_, poem::Error>(serve(&*inner, &edge, req).await) }
    })
}

async fn serve<E: Endpoint>(inner: &E, edge: &Edge, mut req: Request) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (route, allow) = edge.routes.lookup(&path).unwrap_or(("unmatched", ""));
    let span = tracing::info_span!("request", request_id = %id, method = %method, route);
    edge.metrics.request_started();

    let client_ip = req.remote_addr().as_socket_addr().map(|addr| addr.ip());
    let now = chrono::Utc::now().timestamp();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    // Routes that take credentials ignore a stale bearer token: a client
    // whose access token expired must still be able to refresh or sign in.
    let principal = match edge.auth.gatekeeper.authenticate(authorization, now) {
        Err(_) if credential_route(req.method(), req.uri().path()) => Ok(None),
        principal => principal,
    };
    let limited = if is_operational(&path) {
        None
    } else {
        rate_limit(edge, &req, principal.as_ref().ok().and_then(Option::as_ref)).await
    };
    // The body is read in full before any handler runs, whatever it then
    // answers: an answer given over an unread body (a 401, a 415) makes
    // the server drop the connection, and a client reusing it fails.
    let buffered = if declared_length(&req).is_some_and(|length| length > edge.max_body_bytes) {
        None
    } else {
        Some(req.take_body().into_bytes_limit(edge.max_body_bytes).await)
    };
    let actor = principal.as_ref().ok().and_then(Option::clone);
    let mut response = match (limited, buffered) {
        (Some(retry_after), _) => rate_limited(retry_after),
        (None, Some(Ok(_))) if principal.is_err() => {
            let detail = principal.err().unwrap_or_default();
            problem::render(
                poem::Error::from_response(ApiError::unauthorized(detail).into_response()),
                None,
            )
        }
        (None, None | Some(Err(_))) => {
            let mut response = problem::render(
                poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE),
                None,
            );
            // The rest of the body is never read, so the connection cannot
            // carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        (None, Some(Ok(_))) if nul_parameter(&req).is_some() => {
            let name = nul_parameter(&req).unwrap_or_default();
            problem::render(
                poem::Error::from_response(
                    crate::routes::invalid_parameter(&name, "must not contain NUL").into_response(),
                ),
                None,
            )
        }
        (None, Some(Ok(body))) => {
            req.set_body(body);
            req.extensions_mut().insert(RequestId(id.clone()));
            if let Some(actor) = &actor {
                req.extensions_mut().insert(actor.clone());
            }
            match inner.call(req).instrument(span.clone()).await {
                Ok(output) => output.into_response(),
                Err(err) => problem::render(err, Some(allow)),
            }
        }
    };
    let is_error = response.status().is_client_error() || response.status().is_server_error();
    if is_error && !(crate::pages::is_page(&path) && is_html(&response)) {
        response = annotate_problem(response, &path, &id).await;
    }
    secure(&mut response, &path, edge.hsts);
    if path.starts_with("/v1/admin/") && !matches!(method, Method::GET | Method::HEAD) {
        audit_admin_change(
            edge,
            &method,
            route,
            &path,
            actor.as_ref(),
            response.status(),
            &id,
            client_ip,
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    edge.metrics
        .request_finished(route, method_label(&method), status, elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1000.0, path = %path, "request served");
    });
    response
}

/// Takes a token from each bucket the request counts against; the wait
/// until the first empty one refills, if any is empty.
async fn rate_limit(edge: &Edge, req: &Request, principal: Option<&Principal>) -> Option<u64> {
    let address = req
        .remote_addr()
        .as_socket_addr()
        .map(|addr| addr.ip().to_string());
    if let Some(address) = &address {
        let key = format!("ip:{address}");
        if let Some(wait) = waited(edge.limiter.acquire(&edge.limits.per_address, &key).await) {
            return Some(wait);
        }
        if credential_route(req.method(), req.uri().path()) {
            let key = format!("cred:{address}");
            if let Some(wait) = waited(edge.limiter.acquire(&edge.limits.credentials, &key).await) {
                return Some(wait);
            }
        }
    }
    if let Some(user) = principal.and_then(Principal::user_id) {
        let key = format!("user:{user}");
        return waited(edge.limiter.acquire(&edge.limits.per_user, &key).await);
    }
    None
}

fn waited(decision: Decision) -> Option<u64> {
    match decision {
        Decision::Allowed => None,
        Decision::Limited { retry_after } => Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
    }
}

/// Routes that take credentials (sign-in, registration, resets, and the
/// pages that spend a mailed link), and the one that hands out device ids,
/// which would otherwise be minted in bulk.
fn credential_route(method: &Method, path: &str) -> bool {
    method == Method::POST
        && ((path.starts_with("/v1/auth/") && path != "/v1/auth/logout")
            || path == "/v1/devices"
            || crate::pages::is_page(path))
}

fn is_html(response: &Response) -> bool {
    response
        .content_type()
        .is_some_and(|content_type| content_type.starts_with("text/html"))
}

/// Every change attempted through an admin route is audited here, once,
/// whatever the handler: who, which route, the outcome.
#[allow(clippy::too_many_arguments)]
fn audit_admin_change(
    edge: &Edge,
    method: &Method,
    route: &str,
    path: &str,
    actor: Option<&Principal>,
    status: StatusCode,
    request_id: &str,
    client_ip: Option<IpAddr>,
) {
    let outcome = if status.is_success() {
        "success"
    } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        "denied"
    } else {
        "failure"
    };
    let entry = AuditEntry {
        actor_id: actor.and_then(Principal::user_id),
        actor_role: actor.map_or("anonymous", Principal::role_name).to_owned(),
        action: format!("{} {route}", method_label(method)),
        target: Some(path.to_owned()),
        outcome,
        ip: client_ip.map(|ip| ip.to_string()),
        request_id: Some(request_id.to_owned()),
        detail: serde_json::json!({ "status": status.as_u16() }),
    };
    record_later(&edge.storage, entry);
}

fn declared_length(req: &Request) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

fn rate_limited(retry_after: u64) -> Response {
    let mut response = problem::problem_response(Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        format!("too many requests from this address; retry in {retry_after} s"),
    ));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// Fills `instance` and `request_id` into a problem, and turns any other error
/// response into one, so clients see a single error shape.
async fn annotate_problem(mut response: Response, path: &str, id: &str) -> Response {
    let status = response.status();
    let is_problem = response
        .content_type()
        .is_some_and(|content_type| content_type.starts_with(problem::CONTENT_TYPE));
    let mut body: serde_json::Value = if is_problem {
        let bytes = response.take_body().into_bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({}))
    } else {
        let problem = Problem::new(
            status,
            "http-error",
            status.canonical_reason().unwrap_or("error"),
        );
        poem_openapi::types::ToJSON::to_json(&problem).unwrap_or_default()
    };
    if let Some(object) = body.as_object_mut() {
        object.insert("instance".to_owned(), path.into());
        object.insert("request_id".to_owned(), id.into());
        object.entry("status").or_insert(status.as_u16().into());
    }
    let mut rebuilt = Response::builder()
        .status(status)
        .content_type(problem::CONTENT_TYPE)
        .body(body.to_string());
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if status == StatusCode::UNAUTHORIZED
        && !rebuilt.headers().contains_key(header::WWW_AUTHENTICATE)
    {
        rebuilt
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    rebuilt
}

/// The API serves JSON only, so its policy forbids everything; the docs page
/// runs the bundled Swagger UI, which needs inline script and style, and
/// the account pages load their own stylesheet and post their forms.
fn secure(response: &mut Response, path: &str, hsts: bool) {
    let headers = response.headers_mut();
    let policy = if path == "/docs" || path.starts_with("/docs/") {
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
    } else if crate::pages::is_page(path) {
        crate::pages::CONTENT_SECURITY_POLICY
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    headers.insert("content-security-policy", HeaderValue::from_static(policy));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if hsts {
        headers.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let spec = serde_json::json!({"paths": {
            "/v1/movies/{id}": {"get": {}},
            "/v1/movies/search": {"get": {}},
            "/v1/admin/movies": {"post": {}},
        }});
        RouteTable::from_spec(&spec, &[("/docs", &["GET"])])
    }

    #[test]
    fn concrete_paths_resolve_to_their_template() {
        let table = table();
        assert_eq!(
            table.lookup("/v1/movies/0192"),
            Some(("/v1/movies/{id}", "GET, HEAD"))
        );
        assert_eq!(
            table.lookup("/v1/admin/movies"),
            Some(("/v1/admin/movies", "POST"))
        );
        assert_eq!(table.lookup("/docs"), Some(("/docs", "GET, HEAD")));
        assert_eq!(table.lookup("/nope"), None);
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter() {
        assert_eq!(
            table().lookup("/v1/movies/search").map(|r| r.0),
            Some("/v1/movies/search")
        );
    }

    #[test]
    fn caller_request_ids_are_kept_only_when_safe() {
        let with = |value: &str| Request::builder().header(REQUEST_ID, value).finish();
        assert_eq!(request_id(&with("abc-123")), "abc-123");
        assert_ne!(request_id(&with("has space")), "has space");
        assert_ne!(request_id(&with(&"x".repeat(200))), "x".repeat(200));
    }
}
