//! Refresh credentials: how a session outlives its 15-minute access token without keeping the
//! password around (contract 3, `POST /auth/refresh`).
//!
//! Rotating and single-use: each refresh uses its token up and issues the next one of the same
//! family. A token used a second time was copied (or two tabs raced): within `RACE_GRACE` the
//! second is only refused, so the tab that lost takes the cookie the winner set; later, the
//! whole family is revoked, so a stolen token dies with the one it was stolen from. Logout
//! revokes the family; a disabled user or a suspended partner is refused at refresh like
//! everywhere else (the standing check), so the credential cannot outlive the right to act.

use base64::Engine;
use chrono::{Duration, Utc};
use rand::RngCore;
use soho_aggregates::UserId;
use sqlx::PgPool;

use super::keys::token_hash;

/// How long a refresh credential lives when unused.
pub const LIFETIME: Duration = Duration::days(30);
/// How long after a token's use a second use counts as two tabs racing rather than theft.
const RACE_GRACE: Duration = Duration::seconds(30);

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired, revoked, or just used by a racing request: log in (or retry).
    #[error("the session has ended; log in again")]
    Ended,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// The tokens of one session, each issued for the last: a copy of a used one ends them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family(uuid::Uuid);

/// A new refresh token for `user`: the first of a new family, or the next of `family`.
#[tracing::instrument(skip(pool), err)]
pub async fn issue(
    pool: &PgPool,
    user: UserId,
    family: Option<Family>,
) -> Result<String, sqlx::Error> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("rt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash(&token))
    .bind(family.map_or_else(uuid::Uuid::now_v7, |f| f.0))
    .bind(user.as_uuid())
    .bind(Utc::now() + LIFETIME)
    .execute(pool)
    .await?;
    Ok(token)
}

/// Uses `token` up: its user and family, to issue the next token with. A token used before is
/// refused, and past `RACE_GRACE` its family is revoked.
#[tracing::instrument(skip_all, err)]
pub async fn use_up(pool: &PgPool, token: &str) -> Result<(UserId, Family), RefreshError> {
    let hash = token_hash(token);
    let taken: Option<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
        "UPDATE refresh_tokens SET used_at = now() \
         WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now() \
         RETURNING user_id, family_id",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    if let Some((user, family)) = taken {
        return Ok((UserId(user), Family(family)));
    }
    // Used before: a copy, unless a racing request used it a moment ago.
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND family_id = \
           (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND used_at < $2)",
    )
    .bind(&hash)
    .bind(Utc::now() - RACE_GRACE)
    .execute(pool)
    .await?;
    Err(RefreshError::Ended)
}

/// Ends the session `token` belongs to (logout): every token of its family stops working.
#[tracing::instrument(skip_all, err)]
pub async fn revoke_family(pool: &PgPool, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND family_id = \
           (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
    )
    .bind(token_hash(token))
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends every session of `user` (its password was reset: whoever knew the old one is out).
#[tracing::instrument(skip(pool), err)]
pub async fn revoke_all(pool: &PgPool, user: UserId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND user_id = $1",
    )
    .bind(user.as_uuid())
    .execute(pool)
    .await?;
    Ok(())
}
