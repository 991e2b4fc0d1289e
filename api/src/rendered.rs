//! Responses served from bytes rendered earlier.
//!
//! A seat map is the page a release-night crowd refreshes: rendering it
//! once and serving the same bytes until it changes is most of the cost of
//! the request saved.

use std::marker::PhantomData;

use bytes::Bytes;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};

/// JSON of a `T`, already serialized; the spec describes it as `T`.
#[derive(Debug, Clone)]
pub struct JsonBytes<T> {
    bytes: Bytes,
    of: PhantomData<fn() -> T>,
}

impl<T> JsonBytes<T> {
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            bytes,
            of: PhantomData,
        }
    }

    pub fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }
}

impl<T: ToJSON> JsonBytes<T> {
    pub fn render(value: &T) -> Self {
        let text = value
            .to_json()
            .map(|json| json.to_string())
            .unwrap_or_else(|| "null".to_owned());
        Self {
            bytes: Bytes::from(text),
            of: PhantomData,
        }
    }
}

impl<T: Type> Payload for JsonBytes<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Send> IntoResponse for JsonBytes<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(self.bytes)
    }
}
