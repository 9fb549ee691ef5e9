//! The operator's side: a small page and a JSON API to create and approve partners, change lead
//! statuses (each sends the portal a signed webhook) and set faults. Tests use the same API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::{Faults, Limits, SimPartner};
use super::webhooks::deliver;
use super::Simulator;

pub fn routes() -> Router<Arc<Simulator>> {
    Router::new()
        .route("/", get(page))
        .route("/sim", get(page))
        .route("/sim/state", get(state))
        .route("/sim/faults", post(set_faults))
        .route("/sim/tokens/expire", post(expire_tokens))
        .route("/sim/limits", post(set_limits))
        .route("/sim/partners", post(upsert_partner))
        .route("/sim/partners/{id}/approve", post(approve))
        .route("/sim/partners/{id}/suspend", post(suspend))
        .route("/sim/leads/{id}/status", post(lead_status))
}

async fn state(State(sim): State<Arc<Simulator>>) -> Json<Value> {
    let most_in_ten_minutes = sim.most_refreshes_in_ten_minutes();
    let mut state = sim.lock();
    let credits_used = state.credits_used();
    let mut leads: Vec<_> = state.leads.values().cloned().collect();
    leads.sort_by(|a, b| a.id.cmp(&b.id));
    Json(json!({
        "partners": state.partners,
        "leads": leads,
        "calls": state.calls,
        "faults": state.faults,
        "tokenRefreshes": state.refreshes,
        "mostTokenRefreshesInFlight": state.most_refreshes_in_flight,
        "mostTokenRefreshesInTenMinutes": most_in_ten_minutes,
        "webhooksSent": state.webhooks_sent,
        "webhooksFailed": state.webhooks_failed,
        "limits": state.limits,
        "callsInFlight": state.calls_in_flight,
        "mostCallsInFlight": state.most_calls_in_flight,
        "creditsUsed": credits_used,
    }))
}

/// Sets the org's limits (calls at once, credits a day); credits already spent stay spent.
async fn set_limits(State(sim): State<Arc<Simulator>>, Json(limits): Json<Limits>) -> Json<Limits> {
    let mut state = sim.lock();
    state.limits = limits;
    Json(state.limits.clone())
}

async fn set_faults(State(sim): State<Arc<Simulator>>, Json(faults): Json<Faults>) -> Json<Faults> {
    let mut state = sim.lock();
    if faults.expire_tokens {
        state.tokens.clear();
    }
    state.outage_until = (faults.outage_seconds > 0)
        .then(|| Instant::now() + Duration::from_secs(faults.outage_seconds));
    state.faults = Faults { expire_tokens: false, ..faults };
    Json(state.faults.clone())
}

