//! Audits: every stored event of a lead with its metadata, and the lead as it was at any past
//! instant, rebuilt from its events. For auditors only.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use soho_aggregates::Lead;
use utoipa::ToSchema;

use super::path::ApiPath;
use super::problem::ApiError;
use super::AppState;
use crate::auth::Auditor;
use crate::commands::load_aggregate;
use crate::leads::queries::LeadView;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit/leads/{id}/events", get(events))
        .route("/audit/leads/{id}/state", get(state_at))
}

/// One stored event, as kept in the log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Its place in the global log.
    pub position: i64,
    /// Its place in the lead's stream (1, 2, ...).
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    /// Who caused it and why: actorType, actorId, webhookId, correlationId.
    pub metadata: serde_json::Value,
}

/// Every event of a lead, oldest first.
pub async fn lead_events(pool: &sqlx::PgPool, id: uuid::Uuid) -> Result<Vec<AuditEvent>, ApiError> {
    let mut conn = pool.acquire().await?;
    let stored = soho_projections::log::read_stream(&mut conn, "Lead", &id.to_string()).await?;
    Ok(stored
        .into_iter()
        .map(|e| AuditEvent {
            position: e.global_position,
            sequence: e.sequence,
            event_type: e.event_type,
            version: e.event_version,
            recorded_at: e.recorded_at,
            payload: e.payload,
            metadata: e.metadata,
        })
        .collect())
}

/// Every stored event of a lead, in order, with its metadata.
#[utoipa::path(get, path = "/audit/leads/{id}/events", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = [AuditEvent]), (status = 404, body = super::problem::Problem)))]
pub async fn events(
    State(portal): State<AppState>,
    _auditor: Auditor,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let events = lead_events(&portal.pool, id).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(events))
}

#[derive(Deserialize)]
pub struct At {
    at: Option<String>,
}

/// The lead rebuilt from the events recorded up to `at` (inclusive); `None` if it did not exist.
pub async fn lead_state(
    pool: &sqlx::PgPool,
    id: uuid::Uuid,
    at: DateTime<Utc>,
) -> Result<Option<LeadView>, ApiError> {
    let mut conn = pool.acquire().await?;
    let (lead, applied) = load_aggregate::<Lead>(&mut conn, &id.to_string(), Some(at)).await?;
    Ok((applied > 0).then(|| LeadView::of_aggregate(&lead)).flatten())
}

/// The lead as it was at an instant, rebuilt from its events.
#[utoipa::path(get, path = "/audit/leads/{id}/state", tag = "audit", security(("bearer" = [])),
    params(("at" = String, Query, description = "RFC 3339 instant")),
    responses((status = 200, body = LeadView), (status = 404, description = "no such lead at that instant", body = super::problem::Problem),
        (status = 422, body = super::problem::Problem)))]
pub async fn state_at(
    State(portal): State<AppState>,
    _auditor: Auditor,
    ApiPath(id): ApiPath<uuid::Uuid>,
    Query(query): Query<At>,
) -> Result<Json<LeadView>, ApiError> {
    let at = query
        .at
        .as_deref()
        .ok_or_else(|| ApiError::invalid("at", "is required (an RFC 3339 instant)"))?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| {
            ApiError::invalid("at", "must be an RFC 3339 timestamp such as 2026-11-24T12:00:00Z")
        })?
        .with_timezone(&Utc);
    lead_state(&portal.pool, id, at).await?.map(Json).ok_or(ApiError::NotFound)
}
