//! From the live feed to deliveries: each message of a partner with endpoints that asked for
//! its type becomes one delivery per endpoint, frozen as it was (the message a live socket got,
//! without `position`). The feed's positions grow in commit order (the lead writer's lock), and
//! the checkpoint moves in the same transaction as the deliveries it recorded: every message is
//! considered exactly once, by one server at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::live::feed;
use crate::portal::Portal;

/// Messages considered per transaction.
const BATCH: i64 = 500;
/// How often an idle fan-out looks for new messages.
const POLL: Duration = Duration::from_millis(200);

pub fn spawn(portal: Arc<Portal>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match step(&portal).await {
                Ok(BATCH) => continue,
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(error) => {
                    tracing::warn!(error = %error, "outbound webhooks: the fan-out failed; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    })
}

/// Records the deliveries of the next messages; how many messages it considered.
#[tracing::instrument(skip_all, err)]
async fn step(portal: &Portal) -> Result<i64, sqlx::Error> {
    let mut tx = portal.pool.begin().await?;
    // One server at a time: the others skip this round.
    let Some(after): Option<i64> =
        sqlx::query_scalar("SELECT position FROM webhook_fanout FOR UPDATE SKIP LOCKED")
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(0);
    };
    // No endpoint anywhere (the common case): nothing to render, the checkpoint just follows.
    let any: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled)")
            .fetch_one(&mut *tx)
            .await?;
    if !any {
        sqlx::query(
            "UPDATE webhook_fanout SET position = (SELECT COALESCE(max(position), $1) FROM live_feed)",
        )
        .bind(after)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(0);
    }
    let messages = feed::after(&portal.pool, after, None, BATCH).await?;
    let Some(last) = messages.last().map(|m| m.position) else {
        return Ok(0);
    };
    let partners: Vec<uuid::Uuid> = messages.iter().map(|m| m.partner_id).collect();
    let endpoints: Vec<(uuid::Uuid, uuid::Uuid, Vec<String>)> = sqlx::query_as(
        "SELECT endpoint_id, partner_id, events FROM webhook_endpoints \
         WHERE enabled AND partner_id = ANY($1)",
    )
    .bind(&partners)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_partner: HashMap<uuid::Uuid, Vec<(uuid::Uuid, Vec<String>)>> = HashMap::new();
    for (endpoint, partner, events) in endpoints {
        by_partner.entry(partner).or_default().push((endpoint, events));
    }
    let (mut ids, mut message_ids, mut types, mut payloads) = (vec![], vec![], vec![], vec![]);
    for message in &messages {
        let kind = message.value["type"].as_str().unwrap_or_default().to_string();
        for (endpoint, events) in by_partner.get(&message.partner_id).into_iter().flatten() {
            if events.contains(&kind) {
                let mut payload: Value = (*message.value).clone();
                if let Some(object) = payload.as_object_mut() {
                    object.remove("position");
                }
                ids.push(*endpoint);
                message_ids.push(format!("msg_{}", uuid::Uuid::now_v7().simple()));
                types.push(kind.clone());
                payloads.push(payload);
            }
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, message_id, event_type, payload) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])",
        )
        .bind(&ids)
        .bind(&message_ids)
        .bind(&types)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE webhook_fanout SET position = $1").bind(last).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(messages.len() as i64)
}
