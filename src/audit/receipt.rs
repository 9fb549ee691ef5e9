//! Registration receipts (CONTRACT 7): proof that a partner registered a person at an instant,
//! without the person's data. The receipt names the lead's first event by its chain hash, so it
//! holds exactly as long as that event is in the log unaltered: this is what settles a channel
//! conflict between two partners.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use soho_aggregates::lead::{LeadDetails, LeadEvent};
use soho_aggregates::LeadId;
use soho_projections::Checkpoints;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::chain::ChainHash;
use super::{sealed_stream, AuditError, SealedRow};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub lead_id: uuid::Uuid,
    pub partner_id: uuid::Uuid,
    /// When the log recorded the lead.
    pub recorded_at: DateTime<Utc>,
    /// SHA-256 (hex) of the deployment's salt and the person's key: the lower-cased email, or the
    /// normalised phone for a lead without an email.
    pub person_key_hash: String,
    /// The chain hash of the lead's first event (`LeadSubmitted`).
    pub event_hash: String,
}

/// Whether a receipt holds against the log as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptCheck {
    pub ok: bool,
    /// Why not, when it does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The lead's first event as stored, with the hash chain's record of it.
async fn first_event(pool: &PgPool, lead: LeadId) -> Result<Option<SealedRow>, sqlx::Error> {
    Ok(sealed_stream(pool, lead, true).await?.into_iter().next())
}

async fn salt(pool: &PgPool) -> Result<Vec<u8>, sqlx::Error> {
    let (salt,): (Vec<u8>,) = sqlx::query_as("SELECT salt FROM audit_salt").fetch_one(pool).await?;
    Ok(salt)
}

fn person_key_hash(salt: &[u8], details: &LeadDetails) -> String {
    let key = match (details.email_key(), details.phone_key()) {
        (Some(email), _) => format!("email:{email}"),
        (None, Some(phone)) => format!("phone:{phone}"),
        (None, None) => String::new(),
    };
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(key.as_bytes());
    hex::encode(hasher.finalize())
}

/// The lead's receipt, once its first event is sealed (waiting for that a moment if need be);
/// `None` if there is no such lead.
pub async fn issue(
    pool: &PgPool,
    checkpoints: &Checkpoints,
    lead: LeadId,
) -> Result<Option<Receipt>, AuditError> {
    let Some(mut first) = first_event(pool, lead).await? else {
        return Ok(None);
    };
    if first.hash.is_none() {
        if !super::wait_sealed(pool, checkpoints, first.event.position()).await? {
            return Err(AuditError::NotSealed);
        }
        first = first_event(pool, lead).await?.ok_or(AuditError::NotSealed)?;
    }
    let hash =
        first.hash.as_deref().and_then(ChainHash::from_bytes).ok_or(AuditError::NotSealed)?;
    let LeadEvent::LeadSubmitted { partner_id, details, .. } =
        first.event.decode::<LeadEvent>().map_err(|e| AuditError::Replay(e.into()))?
    else {
        return Ok(None);
    };
    Ok(Some(Receipt {
        lead_id: lead.as_uuid(),
        partner_id: partner_id.as_uuid(),
        recorded_at: first.event.recorded_at,
        person_key_hash: person_key_hash(&salt(pool).await?, &details),
        event_hash: hash.to_hex(),
    }))
}

/// Checks a receipt against the log: the lead's first event, recomputed from what is stored now,
/// must still have the receipt's hash, and say what the receipt says.
pub async fn check(pool: &PgPool, receipt: &Receipt) -> Result<ReceiptCheck, AuditError> {
    let refuse = |reason: &str| Ok(ReceiptCheck { ok: false, reason: Some(reason.to_string()) });
    let Some(first) = first_event(pool, LeadId(receipt.lead_id)).await? else {
        return refuse("the log has no such lead");
    };
    let Some(prev) = first.prev_hash.as_deref().and_then(ChainHash::from_bytes) else {
        return refuse("the lead's first event is not sealed");
    };
    let recomputed = first.content().hash(prev);
    if Some(recomputed) != ChainHash::from_hex(&receipt.event_hash) {
        return refuse("the lead's first event as stored does not have the receipt's hash");
    }
    if first.hash.as_deref().and_then(ChainHash::from_bytes) != Some(recomputed) {
        return refuse("the chain's hash of the lead's first event has changed");
    }
    let Ok(LeadEvent::LeadSubmitted { partner_id, details, .. }) =
        first.event.decode::<LeadEvent>()
    else {
        return refuse("the lead's first event is not its submission");
    };
    let salt = salt(pool).await?;
    let matches = partner_id.as_uuid() == receipt.partner_id
        && first.event.recorded_at == receipt.recorded_at
        && person_key_hash(&salt, &details) == receipt.person_key_hash;
    if !matches {
        return refuse("the receipt's partner, instant or person does not match the log");
    }
    Ok(ReceiptCheck { ok: true, reason: None })
}
