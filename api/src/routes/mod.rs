//! The HTTP API, one module per resource. Handlers reach shared state through
//! `Data<&Arc<AppState>>`, so the spec can be generated without a cluster.

mod accounts;
mod bookings;
mod door;
mod inbox;
mod movies;
mod ops;
mod queue;
mod search;
mod shards;
mod showtimes;
mod subscriptions;
mod theaters;

use poem_openapi::{OpenApiService, Tags};

pub(crate) use bookings::renderer;

use crate::problem::ApiError;

#[derive(Tags)]
enum ApiTags {
    /// Liveness, readiness and metrics.
    Operations,
    /// Movies in the catalogue.
    Movies,
    /// Theaters, their screens and seat layouts.
    Theaters,
    /// Showtimes and live seat maps.
    Showtimes,
    /// Full-text search over the catalogue.
    Search,
    /// Holds, orders, tickets and cancellations.
    Booking,
    /// Admitting tickets at the door, online and offline; door staff.
    Door,
    /// Registration, sign-in, sessions, profile and account data.
    Accounts,
    /// Catalogue, orders, accounts and audit for staff; each route names
    /// the role it needs.
    Admin,
    /// Shard map, node load and placement plans; admins only.
    Shards,
}

pub type Service = OpenApiService<
    (
        ops::OpsApi,
        movies::MoviesApi,
        theaters::TheatersApi,
        showtimes::ShowtimesApi,
        search::SearchApi,
        bookings::BookingsApi,
        door::DoorApi,
        queue::QueueApi,
        accounts::AccountsApi,
        inbox::InboxApi,
        subscriptions::SubscriptionsApi,
        shards::ShardsApi,
        shards::PlacementApi,
    ),
    (),
>;

/// The API and its spec. `server` is the base URL the spec advertises.
pub fn service(server: &str) -> Service {
    OpenApiService::new(
        (
            ops::OpsApi,
            movies::MoviesApi,
            theaters::TheatersApi,
            showtimes::ShowtimesApi,
            search::SearchApi,
            bookings::BookingsApi,
            door::DoorApi,
            queue::QueueApi,
            accounts::AccountsApi,
            inbox::InboxApi,
            subscriptions::SubscriptionsApi,
            shards::ShardsApi,
            shards::PlacementApi,
        ),
        "Marquee",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Movie-ticket booking. Every error is an RFC 9457 problem (application/problem+json); \
         every response carries an X-Request-Id header.",
    )
    .server(server)
}

/// The published spec: poem-openapi's document with two corrections that
/// clients and contract fuzzers rely on. Objects are closed
/// (`additionalProperties: false`), because request bodies reject unknown
/// fields and responses never carry undeclared ones; and calendar dates use
/// the standard `date` format rather than `naive-date`.
pub fn spec(service: &Service) -> String {
    let mut document: serde_json::Value = match serde_json::from_str(&service.spec()) {
        Ok(document) => document,
        Err(err) => unreachable!("poem-openapi always emits valid JSON: {err}"),
    };
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            close_objects(schema);
        }
    }
    // Parameters are described inline under each path.
    if let Some(paths) = document.get_mut("paths") {
        close_objects(paths);
    }
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

fn close_objects(schema: &mut serde_json::Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.get("type").and_then(serde_json::Value::as_str) == Some("object")
        && object.contains_key("properties")
    {
        object
            .entry("additionalProperties")
            .or_insert(serde_json::Value::Bool(false));
    }
    if object.get("format").and_then(serde_json::Value::as_str) == Some("naive-date") {
        object.insert("format".to_owned(), "date".into());
    }
    for value in object.values_mut() {
        match value {
            serde_json::Value::Object(_) => close_objects(value),
            serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
            _ => {}
        }
    }
}

/// The interactive docs page, showing the published spec.
pub fn docs_html(service: &Service, spec: &str) -> String {
    service.swagger_ui_html().replace(&service.spec(), spec)
}

/// An optional field may be left out but not sent as `null`: the schema
/// does not declare it nullable, and a client sending `null` most likely
/// meant something this API would otherwise silently ignore.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A query that parses but cannot be answered as asked, such as a range
/// whose end comes before its start: a 422 naming the parameter, like a
/// body that fails validation.
/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn invalid_parameter(name: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::unprocessable(
        message.clone(),
        vec![crate::problem::FieldError::new(name, message)],
    )
}

pub(crate) fn malformed_cursor() -> ApiError {
    invalid_parameter(
        "cursor",
        "the cursor is malformed; pass next_cursor from a previous page",
    )
}
