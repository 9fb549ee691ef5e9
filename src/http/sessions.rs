//! `POST /auth/refresh` and `POST /auth/logout`: the refresh credential on the wire. Browsers
//! carry it as the cookie `soho_refresh` (`HttpOnly`, so no script reads it; `SameSite=Strict`
//! and scoped to `/auth`, so no other site and no other route gets it); other clients send
//! `{"refreshToken"}` and get the next one back in the body (contract 3).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::auth::{session_for, Session};
use super::problem::ApiError;
use super::AppState;
use crate::auth::refresh::{self, RefreshError};

const COOKIE: &str = "soho_refresh";

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    /// For clients without cookies; the browser's cookie is used when this is absent.
    pub refresh_token: Option<String>,
}

/// A session as an answer: the body, and the refresh token again as the browser's cookie.
pub(super) fn answer(session: Session) -> Response {
    let cookie = format!(
        "{COOKIE}={}; Path=/auth; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        session.refresh_token,
        refresh::LIFETIME.num_seconds()
    );
    let mut response = Json(session).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Trade a refresh credential for a new access token (and the next refresh credential).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body(content = Option<RefreshRequest>, description = "empty for the browser, which sends its cookie"), responses(
    (status = 200, body = Session),
    (status = 401, description = "no refresh credential, or one that was used, revoked, expired, or whose user may no longer act: log in again", body = super::problem::Problem),
    (status = 422, body = super::problem::Problem),
))]
pub async fn refresh(
    State(portal): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let token = presented(&headers, &body)?
        .ok_or_else(|| ApiError::Unauthorized("no session to refresh; log in".into()))?;
    let (user, family) =
        refresh::use_up(&portal.pool, &token).await.map_err(|error| match error {
            RefreshError::Ended => ApiError::Unauthorized(error.to_string()),
            RefreshError::Store(error) => ApiError::internal(error),
        })?;
    match session_for(&portal, user, Some(family)).await {
        Ok(session) => Ok(answer(session)),
        // Disabled, or its partner suspended: the session ends here, for good.
        Err(ApiError::Forbidden(why)) | Err(ApiError::Unauthorized(why)) => {
            refresh::revoke_family(&portal.pool, &token).await.map_err(ApiError::internal)?;
            Err(ApiError::Unauthorized(why))
        }
        Err(error) => Err(error),
    }
}

/// End the session: its refresh credential (and every one issued from it) stops working.
/// Access tokens already issued run out on their own (15 minutes at most).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body(content = Option<RefreshRequest>, description = "empty for the browser, which sends its cookie"), responses(
    (status = 204, description = "logged out (also when there was no session)"),
    (status = 422, body = super::problem::Problem),
))]
pub async fn logout(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(token) = presented(&headers, &body)? {
        refresh::revoke_family(&pool, &token).await.map_err(ApiError::internal)?;
    }
    let clear = format!("{COOKIE}=; Path=/auth; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(clear) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(response)
}

/// The refresh token the client presents: in the body, else in its cookie.
fn presented(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, ApiError> {
    let request: RefreshRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshRequest::default()
    } else {
        super::json::parse(body)?
    };
    let token = request.refresh_token.or_else(|| cookie(headers));
    // Tokens are `rt_` and 43 base64url characters: anything else is no token of ours, and is
    // not looked up.
    Ok(token.filter(|t| {
        t.len() <= 64
            && t.starts_with("rt_")
            && t[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }))
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string))
}
