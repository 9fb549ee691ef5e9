//! A partner's endpoints, and the log of what was delivered to each.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use serde_json::Value;
use soho_aggregates::{EndpointId, PartnerId};
use sqlx::PgPool;
use utoipa::ToSchema;

/// An endpoint as listed (its secret only when just created).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub id: uuid::Uuid,
    pub url: String,
    /// Among `lead.created`, `lead.status_changed`, `lead.synced`, `lead.sync_failed`.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why the portal disabled it (failing for three days), if it did.
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `whsec_…`: shown when the endpoint is created, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(skip)]
    pub secret: Option<String>,
}

/// One delivery, with every attempt and its answer.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: i64,
    /// The `webhook-id` header: the same on every attempt.
    pub message_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// `[{at, status?, error?, ms}]`, oldest first.
    pub attempts: Value,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "endpoint_id AS id, url, events, enabled, disabled_reason, created_at";

pub async fn list(pool: &PgPool, partner: PartnerId) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE partner_id = $1 ORDER BY created_at, endpoint_id"
    ))
    .bind(partner.as_uuid())
    .fetch_all(pool)
    .await
}

pub async fn one(
    pool: &PgPool,
    partner: PartnerId,
    id: EndpointId,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE partner_id = $1 AND endpoint_id = $2"
    ))
    .bind(partner.as_uuid())
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
}

#[tracing::instrument(skip(pool), err)]
pub async fn create(
    pool: &PgPool,
    partner: PartnerId,
    url: &str,
    events: &[String],
) -> Result<Endpoint, sqlx::Error> {
    let mut key = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key));
    let mut endpoint: Endpoint = sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints (endpoint_id, partner_id, url, events, secret) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(uuid::Uuid::now_v7())
    .bind(partner.as_uuid())
    .bind(url)
    .bind(events)
    .bind(&secret)
    .fetch_one(pool)
    .await?;
    endpoint.secret = Some(secret);
    Ok(endpoint)
}

/// Changes what is given; enabling again clears the reason it was disabled.
#[tracing::instrument(skip(pool), err)]
pub async fn update(
    pool: &PgPool,
    partner: PartnerId,
    id: EndpointId,
    url: Option<&str>,
    events: Option<&[String]>,
    enabled: Option<bool>,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET url = COALESCE($3, url), events = COALESCE($4, events), \
           enabled = COALESCE($5, enabled), \
           disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END, \
           failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END \
         WHERE partner_id = $1 AND endpoint_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(partner.as_uuid())
    .bind(id.as_uuid())
    .bind(url)
    .bind(events)
    .bind(enabled)
    .fetch_optional(pool)
    .await
}

/// Deletes the endpoint; what was still owed to it is dropped with it.
#[tracing::instrument(skip(pool), err)]
pub async fn delete(
    pool: &PgPool,
    partner: PartnerId,
    id: EndpointId,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted =
        sqlx::query("DELETE FROM webhook_endpoints WHERE partner_id = $1 AND endpoint_id = $2")
            .bind(partner.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if deleted {
        sqlx::query("UPDATE webhook_deliveries SET state = 'failed' WHERE endpoint_id = $1 AND state = 'pending'")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

/// Records a test message for the endpoint, delivered like any other.
pub async fn send_test(pool: &PgPool, endpoint: EndpointId) -> Result<String, sqlx::Error> {
    let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let payload = serde_json::json!({"type": "webhook.test", "at": Utc::now()});
    sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, message_id, event_type, payload) \
         VALUES ($1, $2, 'webhook.test', $3)",
    )
    .bind(endpoint.as_uuid())
    .bind(&message_id)
    .bind(payload)
    .execute(pool)
    .await?;
    Ok(message_id)
}

/// The endpoint's deliveries, newest first (at most 100).
pub async fn deliveries(pool: &PgPool, endpoint: EndpointId) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id AS id, message_id, event_type, state, attempts, \
           CASE WHEN state = 'pending' THEN next_attempt_at END AS next_attempt_at, created_at, delivered_at \
         FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY delivery_id DESC LIMIT 100",
    )
    .bind(endpoint.as_uuid())
    .fetch_all(pool)
    .await
}
