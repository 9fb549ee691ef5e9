//! Audits (CONTRACT 7): every stored event of a lead with its hashes, the lead as it was at any
//! past instant, the whole log checked against its hash chain, a lead's events exported for an
//! offline check, and registration receipts.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use soho_projections::Checkpoints;
use sqlx::PgPool;
use utoipa::IntoParams;

use super::guard::Auditor;
use super::json::ApiJson;
use super::path::ApiPath;
use super::problem::ApiError;
use super::AppState;
use crate::audit::find::{self, AuditedPartner, FoundLead, LeadKey};
use crate::audit::receipt::{self, Receipt, ReceiptCheck};
use crate::audit::verify::Verdict;
use crate::audit::{self, AuditEvent};
use crate::auth::CurrentUser;
use crate::leads::queries::{self, DashboardStats, LeadView};
use soho_aggregates::{LeadId, PartnerId, Role};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit/leads", get(find_leads))
        .route("/audit/partners", get(list_partners))
        .route("/audit/leads/{id}/events", get(events))
        .route("/audit/leads/{id}/state", get(state_at))
        .route("/audit/leads/{id}/export", get(export_lead))
        .route("/audit/verify", get(verify))
        .route("/audit/receipts/check", post(check_receipt))
        .route("/audit/partners/{id}/stats", get(partner_stats_at))
        .route("/leads/{id}/receipt", get(lead_receipt))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct FindLeads {
    /// The lead's id.
    id: Option<String>,
    /// Its record id in Soho CRM.
    soho_lead_id: Option<String>,
    /// Its partner: that partner's newest 100 leads.
    partner_id: Option<String>,
}

/// Finds leads to audit by exactly one of: id, Soho CRM id, partner.
#[utoipa::path(get, path = "/audit/leads", tag = "audit", security(("bearer" = [])), params(FindLeads),
    responses((status = 200, body = [FoundLead]), (status = 422, body = super::problem::Problem)))]
pub async fn find_leads(
    State(pool): State<PgPool>,
    _auditor: Auditor,
    Query(query): Query<FindLeads>,
) -> Result<Json<Vec<FoundLead>>, ApiError> {
    let uuid = |field: &str, text: &str| {
        text.trim().parse::<uuid::Uuid>().map_err(|_| ApiError::invalid(field, "must be a UUID"))
    };
    let key = match (&query.id, &query.soho_lead_id, &query.partner_id) {
        (Some(id), None, None) => LeadKey::Id(uuid("id", id)?),
        (None, Some(soho), None) => {
            let soho = soho.trim();
            if soho.is_empty() || soho.len() > 64 || soho.contains('\0') {
                return Err(ApiError::invalid("sohoLeadId", "must be 1 to 64 characters"));
            }
            LeadKey::SohoLeadId(soho.to_string())
        }
        (None, None, Some(partner)) => LeadKey::Partner(uuid("partnerId", partner)?),
        _ => return Err(ApiError::invalid("id", "give exactly one of id, sohoLeadId, partnerId")),
    };
    Ok(Json(find::leads(&pool, key).await?))
}

/// Every partner, by name, for an auditor to pick one.
#[utoipa::path(get, path = "/audit/partners", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = [AuditedPartner])))]
pub async fn list_partners(
    State(pool): State<PgPool>,
    _auditor: Auditor,
) -> Result<Json<Vec<AuditedPartner>>, ApiError> {
    Ok(Json(find::partners(&pool).await?))
}

/// Every stored event of a lead, in order, with its metadata and hashes.
#[utoipa::path(get, path = "/audit/leads/{id}/events", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = [AuditEvent]),
        (status = 503, description = "its newest events are not sealed yet", body = super::problem::Problem)))]
pub async fn events(
    State(pool): State<PgPool>,
    State(checkpoints): State<Checkpoints>,
    _auditor: Auditor,
    ApiPath(id): ApiPath<LeadId>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let events = audit::lead_events(&pool, &checkpoints, id).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(events))
}

/// A lead's events as JSON lines with their hashes, for `soho-portal audit verify --file`.
#[utoipa::path(get, path = "/audit/leads/{id}/export", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "one event per line", content_type = "application/jsonl", body = String), (status = 503, body = super::problem::Problem)))]
pub async fn export_lead(
    State(pool): State<PgPool>,
    State(checkpoints): State<Checkpoints>,
    _auditor: Auditor,
    ApiPath(id): ApiPath<LeadId>,
) -> Result<impl IntoResponse, ApiError> {
    let lines = audit::export_lead(&pool, &checkpoints, id).await?;
    if lines.is_empty() {
        return Err(ApiError::NotFound);
    }
    let disposition = format!("attachment; filename=\"lead-{id}.jsonl\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/jsonl".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        lines,
    ))
}

