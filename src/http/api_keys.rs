//! `/partners/:id/api-keys`: a partner's admin creates, lists and revokes the keys its own
//! systems call the portal with (contract 8; `auth::api_keys`). Keys cannot manage keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use soho_aggregates::{ApiKeyId, PartnerId};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::guard::PartnerAdmin;
use super::json::ApiJson;
use super::partners::own;
use super::path::ApiPath;
use super::problem::ApiError;
use super::AppState;
use crate::auth::api_keys::{self, ApiKey, CreatedKey};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/partners/{id}/api-keys", get(list).post(create))
        .route("/partners/{id}/api-keys/{key_id}", delete(revoke))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What the key is for ("Our CRM", "Website"): one line, at most 100 characters.
    pub name: Option<String>,
}

/// The partner's live keys (their prefixes, never the keys), oldest first.
#[utoipa::path(get, path = "/partners/{id}/api-keys", operation_id = "list_api_keys", tag = "partners", security(("bearer" = [])),
    responses((status = 200, body = [ApiKey])))]
pub async fn list(
    State(pool): State<PgPool>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath(id): ApiPath<PartnerId>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    own(partner, id)?;
    Ok(Json(api_keys::list(&pool, partner).await?))
}

/// Create a key: the answer is the only time the key is shown.
#[utoipa::path(post, path = "/partners/{id}/api-keys", operation_id = "create_api_key", tag = "partners", security(("bearer" = [])),
    request_body = NewApiKey, responses((status = 201, body = CreatedKey)))]
pub async fn create(
    State(pool): State<PgPool>,
    PartnerAdmin(admin, partner): PartnerAdmin,
    ApiPath(id): ApiPath<PartnerId>,
    ApiJson(request): ApiJson<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    own(partner, id)?;
    let mut errors = vec![];
    let name = crate::fields::single_line("name", request.name, 100, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let name = name.unwrap_or_else(|| "API key".to_string());
    let created = api_keys::create(&pool, partner, &name, admin.id).await?;
    tracing::info!(partner = %partner, key = %created.id, "API key created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revoke a key: refused from the next request on, on every server.
#[utoipa::path(delete, path = "/partners/{id}/api-keys/{key_id}", operation_id = "revoke_api_key", tag = "partners", security(("bearer" = [])),
    responses((status = 204, description = "revoked")))]
pub async fn revoke(
    State(pool): State<PgPool>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath((id, key)): ApiPath<(PartnerId, ApiKeyId)>,
) -> Result<StatusCode, ApiError> {
    own(partner, id)?;
    if api_keys::revoke(&pool, partner, key).await? {
        tracing::info!(partner = %partner, key = %key, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
