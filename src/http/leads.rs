//! The leads API: submit (portal and public form), list, export, one lead, its status and its
//! history, and the dashboard figures.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use soho_aggregates::lead::Submitter;
use soho_aggregates::{Actor, LeadId, LeadStatus, PartnerId, Role, UserId};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::guard::{MaybeUser, PartnerMember};
use super::idempotency::{self, Claim};
use super::json::ApiJson;
use super::path::ApiPath;
use super::problem::{ApiError, FieldError};
use super::AppState;
use crate::auth::CurrentUser;
use crate::commands::CommandContext;
use crate::leads::order::{Cursor, LeadOrder, SORTED_AT_MOST};
use crate::leads::queries::{
    self, DashboardStats, LeadFilter, LeadScope, LeadView, StatusHistoryEntry,
};
use crate::leads::status;
use crate::leads::submission::{self, LeadRequest, Submitted};
use crate::onboarding::partners::public_partner;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/leads", post(submit).get(list))
        .route("/leads/export.csv", get(export))
        .route("/leads/{id}", get(one))
        .route("/leads/{id}/status", patch(change_status))
        .route("/leads/{id}/history", get(history))
        .route("/dashboard/stats", get(stats))
        .route("/dashboard/weekly", get(weekly))
        .route("/leads/changes", get(changes))
        .route("/ws", get(super::live::upgrade))
}

pub fn scope_of(user: &CurrentUser, partner: PartnerId) -> LeadScope {
    match user.role {
        Role::Admin => LeadScope::Partner(partner),
        _ => LeadScope::User(partner, user.id),
    }
}

/// Submit a lead: a partner's user (with a token) or anyone through a partner's public form
/// (with `partnerId`, no token).
#[utoipa::path(post, path = "/leads", tag = "leads", request_body = LeadRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "up to 255 characters: the same key and body within 24 h get the first answer again, nothing recorded; the same key with another body is 422 (logged-in callers and API keys)")),
    responses(
    (status = 201, description = "submitted", body = LeadView),
    (status = 200, description = "the same person was submitted in the last 24 hours: the existing lead", body = LeadView),
    (status = 202, description = "public form (no token): received, whether the person is new, already known or the submission was dropped", body = PublicReceipt),
    (status = 401, description = "a bearer token was sent, and it is invalid or expired, or its user may no longer act", body = super::problem::Problem),
    (status = 403, description = "auditors do not submit leads", body = super::problem::Problem),
    (status = 404, description = "no approved partner with that id", body = super::problem::Problem),
    (status = 409, description = "the partner is suspended; or the person was submitted by another sub-account of the company", body = super::problem::Problem),
    (status = 422, body = super::problem::Problem),
    (status = 429, description = "too many submissions from this address (public form), this user or this partner", body = super::problem::Problem),
))]
pub async fn submit(
    State(portal): State<AppState>,
    MaybeUser(user): MaybeUser,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    ApiJson(request): ApiJson<LeadRequest>,
) -> Result<Response, ApiError> {
    let Some(user) = user else {
        return submit_public(&portal, client, request).await;
    };
    let Some(key) = idempotency::key_of(&headers)? else {
        let (status, lead) = submit_as(&portal, &user, request).await?;
        return Ok((status, Json(lead)).into_response());
    };
    let caller = match user.api_key {
        Some(api_key) => format!("key:{api_key}"),
        None => format!("user:{}", user.id),
    };
    let body = serde_json::to_value(&request).map_err(ApiError::internal)?;
    let pending = match idempotency::claim(&portal.pool, &caller, &key, &body).await? {
        Claim::Replay(first) => return Ok(first),
        Claim::Fresh(pending) => pending,
    };
    match submit_as(&portal, &user, request).await {
        Ok((status, lead)) => {
            let answer = serde_json::to_value(&lead).map_err(ApiError::internal)?;
            pending.keep(status, &answer).await?;
            Ok((status, Json(answer)).into_response())
        }
        Err(error) => {
            pending.release().await;
            Err(error)
        }
    }
}

