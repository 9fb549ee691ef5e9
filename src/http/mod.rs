//! The HTTP API: the router, shared state, and the layers every request goes through (request
//! id, tracing span, panic catching, problem+json for unknown routes).

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod dev;
pub mod guard;
pub mod health;
mod idempotency;
pub mod json;
pub mod leads;
pub mod live;
pub mod me;
mod nul;
pub mod openapi;
pub mod partner_webhooks;
pub mod partners;
pub mod path;
pub mod problem;
pub mod server;
mod sessions;
pub mod web;
pub mod webhooks;

use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::portal::Portal;

/// The router's state. A handler takes what it needs of it (`State<PgPool>`, `State<Checkpoints>`
/// through `FromRef`), or the portal itself when it needs several of its parts (the limits and
/// idempotency around a lead command, onboarding, sessions).
#[derive(Clone)]
pub struct AppState(pub Arc<Portal>);

impl std::ops::Deref for AppState {
    type Target = Portal;

    fn deref(&self) -> &Portal {
        &self.0
    }
}

impl axum::extract::FromRef<AppState> for sqlx::PgPool {
    fn from_ref(state: &AppState) -> Self {
        state.pool.clone()
    }
}

impl axum::extract::FromRef<AppState> for soho_projections::Checkpoints {
    fn from_ref(state: &AppState) -> Self {
        state.checkpoints.clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Soho Partner Portal API",
        description = "The partners' side of Soho CRM. See CONTRACT.md."
    ),
    paths(
        health::healthz, health::readyz,
        auth::register, auth::invitation, auth::login, auth::request_password_reset, auth::reset_password, me::account, me::update, me::change_password, me::unsubscribe, sessions::refresh, sessions::logout,
        webhooks::partner, webhooks::lead_status,
        partners::profile, partners::sub_accounts, partners::create_sub_account,
        partners::update_sub_account, partners::invite, partners::public_profile,
        api_keys::list, api_keys::create, api_keys::revoke,
        partner_webhooks::list, partner_webhooks::create, partner_webhooks::update,
        partner_webhooks::remove, partner_webhooks::test, partner_webhooks::deliveries,
        leads::submit, leads::list, leads::export, leads::one, leads::change_status, leads::history,
        leads::stats, leads::weekly, leads::changes, live::upgrade,
        audit::events, audit::state_at, audit::export_lead, audit::verify, audit::lead_receipt,
        audit::check_receipt, audit::partner_stats_at, audit::find_leads, audit::list_partners,
    ),
    components(schemas(problem::Problem, problem::FieldError)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the authenticated routes name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi::document())
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let dev = if state.settings.dev_mode { dev::routes() } else { Router::new() };
    Router::new()
        .merge(dev)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi))
        .merge(auth::routes())
        .merge(me::routes())
        .merge(webhooks::routes())
        .merge(partners::routes())
        .merge(api_keys::routes())
        .merge(partner_webhooks::routes())
        .merge(leads::routes())
        .merge(audit::routes())
        .fallback_service(web::app(&state.settings))
        .layer(axum::middleware::map_response(problem::bare_client_errors))
        .layer(axum::middleware::from_fn(nul::refuse_in_url))
        .layer(axum::middleware::from_fn_with_state(state.settings.web_dir.clone(), web::navigation))
        .layer(RequestBodyTimeoutLayer::new(state.settings.http_request_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.settings.http_request_timeout,
        ))
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| {
            problem::ApiError::internal(anyhow::anyhow!("a handler panicked")).into_response_owned()
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // Every answer, the outer layers' own included (contract 3).
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(axum::middleware::map_request(drop_malformed_request_id))
}

/// A client's `X-Request-Id` is kept only when it looks like an id (letters, digits, `.`, `_`,
/// `:`, `-`, at most 128), so that no client can write into the log lines it is copied to; any
/// other is replaced by a generated one.
async fn drop_malformed_request_id<B>(mut request: Request<B>) -> Request<B> {
    let well_formed = |id: &[u8]| {
        (1..=128).contains(&id.len())
            && id.iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
    };
    if request.headers().get("x-request-id").is_some_and(|id| !well_formed(id.as_bytes())) {
        request.headers_mut().remove("x-request-id");
    }
    request
}

impl problem::ApiError {
    fn into_response_owned(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}
