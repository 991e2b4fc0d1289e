//! JSON request bodies with precise errors.
//!
//! poem-openapi's own `Json` payload answers every failure with a 400 whose
//! text rarely names the field. [`JsonBody`] declares the same schema in the
//! spec but tells a syntax error (400) from a well-formed body that does not
//! fit (422, naming each offending field), and enforces the body size limit
//! even when the client sends no `Content-Length`.

use poem::http::StatusCode;
use poem::{Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;

use crate::problem::{BodyRejection, FieldError};

/// Domain checks that the JSON schema cannot express.
pub trait Validate {
    fn validate(&self) -> Vec<FieldError>;
}

/// The largest body a route accepts; placed in request data at start-up.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .parse::<mime::Mime>()
            .is_ok_and(|mime| mime.type_() == mime::APPLICATION && mime.subtype() == mime::JSON)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

fn reject(status: StatusCode, detail: impl Into<String>, fields: Vec<FieldError>) -> poem::Error {
    let rejection = BodyRejection {
        status,
        detail: detail.into(),
        fields,
    };
    poem::Error::new(rejection, status)
}

/// serde reports a missing field at its parent's path; the field's own name
/// is what a client needs.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The field a poem-openapi validation message names: its messages read
/// ``failed to parse "T": field `x` verification failed...``.
fn schema_field(message: &str) -> String {
    message
        .split("field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or("body")
        .to_owned()
}

impl<T: ParseFromJSON + DeserializeOwned + Validate + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limit = request
            .data::<BodyLimit>()
            .map_or(64 * 1024, |limit| limit.0);
        let bytes = body.take()?.into_bytes_limit(limit).await.map_err(|err| {
            let status = poem::error::ResponseError::status(&err);
            reject(
                status,
                format!("the request body could not be read: {err}"),
                Vec::new(),
            )
        })?;
        if bytes.is_empty() {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "the request body is empty; send a JSON object",
                Vec::new(),
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| {
            reject(
                StatusCode::BAD_REQUEST,
                format!("the request body is not valid JSON: {err}"),
                Vec::new(),
            )
        })?;
        // serde accepts a struct written as a JSON array of its fields; the
        // schema says object, so only an object is accepted.
        let wants_object =
            matches!(T::schema_ref(), MetaSchemaRef::Reference(_)) || T::schema_ref().is_object();
        if wants_object && !value.is_object() {
            return Err(reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the request body must be a JSON object",
                vec![FieldError::new("body", "must be a JSON object")],
            ));
        }
        let parsed: T = serde_path_to_error::deserialize(value.clone()).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = match (missing_field(&message), path.as_str()) {
                (Some(missing), ".") => missing.to_owned(),
                (Some(missing), parent) => format!("{parent}.{missing}"),
                (None, _) => path,
            };
            reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the request body does not fit the schema: {message}"),
                vec![FieldError::new(field, message)],
            )
        })?;
        let errors = parsed.validate();
        if !errors.is_empty() {
            return Err(reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the request body failed validation",
                errors,
            ));
        }
        // The schema's own constraints (lengths, ranges, patterns), checked
        // by the same code that publishes them, so the two cannot drift.
        // The domain checks above list every field; this catches the rest.
        if let Err(err) = T::parse_from_json(Some(value)) {
            let message = err.into_message();
            return Err(reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the request body failed validation: {message}"),
                vec![FieldError::new(schema_field(&message), message.clone())],
            ));
        }
        Ok(Self(parsed))
    }
}

impl<'a, T: ParseFromJSON + DeserializeOwned + Validate + Send> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(content_type) if <Self as Payload>::check_content_type(content_type) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            Some(content_type) => Err(reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("request bodies must be application/json, not {content_type}"),
                Vec::new(),
            )),
            None => Err(reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request bodies must be application/json; the Content-Type header is missing",
                Vec::new(),
            )),
        }
    }
}
