//! The lead read models: the lead list (`leads`), each lead's status history
//! (`lead_status_history`) and the dashboard counters (`lead_counts`), kept together because
//! they change on the same events.

use chrono::{DateTime, Utc};
use soho_aggregates::lead::{LeadEvent, StatusChange, Submitter, SyncState};
use soho_aggregates::{ActorKind, LeadStatus};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError, StoredEvent};

pub struct LeadsProjection;

#[async_trait::async_trait]
impl Projection for LeadsProjection {
    fn name(&self) -> &'static str {
        "leads"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["lead_counts", "lead_status_history", "live_feed", "leads"]
    }

    fn follows(&self) -> &'static [&'static str] {
        &["Lead"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for stored in events.iter().filter(|e| e.aggregate_type == "Lead") {
            let id = stored.aggregate_uuid()?;
            match stored.decode::<LeadEvent>()? {
                LeadEvent::LeadSubmitted {
                    partner_id,
                    submitted_by,
                    details,
                    channel_conflict,
                    at,
                    ..
                } => {
                    let user = match submitted_by {
                        Submitter::User { id } => Some(id.as_uuid()),
                        Submitter::Public => None,
                    };
                    let search = [
                        &details.first_name,
                        &Some(details.last_name.clone()),
                        &details.email,
                        &details.company,
                    ]
                    .iter()
                    .filter_map(|v| v.as_deref())
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase();
                    sqlx::query(
                        "INSERT INTO leads (lead_id, partner_id, submitted_by_user, first_name, last_name, email, phone, \
                         phone_key, company, notes, metadata, status, crm_status, sync_state, channel_conflict, \
                         created_at, updated_at, search_text) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'new', $12, 'pending', $13, $14, $14, $15)",
                    )
                    .bind(id)
                    .bind(partner_id.as_uuid())
                    .bind(user)
                    .bind(&details.first_name)
                    .bind(&details.last_name)
                    .bind(&details.email)
                    .bind(&details.phone)
                    .bind(details.phone_key())
                    .bind(&details.company)
                    .bind(&details.notes)
                    .bind(sqlx::types::Json(&details.metadata))
                    .bind(soho_aggregates::lead::INITIAL_CRM_STATUS)
                    .bind(channel_conflict)
                    .bind(at)
                    .bind(search)
                    .execute(&mut *tx)
                    .await?;
                    count(tx, "partner", partner_id.as_uuid(), LeadStatus::New, 1).await?;
                    if let Some(user) = user {
                        count(tx, "user", user, LeadStatus::New, 1).await?;
                    }
                    feed(tx, "lead.created", id, serde_json::json!({})).await?;
                }
                LeadEvent::LeadSyncedToCrm { soho_lead_id, at } => {
                    sqlx::query(
                        "UPDATE leads SET soho_lead_id = $2, sync_state = 'synced', sync_error = NULL, updated_at = $3 \
                         WHERE lead_id = $1",
                    )
                    .bind(id)
                    .bind(&soho_lead_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    feed(tx, "lead.synced", id, serde_json::json!({"sohoLeadId": soho_lead_id}))
                        .await?;
                }
                LeadEvent::CrmSyncFailed { code, message, at } => {
                    sqlx::query("UPDATE leads SET sync_state = $2, sync_error = $3, updated_at = $4 WHERE lead_id = $1")
                        .bind(id)
                        .bind(sync_state(SyncState::Failed))
                        .bind(format!("{code}: {message}"))
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                LeadEvent::LeadStatusChanged { old_status, change, at, .. } => {
                    let (partner, user): (Uuid, Option<Uuid>) = sqlx::query_as(
                        "UPDATE leads SET status = $2, crm_status = $3, updated_at = $4 WHERE lead_id = $1 \
                         RETURNING partner_id, submitted_by_user",
                    )
                    .bind(id)
                    .bind(change.status.as_str())
                    .bind(&change.crm_status)
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await?;
                    for (scope, scope_id) in [("partner", Some(partner)), ("user", user)] {
                        if let Some(scope_id) = scope_id {
                            count(tx, scope, scope_id, old_status, -1).await?;
                            count(tx, scope, scope_id, change.status, 1).await?;
                        }
                    }
                    history(tx, id, stored.sequence, old_status, &change, true).await?;
                    let source = serde_json::to_value(change.source).unwrap_or_default();
                    let data = serde_json::json!({"oldStatus": old_status.as_str(), "newStatus": change.status.as_str(),
                        "source": source, "at": change.occurred_at});
                    feed(tx, "lead.status_changed", id, data).await?;
                }
                LeadEvent::LeadStatusChangeSuperseded { change, .. } => {
                    let current: String =
                        sqlx::query_scalar("SELECT status FROM leads WHERE lead_id = $1")
                            .bind(id)
                            .fetch_one(&mut *tx)
                            .await?;
                    let current = LeadStatus::parse(&current).unwrap_or_default();
                    history(tx, id, stored.sequence, current, &change, false).await?;
                }
            }
        }
        Ok(())
    }
}

/// A live-update message about the lead, scoped as the lead is.
async fn feed(
    tx: &mut PgConnection,
    kind: &str,
    lead: Uuid,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO live_feed (kind, lead_id, partner_id, submitted_by_user, data) \
         SELECT $1, lead_id, partner_id, submitted_by_user, $3 FROM leads WHERE lead_id = $2",
    )
    .bind(kind)
    .bind(lead)
    .bind(data)
    .execute(tx)
    .await?;
    Ok(())
}

fn sync_state(state: SyncState) -> &'static str {
    match state {
        SyncState::Pending => "pending",
        SyncState::Synced => "synced",
        SyncState::Failed => "failed",
    }
}

async fn count(
    tx: &mut PgConnection,
    scope: &str,
    scope_id: Uuid,
    status: LeadStatus,
    by: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO lead_counts (scope, scope_id, status, leads) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (scope, scope_id, status) DO UPDATE SET leads = lead_counts.leads + EXCLUDED.leads",
    )
    .bind(scope)
    .bind(scope_id)
    .bind(status.as_str())
    .bind(by)
    .execute(tx)
    .await?;
    Ok(())
}

async fn history(
    tx: &mut PgConnection,
    lead: Uuid,
    sequence: i64,
    old_status: LeadStatus,
    change: &StatusChange,
    applied: bool,
) -> Result<(), sqlx::Error> {
    let actor_type = match change.actor.kind {
        ActorKind::User => "user",
        ActorKind::Crm => "crm",
        ActorKind::Public => "public",
        ActorKind::System => "system",
    };
    let source = match change.source {
        soho_aggregates::lead::StatusSource::Portal => "portal",
        soho_aggregates::lead::StatusSource::Crm => "crm",
    };
    sqlx::query(
        "INSERT INTO lead_status_history (lead_id, sequence, old_status, new_status, crm_status, source, \
         actor_type, actor_id, note, applied, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(lead)
    .bind(sequence)
    .bind(old_status.as_str())
    .bind(change.status.as_str())
    .bind(&change.crm_status)
    .bind(source)
    .bind(actor_type)
    .bind(&change.actor.id)
    .bind(&change.note)
    .bind(applied)
    .bind::<DateTime<Utc>>(change.occurred_at)
    .execute(tx)
    .await?;
    Ok(())
}
