//! RFC 9457 problem details: every failure the API answers with.
//!
//! Handlers return [`ApiError`], whose variants declare each status in the
//! OpenAPI spec. Failures raised before a handler runs (no route, wrong
//! method, unparsable parameters, oversized or non-JSON bodies, rate limits)
//! are rendered by [`render`] into the same shape, so a client never sees any
//! other error format.

use poem::http::{header, HeaderValue, StatusCode};
use poem::Response;
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A field of a request that failed validation.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct FieldError {
    /// Path to the field, such as `genres[2]` or `title`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The state of one dependency, reported by the readiness probe.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct ComponentStatus {
    /// `catalog`, `shard-0/primary`, `shard-0/replica`, `redis`, `broker`, `search`.
    pub name: String,
    /// `up` or `down`.
    pub status: String,
    pub latency_ms: f64,
    /// Why the component is down, or a note about its state.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// Bytes of WAL the replica has yet to replay; replicas only.
    #[oai(skip_serializing_if_is_none)]
    pub replica_lag_bytes: Option<u64>,
}

/// Problem details (RFC 9457).
#[derive(Debug, Clone, PartialEq, Object)]
pub struct Problem {
    /// A URI reference that identifies the problem type.
    #[oai(rename = "type")]
    pub problem_type: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// The request path.
    #[oai(skip_serializing_if_is_none)]
    pub instance: Option<String>,
    /// The id of the request, also sent as the `X-Request-Id` header; quote
    /// it when reporting a problem.
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    /// The fields that failed validation (422 only).
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<FieldError>>,
    /// The state of every dependency (readiness only).
    #[oai(skip_serializing_if_is_none)]
    pub components: Option<Vec<ComponentStatus>>,
    /// The ticket's first admission (a ticket scanned again only).
    #[oai(skip_serializing_if_is_none)]
    pub admission: Option<FirstAdmission>,
}

/// When and where a ticket went in.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct FirstAdmission {
    pub admitted_at: chrono::DateTime<chrono::Utc>,
    pub device_id: String,
    /// Whether an offline scanner admitted it and uploaded it later.
    pub offline: bool,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("urn:marquee:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            instance: None,
            request_id: None,
            errors: None,
            components: None,
            admission: None,
        }
    }

    /// Boxed, so that `Result<_, ApiError>` stays small on the happy path.
    fn into_body(self) -> Json<Box<Problem>> {
        Json(Box::new(self))
    }
}

/// Every error status an operation can answer. Each operation returns
/// `Result<_, ApiError>`, which puts all of them in its spec entry.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: unparsable JSON or an invalid parameter.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Box<Problem>>),
    /// Credentials are missing or wrong.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Box<Problem>>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// The payment was declined; nothing was charged.
    #[oai(status = 402, content_type = "application/problem+json")]
    PaymentRequired(Json<Box<Problem>>),
    /// The caller may not do this: another customer's booking, or a route
    /// for another role.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Box<Problem>>),
    /// The resource does not exist, or the caller may not know it exists.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Box<Problem>>),
    /// The request conflicts with the current state of the resource.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Box<Problem>>),
    /// The body is larger than the configured limit.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Box<Problem>>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Box<Problem>>),
    /// The body is well-formed JSON but fails validation; `errors` names the fields.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Box<Problem>>),
    /// Too many requests; retry after the given number of seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Box<Problem>>, #[oai(header = "Retry-After")] u64),
    /// An unexpected failure; the request id identifies it in the logs.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Box<Problem>>),
    /// A dependency is unavailable; retry after the given number of seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Box<Problem>>, #[oai(header = "Retry-After")] u64),
}

impl ApiError {
    /// The problem this error answers with, for answers that are not JSON,
    /// such as the pages account mail links to.
    pub fn problem(&self) -> &Problem {
        match self {
            Self::BadRequest(body)
            | Self::Unauthorized(body, _)
            | Self::PaymentRequired(body)
            | Self::Forbidden(body)
            | Self::NotFound(body)
            | Self::Conflict(body)
            | Self::PayloadTooLarge(body)
            | Self::UnsupportedMediaType(body)
            | Self::Unprocessable(body)
            | Self::TooManyRequests(body, _)
            | Self::Internal(body)
            | Self::Unavailable(body, _) => &body.0,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail).into_body())
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::Unauthorized(
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_body(),
            "Bearer".to_owned(),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(Problem::new(StatusCode::FORBIDDEN, "forbidden", detail).into_body())
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(Problem::new(StatusCode::NOT_FOUND, "not-found", detail).into_body())
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict(Problem::new(StatusCode::CONFLICT, "conflict", detail).into_body())
    }

