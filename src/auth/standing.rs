//! Who is calling, decided from a token or an API key: the user and its partner are read
//! again (through a cache of at most a second, see [`Standings`]), so disabling a user or
//! suspending a partner takes effect at once on the server that made the change, and within a
//! second on the others. The HTTP extractors (`http::guard`) and the live socket build on it.

use soho_aggregates::{Actor, ApiKeyId, PartnerId, Role, UserId};

use super::api_keys;
use super::rate_limit::RateLimited;
use super::session;
use crate::portal::Portal;

/// Why a caller is not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials, or an account or partner that may not act now: 401.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// An API key used too often.
    #[error("too many requests")]
    RateLimited(#[from] RateLimited),
    /// The database, or a stored value we do not know: ours, never the caller's.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AuthError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.into())
    }
}

const BAD_TOKEN: &str = "the access token is invalid or has expired";

/// A logged-in user whose account and partner are in good standing.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: UserId,
    pub partner_id: Option<PartnerId>,
    pub role: Role,
    pub email: String,
    /// Set when the caller is a partner's system with an API key: it acts as the partner's
    /// admin (`id` is the admin's), and its commands are recorded as the key's.
    pub api_key: Option<ApiKeyId>,
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
    pub async fn of(pool: &sqlx::PgPool, user: UserId) -> Result<Option<Self>, sqlx::Error> {
        sqlx::query_as(
            "SELECT u.partner_id, u.role, u.email, u.name, u.status, p.status AS partner_status \
             FROM users u LEFT JOIN partners p ON p.partner_id = u.partner_id WHERE u.user_id = $1",
        )
        .bind(user.as_uuid())
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
        std::collections::HashMap<UserId, (std::time::Instant, std::sync::Arc<Standing>)>,
    >,
}

/// How long a standing is taken as read.
const STANDING_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Standings {
    fn entries(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<UserId, (std::time::Instant, std::sync::Arc<Standing>)>,
    > {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `user`'s standing, read at most a second ago.
    pub async fn of(
        &self,
        pool: &sqlx::PgPool,
        user: UserId,
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
    pub fn forget_user(&self, user: UserId) {
        self.entries().remove(&user);
    }

    /// Forgets every user of a partner this server just changed.
    pub fn forget_partner(&self, partner: PartnerId) {
        self.entries().retain(|_, (_, standing)| standing.partner_id != Some(partner.as_uuid()));
    }
}

impl CurrentUser {
    /// The user a token stands for, if the token is ours, live, and the user may act now.
    pub async fn from_token(portal: &Portal, token: &str) -> Result<Self, AuthError> {
        let claims =
            session::verify(&portal.keys, token).ok_or(AuthError::Unauthorized(BAD_TOKEN))?;
        let standing = portal
            .standings
            .of(&portal.pool, UserId(claims.sub))
            .await?
            .ok_or(AuthError::Unauthorized(BAD_TOKEN))?;
        if let Some(why) = standing.refusal() {
            return Err(AuthError::Unauthorized(why));
        }
        // An unknown stored role is our error, never a default: the auditor's role reads every
        // lead, so guessing would fail open.
        let role = Role::parse(&standing.role)
            .ok_or_else(|| anyhow::anyhow!("unknown role {:?} stored", standing.role))?;
        Ok(Self {
            id: UserId(claims.sub),
            partner_id: standing.partner_id.map(PartnerId),
            role,
            email: standing.email.clone(),
            api_key: None,
        })
    }

    /// The partner an API key stands for, acting as its admin, if the key is live, its partner
    /// approved, and the key within its rate. Which routes a key may use is the HTTP layer's
    /// to say.
    pub async fn from_key(portal: &Portal, token: &str) -> Result<Self, AuthError> {
        let holder = api_keys::holder(&portal.pool, token)
            .await?
            .ok_or(AuthError::Unauthorized("the API key is not valid, or has been revoked"))?;
        portal.api_key_limits.check(holder.key)?;
        Ok(Self {
            id: crate::onboarding::partners::admin_id(holder.partner),
            partner_id: Some(holder.partner),
            role: Role::Admin,
            email: String::new(),
            api_key: Some(ApiKeyId(holder.key)),
        })
    }
}
