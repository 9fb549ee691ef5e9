//! API keys: how a partner's own systems call the portal (contract 8). A key acts as its
//! partner with an admin's rights on the lead routes only (`ALLOWED`); it is stored as a
//! SHA-256, shown once, and looked up on every request (no cache), so a revocation holds on
//! every server from the next request on.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use soho_aggregates::{ApiKeyId, PartnerId, UserId};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::keys::token_hash;

/// What every key starts with: how a bearer token is told from an access token.
pub const KEY_PREFIX: &str = "sk_live_";

/// The routes a key may use (method, route as axum matched it); any other is 403.
pub const ALLOWED: [(&str, &str); 6] = [
    ("POST", "/leads"),
    ("GET", "/leads"),
    ("GET", "/leads/{id}"),
    ("GET", "/leads/{id}/history"),
    ("PATCH", "/leads/{id}/status"),
    ("GET", "/dashboard/stats"),
];

/// A key as listed: never the key itself.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: uuid::Uuid,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Within a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key just created: the only time the key itself is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub id: uuid::Uuid,
    pub prefix: String,
    pub name: String,
    /// `sk_live_…`: keep it now, it is not shown again.
    pub key: String,
    pub created_at: DateTime<Utc>,
}

/// The key a bearer token names, if it is a live key of an approved partner.
pub struct KeyHolder {
    pub key: uuid::Uuid,
    pub partner: PartnerId,
}

#[tracing::instrument(skip(pool), err)]
pub async fn create(
    pool: &PgPool,
    partner: PartnerId,
    name: &str,
    created_by: UserId,
) -> Result<CreatedKey, sqlx::Error> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key =
        format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let prefix: String = key.chars().take(KEY_PREFIX.len() + 6).collect();
    let id = uuid::Uuid::now_v7();
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO api_keys (key_id, partner_id, name, prefix, key_hash, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
    )
    .bind(id)
    .bind(partner.as_uuid())
    .bind(name)
    .bind(&prefix)
    .bind(token_hash(&key))
    .bind(created_by.as_uuid())
    .fetch_one(pool)
    .await?;
    Ok(CreatedKey { id, prefix, name: name.to_string(), key, created_at })
}

/// The partner's live keys, oldest first.
pub async fn list(pool: &PgPool, partner: PartnerId) -> Result<Vec<ApiKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT key_id AS id, prefix, name, created_at, last_used_at FROM api_keys \
         WHERE partner_id = $1 AND revoked_at IS NULL ORDER BY created_at, key_id",
    )
    .bind(partner.as_uuid())
    .fetch_all(pool)
    .await
}

/// Revokes one of the partner's keys; false when it has no such live key.
#[tracing::instrument(skip(pool), err)]
pub async fn revoke(pool: &PgPool, partner: PartnerId, key: ApiKeyId) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() \
         WHERE key_id = $1 AND partner_id = $2 AND revoked_at IS NULL",
    )
    .bind(key.as_uuid())
    .bind(partner.as_uuid())
    .execute(pool)
    .await?;
    Ok(revoked.rows_affected() == 1)
}

/// The live key `token` is, of a partner in good standing (one statement, which also notes the
/// use, at most once a minute).
pub async fn holder(pool: &PgPool, token: &str) -> Result<Option<KeyHolder>, sqlx::Error> {
    let found: Option<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
        "WITH key AS ( \
           SELECT k.key_id, k.partner_id, k.last_used_at FROM api_keys k \
           JOIN partners p ON p.partner_id = k.partner_id AND p.status = 'approved' \
           WHERE k.key_hash = $1 AND k.revoked_at IS NULL), \
         used AS (UPDATE api_keys SET last_used_at = now() FROM key \
           WHERE api_keys.key_id = key.key_id \
             AND (key.last_used_at IS NULL OR key.last_used_at < now() - interval '1 minute')) \
         SELECT key_id, partner_id FROM key",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await?;
    Ok(found.map(|(key, partner)| KeyHolder { key, partner: PartnerId(partner) }))
}