    /// A conflict of a kind of its own, for clients that act on the type.
    pub fn conflict_of(slug: &str, detail: impl Into<String>) -> Self {
        Self::Conflict(Problem::new(StatusCode::CONFLICT, slug, detail).into_body())
    }

    /// A ticket scanned again: when and where it first went in.
    pub fn already_admitted(detail: impl Into<String>, first: FirstAdmission) -> Self {
        let mut problem = Problem::new(StatusCode::CONFLICT, "ticket-already-admitted", detail);
        problem.admission = Some(first);
        Self::Conflict(problem.into_body())
    }

    pub fn unprocessable(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        let mut problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail);
        problem.errors = Some(errors);
        Self::Unprocessable(problem.into_body())
    }

    /// A limit of a kind of its own, for clients that act on the type.
    pub fn too_many_of(slug: &str, detail: impl Into<String>, retry_after: u64) -> Self {
        Self::TooManyRequests(
            Problem::new(StatusCode::TOO_MANY_REQUESTS, slug, detail).into_body(),
            retry_after.max(1),
        )
    }

    pub fn too_many_requests(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::TooManyRequests(
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail).into_body(),
            retry_after,
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable(
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail).into_body(),
            RETRY_AFTER_SECONDS,
        )
    }

    pub fn internal() -> Self {
        Self::Internal(
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an unexpected error occurred; quote the request id when reporting it",
            )
            .into_body(),
        )
    }
}

/// How long clients should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u64 = 1;

impl From<marquee_storage::Error> for ApiError {
    fn from(err: marquee_storage::Error) -> Self {
        use marquee_storage::Error as E;
        match err {
            E::Shard(err) => err.into(),
            E::Pending { .. } | E::ReadOnly { .. } | E::UnconfiguredNode { .. } => {
                tracing::error!(error = %err, "storage is not ready");
                Self::unavailable("storage is not ready to serve this request; retry shortly")
            }
            E::StaleMap { .. } => {
                tracing::warn!(error = %err, "request refused under a stale shard map");
                Self::unavailable("this data is moving between nodes; retry shortly")
            }
            E::Contended { .. } => {
                tracing::warn!(error = %err, "change given up under contention");
                Self::unavailable("this data is busy with other changes; retry shortly")
            }
            E::MovieNotFound(_) | E::NotFound { .. } => Self::not_found(err.to_string()),
            E::Conflict(detail) => Self::conflict(detail),
            E::WaitingRoom { showtime, had_pass } => Self::conflict_of(
                "waiting-room",
                if had_pass {
                    format!(
                        "the pass was spent or lapsed; look at your place in line at \
                         /v1/showtimes/{showtime}/queue for where you stand"
                    )
                } else {
                    format!(
                        "a waiting room is on for this showtime: join the line at \
                         POST /v1/showtimes/{showtime}/queue, then hold with the Queue-Pass it gives"
                    )
                },
            ),
            E::Forbidden(detail) => Self::forbidden(detail),
            E::Invalid { detail, fields } => Self::unprocessable(
                detail,
                fields
                    .into_iter()
                    .map(|(field, message)| FieldError::new(field, message))
                    .collect(),
            ),
            E::Rebalancing => Self::unavailable(err.to_string()),
            E::NodeNotActive(_)
            | E::NodeUnreachable { .. }
            | E::RebalanceInProgress
            | E::AlreadyPlaced { .. }
            | E::MoveInProgress(_)
            | E::MoveVerification { .. }
            | E::KeyMoveVerification { .. } => Self::conflict(err.to_string()),
            E::Rejected { .. } | E::MigrationDrift { .. } | E::DemoData { .. } => {
                tracing::error!(error = %err, "storage failure");
                Self::internal()
            }
        }
    }
}