/// The whole log checked against its hash chain; names the first broken position.
#[utoipa::path(get, path = "/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = Verdict),))]
pub async fn verify(
    State(pool): State<PgPool>,
    _auditor: Auditor,
) -> Result<Json<Verdict>, ApiError> {
    Ok(Json(audit::verify::verify_log(&pool, &|_| {}).await?))
}

/// A lead's registration receipt: for its partner's admin and auditors.
#[utoipa::path(get, path = "/leads/{id}/receipt", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = Receipt),
        (status = 503, body = super::problem::Problem)))]
pub async fn lead_receipt(
    State(pool): State<PgPool>,
    State(checkpoints): State<Checkpoints>,
    user: CurrentUser,
    ApiPath(id): ApiPath<LeadId>,
) -> Result<Json<Receipt>, ApiError> {
    match (user.role, user.partner_id) {
        (Role::Auditor, _) => {}
        (Role::Admin, Some(partner)) => {
            let scope = Some(queries::LeadScope::Partner(partner));
            queries::lead(&pool, id, scope).await?.ok_or(ApiError::NotFound)?;
        }
        _ => {
            return Err(ApiError::Forbidden(
                "receipts are for the partner's admins and auditors".into(),
            ))
        }
    }
    let receipt = receipt::issue(&pool, &checkpoints, id).await?;
    receipt.map(Json).ok_or(ApiError::NotFound)
}

/// Whether a receipt holds against the log as it is now.
#[utoipa::path(post, path = "/audit/receipts/check", tag = "audit", security(("bearer" = [])),
    request_body = Receipt,
    responses((status = 200, body = ReceiptCheck), (status = 400, body = super::problem::Problem),
        (status = 422, body = super::problem::Problem)))]
pub async fn check_receipt(
    State(pool): State<PgPool>,
    _auditor: Auditor,
    ApiJson(receipt): ApiJson<Receipt>,
) -> Result<Json<ReceiptCheck>, ApiError> {
    Ok(Json(receipt::check(&pool, &receipt).await?))
}

#[derive(Deserialize)]
pub struct At {
    at: Option<String>,
}

/// The lead as it was at an instant, rebuilt from its events.
#[utoipa::path(get, path = "/audit/leads/{id}/state", tag = "audit", security(("bearer" = [])),
    params(("at" = String, Query, description = "RFC 3339 instant")),
    responses((status = 200, body = LeadView),
        (status = 404, description = "no such lead at that instant", body = super::problem::Problem),
        (status = 422, body = super::problem::Problem)))]
pub async fn state_at(
    State(pool): State<PgPool>,
    _auditor: Auditor,
    ApiPath(id): ApiPath<LeadId>,
    Query(query): Query<At>,
) -> Result<Json<LeadView>, ApiError> {
    let at = query.instant()?;
    audit::lead_state(&pool, id, at).await?.map(Json).ok_or(ApiError::NotFound)
}

/// A partner's dashboard figures as they stood at an instant, rebuilt from the log.
#[utoipa::path(get, path = "/audit/partners/{id}/stats", tag = "audit", security(("bearer" = [])),
    params(("at" = String, Query, description = "RFC 3339 instant")),
    responses((status = 200, body = DashboardStats), (status = 422, body = super::problem::Problem)))]
pub async fn partner_stats_at(
    State(pool): State<PgPool>,
    _auditor: Auditor,
    ApiPath(id): ApiPath<PartnerId>,
    Query(query): Query<At>,
) -> Result<Json<DashboardStats>, ApiError> {
    let at = query.instant()?;
    let stats = audit::stats::partner_stats_at(&pool, id, at).await?;
    stats.map(Json).ok_or(ApiError::NotFound)
}

impl At {
    fn instant(&self) -> Result<DateTime<Utc>, ApiError> {
        let at = self
            .at
            .as_deref()
            .ok_or_else(|| ApiError::invalid("at", "is required (an RFC 3339 instant)"))?;
        let at = DateTime::parse_from_rfc3339(at).map_err(|_| {
            ApiError::invalid("at", "must be an RFC 3339 timestamp such as 2026-11-24T12:00:00Z")
        })?;
        Ok(at.with_timezone(&Utc))
    }
}
