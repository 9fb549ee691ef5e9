//! `PATCH /me` (the name one goes by) and `POST /me/password` (a new password, given the current
//! one): what every signed-in user may change about itself, and nobody else's.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::{patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{session_for, SessionUser};
use super::json::ApiJson;
use super::problem::{ApiError, FieldError};
use super::AppState;
use crate::auth::guard::Standing;
use crate::auth::password::{self, Password};
use crate::auth::CurrentUser;
use crate::commands::CommandContext;
use crate::onboarding::account;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", patch(update))
        .route("/me/password", post(change_password))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    /// The name you go by (empty: none).
    pub name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// A person's own account, never through an API key (a partner's system acts as its admin, but
/// is not that person).
fn person(user: &CurrentUser) -> Result<(), ApiError> {
    match user.api_key {
        Some(_) => Err(ApiError::Forbidden("an API key cannot change a person's account".into())),
        None => Ok(()),
    }
}

/// Change the name you go by.
#[utoipa::path(patch, path = "/me", tag = "auth", request_body = AccountChange, security(("bearer" = [])), responses(
    (status = 200, body = SessionUser),
    (status = 403, description = "an API key, or a disabled account", body = super::problem::Problem),
))]
pub async fn update(
    State(portal): State<AppState>,
    user: CurrentUser,
    ApiJson(request): ApiJson<AccountChange>,
) -> Result<Json<SessionUser>, ApiError> {
    person(&user)?;
    let mut errors = vec![];
    let name = super::fields::person_name("name", request.name, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let context = CommandContext::new(user.actor());
    account::rename(&portal, user.id, name, &context).await?;
    let row = Standing::of(&portal.pool, user.id.as_uuid()).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(SessionUser {
        id: user.id.as_uuid(),
        partner_id: row.partner_id,
        email: row.email,
        name: row.name,
        role: row.role,
    }))
}

/// Choose a new password, giving the current one. Every session of the account ends; the answer
/// is a new one for the caller.
#[utoipa::path(post, path = "/me/password", tag = "auth", request_body = PasswordChange, security(("bearer" = [])), responses(
    (status = 200, body = super::auth::Session),
    (status = 403, description = "an API key, or a disabled account", body = super::problem::Problem),
    (status = 503, description = "too many password checks at once; retry after `Retry-After`", body = super::problem::Problem),
))]
pub async fn change_password(
    State(portal): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    user: CurrentUser,
    ApiJson(request): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    person(&user)?;
    if request.current_password.chars().count() > password::MAX_LENGTH {
        return Err(ApiError::invalid("currentPassword", "is not your current password"));
    }
    let new = Password::parse(request.new_password)
        .map_err(|why| ApiError::Invalid(vec![FieldError::new("newPassword", why)]))?;
    // Guessed like a login: limited the same way.
    portal.auth_limits.attempt(client.ip())?;
    portal.auth_limits.may_try(client.ip(), &user.email)?;
    if !account::is_current_password(&portal, user.id, request.current_password).await? {
        portal.auth_limits.failed(client.ip(), &user.email);
        return Err(ApiError::invalid("currentPassword", "is not your current password"));
    }
    let context = CommandContext::new(user.actor());
    account::change_password(&portal, user.id, new, &context).await?;
    session_for(&portal, user.id, None).await.map(super::sessions::answer)
}
