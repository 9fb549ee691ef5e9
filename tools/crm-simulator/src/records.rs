//! `Leads` upsert and update, as Zoho takes them: up to 100 records a call, each answered on its
//! own (CONTRACT.md 4). A record refused (`MANDATORY_NOT_FOUND`, `INVALID_DATA`) leaves the
//! others of its call done; the status is 200 when all succeed, 207 when some do, 400 when none.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Map, Value};

use super::api::with_faults;
use super::state::{Call, CallRecord, SimLead, State as SimState};
use super::Simulator;

/// The most records one call may carry.
const MOST_RECORDS: usize = 100;

type Record = Map<String, Value>;

/// The records of a request body's `data`, or the whole call's refusal.
fn records(body: &Value) -> Result<Vec<Record>, (StatusCode, Value)> {
    let Some(data) = body["data"].as_array().filter(|d| !d.is_empty()) else {
        return Err((
            StatusCode::BAD_REQUEST,
            json!({"code": "INVALID_DATA", "details": {"api_name": "data"}, "message": "data is missing", "status": "error"}),
        ));
    };
    if data.len() > MOST_RECORDS {
        return Err((
            StatusCode::BAD_REQUEST,
            json!({"code": "LIMIT_EXCEEDED", "details": {"limit": MOST_RECORDS}, "message": "more than 100 records", "status": "error"}),
        ));
    }
    Ok(data.iter().map(|r| r.as_object().cloned().unwrap_or_default()).collect())
}

fn text(record: &Record, field: &str) -> Option<String> {
    record.get(field).and_then(Value::as_str).map(str::to_string)
}

/// A call as logged, before its answer.
fn call(method: &str, path: &str, records: &[Record], status_field: bool) -> Call {
    let records = records
        .iter()
        .map(|r| CallRecord {
            portal_lead_id: text(r, "Portal_Lead_Id"),
            lead_status: if status_field { text(r, "Lead_Status") } else { None },
            code: None,
        })
        .collect();
    Call { method: method.into(), path: path.into(), records, status: 0, fault: None }
}

fn refusal(code: &str, message: &str, details: Value) -> Value {
    json!({"code": code, "details": details, "message": message, "status": "error"})
}

/// The call's status from its records' answers.
fn answered(entries: Vec<Value>) -> (StatusCode, Value) {
    let succeeded = entries.iter().filter(|e| e["status"] == "success").count();
    let status = match succeeded {
        n if n == entries.len() => StatusCode::OK,
        0 => StatusCode::BAD_REQUEST,
        _ => StatusCode::MULTI_STATUS,
    };
    (status, json!({ "data": entries }))
}

pub async fn upsert(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let parsed = records(&body);
    let logged = call("POST", "/Leads/upsert", parsed.as_deref().unwrap_or_default(), true);
    with_faults(&sim, &headers, logged, move |sim| match parsed {
        Err(refused) => refused,
        Ok(records) => {
            let mut state = sim.lock();
            answered(records.into_iter().map(|r| upsert_one(&mut state, r)).collect())
        }
    })
    .await
}

/// Creates the lead, or updates the one with its `Portal_Lead_Id`.
fn upsert_one(state: &mut SimState, record: Record) -> Value {
    let last_name = text(&record, "Last_Name").unwrap_or_default();
    if last_name.is_empty() {
        return refusal(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": "Last_Name"}),
        );
    }
    if state.faults_reject(&last_name) {
        return refusal("INVALID_DATA", "invalid data", json!({"api_name": "Last_Name"}));
    }
    let portal_id = text(&record, "Portal_Lead_Id");
    let existing = portal_id.as_ref().and_then(|p| state.by_portal_id.get(p).cloned());
    if let Some(lead) = existing.as_ref().and_then(|id| state.leads.get_mut(id)) {
        lead.fields.extend(record);
        lead.updates += 1;
        return json!({"code": "SUCCESS", "duplicate_field": "Portal_Lead_Id", "action": "update",
            "details": {"id": lead.id}, "message": "record updated", "status": "success"});
    }
    state.next_id += 1;
    let id = state.next_id.to_string();
    let lead_status = text(&record, "Lead_Status").unwrap_or_else(|| "Not Contacted".into());
    if let Some(portal_id) = portal_id {
        state.by_portal_id.insert(portal_id, id.clone());
    }
    let lead = SimLead { id: id.clone(), fields: record, lead_status, inserts: 1, updates: 0 };
    state.leads.insert(id.clone(), lead);
    json!({"code": "SUCCESS", "duplicate_field": null, "action": "insert", "details": {"id": id},
        "message": "record added", "status": "success"})
}

