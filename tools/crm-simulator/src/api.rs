//! The CRM API the portal calls: the OAuth token endpoint and `Leads` (upsert, update, get), with
//! the org's limits (calls at once, credits a day) and the faults of the moment applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

use super::records;
use super::state::Call;
use super::Simulator;

pub fn routes() -> Router<Arc<Simulator>> {
    Router::new()
        .route("/oauth/v2/token", post(token))
        .route("/crm/v8/Leads/upsert", post(records::upsert))
        .route("/crm/v8/Leads", put(records::update))
        .route("/crm/v8/Leads/{id}", get(get_lead).put(records::update_one))
}

#[derive(serde::Deserialize)]
struct TokenForm {
    grant_type: String,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn token(State(sim): State<Arc<Simulator>>, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type != "refresh_token"
        || form.refresh_token.is_none()
        || form.client_id.is_none()
        || form.client_secret.is_none()
    {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_code"}))).into_response();
    }
    // A refresh takes the faults' latency too, so refreshes made at once would overlap here.
    let (latency, refused) = {
        let state = sim.lock();
        (state.faults.latency_ms, state.faults.refuse_tokens)
    };
    {
        let _in_flight = RefreshInFlight::begin(&sim);
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if refused {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let (access_token, expires_in) = sim.issue_token();
    Json(json!({"access_token": access_token, "expires_in": expires_in, "api_domain": "https://www.zohoapis.com", "token_type": "Bearer"}))
        .into_response()
}

/// One token refresh being answered. It ends when the answer is ready or when the caller goes
/// away (the server drops the handler of a closed connection): a portal killed mid-refresh is not
/// overlapping the refresh of the portal that replaces it.
struct RefreshInFlight<'a>(&'a Simulator);

impl<'a> RefreshInFlight<'a> {
    fn begin(sim: &'a Simulator) -> Self {
        let mut state = sim.lock();
        state.refreshes_in_flight += 1;
        state.most_refreshes_in_flight =
            state.most_refreshes_in_flight.max(state.refreshes_in_flight);
        Self(sim)
    }
}

impl Drop for RefreshInFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().refreshes_in_flight -= 1;
    }
}

/// What the faults decided for one call.
enum Fault {
    Answer(StatusCode, Value, Option<u64>, &'static str),
    /// Carry the call out, then never answer.
    Hang,
    /// Carry the call out, then drop the connection.
    Drop,
}

fn decide(sim: &Simulator) -> Option<Fault> {
    let mut state = sim.lock();
    let faults = state.faults.clone();
    if state.outage_until.is_some_and(|until| until > Instant::now()) {
        return Some(Fault::Answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"code": "INTERNAL_ERROR", "message": "outage"}),
            None,
            "outage",
        ));
    }
    if faults.limit_reached {
        return Some(Fault::Answer(
            StatusCode::FORBIDDEN,
            json!({"code": "LIMIT_REACHED", "message": "the API limit has been reached", "status": "error"}),
            None,
            "limit reached",
        ));
    }
    if state.faults.hang_next > 0 {
        state.faults.hang_next -= 1;
        return Some(Fault::Hang);
    }
    if state.faults.drop_next > 0 {
        state.faults.drop_next -= 1;
        return Some(Fault::Drop);
    }
    if state.faults.rate_limit_burst > 0 {
        state.faults.rate_limit_burst -= 1;
        return Some(Fault::Answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"code": "TOO_MANY_REQUESTS", "message": "too many requests"}),
            Some(faults.retry_after_seconds.max(1)),
            "429",
        ));
    }
    drop(state);
    if sim.roll() < faults.error_rate {
        return Some(Fault::Answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"code": "INTERNAL_ERROR", "message": "injected"}),
            None,
            "500",
        ));
    }
    if sim.roll() < faults.timeout_rate {
        return Some(Fault::Hang);
    }
    if sim.roll() < faults.drop_rate {
        return Some(Fault::Drop);
    }
    None
}

/// A call the org has let in: counted against its cap until answered (or until the caller goes
/// away and the server drops the handler).
struct CallInFlight<'a>(&'a Simulator);

impl<'a> CallInFlight<'a> {
    /// Lets the call in if the org's cap allows one more.
    fn admit(sim: &'a Simulator) -> Option<Self> {
        let mut state = sim.lock();
        if state.calls_in_flight >= state.limits.concurrency {
            return None;
        }
        state.calls_in_flight += 1;
        state.most_calls_in_flight = state.most_calls_in_flight.max(state.calls_in_flight);
        Some(Self(sim))
    }
}

impl Drop for CallInFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().calls_in_flight -= 1;
    }
}

fn authorised(sim: &Simulator, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Zoho-oauthtoken "))
        .is_some_and(|token| sim.token_valid(token))
}

fn invalid_token() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"})))
        .into_response()
}

/// Logs `call` as answered with `status` (and the answer's per-record codes, if any).
fn log(sim: &Simulator, mut call: Call, status: u16, fault: Option<&str>, answer: Option<&Value>) {
    call.status = status;
    call.fault = fault.map(str::to_string);
    if let Some(entries) = answer.and_then(|a| a["data"].as_array()) {
        for (record, entry) in call.records.iter_mut().zip(entries) {
            record.code = entry["code"].as_str().map(str::to_string);
        }
    }
    sim.lock().calls.push(call);
}

/// Runs `effect` under the org's limits and the faults of the moment, logging the call.
pub async fn with_faults(
    sim: &Simulator,
    headers: &HeaderMap,
    call: Call,
    effect: impl FnOnce(&Simulator) -> (StatusCode, Value),
) -> Response {
    let Some(_in_flight) = CallInFlight::admit(sim) else {
        log(sim, call, 429, Some("concurrency"), None);
        return (StatusCode::TOO_MANY_REQUESTS, Json(json!({"code": "TOO_MANY_REQUESTS", "details": {}, "message": "too many concurrent requests", "status": "error"})))
            .into_response();
    };
    let latency = sim.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if !authorised(sim, headers) {
        log(sim, call, 401, Some("invalid token"), None);
        return invalid_token();
    }
    let fault = decide(sim);
    if let Some(Fault::Answer(status, body, retry_after, name)) = fault {
        log(sim, call, status.as_u16(), Some(name), None);
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        return response;
    }
    if !sim.lock().spend_credit() {
        log(sim, call, 429, Some("credits"), None);
        return (StatusCode::TOO_MANY_REQUESTS, Json(json!({"code": "LIMIT_REACHED", "details": {}, "message": "the API credits of the day are spent", "status": "error"})))
            .into_response();
    }
    let (status, body) = effect(sim);
    match fault {
        Some(Fault::Hang) => {
            log(sim, call, status.as_u16(), Some("timeout"), Some(&body));
            tokio::time::sleep(Duration::from_secs(120)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Some(Fault::Drop) => {
            log(sim, call, 0, Some("dropped"), Some(&body));
            let broken = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("connection dropped"))
            });
            Response::new(Body::from_stream(broken))
        }
        _ => {
            log(sim, call, status.as_u16(), None, Some(&body));
            (status, Json(body)).into_response()
        }
    }
}

async fn get_lead(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorised(&sim, &headers) {
        return invalid_token();
    }
    match sim.lock().leads.get(&id) {
        Some(lead) => Json(json!({"data": [lead.fields]})).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
