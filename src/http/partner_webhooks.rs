//! `/partners/:id/webhooks`: a partner's admin registers the endpoints its systems are told of
//! lead changes at, sends a test, and reads what was delivered (contract 8; `outbound`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use soho_aggregates::{EndpointId, PartnerId};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::guard::PartnerAdmin;
use super::json::ApiJson;
use super::partners::own;
use super::path::ApiPath;
use super::problem::{ApiError, FieldError};
use super::AppState;
use crate::outbound::endpoints::{self, Delivery, Endpoint};
use crate::outbound::{address, EVENT_TYPES};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/partners/{id}/webhooks", get(list).post(create))
        .route("/partners/{id}/webhooks/{endpoint_id}", axum::routing::patch(update).delete(remove))
        .route("/partners/{id}/webhooks/{endpoint_id}/test", post(test))
        .route("/partners/{id}/webhooks/{endpoint_id}/deliveries", get(deliveries))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// `https` to a public address (`http` to loopback in dev mode).
    pub url: String,
    /// Among `lead.created`, `lead.status_changed`, `lead.synced`, `lead.sync_failed`.
    pub events: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestSent {
    /// The test delivery's `webhook-id`.
    pub message_id: String,
}

/// The URL and event types, checked: each problem named.
async fn checked(
    portal: &AppState,
    url: Option<&str>,
    events: Option<&[String]>,
) -> Result<(), ApiError> {
    let mut errors = vec![];
    if let Some(url) = url {
        if url.len() > 2000 {
            errors.push(FieldError::new("url", "must be at most 2,000 characters"));
        } else if let Err(error) = address::check(url, portal.settings.dev_mode).await {
            errors.push(FieldError::new("url", error.to_string()));
        }
    }
    if let Some(events) = events {
        if events.is_empty() {
            errors.push(FieldError::new("events", "must name at least one event type"));
        }
        if let Some(unknown) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
            errors.push(FieldError::new(
                "events",
                format!("{unknown:?} is not one of {}", EVENT_TYPES.join(", ")),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// The partner's endpoints (never their secrets).
#[utoipa::path(get, path = "/partners/{id}/webhooks", operation_id = "list_webhooks", tag = "webhooks out", security(("bearer" = [])),
    responses((status = 200, body = [Endpoint])))]
pub async fn list(
    State(pool): State<PgPool>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath(id): ApiPath<PartnerId>,
) -> Result<Json<Vec<Endpoint>>, ApiError> {
    own(partner, id)?;
    Ok(Json(endpoints::list(&pool, partner).await?))
}

/// Register an endpoint: the answer carries its `whsec_` secret, shown this once.
#[utoipa::path(post, path = "/partners/{id}/webhooks", operation_id = "create_webhook", tag = "webhooks out", security(("bearer" = [])),
    request_body = NewEndpoint, responses((status = 201, body = Endpoint)))]
pub async fn create(
    State(portal): State<AppState>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath(id): ApiPath<PartnerId>,
    ApiJson(request): ApiJson<NewEndpoint>,
) -> Result<(StatusCode, Json<Endpoint>), ApiError> {
    own(partner, id)?;
    let url = request.url.trim();
    checked(&portal, Some(url), Some(&request.events)).await?;
    let endpoint = endpoints::create(&portal.pool, partner, url, &request.events).await?;
    Ok((StatusCode::CREATED, Json(endpoint)))
}

/// Change an endpoint's URL or event types, or disable and enable it.
#[utoipa::path(patch, path = "/partners/{id}/webhooks/{endpoint_id}", operation_id = "update_webhook", tag = "webhooks out", security(("bearer" = [])),
    request_body = EndpointChange, responses((status = 200, body = Endpoint)))]
pub async fn update(
    State(portal): State<AppState>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath((id, endpoint)): ApiPath<(PartnerId, EndpointId)>,
    ApiJson(change): ApiJson<EndpointChange>,
) -> Result<Json<Endpoint>, ApiError> {
    own(partner, id)?;
    let url = change.url.as_deref().map(str::trim);
    checked(&portal, url, change.events.as_deref()).await?;
    endpoints::update(
        &portal.pool,
        partner,
        endpoint,
        url,
        change.events.as_deref(),
        change.enabled,
    )
    .await?
    .map(Json)
    .ok_or(ApiError::NotFound)
}

/// Delete an endpoint (what was still owed to it is dropped).
#[utoipa::path(delete, path = "/partners/{id}/webhooks/{endpoint_id}", operation_id = "delete_webhook", tag = "webhooks out", security(("bearer" = [])),
    responses((status = 204, description = "deleted")))]
pub async fn remove(
    State(pool): State<PgPool>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath((id, endpoint)): ApiPath<(PartnerId, EndpointId)>,
) -> Result<StatusCode, ApiError> {
    own(partner, id)?;
    if endpoints::delete(&pool, partner, endpoint).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Send a test event (`{"type": "webhook.test", "at"}`), delivered like any other.
#[utoipa::path(post, path = "/partners/{id}/webhooks/{endpoint_id}/test", operation_id = "test_webhook", tag = "webhooks out", security(("bearer" = [])),
    responses((status = 202, body = TestSent)))]
pub async fn test(
    State(pool): State<PgPool>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath((id, endpoint)): ApiPath<(PartnerId, EndpointId)>,
) -> Result<(StatusCode, Json<TestSent>), ApiError> {
    own(partner, id)?;
    endpoints::one(&pool, partner, endpoint).await?.ok_or(ApiError::NotFound)?;
    let message_id = endpoints::send_test(&pool, endpoint).await?;
    Ok((StatusCode::ACCEPTED, Json(TestSent { message_id })))
}

/// The endpoint's deliveries, newest first (100), each with its attempts and their answers.
#[utoipa::path(get, path = "/partners/{id}/webhooks/{endpoint_id}/deliveries", operation_id = "webhook_deliveries", tag = "webhooks out", security(("bearer" = [])),
    responses((status = 200, body = [Delivery])))]
pub async fn deliveries(
    State(pool): State<PgPool>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath((id, endpoint)): ApiPath<(PartnerId, EndpointId)>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    own(partner, id)?;
    endpoints::one(&pool, partner, endpoint).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(endpoints::deliveries(&pool, endpoint).await?))
}
