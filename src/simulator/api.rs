//! The CRM API the portal calls: the OAuth token endpoint and `Leads` (upsert, update, get), with
//! the faults of the moment applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

use super::state::{Call, SimLead};
use super::Simulator;

pub fn routes() -> Router<Arc<Simulator>> {
    Router::new()
        .route("/oauth/v2/token", post(token))
        .route("/crm/v8/Leads/upsert", post(upsert))
        .route("/crm/v8/Leads/{id}", get(get_lead).put(update))
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
        let mut state = sim.lock();
        state.refreshes_in_flight += 1;
        state.most_refreshes_in_flight =
            state.most_refreshes_in_flight.max(state.refreshes_in_flight);
        (state.faults.latency_ms, state.faults.refuse_tokens)
    };
    tokio::time::sleep(Duration::from_millis(latency)).await;
    sim.lock().refreshes_in_flight -= 1;
    if refused {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let (access_token, expires_in) = sim.issue_token();
    Json(json!({"access_token": access_token, "expires_in": expires_in, "api_domain": "https://www.zohoapis.com", "token_type": "Bearer"}))
        .into_response()
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

/// Runs `effect` under the faults of the moment, logging the call.
async fn with_faults(
    sim: &Simulator,
    headers: &HeaderMap,
    mut call: Call,
    effect: impl FnOnce(&Simulator) -> (StatusCode, Value),
) -> Response {
    let latency = sim.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if !authorised(sim, headers) {
        call.status = 401;
        call.fault = Some("invalid token".into());
        sim.lock().calls.push(call);
        return invalid_token();
    }
    match decide(sim) {
        Some(Fault::Answer(status, body, retry_after, name)) => {
            call.status = status.as_u16();
            call.fault = Some(name.into());
            sim.lock().calls.push(call);
            let mut response = (status, Json(body)).into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.into());
            }
            response
        }
        Some(Fault::Hang) => {
            let (status, _) = effect(sim);
            call.status = status.as_u16();
            call.fault = Some("timeout".into());
            sim.lock().calls.push(call);
            tokio::time::sleep(Duration::from_secs(120)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Some(Fault::Drop) => {
            effect(sim);
            call.status = 0;
            call.fault = Some("dropped".into());
            sim.lock().calls.push(call);
            let broken = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("connection dropped"))
            });
            Response::new(Body::from_stream(broken))
        }
        None => {
            let (status, body) = effect(sim);
            call.status = status.as_u16();
            sim.lock().calls.push(call);
            (status, Json(body)).into_response()
        }
    }
}

async fn upsert(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let record = body["data"][0].as_object().cloned().unwrap_or_default();
    let portal_id = record.get("Portal_Lead_Id").and_then(Value::as_str).map(str::to_string);
    let call = Call {
        method: "POST".into(),
        path: "/Leads/upsert".into(),
        portal_lead_id: portal_id.clone(),
        lead_status: record.get("Lead_Status").and_then(Value::as_str).map(str::to_string),
        status: 0,
        fault: None,
    };
    with_faults(&sim, &headers, call, move |sim| {
        let last_name = record.get("Last_Name").and_then(Value::as_str).unwrap_or("");
        if last_name.is_empty() {
            return (StatusCode::BAD_REQUEST, zoho_error("MANDATORY_NOT_FOUND", "required field not found", json!({"api_name": "Last_Name"})));
        }
        let mut state = sim.lock();
        if state.faults_reject(last_name) {
            return (StatusCode::BAD_REQUEST, zoho_error("INVALID_DATA", "invalid data", json!({"api_name": "Last_Name"})));
        }
        let existing = portal_id.as_ref().and_then(|p| state.by_portal_id.get(p).cloned());
        let (id, action) = match existing {
            Some(id) => {
                let lead = state.leads.get_mut(&id).expect("indexed lead exists");
                lead.fields.extend(record.clone());
                lead.updates += 1;
                (id, "update")
            }
            None => {
                state.next_id += 1;
                let id = state.next_id.to_string();
                let lead_status = record.get("Lead_Status").and_then(Value::as_str).unwrap_or("Not Contacted").to_string();
                state.leads.insert(id.clone(), SimLead { id: id.clone(), fields: record.clone(), lead_status, inserts: 1, updates: 0 });
                if let Some(portal_id) = &portal_id {
                    state.by_portal_id.insert(portal_id.clone(), id.clone());
                }
                (id, "insert")
            }
        };
        let answer = json!({"data": [{"code": "SUCCESS", "duplicate_field": if action == "update" { json!("Portal_Lead_Id") } else { Value::Null },
            "action": action, "details": {"id": id}, "message": if action == "insert" { "record added" } else { "record updated" }, "status": "success"}]});
        (if action == "insert" { StatusCode::CREATED } else { StatusCode::OK }, answer)
    })
    .await
}

async fn update(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let status = body["data"][0]["Lead_Status"].as_str().map(str::to_string);
    // Like Zoho, a change runs the record's workflow rules (here: the status-change webhook to
    // the portal) unless the call asked for none with `"trigger": []`.
    let runs_workflows = body.get("trigger") != Some(&json!([]));
    let portal_id =
        sim.lock().leads.get(&id).and_then(|l| {
            l.fields.get("Portal_Lead_Id").and_then(Value::as_str).map(str::to_string)
        });
    let call = Call {
        method: "PUT".into(),
        path: format!("/Leads/{id}"),
        portal_lead_id: portal_id,
        lead_status: status.clone(),
        status: 0,
        fault: None,
    };
    let mut changed = None;
    let response = with_faults(&sim, &headers, call, |sim| {
        let mut state = sim.lock();
        if !state.leads.contains_key(&id) {
            return (StatusCode::NOT_FOUND, zoho_error("INVALID_DATA", "the related id given seems to be invalid", json!({"id": id})));
        }
        let Some(status) = status else {
            return (StatusCode::BAD_REQUEST, zoho_error("MANDATORY_NOT_FOUND", "required field not found", json!({"api_name": "Lead_Status"})));
        };
        if state.faults.reject_status.as_deref() == Some(status.as_str()) {
            return (StatusCode::BAD_REQUEST, zoho_error("INVALID_DATA", "invalid data", json!({"api_name": "Lead_Status"})));
        }
        let Some(lead) = state.leads.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, zoho_error("INVALID_DATA", "the related id given seems to be invalid", json!({"id": id})));
        };
        let previous = std::mem::replace(&mut lead.lead_status, status.clone());
        lead.fields.insert("Lead_Status".into(), Value::String(status.clone()));
        lead.updates += 1;
        if previous != status {
            changed = Some((lead.fields.get("Portal_Lead_Id").cloned(), previous, status));
        }
        (StatusCode::OK, json!({"data": [{"code": "SUCCESS", "details": {"id": id}, "message": "record updated", "status": "success"}]}))
    })
    .await;
    // The webhook's first attempt is made before the call is answered, so a caller that has its
    // answer knows any echo has been sent.
    if let (true, Some((portal_id, previous, status))) = (runs_workflows, changed) {
        super::webhooks::status_changed(&sim, &id, portal_id, &previous, &status).await;
    }
    response
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

fn zoho_error(code: &str, message: &str, details: Value) -> Value {
    json!({"data": [{"code": code, "details": details, "message": message, "status": "error"}]})
}
