//! `POST /auth/register` (accept an invitation), `POST /auth/login`, and the session's refresh
//! credential: `POST /auth/refresh` and `POST /auth/logout` (see `auth::refresh`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use soho_aggregates::{Actor, UserId};
use utoipa::ToSchema;

use super::json::ApiJson;
use super::problem::{ApiError, FieldError};
use super::AppState;
use crate::auth::password::{self, Password};
use crate::auth::standing::Standing;
use crate::auth::{refresh, session};
use crate::commands::CommandContext;
use crate::onboarding::{invitations, passwords};

/// Auth bodies are a token, an email, a name and a password: a few hundred bytes. Anything far
/// larger is refused before it is read whole.
const BODY_LIMIT: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/invitation", post(invitation))
        .route("/auth/login", post(login))
        .route("/auth/password-reset", post(request_password_reset))
        .route("/auth/password-reset/confirm", post(reset_password))
        .route("/auth/refresh", post(super::sessions::refresh))
        .route("/auth/logout", post(super::sessions::logout))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The token from the invitation link.
    pub token: String,
    pub password: String,
    pub name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionUser {
    pub id: uuid::Uuid,
    pub partner_id: Option<uuid::Uuid>,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub user: SessionUser,
    /// The refresh credential, for clients without cookies (the browser gets it as the
    /// `HttpOnly` cookie `soho_refresh` as well): single-use, `POST /auth/refresh` trades it.
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationLookup {
    /// The token from the invitation link (in the body: a query string lands in access logs).
    pub token: String,
}

/// What an invitation link is for: the email, the company, who invited, the prefilled name.
/// Refused as registering with it would be.
#[utoipa::path(post, path = "/auth/invitation", tag = "auth", request_body = InvitationLookup, responses(
    (status = 200, body = invitations::InvitationView),
    (status = 403, description = "the invited account was disabled by its admin", body = super::problem::Problem),
    (status = 409, description = "the invitation was already used", body = super::problem::Problem),
    (status = 410, description = "the invitation has expired", body = super::problem::Problem),
    (status = 413, description = "the body is larger than any lookup", body = super::problem::Problem),
    (status = 422, description = "an unknown token", body = super::problem::Problem),
    (status = 429, description = "too many attempts", body = super::problem::Problem),
))]
pub async fn invitation(
    State(portal): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<InvitationLookup>,
) -> Result<axum::Json<invitations::InvitationView>, ApiError> {
    // Not counted as a login attempt (no password hash is made, and the token's 256 random bits
    // cannot be guessed), but limited per address as the public form is.
    portal.public_form_limits.check(crate::auth::rate_limit::client_key(client.ip()))?;
    let token = link_token(&request.token)
        .ok_or_else(|| ApiError::invalid("token", "is not an invitation link's token"))?;
    Ok(axum::Json(invitations::describe(&portal, token).await?))
}

/// Accept an invitation: set the password (and name), and get a session.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 200, body = Session),
    (status = 403, description = "the invited account was disabled by its admin (the invitation stays unused)", body = super::problem::Problem),
    (status = 409, description = "the invitation was already used", body = super::problem::Problem),
    (status = 410, description = "the invitation has expired", body = super::problem::Problem),
    (status = 413, description = "the body is larger than any registration", body = super::problem::Problem),
    (status = 422, description = "invalid token, password or name", body = super::problem::Problem),
    (status = 429, description = "too many attempts", body = super::problem::Problem),
    (status = 503, description = "too many password checks at once; retry after `Retry-After`", body = super::problem::Problem),
))]
pub async fn register(
    State(portal): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    portal.auth_limits.attempt(client.ip())?;
    let mut errors = vec![];
    let name = crate::fields::person_name("name", request.name, &mut errors);
    let password = Password::parse(request.password)
        .map_err(|why| errors.push(FieldError::new("password", why)))
        .ok();
    if request.token.trim().is_empty() {
        errors.push(FieldError::new("token", "is required"));
    }
    let (Some(password), true) = (password, errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let context = CommandContext::new(Actor::public());
    let user =
        invitations::register(&portal, request.token.trim(), password, name, &context).await?;
    session_for(&portal, user, None).await.map(super::sessions::answer)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmation {
    /// The token from the reset link.
    pub token: String,
    pub password: String,
}

/// "Forgot your password?": emails a reset link (valid one hour, once) if a registered, enabled
/// account uses this email. The answer is the same, and as quick, whether or not one does.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", request_body = PasswordResetRequest, responses(
    (status = 202, description = "if an account uses this email, a reset link is on its way"),
    (status = 413, description = "the body is larger than any request", body = super::problem::Problem),
    (status = 422, description = "an email no account can have", body = super::problem::Problem),
    (status = 429, description = "too many requests from this address, or for this email", body = super::problem::Problem),
))]
pub async fn request_password_reset(
    State(portal): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<PasswordResetRequest>,
) -> Result<axum::http::StatusCode, ApiError> {
    let email = login_email(&request.email)?;
    if !email.contains('@') {
        return Err(ApiError::invalid("email", "must be an email address"));
    }
    portal.auth_limits.attempt(client.ip())?;
    portal.auth_limits.reset_asked(email)?;
    // Looked up and recorded after the answer: its timing says nothing about who has an account.
    let (email, portal) = (email.to_string(), portal.clone());
    tokio::spawn(async move {
        let context = CommandContext::new(Actor::public());
        if let Err(error) = passwords::request_reset(&portal, &email, &context).await {
            tracing::error!(%error, "a password reset link could not be made");
        }
    });
    Ok(axum::http::StatusCode::ACCEPTED)
}