/// A logged-in user's (or an API key's) submission: 201 with the new lead, or 200 with the
/// existing one for the same person within 24 hours.
async fn submit_as(
    portal: &AppState,
    user: &CurrentUser,
    request: LeadRequest,
) -> Result<(StatusCode, LeadView), ApiError> {
    let Some(partner) = user.partner_id.filter(|_| user.role != Role::Auditor) else {
        return Err(ApiError::Forbidden("auditors cannot submit leads".into()));
    };
    if request.partner_id.is_some_and(|p| p != partner.as_uuid()) {
        return Err(ApiError::invalid(
            "partnerId",
            "is only for the public form; leave it out when logged in",
        ));
    }
    // One user (or one partner's team) must not fill the CRM sync queue for everyone.
    portal.lead_limits.0.check(user.id)?;
    portal.lead_limits.1.check(partner)?;
    let details = submission::parse(&request)?;
    let submitter = Submitter::User { id: user.id };
    let context = CommandContext::new(user.actor());
    match submission::submit(&portal.writer, partner, submitter, details, &context).await? {
        Submitted::Created(lead) => Ok((StatusCode::CREATED, lead)),
        Submitted::Existing(lead) => {
            match queries::lead(&portal.pool, LeadId(lead.id), Some(scope_of(user, partner)))
                .await?
            {
                Some(lead) => Ok((StatusCode::OK, lead)),
                // Another sub-account's lead: say it exists, show nothing of it.
                None => Err(ApiError::Conflict(
                    "this person was already submitted by your company in the last 24 hours".into(),
                )),
            }
        }
    }
}

/// What the public form is told: the same answer whether the person is new, already submitted
/// (the submission joins the existing lead) or the submission was dropped as a bot's, so that
/// nobody learns from it what a partner has stored (contract 3).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicReceipt {
    /// Always `received`.
    status: &'static str,
    /// The partner the lead was submitted to.
    partner_name: String,
}

