//! Sending what is due. A delivery is leased before it is sent (its next attempt moved a minute
//! on), so a server that dies mid-send leaves it to be sent again, with the same `webhook-id`
//! (receivers drop repeats by it, as Standard Webhooks asks). Retries follow the Standard
//! Webhooks schedule (`WEBHOOK_RETRY_SCHEDULE`); an endpoint that has failed for three days is
//! disabled, with the reason shown to its admin, who is emailed (`notice`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::address;
use crate::portal::Portal;

/// Deliveries sent at once, per server.
const AT_ONCE: i64 = 16;
/// How long an endpoint may keep failing before it is disabled.
const FAILING_FOR: chrono::Duration = chrono::Duration::days(3);

pub fn spawn(portal: Arc<Portal>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder()
            .timeout(portal.settings.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(http) => http,
            Err(error) => {
                tracing::error!(error = %error, "outbound webhooks: no HTTP client; deliveries wait");
                return;
            }
        };
        loop {
            match round(&portal, &http).await {
                Ok(sent) if sent > 0 => continue,
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(error) => {
                    tracing::warn!(error = %error, "outbound webhooks: a delivery round failed");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    })
}

#[derive(sqlx::FromRow)]
struct Due {
    delivery_id: i64,
    message_id: String,
    payload: Value,
    tried: i32,
    url: Option<String>,
    secret: Option<String>,
    enabled: Option<bool>,
}

/// Sends the deliveries due now; how many.
async fn round(portal: &Portal, http: &reqwest::Client) -> Result<usize, sqlx::Error> {
    // Long enough for the attempt to be answered and recorded.
    let lease = portal.settings.webhook_timeout.as_secs() * 2 + 5;
    let due: Vec<Due> = sqlx::query_as(&format!(
        "WITH leased AS ( \
           UPDATE webhook_deliveries SET next_attempt_at = now() + interval '{lease} seconds' \
           WHERE delivery_id IN (SELECT delivery_id FROM webhook_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= now() \
             ORDER BY next_attempt_at LIMIT {AT_ONCE} FOR UPDATE SKIP LOCKED) \
           RETURNING delivery_id, endpoint_id, message_id, payload, jsonb_array_length(attempts) AS tried) \
         SELECT l.delivery_id, l.message_id, l.payload, l.tried, e.url, e.secret, e.enabled \
         FROM leased l LEFT JOIN webhook_endpoints e ON e.endpoint_id = l.endpoint_id"
    ))
    .fetch_all(&portal.pool)
    .await?;
    let count = due.len();
    let sends = due.into_iter().map(|due| async move {
        let outcome = send(portal, http, &due).await;
        if let Err(error) = record(portal, &due, outcome).await {
            tracing::warn!(error = %error, delivery = due.delivery_id, "recording a delivery failed; it is sent again");
        }
    });
    futures::future::join_all(sends).await;
    Ok(count)
}

/// What one attempt came to.
struct Attempt {
    status: Option<u16>,
    error: Option<String>,
    ms: u128,
}

impl Attempt {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[tracing::instrument(skip_all, fields(delivery = due.delivery_id, message = %due.message_id))]
async fn send(portal: &Portal, http: &reqwest::Client, due: &Due) -> Attempt {
    let started = Instant::now();
    let failed = |error: String| Attempt {
        status: None,
        error: Some(error),
        ms: started.elapsed().as_millis(),
    };
    let (Some(url), Some(secret), Some(true)) = (&due.url, &due.secret, due.enabled) else {
        return failed("the endpoint was disabled or deleted".into());
    };
    // Checked again now: the name may point elsewhere than when the endpoint was saved.
    let (url, address) = match address::check(url, portal.settings.dev_mode).await {
        Ok(checked) => checked,
        Err(error) => return failed(format!("the URL {error}")),
    };
    let body = due.payload.to_string();
    let timestamp = Utc::now().timestamp();
    let signature = match standardwebhooks::Webhook::new(secret)
        .and_then(|webhook| webhook.sign(&due.message_id, timestamp, body.as_bytes()))
    {
        Ok(signature) => signature,
        Err(error) => return failed(format!("signing failed: {error}")),
    };
    // Connect to the address that was checked, whatever the name resolves to by then.
    let client = match url.host_str() {
        Some(host) if host.parse::<std::net::IpAddr>().is_err() => reqwest::Client::builder()
            .timeout(portal.settings.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(host, address)
            .build()
            .unwrap_or_else(|_| http.clone()),
        _ => http.clone(),
    };
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &due.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => Attempt {
            status: Some(response.status().as_u16()),
            error: None,
            ms: started.elapsed().as_millis(),
        },
        Err(error) => {
            failed(if error.is_timeout() { "timed out".into() } else { error.to_string() })
        }
    }
}

/// Writes the attempt down: delivered, retried later, or failed for good.
async fn record(portal: &Portal, due: &Due, attempt: Attempt) -> Result<(), sqlx::Error> {
    let entry = json!({"at": Utc::now(), "status": attempt.status, "error": attempt.error, "ms": attempt.ms});
    let schedule = &portal.settings.webhook_retry_schedule;
    let retry_in = schedule.get(due.tried as usize).copied();
    let state = match (attempt.delivered(), retry_in) {
        (true, _) => "delivered",
        (false, Some(_)) if due.enabled == Some(true) => "pending",
        (false, _) => "failed",
    };
    let wait = retry_in.unwrap_or_default().as_secs_f64();
    sqlx::query(
        "WITH d AS ( \
           UPDATE webhook_deliveries SET attempts = attempts || $2, state = $3, \
             next_attempt_at = now() + make_interval(secs => $4), \
             delivered_at = CASE WHEN $3 = 'delivered' THEN now() END \
           WHERE delivery_id = $1 RETURNING endpoint_id) \
         UPDATE webhook_endpoints e SET \
           failing_since = CASE WHEN $5 THEN NULL ELSE COALESCE(e.failing_since, now()) END, \
           enabled = e.enabled AND ($5 OR COALESCE(e.failing_since, now()) > now() - make_interval(days => $6)), \
           disabled_reason = CASE WHEN e.enabled AND NOT $5 AND COALESCE(e.failing_since, now()) <= now() - make_interval(days => $6) \
             THEN 'failing since ' || to_char(e.failing_since, 'YYYY-MM-DD HH24:MI') || ' UTC: disabled by the portal' \
             ELSE e.disabled_reason END, \
           disabled_notice_due = e.disabled_notice_due OR (e.enabled AND NOT $5 \
             AND COALESCE(e.failing_since, now()) <= now() - make_interval(days => $6)) \
         FROM d WHERE e.endpoint_id = d.endpoint_id",
    )
    .bind(due.delivery_id)
    .bind(entry)
    .bind(state)
    .bind(wait)
    .bind(attempt.delivered())
    .bind(FAILING_FOR.num_days() as i32)
    .execute(&portal.pool)
    .await?;
    if state == "delivered" {
        tracing::info!(delivery = due.delivery_id, "outbound webhook delivered");
    }
    Ok(())
}
