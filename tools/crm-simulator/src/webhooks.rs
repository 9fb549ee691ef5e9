//! Webhooks from the simulator to the portal: signed with Standard Webhooks, and retried on its
//! schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; scaled by `retry_scale`) with the same
//! `webhook-id` until the portal answers 2xx.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Simulator;

const SCHEDULE_SECONDS: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

/// Sends now; if the portal does not take it, keeps retrying in the background. Returns the
/// webhook id and the first attempt's status (None if the portal could not be reached).
pub async fn deliver(sim: &Arc<Simulator>, path: &str, body: Value) -> (String, Option<u16>) {
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let body = body.to_string();
    let first = attempt(sim, path, &id, &body).await;
    if first.is_some_and(|s| (200..300).contains(&s)) {
        sim.lock().webhooks_sent += 1;
    } else {
        let (sim, path, id) = (Arc::clone(sim), path.to_string(), id.clone());
        tokio::spawn(async move {
            for delay in SCHEDULE_SECONDS {
                tokio::time::sleep(Duration::from_secs_f64(delay as f64 * sim.config.retry_scale))
                    .await;
                if attempt(&sim, &path, &id, &body).await.is_some_and(|s| (200..300).contains(&s)) {
                    sim.lock().webhooks_sent += 1;
                    return;
                }
            }
            sim.lock().webhooks_failed += 1;
            tracing::warn!(webhook_id = %id, "the portal never took this webhook");
        });
    }
    (id, first)
}

/// Tells the portal that a lead's `Lead_Status` changed in the CRM.
pub async fn status_changed(
    sim: &Arc<Simulator>,
    soho_lead_id: &str,
    portal_lead_id: Option<Value>,
    previous: &str,
    status: &str,
) -> (String, Option<u16>) {
    let body = serde_json::json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now().to_rfc3339(),
        "lead": {"sohoLeadId": soho_lead_id, "portalLeadId": portal_lead_id, "status": status, "previousStatus": previous}});
    deliver(sim, "/webhooks/soho/lead-status", body).await
}

async fn attempt(sim: &Simulator, path: &str, id: &str, body: &str) -> Option<u16> {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = standardwebhooks::Webhook::new(&sim.config.webhook_secret)
        .and_then(|w| w.sign(id, timestamp, body.as_bytes()))
        .ok()?;
    let response = sim
        .http
        .post(format!("{}{path}", sim.config.portal_url))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await;
    match response {
        Ok(response) => Some(response.status().as_u16()),
        Err(error) => {
            tracing::warn!(%error, webhook_id = id, "webhook delivery failed");
            None
        }
    }
}
