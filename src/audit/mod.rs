//! What auditors read: every event of a lead with its hashes, the lead at any past instant, the
//! hash chain that proves the log untouched (`chain`, sealed by `sealer`, checked by `verify`),
//! and registration receipts (`receipt`).

pub mod chain;
pub mod find;
pub mod receipt;
pub mod sealer;
pub mod stats;
pub mod verify;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use soho_aggregates::{Lead, LeadId};
use soho_projections::{Checkpoints, LogPosition};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::commands::load_aggregate;
use crate::leads::queries::LeadView;
use chain::{ChainHash, StoredContent};
use verify::ExportedEvent;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Replay(anyhow::Error),
    /// The lead's newest events were committed a moment ago and are not sealed yet.
    #[error("the lead's latest events are not sealed yet; try again in a moment")]
    NotSealed,
}

/// One stored event, as kept in the log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Its place in the global log.
    pub position: i64,
    /// Its place in the lead's stream (1, 2, ...).
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    /// Who caused it and why: actorType, actorId, webhookId, correlationId.
    pub metadata: serde_json::Value,
    /// SHA-256 (hex) over the event and `prevHash` (CONTRACT 7).
    pub hash: String,
    /// The hash of the event before it in commit order (64 zeros for the first event).
    pub prev_hash: String,
}

/// A lead's stored event with its JSON as text (what the hash covers) and, once sealed, its
/// chain hashes.
#[derive(sqlx::FromRow)]
pub(crate) struct SealedRow {
    #[sqlx(flatten)]
    pub event: soho_projections::StoredEvent,
    pub payload_text: String,
    pub metadata_text: String,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
}

impl SealedRow {
    /// What the event's hash covers, as stored.
    pub fn content(&self) -> StoredContent {
        let e = &self.event;
        StoredContent {
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            recorded_at: e.recorded_at,
            payload_text: self.payload_text.clone(),
            metadata_text: self.metadata_text.clone(),
        }
    }
}

/// How long a read waits for the sealer to reach a lead's newest event (it runs moments behind).
const SEAL_WAIT: Duration = Duration::from_secs(5);

/// Every event of a lead, oldest first, with its hashes; waits for the newest to be sealed.
pub async fn lead_events(
    pool: &PgPool,
    checkpoints: &Checkpoints,
    id: LeadId,
) -> Result<Vec<AuditEvent>, AuditError> {
    let mut events = Vec::new();
    for (row, prev, hash) in sealed_rows(pool, checkpoints, id).await? {
        let e = row.event;
        events.push(AuditEvent {
            position: e.global_position,
            sequence: e.sequence,
            event_type: e.event_type,
            version: e.event_version,
            recorded_at: e.recorded_at,
            payload: e.payload,
            metadata: e.metadata,
            hash: hex::encode(hash),
            prev_hash: hex::encode(prev),
        });
    }
    Ok(events)
}

/// A lead's stored events with their chain hashes, once the newest is sealed.
async fn sealed_rows(
    pool: &PgPool,
    checkpoints: &Checkpoints,
    id: LeadId,
) -> Result<Vec<(SealedRow, Vec<u8>, Vec<u8>)>, AuditError> {
    let rows = sealed_stream(pool, id, false).await?;
    let rows = match rows.iter().rev().find(|r| r.hash.is_none()) {
        None => rows,
        Some(unsealed) => {
            if !wait_sealed(pool, checkpoints, unsealed.event.position()).await? {
                return Err(AuditError::NotSealed);
            }
            // The stream as it was asked for: an event appended while we waited (the CRM
            // sync's, a moment after a submission) is not sealed yet, and is not part of the
            // answer either, as it would not have been a moment earlier.
            let asked = rows.len();
            let mut rows = sealed_stream(pool, id, false).await?;
            rows.truncate(asked);
            rows
        }
    };
    rows.into_iter()
        .map(|mut row| match (row.prev_hash.take(), row.hash.take()) {
            (Some(prev), Some(hash)) => Ok((row, prev, hash)),
            _ => Err(AuditError::NotSealed),
        })
        .collect()
}

/// A lead's stored events (or only its first, the submission), in order.
pub(crate) async fn sealed_stream(
    pool: &PgPool,
    id: LeadId,
    first_only: bool,
) -> Result<Vec<SealedRow>, sqlx::Error> {
    sqlx::query_as::<_, SealedRow>(
        "SELECT e.global_position, e.tx_id::text::bigint AS tx_id, e.aggregate_type, \
           e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata, \
           e.recorded_at, e.payload::text AS payload_text, e.metadata::text AS metadata_text, \
           c.prev_hash, c.hash \
         FROM events e LEFT JOIN audit_chain c ON c.global_position = e.global_position \
         WHERE e.aggregate_type = 'Lead' AND e.aggregate_id = $1 AND (NOT $2 OR e.sequence = 1) \
         ORDER BY e.sequence",
    )
    .bind(id.to_string())
    .bind(first_only)
    .fetch_all(pool)
    .await
}

/// A lead's events as export lines (JSON, one per line), checkable offline by
/// [`verify::verify_export`]. Empty if there is no such lead.
pub async fn export_lead(
    pool: &PgPool,
    checkpoints: &Checkpoints,
    id: LeadId,
) -> Result<String, AuditError> {
    let mut out = String::new();
    for (row, prev, hash) in sealed_rows(pool, checkpoints, id).await? {
        let e = row.event;
        let content = StoredContent {
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            recorded_at: e.recorded_at,
            payload_text: row.payload_text,
            metadata_text: row.metadata_text,
        };
        let content = content.into_sealed().ok_or(AuditError::NotSealed)?;
        let line =
            ExportedEvent::new(e.global_position, content, hex::encode(prev), hex::encode(hash));
        // An ExportedEvent always serialises (string keys, JSON values).
        out.push_str(&serde_json::to_string(&line).unwrap_or_default());
        out.push('\n');
    }
    Ok(out)
}

/// The lead rebuilt from the events recorded up to `at` (inclusive); `None` if it did not exist.
pub async fn lead_state(
    pool: &PgPool,
    id: LeadId,
    at: DateTime<Utc>,
) -> Result<Option<LeadView>, AuditError> {
    let mut conn = pool.acquire().await?;
    let (lead, applied) =
        load_aggregate::<Lead>(&mut conn, id, Some(at)).await.map_err(AuditError::Replay)?;
    Ok((applied > 0).then(|| LeadView::of_aggregate(&lead)).flatten())
}

/// Waits until the sealer has passed `position`; false after [`SEAL_WAIT`].
pub async fn wait_sealed(
    pool: &PgPool,
    checkpoints: &Checkpoints,
    position: LogPosition,
) -> Result<bool, sqlx::Error> {
    checkpoints.wait_for(pool, &[sealer::NAME], position, SEAL_WAIT).await
}

/// The hash a stored event was sealed with, if it has been.
pub async fn sealed_hash(
    pool: &PgPool,
    global_position: i64,
) -> Result<Option<ChainHash>, sqlx::Error> {
    let row: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT hash FROM audit_chain WHERE global_position = $1")
            .bind(global_position)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(hash,)| ChainHash::from_bytes(&hash)))
}
