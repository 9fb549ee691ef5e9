//! `GET`/`PATCH /me` (the name one goes by, lead notifications) and `POST /me/password` (a new
//! password, given the current one): what every signed-in user may change about itself, and
//! nobody else's; and `POST /notifications/unsubscribe`, the no-login link in every notification.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::session_for;
use super::json::ApiJson;
use super::problem::{ApiError, FieldError};
use super::AppState;
use crate::auth::password::{self, Password};
use crate::auth::standing::Standing;
use crate::auth::CurrentUser;
use crate::commands::CommandContext;
use crate::notifications::{self, Mode};
use crate::onboarding::account;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(account).patch(update))
        .route("/notifications/unsubscribe", post(unsubscribe))
        .route("/me/password", post(change_password))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
}

/// One's own account, as its owner sees it.
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: uuid::Uuid,
    pub partner_id: Option<uuid::Uuid>,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    /// Lead notifications by email: `instant` (the default) or `off`.
    pub notifications: Mode,
}

/// What to change; a field left out stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    /// The name you go by (`null` or empty: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    pub notifications: Option<Mode>,
}

/// A field that is present, even as `null` (`Some(None)`), told from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribe {
    pub user: uuid::Uuid,
    /// From the link in a notification email.
    pub token: String,
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

async fn account_of(
    portal: &crate::portal::Portal,
    user: &CurrentUser,
) -> Result<Account, ApiError> {
    let row = Standing::of(&portal.pool, user.id).await?.ok_or(ApiError::NotFound)?;
    Ok(Account {
        id: user.id.as_uuid(),
        partner_id: row.partner_id,
        email: row.email,
        name: row.name,
        role: row.role,
        notifications: notifications::mode(&portal.pool, user.id).await?,
    })
}

/// Your own account: name, email, role, notification setting.
#[utoipa::path(get, path = "/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = Account),
    (status = 403, description = "an API key (it is not a person)", body = super::problem::Problem),
))]
pub async fn account(
    State(portal): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Account>, ApiError> {
    person(&user)?;
    Ok(Json(account_of(&portal, &user).await?))
}

/// Change the name you go by, or how you hear about your leads.
#[utoipa::path(patch, path = "/me", tag = "auth", request_body = AccountChange, security(("bearer" = [])), responses(
    (status = 200, body = Account),
    (status = 403, description = "an API key, or a disabled account", body = super::problem::Problem),
))]
pub async fn update(
    State(portal): State<AppState>,
    user: CurrentUser,
    ApiJson(request): ApiJson<AccountChange>,
) -> Result<Json<Account>, ApiError> {
    person(&user)?;
    if let Some(name) = request.name {
        let mut errors = vec![];
        let name = crate::fields::person_name("name", name, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        let context = CommandContext::new(user.actor());
        account::rename(&portal, user.id, name, &context).await?;
    }
    if let Some(mode) = request.notifications {
        notifications::set_mode(&portal.pool, user.id, mode).await?;
    }
    Ok(Json(account_of(&portal, &user).await?))
}

/// Turn a user's notifications off from the link in a notification email (no login: the link's
/// token is made for that user with the portal's key, and does nothing else).
#[utoipa::path(post, path = "/notifications/unsubscribe", tag = "auth", request_body = Unsubscribe, responses(
    (status = 204, description = "no more notification emails"),
    (status = 422, description = "not a link the portal made", body = super::problem::Problem),
    (status = 429, description = "too many attempts", body = super::problem::Problem),
))]
pub async fn unsubscribe(
    State(portal): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<Unsubscribe>,
) -> Result<axum::http::StatusCode, ApiError> {
    portal.auth_limits.attempt(client.ip())?;
    if !portal.keys.is_unsubscribe_token(soho_aggregates::UserId(request.user), &request.token) {
        return Err(ApiError::invalid("token", "is not an unsubscribe link's token"));
    }
    notifications::set_mode(&portal.pool, soho_aggregates::UserId(request.user), Mode::Off).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
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