/// `PUT /Leads`: up to 100 `{id, Lead_Status}` records.
pub async fn update(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    update_records(sim, headers, body, "/Leads".into()).await
}

/// `PUT /Leads/{id}`: one record, its id in the path.
pub async fn update_one(
    State(sim): State<Arc<Simulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(mut body): Json<Value>,
) -> Response {
    if let Some(record) = body["data"].get_mut(0).and_then(Value::as_object_mut) {
        record.insert("id".into(), Value::String(id.clone()));
    }
    update_records(sim, headers, body, format!("/Leads/{id}")).await
}

async fn update_records(
    sim: Arc<Simulator>,
    headers: HeaderMap,
    body: Value,
    path: String,
) -> Response {
    // Like Zoho, a change runs the record's workflow rules (here: the status-change webhook to
    // the portal) unless the call asked for none with `"trigger": []`.
    let runs_workflows = body.get("trigger") != Some(&json!([]));
    let mut parsed = records(&body);
    if let Ok(records) = parsed.as_mut() {
        // The log names leads by the portal's id, which an update does not carry.
        let state = sim.lock();
        for record in records.iter_mut() {
            let portal_id = text(record, "id")
                .and_then(|id| state.leads.get(&id))
                .and_then(|lead| lead.fields.get("Portal_Lead_Id").cloned());
            if let Some(portal_id) = portal_id {
                record.insert("Portal_Lead_Id".into(), portal_id);
            }
        }
    }
    let logged = call("PUT", &path, parsed.as_deref().unwrap_or_default(), true);
    let mut changes = Vec::new();
    let response = with_faults(&sim, &headers, logged, |sim| match parsed {
        Err(refused) => refused,
        Ok(records) => {
            let mut state = sim.lock();
            let entries = records.iter().map(|r| update_status(&mut state, r, &mut changes));
            answered(entries.collect())
        }
    })
    .await;
    // The webhooks' first attempts are made before the call is answered, so a caller that has
    // its answer knows any echo has been sent.
    if runs_workflows {
        for (id, portal_id, previous, status) in changes {
            super::webhooks::status_changed(&sim, &id, portal_id, &previous, &status).await;
        }
    }
    response
}

/// Sets one lead's `Lead_Status`; a change is noted in `changes` for the workflow rules.
fn update_status(
    state: &mut SimState,
    record: &Record,
    changes: &mut Vec<(String, Option<Value>, String, String)>,
) -> Value {
    let Some(id) = text(record, "id") else {
        return refusal(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": "id"}),
        );
    };
    let Some(status) = text(record, "Lead_Status") else {
        return refusal(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": "Lead_Status"}),
        );
    };
    if state.faults.reject_status.as_deref() == Some(status.as_str()) {
        return refusal("INVALID_DATA", "invalid data", json!({"api_name": "Lead_Status"}));
    }
    let Some(lead) = state.leads.get_mut(&id) else {
        return refusal(
            "INVALID_DATA",
            "the related id given seems to be invalid",
            json!({"id": id}),
        );
    };
    let previous = std::mem::replace(&mut lead.lead_status, status.clone());
    lead.fields.insert("Lead_Status".into(), Value::String(status.clone()));
    lead.updates += 1;
    if previous != status {
        changes.push((id.clone(), lead.fields.get("Portal_Lead_Id").cloned(), previous, status));
    }
    json!({"code": "SUCCESS", "details": {"id": id}, "message": "record updated", "status": "success"})
}