impl From<marquee_booking::Error> for ApiError {
    fn from(err: marquee_booking::Error) -> Self {
        use marquee_booking::Error as E;
        match err {
            E::Storage(err) => err.into(),
            E::KeyReused(_) => Self::unprocessable(
                err.to_string(),
                vec![FieldError::new(
                    "Idempotency-Key",
                    "already used with a different request; send a new key for a new purchase",
                )],
            ),
            E::KeyInFlight(_) => Self::conflict(err.to_string()),
            E::PaymentUnavailable(_) => {
                tracing::warn!(error = %err, "payment provider unavailable");
                Self::unavailable(err.to_string())
            }
            E::Settings(_) => {
                tracing::error!(error = %err, "booking failure");
                Self::internal()
            }
            E::UnpaidSeats {
                ref limit,
                allowed,
                used,
                retry_after,
            } => {
                let who = match limit.as_str() {
                    "email" => "address (counted without dots and +tags where its provider ignores them)",
                    "device" => "device",
                    _ => "network address",
                };
                let wait = retry_after.as_secs() + 1;
                Self::too_many_of(
                    "unpaid-seat-limit",
                    format!(
                        "this {who} already holds {used} unpaid seats of this showtime, and may hold {allowed}; \
                         pay for them, release some, or retry in {wait} s when the first hold lapses"
                    ),
                    wait,
                )
            }
            E::LiveHolds {
                allowed,
                retry_after,
            } => Self::too_many_of(
                "live-hold-limit",
                format!(
                    "this client already has {allowed} holds open across showtimes, the most it may; \
                     pay for or release one, or retry in {} s when the first lapses",
                    retry_after.as_secs() + 1
                ),
                retry_after.as_secs() + 1,
            ),
            E::BadPass => Self::Forbidden(
                Problem::new(StatusCode::FORBIDDEN, "queue-pass-refused", err.to_string())
                    .into_body(),
            ),
            E::SoldOut(_) => Self::conflict_of("sold-out", err.to_string()),
            E::TooManyPlaces { .. } => Self::too_many_of("place-limit", err.to_string(), 60),
            E::BadCode(reason) => Self::unprocessable(
                err.to_string(),
                vec![FieldError::new("code", reason.to_string())],
            ),
            E::OtherShowtime { .. } => Self::unprocessable(
                err.to_string(),
                vec![FieldError::new(
                    "code",
                    "a ticket for another showtime; send it to that showtime's door",
                )],
            ),
        }
    }
}

impl From<marquee_sharding::Error> for ApiError {
    fn from(err: marquee_sharding::Error) -> Self {
        // The shard's name and address stay in the log: clients only need to
        // know that retrying is the right move.
        tracing::warn!(error = %err, "shard unavailable");
        Self::unavailable("part of the catalogue is temporarily unavailable; retry shortly")
    }
}

impl From<marquee_search::Error> for ApiError {
    fn from(err: marquee_search::Error) -> Self {
        tracing::error!(error = %err, "search failure");
        Self::unavailable("search is temporarily unavailable; retry shortly")
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        tracing::error!(error = %err, "background task failed");
        Self::internal()
    }
}

/// A body that failed to parse, carried through `poem::Error` so that the
/// renderer can list the offending fields.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct BodyRejection {
    pub status: StatusCode,
    pub detail: String,
    pub fields: Vec<FieldError>,
}

/// Renders any `poem::Error` as problem+json. Responses that already are
/// problems (returned by handlers as [`ApiError`]) pass through untouched.
pub fn render(err: poem::Error, allow: Option<&str>) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let mut problem = match err.downcast_ref::<BodyRejection>() {
        Some(rejection) => {
            let mut problem = Problem::new(
                rejection.status,
                slug(rejection.status),
                rejection.detail.clone(),
            );
            if !rejection.fields.is_empty() {
                problem.errors = Some(rejection.fields.clone());
            }
            problem
        }
        None => Problem::new(status, slug(status), describe(&err, status)),
    };
    if status.is_server_error() {
        tracing::error!(error = %err, status = status.as_u16(), "request failed");
        problem.detail =
            Some("an unexpected error occurred; quote the request id when reporting it".to_owned());
    }
    let mut response = problem_response(problem);
    if let (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) = (status, allow) {
        if let Ok(value) = HeaderValue::from_str(allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}

pub fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .content_type(CONTENT_TYPE)
        .body(problem.to_json_string())
}

fn slug(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation",
        StatusCode::TOO_MANY_REQUESTS => "rate-limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "http-error",
    }
}

/// A detail line for errors raised by the framework, whose own messages are
/// terse ("not found") or name internal types.
fn describe(err: &poem::Error, status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no resource exists at this path".to_owned(),
        StatusCode::UNAUTHORIZED => {
            "this route needs an `Authorization: Bearer <token>` header with a valid token"
                .to_owned()
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            "this path does not accept this method; see the Allow header".to_owned()
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this service accepts".to_owned()
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "request bodies must be application/json".to_owned(),
        _ => err.to_string(),
    }
}