/// Revokes every token issued so far, leaving the other faults as they are.
async fn expire_tokens(State(sim): State<Arc<Simulator>>) -> Json<Value> {
    let mut state = sim.lock();
    let revoked = state.tokens.len();
    state.tokens.clear();
    Json(json!({"revoked": revoked}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartnerRequest {
    soho_partner_id: Option<String>,
    name: String,
    email: String,
    #[serde(default)]
    approved: bool,
    tier: Option<String>,
    commission_rate: Option<f64>,
}

async fn upsert_partner(
    State(sim): State<Arc<Simulator>>,
    Json(request): Json<PartnerRequest>,
) -> Response {
    let (partner, created) = {
        let mut state = sim.lock();
        let id = request.soho_partner_id.unwrap_or_else(|| {
            state.next_id += 1;
            state.next_id.to_string()
        });
        let partner = SimPartner {
            soho_partner_id: id.clone(),
            name: request.name,
            email: request.email,
            approved: request.approved,
            tier: request.tier,
            commission_rate: request.commission_rate,
        };
        let created = match state.partners.iter_mut().find(|p| p.soho_partner_id == id) {
            Some(existing) => {
                *existing = partner.clone();
                false
            }
            None => {
                state.partners.push(partner.clone());
                true
            }
        };
        (partner, created)
    };
    send_partner(&sim, partner, if created { "partner.created" } else { "partner.updated" }).await
}

async fn approve(State(sim): State<Arc<Simulator>>, Path(id): Path<String>) -> Response {
    set_approved(sim, id, true).await
}

async fn suspend(State(sim): State<Arc<Simulator>>, Path(id): Path<String>) -> Response {
    set_approved(sim, id, false).await
}

async fn set_approved(sim: Arc<Simulator>, id: String, approved: bool) -> Response {
    let partner = {
        let mut state = sim.lock();
        let Some(partner) = state.partners.iter_mut().find(|p| p.soho_partner_id == id) else {
            return (StatusCode::NOT_FOUND, Json(json!({"error": "no such partner"})))
                .into_response();
        };
        partner.approved = approved;
        partner.clone()
    };
    send_partner(&sim, partner, "partner.updated").await
}

async fn send_partner(sim: &Arc<Simulator>, partner: SimPartner, event: &str) -> Response {
    let body =
        json!({"event": event, "occurredAt": chrono::Utc::now().to_rfc3339(), "partner": partner});
    let (webhook_id, status) = deliver(sim, "/webhooks/soho/partner", body).await;
    Json(json!({"partner": partner, "webhookId": webhook_id, "portalStatus": status}))
        .into_response()
}

#[derive(Deserialize)]
struct StatusRequest {
    status: String,
}

async fn lead_status(
    State(sim): State<Arc<Simulator>>,
    Path(id): Path<String>,
    Json(request): Json<StatusRequest>,
) -> Response {
    let (portal_id, previous) = {
        let mut state = sim.lock();
        let Some(lead) = state.leads.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, Json(json!({"error": "no such lead"}))).into_response();
        };
        let previous = std::mem::replace(&mut lead.lead_status, request.status.clone());
        lead.fields.insert("Lead_Status".into(), Value::String(request.status.clone()));
        (lead.fields.get("Portal_Lead_Id").cloned(), previous)
    };
    let (webhook_id, status) =
        super::webhooks::status_changed(&sim, &id, portal_id, &previous, &request.status).await;
    Json(json!({"webhookId": webhook_id, "portalStatus": status})).into_response()
}

async fn page(State(sim): State<Arc<Simulator>>) -> Html<String> {
    let portal = sim.config.portal_url.clone();
    Html(format!(
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Soho CRM simulator</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}}form{{margin:1rem 0}}label{{margin-right:1rem}}</style></head>
<body><h1>Soho CRM simulator</h1><p>Sends signed webhooks to the portal at <a href="{portal}">{portal}</a>.
Emails the portal sends in dev mode are at <a href="{portal}/dev/mailbox">{portal}/dev/mailbox</a>.</p>
<h2>New partner</h2><form id="partner"><label>Name <input name="name" required value="Acme Referrals Ltd"></label>
<label>Email <input name="email" type="email" required value="owner@acme.example"></label>
<label><input name="approved" type="checkbox" checked> Approved</label><button>Create</button></form>
<h2>Org limits</h2><p id="limits"></p>
<h2>Partners</h2><table id="partners"><thead><tr><th>Soho id</th><th>Name</th><th>Email</th><th>Approved</th><th></th></tr></thead><tbody></tbody></table>
<h2>Leads</h2><table id="leads"><thead><tr><th>Soho id</th><th>Name</th><th>Lead_Status</th><th>Change to</th></tr></thead><tbody></tbody></table>
<script>
const statuses = ["Not Contacted","Attempted to Contact","Contact in Future","Contacted","Pre-Qualified","Qualified","Converted","Not Qualified","Lost Lead","Junk Lead"];
const post = (url, body) => fetch(url, {{method: "POST", headers: {{"content-type": "application/json"}}, body: JSON.stringify(body || {{}})}}).then(load);
function cell(text) {{ const td = document.createElement("td"); td.textContent = text; return td; }}
async function load() {{
  const s = await (await fetch("/sim/state")).json();
  document.querySelector("#limits").textContent =
    `API calls in flight: ${{s.callsInFlight}} of ${{s.limits.concurrency}} (most so far: ${{s.mostCallsInFlight}}). ` +
    `Credits used in the last 24 h: ${{s.creditsUsed}} of ${{s.limits.dailyCredits}}.`;
  const pt = document.querySelector("#partners tbody"); pt.replaceChildren();
  for (const p of s.partners) {{
    const tr = document.createElement("tr"); tr.append(cell(p.sohoPartnerId), cell(p.name), cell(p.email), cell(p.approved ? "yes" : "no"));
    const td = document.createElement("td"); const b = document.createElement("button");
    b.textContent = p.approved ? "Suspend" : "Approve";
    b.onclick = () => post(`/sim/partners/${{p.sohoPartnerId}}/${{p.approved ? "suspend" : "approve"}}`);
    td.append(b); tr.append(td); pt.append(tr);
  }}
  const lt = document.querySelector("#leads tbody"); lt.replaceChildren();
  for (const l of s.leads) {{
    const tr = document.createElement("tr");
    tr.append(cell(l.id), cell(`${{l.fields.First_Name || ""}} ${{l.fields.Last_Name}}`), cell(l.leadStatus));
    const td = document.createElement("td"); const sel = document.createElement("select");
    sel.setAttribute("aria-label", `New status for lead ${{l.id}}`);
    for (const v of statuses) {{ const o = document.createElement("option"); o.value = o.textContent = v; o.selected = v === l.leadStatus; sel.append(o); }}
    sel.onchange = () => post(`/sim/leads/${{l.id}}/status`, {{status: sel.value}});
    td.append(sel); tr.append(td); lt.append(tr);
  }}
}}
document.querySelector("#partner").onsubmit = (e) => {{ e.preventDefault(); const f = new FormData(e.target);
  post("/sim/partners", {{name: f.get("name"), email: f.get("email"), approved: f.get("approved") === "on"}}); }};
load(); setInterval(load, 2000);
</script></body></html>"##
    ))
}
