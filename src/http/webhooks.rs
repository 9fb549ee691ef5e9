//! Soho CRM's webhooks: Standard Webhooks signatures checked over the raw body before anything
//! else (401 and nothing recorded when they fail), and each `webhook-id` processed once: a retried
//! delivery is answered as the first one was, with no new effect.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use soho_aggregates::partner::PartnerDetails;
use soho_aggregates::{Actor, LeadId};
use utoipa::ToSchema;

use super::problem::{ApiError, FieldError};
use super::AppState;
use crate::commands::CommandContext;
use crate::fields;
use crate::leads::queries;
use crate::onboarding::partners::{apply_crm_partner, CrmPartner};
use crate::portal::Portal;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/soho/partner", post(partner))
        .route("/webhooks/soho/lead-status", post(lead_status))
}

/// Checks the signature; returns the webhook id.
pub fn verify(portal: &Portal, headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    let secret = portal.keys.webhook_secret().ok_or_else(|| {
        ApiError::Unavailable("webhooks are not configured (SOHO_WEBHOOK_SECRET)".into())
    })?;
    let webhook = standardwebhooks::Webhook::new(secret.expose_secret()).map_err(|_| {
        ApiError::internal(anyhow::anyhow!("SOHO_WEBHOOK_SECRET is not valid base64"))
    })?;
    webhook.verify(body, headers).map_err(|error| {
        crate::metrics::Metrics::count(&portal.metrics.webhooks_refused);
        tracing::warn!(%error, "webhook refused");
        ApiError::Unauthorized(format!("the webhook signature is not valid: {error}"))
    })?;
    crate::metrics::Metrics::count(&portal.metrics.webhooks_received);
    headers
        .get(standardwebhooks::HEADER_WEBHOOK_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| ApiError::Unauthorized("the webhook-id header is missing".into()))
}

