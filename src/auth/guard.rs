//! Who is calling, as extractors: a handler states the role it needs in its signature.
//!
//! The token only says who the caller claims to be; the user and its partner are read again
//! (through a cache of at most a second, see [`Standings`]), so disabling a user or suspending
//! a partner takes effect at once on the server that made the change, and within a second on
//! the others. A wrong role
//! for a route is 403; a resource outside the caller's scope is 404 (checked by the handler with
//! `in_scope`), so ids cannot be probed.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use soho_aggregates::{Actor, PartnerId, Role, UserId};

use super::{api_keys, session};
use crate::http::problem::ApiError;
use crate::http::AppState;

/// A logged-in user whose account and partner are in good standing.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: UserId,
    pub partner_id: Option<PartnerId>,
    pub role: Role,
    pub email: String,
    /// Set when the caller is a partner's system with an API key: it acts as the partner's
    /// admin (`id` is the admin's), and its commands are recorded as the key's.
    pub api_key: Option<uuid::Uuid>,
}

impl CurrentUser {
    /// Who the log records as having done what this caller asks.
    pub fn actor(&self) -> Actor {
        match self.api_key {
            Some(key) => Actor::api_key(key),
            None => Actor::user(self.id),
        }
    }

    /// Whether this user belongs to `partner` (auditors belong to none).
    pub fn in_partner(&self, partner: PartnerId) -> bool {
        self.partner_id == Some(partner)
    }
}

/// A user's account and its partner as they are now: what decides whether it may act.
#[derive(sqlx::FromRow)]
pub struct Standing {
    pub partner_id: Option<uuid::Uuid>,
    pub role: String,
    pub email: String,
    pub name: Option<String>,
    pub status: String,
    pub partner_status: Option<String>,
}

impl Standing {
    pub async fn of(pool: &sqlx::PgPool, user: uuid::Uuid) -> Result<Option<Self>, sqlx::Error> {
        sqlx::query_as(
            "SELECT u.partner_id, u.role, u.email, u.name, u.status, p.status AS partner_status \
             FROM users u LEFT JOIN partners p ON p.partner_id = u.partner_id WHERE u.user_id = $1",
        )
        .bind(user)
        .fetch_optional(pool)
        .await
    }

    /// Why the user may not act now, if it may not: disabled, or its partner not approved.
    pub fn refusal(&self) -> Option<&'static str> {
        if self.status == "disabled" {
            Some("this account has been disabled; ask your partner's admin")
        } else if self.role != "auditor" && self.partner_status.as_deref() != Some("approved") {
            Some("this partner's access is suspended")
        } else {
            None
        }
    }
}

/// Standings read in the last second, per server. A request reads its caller's standing, and
/// under load that was one query per request; a second is how long another server may go on
/// accepting a user that was just disabled, and the server that disables it forgets it at once.
#[derive(Default)]
pub struct Standings {
    entries: std::sync::Mutex<
        std::collections::HashMap<uuid::Uuid, (std::time::Instant, std::sync::Arc<Standing>)>,
    >,
}

/// How long a standing is taken as read.
const STANDING_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Standings {
    fn entries(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<uuid::Uuid, (std::time::Instant, std::sync::Arc<Standing>)>,
    > {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `user`'s standing, read at most a second ago.
    pub async fn of(
        &self,
        pool: &sqlx::PgPool,
        user: uuid::Uuid,
    ) -> Result<Option<std::sync::Arc<Standing>>, sqlx::Error> {
        if let Some((read, standing)) = self.entries().get(&user) {
            if read.elapsed() < STANDING_FOR {
                return Ok(Some(std::sync::Arc::clone(standing)));
            }
        }
        let Some(standing) = Standing::of(pool, user).await?.map(std::sync::Arc::new) else {
            return Ok(None);
        };
        let mut entries = self.entries();
        // Bounded: the entries of users not seen for a second go first.
        if entries.len() > 10_000 {
            entries.retain(|_, (read, _)| read.elapsed() < STANDING_FOR);
        }
        entries.insert(user, (std::time::Instant::now(), std::sync::Arc::clone(&standing)));
        Ok(Some(standing))
    }

    /// Forgets a user whose account this server just changed.
    pub fn forget_user(&self, user: uuid::Uuid) {
        self.entries().remove(&user);
    }

    /// Forgets every user of a partner this server just changed.
    pub fn forget_partner(&self, partner: uuid::Uuid) {
        self.entries().retain(|_, (_, standing)| standing.partner_id != Some(partner));
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

impl CurrentUser {
    /// The user a token stands for, if the token is ours, live, and the user may act now.
    pub async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = session::verify(&state.keys, token).ok_or_else(|| {
            ApiError::Unauthorized("the access token is invalid or has expired".into())
        })?;
        let standing = state.standings.of(&state.pool, claims.sub).await?.ok_or_else(|| {
            ApiError::Unauthorized("the access token is invalid or has expired".into())
        })?;
        if let Some(why) = standing.refusal() {
            return Err(ApiError::Unauthorized(why.into()));
        }
        // An unknown stored role is our error, never a default: the auditor's role reads every
        // lead, so guessing would fail open.
        let role = match standing.role.as_str() {
            "admin" => Role::Admin,
            "sub" => Role::Sub,
            "auditor" => Role::Auditor,
            other => {
                return Err(ApiError::internal(anyhow::anyhow!("unknown role {other:?} stored")))
            }
        };
        Ok(Self {
            id: UserId(claims.sub),
            partner_id: standing.partner_id.map(PartnerId),
            role,
            email: standing.email.clone(),
            api_key: None,
        })
    }

    /// The partner an API key stands for, if the key is live, its partner approved, and the
    /// route one a key may use.
    async fn from_key(parts: &Parts, state: &AppState, token: &str) -> Result<Self, ApiError> {
        let holder = api_keys::holder(&state.pool, token).await?.ok_or_else(|| {
            ApiError::Unauthorized("the API key is not valid, or has been revoked".into())
        })?;
        state.api_key_limits.check(holder.key)?;
        let route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str);
        let allowed = route.is_some_and(|route| {
            api_keys::ALLOWED.iter().any(|(m, r)| *m == parts.method.as_str() && *r == route)
        });
        if !allowed {
            return Err(ApiError::Forbidden(
                "API keys may use the lead routes and /dashboard/stats only".into(),
            ));
        }
        Ok(Self {
            id: crate::onboarding::partners::admin_id(holder.partner),
            partner_id: Some(holder.partner),
            role: Role::Admin,
            email: String::new(),
            api_key: Some(holder.key),
        })
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".into())
        })?;
        if token.starts_with(api_keys::KEY_PREFIX) {
            return Self::from_key(parts, state, token).await;
        }
        Self::from_token(state, token).await
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