/// Set a new password with a reset link: every other session of the account ends. Log in after.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", request_body = PasswordResetConfirmation, responses(
    (status = 204, description = "the password is changed"),
    (status = 403, description = "the account has been disabled", body = super::problem::Problem),
    (status = 410, description = "the link has expired", body = super::problem::Problem),
    (status = 413, description = "the body is larger than any request", body = super::problem::Problem),
    (status = 422, description = "an unknown or used link, or a password that does not qualify", body = super::problem::Problem),
    (status = 429, description = "too many attempts", body = super::problem::Problem),
    (status = 503, description = "too many password checks at once; retry after `Retry-After`", body = super::problem::Problem),
))]
pub async fn reset_password(
    State(portal): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<PasswordResetConfirmation>,
) -> Result<axum::http::StatusCode, ApiError> {
    portal.auth_limits.attempt(client.ip())?;
    let mut errors = vec![];
    let password = Password::parse(request.password)
        .map_err(|why| errors.push(FieldError::new("password", why)))
        .ok();
    let token = link_token(&request.token);
    if token.is_none() {
        errors.push(FieldError::new("token", "is not a reset link's token"));
    }
    let (Some(password), Some(token), true) = (password, token, errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let context = CommandContext::new(Actor::public());
    passwords::reset_password(&portal, token, password, &context).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Log in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = Session),
    (status = 401, description = "wrong email or password", body = super::problem::Problem),
    (status = 403, description = "account disabled or partner suspended", body = super::problem::Problem),
    (status = 413, description = "the body is larger than any login", body = super::problem::Problem),
    (status = 422, description = "an email or password no account can have", body = super::problem::Problem),
    (status = 429, description = "too many attempts from this address, or failures for this email", body = super::problem::Problem),
    (status = 503, description = "too many password checks at once; retry after `Retry-After`", body = super::problem::Problem),
))]
pub async fn login(
    State(portal): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    // Bounded before anything keeps or looks up what the client sent.
    let email = login_email(&request.email)?;
    if request.password.chars().count() > password::MAX_LENGTH {
        return Err(ApiError::invalid("password", "must be at most 256 characters long"));
    }
    portal.auth_limits.attempt(client.ip())?;
    portal.auth_limits.may_try(client.ip(), email)?;
    let (user, hash) = password::stored(&portal.pool, email).await?;
    match (user, password::verify(request.password, hash).await?) {
        (Some(user), true) => {
            portal.auth_limits.succeeded(client.ip(), email);
            session_for(&portal, user, None).await.map(super::sessions::answer)
        }
        _ => {
            portal.auth_limits.failed(client.ip(), email);
            Err(ApiError::Unauthorized("wrong email or password".into()))
        }
    }
}

/// The login email, trimmed; one that no account can have (too long, control characters) is a
/// 422 naming `email`, so the database never sees it.
/// The token of an emailed link, if it can be one: a line of at most 200 characters (the
/// portal's are 43), nothing a database cannot store.
fn link_token(raw: &str) -> Option<&str> {
    let token = raw.trim();
    let fits = !token.is_empty() && token.len() <= 200 && !token.chars().any(char::is_control);
    fits.then_some(token)
}

fn login_email(email: &str) -> Result<&str, ApiError> {
    let email = email.trim();
    if email.chars().count() > 254 {
        return Err(ApiError::invalid("email", "must be at most 254 characters"));
    }
    if email.chars().any(char::is_control) {
        return Err(ApiError::invalid("email", "must not contain control characters"));
    }
    Ok(email)
}

/// A session for a user who may act now (registered, enabled, partner approved): an access
/// token, and a refresh token that starts a new family or continues `family`.
pub(super) async fn session_for(
    portal: &crate::portal::Portal,
    user: UserId,
    family: Option<refresh::Family>,
) -> Result<Session, ApiError> {
    let row = Standing::of(&portal.pool, user)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("wrong email or password".into()))?;
    if let Some(why) = row.refusal() {
        return Err(ApiError::Forbidden(why.into()));
    }
    let ttl = portal.settings.jwt_ttl_seconds;
    let access_token = session::issue(&portal.keys, user, &row.role, ttl)?;
    let refresh_token = refresh::issue(&portal.pool, user, family).await?;
    if family.is_none() {
        // A new session (login, registration), not a refresh: a sign-in.
        crate::auth::sign_ins::record(&portal.pool, user).await?;
    }
    Ok(Session {
        refresh_token,
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        user: SessionUser {
            id: user.as_uuid(),
            partner_id: row.partner_id,
            email: row.email,
            name: row.name,
            role: row.role,
        },
    })
}
