//! The API's one error type and its wire form, RFC 9457 problem+json.
//!
//! Policy: a client's mistake is answered with what was wrong and, where a field is to blame,
//! which field (400 for a body that is not JSON of the right shape, 422 for a value that breaks a
//! rule). Anything else is ours: logged with its cause under the request's span, and answered
//! with a plain 500 whose detail names nothing internal (no SQL, no upstream body, no stack).
//! Single resources outside the caller's scope are 404, never 403, so ids cannot be probed.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::fields::FieldError;

/// The problem+json body (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is malformed: {detail}")]
    Malformed { detail: String, errors: Vec<FieldError> },
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests")]
    TooManyRequests { retry_after_seconds: u64 },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Busy for a moment (a bounded queue is full): retry after the given seconds.
    #[error("the server is busy; retry shortly")]
    Overloaded { retry_after_seconds: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &str, message: &str) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Malformed { .. } => {
                (StatusCode::BAD_REQUEST, "malformed-request", "Malformed request")
            }
            Self::Invalid(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "Validation failed")
            }
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Gone(_) => (StatusCode::GONE, "gone", "Gone"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
            }
            Self::TooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large")
            }
            Self::Unavailable(_) | Self::Overloaded { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
            }
            Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "Internal server error")
            }
        }
    }
}

impl From<crate::fields::Invalid> for ApiError {
    fn from(invalid: crate::fields::Invalid) -> Self {
        Self::Invalid(invalid.0)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.into())
    }
}

impl From<crate::auth::rate_limit::RateLimited> for ApiError {
    fn from(limited: crate::auth::rate_limit::RateLimited) -> Self {
        Self::TooManyRequests { retry_after_seconds: limited.retry_after_seconds }
    }
}

impl From<crate::leads::writer::WriteError> for ApiError {
    fn from(error: crate::leads::writer::WriteError) -> Self {
        use crate::leads::writer::WriteError;
        match error {
            WriteError::Refused(soho_aggregates::LeadError::NotFound) => Self::NotFound,
            WriteError::Refused(refused) => Self::Conflict(refused.to_string()),
            WriteError::Taken(rule) => Self::Conflict(format!("{rule} is already taken")),
            WriteError::Busy => Self::Overloaded { retry_after_seconds: 1 },
            WriteError::Store(why) => Self::Internal(anyhow::anyhow!(why)),
        }
    }
}

impl From<crate::onboarding::OnboardingError> for ApiError {
    fn from(error: crate::onboarding::OnboardingError) -> Self {
        use crate::onboarding::OnboardingError;
        match error {
            OnboardingError::EmailTaken => ApiError::Conflict(error.to_string()),
            OnboardingError::NotFound => ApiError::NotFound,
            OnboardingError::Refused(why) => ApiError::Conflict(why),
            OnboardingError::InvalidToken => ApiError::invalid("token", &error.to_string()),
            OnboardingError::Expired => ApiError::Gone(error.to_string()),
            OnboardingError::Used => ApiError::Conflict(error.to_string()),
            OnboardingError::Disabled => ApiError::Forbidden(error.to_string()),
            OnboardingError::Conflict => ApiError::Conflict(error.to_string()),
            OnboardingError::InvalidResetLink => ApiError::invalid("token", &error.to_string()),
            OnboardingError::ResetLinkExpired => ApiError::Gone(error.to_string()),
            OnboardingError::Busy(busy) => busy.into(),
            OnboardingError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(error: crate::audit::AuditError) -> Self {
        use crate::audit::AuditError;
        match error {
            AuditError::NotSealed => Self::Overloaded { retry_after_seconds: 1 },
            AuditError::Database(error) => error.into(),
            AuditError::Replay(error) => Self::Internal(error),
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(error: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match error {
            AuthError::Unauthorized(why) => Self::Unauthorized(why.into()),
            AuthError::RateLimited(limited) => limited.into(),
            AuthError::Internal(error) => Self::Internal(error),
        }
    }
}

impl From<crate::auth::password::Busy> for ApiError {
    fn from(_: crate::auth::password::Busy) -> Self {
        Self::Overloaded { retry_after_seconds: 1 }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let (detail, errors) = match &self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                ("An internal error occurred; it has been logged.".to_string(), vec![])
            }
            Self::Malformed { detail, errors } => (detail.clone(), errors.clone()),
            Self::Invalid(errors) => {
                ("One or more fields are invalid.".to_string(), errors.clone())
            }
            Self::TooManyRequests { retry_after_seconds } => {
                (format!("Too many requests; retry after {retry_after_seconds} s."), vec![])
            }
            Self::NotFound => ("The resource does not exist.".to_string(), vec![]),
            other => (other.to_string(), vec![]),
        };
        let body = Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut response = (status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Self::TooManyRequests { retry_after_seconds }
        | Self::Overloaded { retry_after_seconds } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
        }
        response
    }
}

/// A client error that a layer answered with no body (axum's 405 for a method a path does not
/// take, say) becomes problem+json like every other, its headers (`Allow`) kept.
pub async fn bare_client_errors(response: Response) -> Response {
    let status = response.status();
    if !status.is_client_error() || response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let title = status.canonical_reason().unwrap_or("Client error");
    let slug = title.to_ascii_lowercase().replace(' ', "-");
    let body = Problem {
        kind: format!("/problems/{slug}"),
        title: title.to_string(),
        status: status.as_u16(),
        detail: match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                "This path does not take this method; see Allow.".into()
            }
            _ => title.to_string(),
        },
        errors: vec![],
    };
    let (mut parts, _) = response.into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(json))
}
