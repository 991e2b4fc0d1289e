//! What every request passes through before and after its handler: a request
//! id, a tracing span, rate limiting, problem rendering, security headers and
//! metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::problem::{self, Problem};
use crate::settings::RateLimitSettings;

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

/// A token bucket per client address, refilled continuously.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Above this many tracked clients, full buckets are forgotten.
const MAX_TRACKED_CLIENTS: usize = 100_000;

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            per_second: f64::from(settings.per_second),
            burst: f64::from(settings.burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token, or says how many whole seconds until one is available.
    pub fn acquire(&self, client: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > MAX_TRACKED_CLIENTS {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// Paths that probes and scrapers call; they are never rate limited.
fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Everything the edge needs, shared by all requests.
#[derive(Debug)]
pub struct Edge {
    pub routes: RouteTable,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    pub hsts: bool,
    /// Bodies declared larger than this are refused before they are read;
    /// bodies without a length are cut off at the same size as they stream.
    pub max_body_bytes: usize,
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

    let limited = if is_operational(&path) {
        None
    } else {
        req.remote_addr()
            .as_socket_addr()
            .and_then(|addr| edge.limiter.acquire(addr.ip()).err())
    };
    // The body is read in full before any handler runs, whatever it then
    // answers: an answer given over an unread body (a 401, a 415) makes
    // the server drop the connection, and a client reusing it fails.
    let buffered = if declared_length(&req).is_some_and(|length| length > edge.max_body_bytes) {
        None
    } else {
        Some(req.take_body().into_bytes_limit(edge.max_body_bytes).await)
    };
    let mut response = match (limited, buffered) {
        (Some(retry_after), _) => rate_limited(retry_after),
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
        (None, Some(Ok(body))) => {
            req.set_body(body);
            req.extensions_mut().insert(RequestId(id.clone()));
            match inner.call(req).instrument(span.clone()).await {
                Ok(output) => output.into_response(),
                Err(err) => problem::render(err, Some(allow)),
            }
        }
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        response = annotate_problem(response, &path, &id).await;
    }
    secure(&mut response, &path, edge.hsts);
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
/// runs the bundled Swagger UI, which needs inline script and style.
fn secure(response: &mut Response, path: &str, hsts: bool) {
    let headers = response.headers_mut();
    let policy = if path == "/docs" || path.starts_with("/docs/") {
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
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
    use std::net::Ipv4Addr;

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
    fn a_client_past_its_burst_is_told_when_to_retry() {
        let limiter = RateLimiter::new(&RateLimitSettings {
            per_second: 1,
            burst: 3,
        });
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..3 {
            assert_eq!(limiter.acquire(client), Ok(()));
        }
        assert_eq!(limiter.acquire(client), Err(1));
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(limiter.acquire(other), Ok(()), "limits are per client");
    }

    #[test]
    fn caller_request_ids_are_kept_only_when_safe() {
        let with = |value: &str| Request::builder().header(REQUEST_ID, value).finish();
        assert_eq!(request_id(&with("abc-123")), "abc-123");
        assert_ne!(request_id(&with("has space")), "has space");
        assert_ne!(request_id(&with(&"x".repeat(200))), "x".repeat(200));
    }
}