async fn submit_public(
    portal: &AppState,
    client: SocketAddr,
    request: LeadRequest,
) -> Result<Response, ApiError> {
    portal.public_form_limits.check(crate::auth::rate_limit::client_key(client.ip()))?;
    let partner = PartnerId(
        request
            .partner_id
            .ok_or_else(|| ApiError::invalid("partnerId", "is required on the public form"))?,
    );
    let partner_name = match public_partner(portal, partner).await? {
        Some((soho_aggregates::PartnerStatus::Approved, name)) => name,
        Some((soho_aggregates::PartnerStatus::Suspended, _)) => {
            return Err(ApiError::Conflict(
                "this partner is not taking submissions at the moment".into(),
            ))
        }
        _ => return Err(ApiError::NotFound),
    };
    let details = submission::parse(&request)?;
    if request.website.as_deref().is_some_and(|w| !w.trim().is_empty()) {
        // A bot filled the honeypot: thank it and keep nothing.
        tracing::info!(partner = %partner, "public submission with the honeypot filled: dropped");
    } else {
        let context = CommandContext::new(Actor::public());
        submission::submit(&portal.writer, partner, Submitter::Public, details, &context).await?;
    }
    let receipt = PublicReceipt { status: "received", partner_name };
    Ok((StatusCode::ACCEPTED, Json(receipt)).into_response())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadPage {
    pub items: Vec<LeadView>,
    pub next_cursor: Option<String>,
    /// The live feed's position before the page was read: a client that sends
    /// `{"type": "resume", "after": livePosition}` on its socket misses no change made after
    /// the read (without it, a change between the read and the socket's start is lost).
    pub live_position: i64,
}

/// The list filters, parsed from the query string; each bad one is named.
fn parse_filter(params: &HashMap<String, String>, errors: &mut Vec<FieldError>) -> LeadFilter {
    let mut filter = LeadFilter::default();
    let value = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(status) = value("status") {
        filter.status = LeadStatus::parse(status);
        if filter.status.is_none() {
            errors.push(FieldError::new(
                "status",
                "must be one of new, contacted, qualified, converted, lost",
            ));
        }
    }
    if let Some(q) = value("q") {
        if q.chars().count() > 100 {
            errors.push(FieldError::new("q", "must be at most 100 characters"));
        }
        if q.chars().any(char::is_control) {
            errors.push(FieldError::new("q", "must not contain control characters"));
        }
        filter.q = Some(q.to_string());
    }
    match value("submittedBy") {
        None => {}
        Some("public") => filter.public_only = true,
        Some(id) => match id.parse() {
            Ok(id) => filter.submitted_by = Some(UserId(id)),
            Err(_) => {
                errors.push(FieldError::new("submittedBy", "must be a user id or \"public\""))
            }
        },
    }
    if let Some(sort) = value("sort") {
        match LeadOrder::parse(sort) {
            Some(order) => filter.order = order,
            None => errors
                .push(FieldError::new("sort", "must be newest, oldest, name, status or updated")),
        }
    }
    for (name, slot) in
        [("createdAfter", &mut filter.created_after), ("createdBefore", &mut filter.created_before)]
    {
        if let Some(text) = value(name) {
            match DateTime::parse_from_rfc3339(text) {
                Ok(at) => *slot = Some(at.with_timezone(&Utc)),
                Err(_) => errors.push(FieldError::new(
                    name,
                    "must be an RFC 3339 timestamp such as 2026-11-24T12:00:00Z",
                )),
            }
        }
    }
    filter
}

/// Refuses an order without an index (name, status, last update) over more leads than it
/// sorts: the filters must narrow the list first.
async fn sortable(pool: &PgPool, scope: LeadScope, filter: &LeadFilter) -> Result<(), ApiError> {
    if !filter.order.indexed() && queries::too_many_to_sort(pool, scope, filter).await? {
        return Err(ApiError::invalid(
            "sort",
            &format!(
                "sorting by {} takes at most {SORTED_AT_MOST} leads: narrow the list with a status, \
                 dates or a search first",
                filter.order.as_str()
            ),
        ));
    }
    Ok(())
}

/// The caller's leads, filtered, a page at a time, newest first unless `sort` says otherwise.
#[utoipa::path(get, path = "/leads", tag = "leads", security(("bearer" = [])),
    params(
        ("status" = Option<String>, Query, description = "new, contacted, qualified, converted or lost"),
        ("q" = Option<String>, Query, description = "searches names, email and company"),
        ("submittedBy" = Option<String>, Query, description = "a user id, or `public`"),
        ("createdAfter" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("createdBefore" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("sort" = Option<String>, Query, description = "`newest` (the default) or `oldest` first, by submission; `name` (last, then first, A to Z), `status` (along the pipeline) or `updated` (most recently changed first) while at most 10,000 leads match"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "the nextCursor of the previous page"),
    ),
    responses((status = 200, body = LeadPage), (status = 422, body = super::problem::Problem)))]
pub async fn list(
    State(portal): State<AppState>,
    PartnerMember(user, partner): PartnerMember,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<LeadPage>, ApiError> {
    let mut errors = vec![];
    let filter = parse_filter(&params, &mut errors);
    let limit = match params.get("limit").map(|l| l.trim().parse::<i64>()) {
        None => 50,
        Some(Ok(limit)) if (1..=200).contains(&limit) => limit,
        Some(_) => {
            errors.push(FieldError::new("limit", "must be a whole number from 1 to 200"));
            50
        }
    };
    let cursor = params.get("cursor").filter(|c| !c.is_empty()).map(|c| Cursor::decode(c));
    match &cursor {
        Some(None) => errors.push(FieldError::new("cursor", "is not a cursor this API gave out")),
        Some(Some(cursor)) if !cursor.continues(filter.order) => {
            errors.push(FieldError::new("cursor", "was given out for another sort: start over"))
        }
        _ => {}
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let scope = scope_of(&user, partner);
    sortable(&portal.pool, scope, &filter).await?;
    let live_position = portal.live.position();
    let (items, next) =
        queries::page(&portal.pool, scope, &filter, cursor.flatten(), limit).await?;
    Ok(Json(LeadPage { items, next_cursor: next.map(|c| c.encode()), live_position }))
}

/// The caller's leads as CSV, with the filters of `GET /leads`, streamed a page at a time.
#[utoipa::path(get, path = "/leads/export.csv", tag = "leads", security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = 422, body = super::problem::Problem)))]
pub async fn export(
    State(portal): State<AppState>,
    PartnerMember(user, partner): PartnerMember,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut errors = vec![];
    let filter = parse_filter(&params, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let scope = scope_of(&user, partner);
    sortable(&portal.pool, scope, &filter).await?;
    let header = csv_row(&CSV_HEADER.map(String::from));
    let pages = futures::stream::unfold(Some(None), move |state: Option<Option<Cursor>>| {
        let (portal, filter) = (portal.clone(), filter.clone());
        async move {
            let after = state?;
            match queries::page(&portal.pool, scope, &filter, after, 500).await {
                Ok((leads, next)) => {
                    let chunk: Vec<u8> =
                        leads.iter().flat_map(|lead| csv_row(&csv_fields(lead))).collect();
                    Some((Ok::<_, std::io::Error>(chunk), next.map(Some)))
                }
                Err(error) => {
                    tracing::error!(%error, "CSV export failed part-way");
                    Some((Err(std::io::Error::other("export failed")), None))
                }
            }
        }
    });
    let body = futures::StreamExt::chain(futures::stream::once(async move { Ok(header) }), pages);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"leads.csv\""),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

const CSV_HEADER: [&str; 15] = [
    "id",
    "createdAt",
    "status",
    "crmStatus",
    "firstName",
    "lastName",
    "email",
    "phone",
    "company",
    "notes",
    "submittedBy",
    "syncState",
    "sohoLeadId",
    "channelConflict",
    "updatedAt",
];

fn csv_fields(lead: &LeadView) -> [String; 15] {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        lead.id.to_string(),
        lead.created_at.to_rfc3339(),
        lead.status.clone(),
        lead.crm_status.clone(),
        text(&lead.first_name),
        lead.last_name.clone(),
        text(&lead.email),
        text(&lead.phone),
        text(&lead.company),
        text(&lead.notes),
        lead.submitted_by.id.map_or("public".to_string(), |id| id.to_string()),
        lead.sync_state.clone(),
        text(&lead.soho_lead_id),
        lead.channel_conflict.to_string(),
        lead.updated_at.to_rfc3339(),
    ]
}

/// One CSV line. Cells a spreadsheet would run as a formula (OWASP's list: `=`, `+`, `-`, `@`,
/// tab, carriage return) are prefixed with `'`.
fn csv_row(fields: &[String]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let safe = fields.iter().map(|f| {
        if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{f}")
        } else {
            f.clone()
        }
    });
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(safe);
    writer.into_inner().unwrap_or_default()
}

/// One lead.
#[utoipa::path(get, path = "/leads/{id}", tag = "leads", security(("bearer" = [])),
    responses((status = 200, body = LeadView), (status = 404, body = super::problem::Problem)))]