/// Runs `handle` once per webhook id. Deliveries of one id are serialised by a transaction-scoped
/// advisory lock (released even if the caller hangs up), and a success is stored with its answer.
/// Failures are not stored, so a retry after a fix or an outage is processed afresh.
pub async fn once<F>(
    portal: &Portal,
    webhook_id: &str,
    endpoint: &str,
    handle: F,
) -> Result<Response, ApiError>
where
    F: std::future::Future<Output = Result<serde_json::Value, ApiError>>,
{
    let mut tx = portal.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('soho-webhook'), hashtext($1))")
        .bind(webhook_id)
        .execute(&mut *tx)
        .await?;
    let earlier: Option<(i32, serde_json::Value)> =
        sqlx::query_as("SELECT status_code, response FROM webhook_receipts WHERE webhook_id = $1")
            .bind(webhook_id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((status, body)) = earlier {
        tracing::info!(webhook_id, "webhook already processed; answering as before");
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        return Ok((status, Json(body)).into_response());
    }
    let body = handle.await?;
    sqlx::query("INSERT INTO webhook_receipts (webhook_id, endpoint, status_code, response) VALUES ($1, $2, 200, $3)")
        .bind(webhook_id)
        .bind(endpoint)
        .bind(&body)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(body)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerWebhook {
    /// `partner.created` or `partner.updated`.
    pub event: String,
    pub occurred_at: DateTime<Utc>,
    pub partner: CrmPartnerBody,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrmPartnerBody {
    pub soho_partner_id: String,
    pub name: String,
    pub email: String,
    pub approved: bool,
    pub tier: Option<String>,
    pub commission_rate: Option<f64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerWebhookAnswer {
    pub partner_id: uuid::Uuid,
    /// `pending`, `approved` or `suspended`.
    pub status: String,
}

impl TryFrom<CrmPartnerBody> for CrmPartner {
    type Error = ApiError;

    fn try_from(body: CrmPartnerBody) -> Result<Self, ApiError> {
        let mut errors = vec![];
        let soho_partner_id =
            fields::text("partner.sohoPartnerId", Some(body.soho_partner_id), 64, &mut errors);
        let name = fields::text("partner.name", Some(body.name), 200, &mut errors);
        let email = fields::email("partner.email", Some(body.email), &mut errors);
        let tier = fields::optional_text("partner.tier", body.tier, 50, &mut errors);
        if body.commission_rate.is_some_and(|rate| !(0.0..=100.0).contains(&rate)) {
            errors.push(FieldError::new("partner.commissionRate", "must be between 0 and 100"));
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        Ok(CrmPartner {
            soho_partner_id,
            details: PartnerDetails { name, email, tier, commission_rate: body.commission_rate },
            approved: body.approved,
        })
    }
}

/// A partner was created or changed in Soho CRM.
#[utoipa::path(post, path = "/webhooks/soho/partner", tag = "webhooks", request_body = PartnerWebhook, responses(
    (status = 200, body = PartnerWebhookAnswer),
    (status = 401, description = "bad or missing signature", body = super::problem::Problem),
    (status = 422, description = "invalid body", body = super::problem::Problem),
))]
pub async fn partner(
    State(portal): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let webhook_id = verify(&portal, &headers, &body)?;
    let request: PartnerWebhook = super::json::parse(&body)?;
    if !matches!(request.event.as_str(), "partner.created" | "partner.updated") {
        return Err(ApiError::invalid("event", "must be partner.created or partner.updated"));
    }
    let crm_partner = CrmPartner::try_from(request.partner)?;
    let context = CommandContext::new(Actor::crm(&webhook_id)).with_webhook(&webhook_id);
    once(&portal, &webhook_id, "partner", async {
        let (partner_id, status) =
            apply_crm_partner(&portal, crm_partner, request.occurred_at, &context).await?;
        let answer = PartnerWebhookAnswer {
            partner_id: partner_id.as_uuid(),
            status: status.as_str().to_string(),
        };
        serde_json::to_value(answer).map_err(ApiError::internal)
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadStatusWebhook {
    /// `lead.status_changed`.
    pub event: String,
    pub occurred_at: DateTime<Utc>,
    pub lead: CrmLeadStatus,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrmLeadStatus {
    pub soho_lead_id: Option<String>,
    /// Our lead id, as kept in the CRM record's `Portal_Lead_Id`.
    pub portal_lead_id: Option<String>,
    /// A Soho CRM `Lead_Status` value.
    pub status: String,
    pub previous_status: Option<String>,
}

/// A lead's status changed in Soho CRM.
#[utoipa::path(post, path = "/webhooks/soho/lead-status", tag = "webhooks", request_body = LeadStatusWebhook, responses(
    (status = 200, body = crate::leads::queries::LeadView),
    (status = 401, description = "bad or missing signature", body = super::problem::Problem),
    (status = 404, description = "unknown lead", body = super::problem::Problem),
    (status = 422, description = "unmapped status value or invalid body", body = super::problem::Problem),
))]
pub async fn lead_status(
    State(portal): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let webhook_id = verify(&portal, &headers, &body)?;
    let request: LeadStatusWebhook = super::json::parse(&body)?;
    if request.event != "lead.status_changed" {
        return Err(ApiError::invalid("event", "must be lead.status_changed"));
    }
    let crm_status = request.lead.status.trim().to_string();
    let status = portal.settings.status_mapping.to_portal(&crm_status).ok_or_else(|| {
        ApiError::invalid(
            "lead.status",
            &format!("the Soho CRM status {crm_status:?} is not mapped to a portal status"),
        )
    })?;
    let lead = find_lead(&portal, &request.lead).await?;
    let context = CommandContext::new(Actor::crm(&webhook_id)).with_webhook(&webhook_id);
    let status = (status, crm_status);
    let answer = crate::leads::status::from_crm(
        &portal.writer,
        lead,
        status,
        request.occurred_at,
        &webhook_id,
        &context,
    )
    .await?;
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// The lead a CRM webhook means: by our id if given, else by the CRM's.
async fn find_lead(portal: &Portal, lead: &CrmLeadStatus) -> Result<LeadId, ApiError> {
    if let Some(id) = lead.portal_lead_id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        // Not looked up here: the writer's Lead aggregate refuses a lead without events (404),
        // in the batch that would write the change, and leaves no receipt.
        return id.parse().map_err(|_| ApiError::NotFound);
    }
    // Checked before the database sees it: a NUL byte there would be its error, not a 422.
    let mut errors = vec![];
    let soho_id =
        fields::single_line("lead.sohoLeadId", lead.soho_lead_id.clone(), 64, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let soho_id = soho_id.ok_or_else(|| {
        ApiError::invalid("lead.sohoLeadId", "sohoLeadId or portalLeadId is required")
    })?;
    queries::by_soho_id(&portal.pool, &soho_id).await?.ok_or(ApiError::NotFound)
}
