//! Who is calling, as extractors: a handler states the role it needs in its signature. The
//! decision itself is `auth::standing`'s; here a bearer token or API key is taken from the
//! request, an API key is held to the routes it may use, and a refusal becomes a problem. A
//! wrong role for a route is 403; a resource outside the caller's scope is 404 (checked by the
//! handler), so ids cannot be probed.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use soho_aggregates::{PartnerId, Role};

use super::problem::ApiError;
use super::AppState;
use crate::auth::{api_keys, CurrentUser};

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Whether an API key may use the route `parts` is for.
fn key_may_use(parts: &Parts) -> bool {
    let route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str);
    route.is_some_and(|route| {
        api_keys::ALLOWED.iter().any(|(m, r)| *m == parts.method.as_str() && *r == route)
    })
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".into())
        })?;
        if !token.starts_with(api_keys::KEY_PREFIX) {
            return Ok(Self::from_token(state, token).await?);
        }
        let caller = Self::from_key(state, token).await?;
        if !key_may_use(parts) {
            return Err(ApiError::Forbidden(
                "API keys may use the lead routes and /dashboard/stats only".into(),
            ));
        }
        Ok(caller)
    }
}

/// A partner's admin or sub-account (not an auditor).
pub struct PartnerMember(pub CurrentUser, pub PartnerId);

impl FromRequestParts<AppState> for PartnerMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        match (user.role, user.partner_id) {
            (Role::Admin | Role::Sub, Some(partner)) => Ok(Self(user, partner)),
            _ => Err(ApiError::Forbidden("this route is for partners' users".into())),
        }
    }
}

/// A partner's admin.
pub struct PartnerAdmin(pub CurrentUser, pub PartnerId);

impl FromRequestParts<AppState> for PartnerAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        match (user.role, user.partner_id) {
            (Role::Admin, Some(partner)) => Ok(Self(user, partner)),
            _ => Err(ApiError::Forbidden("this route is for a partner's admin".into())),
        }
    }
}

/// An auditor.
pub struct Auditor(pub CurrentUser);

impl FromRequestParts<AppState> for Auditor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.role == Role::Auditor {
            Ok(Self(user))
        } else {
            Err(ApiError::Forbidden("this route is for auditors".into()))
        }
    }
}

/// A caller who may or may not be logged in (the public form): no Authorization header is
/// `None`; a header with a bad token is still refused.
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            CurrentUser::from_request_parts(parts, state).await.map(|u| Self(Some(u)))
        } else {
            Ok(Self(None))
        }
    }
}
