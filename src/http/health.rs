//! Liveness and readiness, for load balancers and orchestrators.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::problem::ApiError;
use super::AppState;

/// Ready or not, and nothing more: this is public, so the CRM's address, its errors and the
/// backlog are for `/metrics` and `crm status`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database answers and every migration of this build is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, body = Health),
    (status = 503, body = super::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(pool): State<PgPool>) -> Result<Json<Health>, ApiError> {
    match crate::db::migrations_applied(&pool).await {
        Ok(true) => Ok(Json(Health { status: "ready" })),
        Ok(false) => Err(ApiError::Unavailable("database migrations are pending".into())),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            Err(ApiError::Unavailable("the database is not reachable".into()))
        }
    }
}

/// Prometheus metrics: webhook and CRM counters, the CRM backlog and its limits.
pub async fn metrics(
    State(state): State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let backlog = crate::crm::outbox::backlog(&state.pool).await?;
    let settings = &state.settings;
    let usage = crate::crm::limits::usage(
        &state.pool,
        settings.soho_concurrency,
        settings.soho_daily_credits,
    )
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&state.metrics, &backlog, &usage),
    ))
}
