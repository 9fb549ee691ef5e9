//! Text PostgreSQL cannot store: a NUL character. In a query parameter or the path it is refused
//! here, for every route, as a 422 naming the parameter, before any handler or the database sees
//! it (contract 3; the database would refuse it with an error that reads as our fault, a 500).
//! JSON bodies are checked field by field where they are parsed into commands (`http::fields`),
//! which names every field at fault at once.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::ApiError;

const REASON: &str = "must not contain a NUL character";

/// Refuses a request whose path or query parameters carry a NUL character.
pub async fn refuse_in_url(request: Request, next: Next) -> Response {
    let uri = request.uri();
    if uri.path().to_ascii_lowercase().contains("%00") {
        return ApiError::invalid("path", REASON).into_response();
    }
    if let Some(query) = uri.query() {
        let nul = form_urlencoded::parse(query.as_bytes())
            .find(|(name, value)| name.contains('\0') || value.contains('\0'));
        if let Some((name, _)) = nul {
            return ApiError::invalid(&name.replace('\0', "\u{fffd}"), REASON).into_response();
        }
    }
    next.run(request).await
}