pub async fn one(
    State(pool): State<PgPool>,
    PartnerMember(user, partner): PartnerMember,
    ApiPath(id): ApiPath<LeadId>,
) -> Result<Json<LeadView>, ApiError> {
    queries::lead(&pool, id, Some(scope_of(&user, partner)))
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// new, contacted, qualified or lost (converted only where the operator lets partners
    /// convert: `PARTNERS_MAY_CONVERT`).
    pub status: String,
    pub note: Option<String>,
}

/// Change a lead's status in the portal; Soho CRM gets the mapped value.
#[utoipa::path(patch, path = "/leads/{id}/status", tag = "leads", security(("bearer" = [])), request_body = StatusRequest,
    responses((status = 200, body = LeadView), (status = 404, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
pub async fn change_status(
    State(portal): State<AppState>,
    PartnerMember(user, partner): PartnerMember,
    ApiPath(id): ApiPath<LeadId>,
    ApiJson(request): ApiJson<StatusRequest>,
) -> Result<Json<LeadView>, ApiError> {
    queries::lead(&portal.pool, id, Some(scope_of(&user, partner)))
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut errors = vec![];
    let new_status = LeadStatus::parse(request.status.trim());
    match new_status {
        None => errors.push(FieldError::new(
            "status",
            "must be one of new, contacted, qualified, converted, lost",
        )),
        Some(LeadStatus::Converted) if !portal.settings.partners_may_convert => {
            errors.push(FieldError::new(
                "status",
                "converted is set by the vendor in Soho CRM; choose new, contacted, qualified or lost",
            ))
        }
        Some(_) => {}
    }
    let note = crate::fields::optional_text("note", request.note, 2000, &mut errors);
    let (Some(new_status), true) = (new_status, errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    Ok(Json(
        status::from_portal(
            &portal.writer,
            &portal.settings.status_mapping,
            id,
            new_status,
            note,
            user.actor(),
        )
        .await?,
    ))
}

/// A lead's status changes, oldest first: for its partner's admin, the sub-account that
/// submitted it, and auditors.
#[utoipa::path(get, path = "/leads/{id}/history", tag = "leads", security(("bearer" = [])),
    responses((status = 200, body = [StatusHistoryEntry]), (status = 404, body = super::problem::Problem)))]
pub async fn history(
    State(pool): State<PgPool>,
    user: CurrentUser,
    ApiPath(id): ApiPath<LeadId>,
) -> Result<Json<Vec<StatusHistoryEntry>>, ApiError> {
    let scope = match (user.role, user.partner_id) {
        (Role::Auditor, _) => None,
        (_, Some(partner)) => Some(scope_of(&user, partner)),
        (_, None) => return Err(ApiError::NotFound),
    };
    queries::lead(&pool, id, scope).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(queries::history(&pool, id).await?))
}

