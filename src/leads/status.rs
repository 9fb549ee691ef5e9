//! Status changes, from the portal (a partner's user) and from Soho CRM (a webhook). Both become
//! `ChangeStatus` on the Lead aggregate, which decides whether the change applies, is older than
//! the latest one (kept for the record only), or changes nothing.

use chrono::{DateTime, Utc};
use soho_aggregates::lead::{LeadCommand, StatusChange, StatusSource};
use soho_aggregates::{Actor, LeadId, LeadStatus};

use super::queries::LeadView;
use super::status_mapping::StatusMapping;
use super::writer::LeadWriter;
use super::writer::{Receipt, WriteError, Written};
use crate::commands::CommandContext;

/// A partner's user changed the status in the portal; Soho CRM gets the mapped value.
pub async fn from_portal(
    writer: &LeadWriter,
    mapping: &StatusMapping,
    lead: LeadId,
    status: LeadStatus,
    note: Option<String>,
    actor: Actor,
) -> Result<LeadView, WriteError> {
    let crm_status = mapping.to_crm(status).to_string();
    let context = CommandContext::new(actor);
    let change = StatusChange {
        status,
        crm_status,
        source: StatusSource::Portal,
        actor: context.actor.clone(),
        note,
        occurred_at: Utc::now(),
    };
    let command = LeadCommand::ChangeStatus { change, at: Utc::now() };
    writer.execute(lead, command, &context).await
}

/// Soho CRM changed the status (its webhook `webhook_id`): written once, with the webhook's
/// receipt, in the writer's transaction; a repeat gets the answer the first delivery got.
pub async fn from_crm(
    writer: &LeadWriter,
    lead: LeadId,
    (status, crm_status): (LeadStatus, String),
    occurred_at: DateTime<Utc>,
    webhook_id: &str,
    context: &CommandContext,
) -> Result<serde_json::Value, WriteError> {
    let change = StatusChange {
        status,
        crm_status,
        source: StatusSource::Crm,
        actor: context.actor.clone(),
        note: None,
        occurred_at,
    };
    let command = LeadCommand::ChangeStatus { change, at: Utc::now() };
    let receipt = Receipt { webhook_id: webhook_id.to_string(), endpoint: "lead-status" };
    match writer.execute_once(lead, command, receipt, context).await? {
        Written::Repeated(answer) => {
            tracing::info!(webhook_id, "webhook already processed; answering as before");
            Ok(answer)
        }
        Written::Changed(view) | Written::Created(view) | Written::Existing(view) => {
            serde_json::to_value(view).map_err(|e| WriteError::Store(e.to_string()))
        }
    }
}
