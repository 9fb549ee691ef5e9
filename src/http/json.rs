//! `ApiJson`: axum's `Json` with errors in our problem+json form, naming the field at fault.
//!
//! A body that is not JSON is 400; JSON of the wrong shape (missing, unknown or mistyped fields)
//! is 422 with the field's path, found with `serde_path_to_error`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use super::problem::{ApiError, FieldError};

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
            });
        if !is_json {
            return Err(malformed(
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge("the request body is too large".into())
            } else {
                malformed(&rejection.body_text())
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body into `T`, with the problem+json errors described above.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                let field = field_of(&path, &message);
                let message = message.split(" at line ").next().unwrap_or(&message).to_string();
                ApiError::Invalid(vec![FieldError::new(field, message)])
            }
            _ => malformed(&format!("the request body is not valid JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| malformed(&format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

fn malformed(detail: &str) -> ApiError {
    ApiError::Malformed { detail: detail.to_string(), errors: vec![] }
}

/// The field a serde error is about: its path, or for a missing field (whose path is the
/// parent) the name serde quotes in backticks.
fn field_of(path: &str, message: &str) -> String {
    let quoted = message.split('`').nth(1);
    match quoted {
        // serde's path for a missing field stops at its parent.
        Some(name) if message.starts_with("missing field") && path == "." => name.to_string(),
        Some(name) if message.starts_with("missing field") => format!("{path}.{name}"),
        Some(name) if path == "." && message.starts_with("unknown field") => name.to_string(),
        _ if path == "." => "body".to_string(),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[expect(dead_code, reason = "only deserialised")]
    struct Body {
        last_name: String,
        age: Option<u8>,
    }

    fn field(bytes: &[u8]) -> (u16, Vec<String>) {
        match parse::<Body>(bytes).unwrap_err() {
            ApiError::Invalid(errors) => (422, errors.into_iter().map(|e| e.field).collect()),
            ApiError::Malformed { .. } => (400, vec![]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_kind_of_mistake_names_its_field() {
        assert_eq!(field(br#"{"age": 3}"#), (422, vec!["lastName".to_string()]));
        assert_eq!(field(br#"{"lastName": "x", "extra": 1}"#), (422, vec!["extra".to_string()]));
        assert_eq!(field(br#"{"lastName": 5}"#), (422, vec!["lastName".to_string()]));
        assert_eq!(field(br#"{"lastName": "x", "age": 300}"#), (422, vec!["age".to_string()]));
        assert_eq!(field(br#"{"lastName": "#), (400, vec![]));
        assert_eq!(field(br#""text""#), (422, vec!["body".to_string()]));
    }
}