/// Leads submitted, by status, and the conversion rate: the partner's for its admin, a
/// sub-account's own for a sub-account.
#[utoipa::path(get, path = "/dashboard/stats", tag = "leads", security(("bearer" = [])),
    responses((status = 200, body = DashboardStats)))]
pub async fn stats(
    State(pool): State<PgPool>,
    PartnerMember(user, partner): PartnerMember,
) -> Result<Json<DashboardStats>, ApiError> {
    Ok(Json(queries::stats(&pool, scope_of(&user, partner)).await?))
}

/// Leads submitted and converted by the week they were submitted (Monday, UTC): the
/// dashboard's chart, in the same scope as `/dashboard/stats`.
#[utoipa::path(get, path = "/dashboard/weekly", tag = "leads", security(("bearer" = [])),
    params(("weeks" = Option<i32>, Query, description = "how many weeks back, this one included: 1 to 104, default 12")),
    responses((status = 200, description = "oldest first, weeks without leads as zeros", body = [queries::WeekFigures])))]
pub async fn weekly(
    State(pool): State<PgPool>,
    PartnerMember(user, partner): PartnerMember,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<queries::WeekFigures>>, ApiError> {
    let weeks = match params.get("weeks").map(|w| w.trim().parse::<i32>()) {
        None => 12,
        Some(Ok(weeks)) if (1..=104).contains(&weeks) => weeks,
        Some(_) => return Err(ApiError::invalid("weeks", "must be a whole number from 1 to 104")),
    };
    Ok(Json(queries::weekly(&pool, scope_of(&user, partner), weeks).await?))
}

/// The live-update messages after a position, for clients without WebSockets (the same
/// messages `/ws` sends, in the same scope).
#[utoipa::path(get, path = "/leads/changes", tag = "live", security(("bearer" = [])),
    params(("after" = Option<i64>, Query, description = "the last position received (0 for all)"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 500")),
    responses((status = 200, description = "messages, oldest first", body = [Object]), (status = 422, body = super::problem::Problem)))]
pub async fn changes(
    State(pool): State<PgPool>,
    PartnerMember(user, partner): PartnerMember,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let after = match params.get("after").map(|a| a.trim().parse::<i64>()) {
        None => 0,
        Some(Ok(after)) if after >= 0 => after,
        Some(_) => {
            return Err(ApiError::invalid(
                "after",
                "must be a position (a whole number, 0 or more)",
            ))
        }
    };
    let limit = match params.get("limit").map(|l| l.trim().parse::<i64>()) {
        None => 500,
        Some(Ok(limit)) if (1..=1000).contains(&limit) => limit,
        Some(_) => return Err(ApiError::invalid("limit", "must be a whole number from 1 to 1000")),
    };
    let messages =
        crate::live::feed::after(&pool, after, Some(scope_of(&user, partner)), limit).await?;
    Ok(Json(messages.into_iter().map(|m| (*m.value).clone()).collect()))
}

#[cfg(test)]
mod tests {
    use super::csv_row;

    #[test]
    fn every_formula_prefix_is_defused() {
        for prefix in ["=", "+", "-", "@", "\t", "\r"] {
            let row = csv_row(&[format!("{prefix}cmd"), "plain".into()]);
            let cells: Vec<String> = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(row.as_slice())
                .records()
                .flat_map(|r| r.unwrap().iter().map(str::to_string).collect::<Vec<_>>())
                .collect();
            assert_eq!(cells, [format!("'{prefix}cmd"), "plain".to_string()], "{prefix:?}");
        }
    }
}
