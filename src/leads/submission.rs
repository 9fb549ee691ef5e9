//! Submitting a lead: the contract's field rules, duplicate detection, and the command.
//!
//! The same person (email, case-insensitive, or phone, by its digits) submitted again by one
//! partner within 24 hours gets the existing lead back instead of a second one; submitted by
//! another partner within 90 days, the new lead is flagged `channelConflict` (which partner is
//! never said). Both checks and the submission run under a lock on the person, so two
//! submissions racing for the same person cannot both miss each other.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Deserialize;
use soho_aggregates::lead::{LeadCommand, LeadDetails, Submitter};
use soho_aggregates::{LeadId, PartnerId};
use utoipa::ToSchema;

use super::queries::{self, LeadView};
use crate::commands::CommandContext;
use crate::http::fields;
use crate::http::problem::{ApiError, FieldError};
use crate::portal::Portal;

/// The body of `POST /leads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeadRequest {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub notes: Option<String>,
    /// At most 20 string keys, 4 KiB in all.
    pub metadata: Option<BTreeMap<String, String>>,
    /// The partner, for the public form only.
    pub partner_id: Option<uuid::Uuid>,
    /// A honeypot for the public form: people leave it empty.
    pub website: Option<String>,
}

/// Checks every field; all problems are reported at once.
pub fn parse(request: &LeadRequest) -> Result<LeadDetails, ApiError> {
    let mut errors = vec![];
    let first_name = fields::single_line("firstName", request.first_name.clone(), 100, &mut errors);
    let last_name = fields::required("lastName", &mut errors, |errors| {
        fields::single_line("lastName", request.last_name.clone(), 100, errors)
    });
    let email = fields::optional_email("email", request.email.clone(), &mut errors);
    let phone = fields::optional_text("phone", request.phone.clone(), 50, &mut errors);
    if let Some(phone) = &phone {
        let allowed = phone.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        if !allowed || digits < 6 {
            errors
                .push(FieldError::new("phone", "must be a phone number such as +44 20 7946 0000"));
        }
    }
    let company = fields::single_line("company", request.company.clone(), 200, &mut errors);
    let notes = fields::optional_text("notes", request.notes.clone(), 2000, &mut errors);
    let metadata = request.metadata.clone().unwrap_or_default();
    if metadata.len() > 20 {
        errors.push(FieldError::new("metadata", "must have at most 20 keys"));
    }
    if metadata.keys().any(|k| k.trim().is_empty() || k.chars().count() > 100) {
        errors.push(FieldError::new("metadata", "keys must be 1 to 100 characters"));
    }
    // PostgreSQL cannot store a NUL in text (nor in JSON text), and other control characters
    // have no place in a key.
    let bad_key = metadata.keys().any(|k| k.chars().any(char::is_control));
    let bad_value = metadata.values().any(|v| v.contains('\0'));
    if bad_key || bad_value {
        errors.push(FieldError::new("metadata", "must not contain control characters"));
    }
    if serde_json::to_vec(&metadata).map_or(0, |v| v.len()) > 4096 {
        errors.push(FieldError::new("metadata", "must be at most 4 KiB"));
    }
    let has_email = request.email.as_deref().is_some_and(|e| !e.trim().is_empty());
    let has_phone = request.phone.as_deref().is_some_and(|p| !p.trim().is_empty());
    if !has_email && !has_phone {
        errors.push(FieldError::new("email", "an email or a phone is required"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    Ok(LeadDetails { first_name, last_name, email, phone, company, notes, metadata })
}

/// What a submission came to.
pub enum Submitted {
    /// A new lead (201).
    Created(LeadView),
    /// The same person, already submitted by this partner in the last 24 hours (200).
    Existing(LeadView),
}

/// Submits a lead for `partner` (already checked to be approved), by `submitter`.
#[tracing::instrument(skip_all, fields(partner = %partner), err)]
pub async fn submit(
    portal: &Portal,
    partner: PartnerId,
    submitter: Submitter,
    details: LeadDetails,
    context: &CommandContext,
) -> Result<Submitted, ApiError> {
    let email = details.email_key();
    let phone = details.phone_key();
    let _slot = portal.submission_slots.acquire().await.map_err(ApiError::internal)?;
    let mut tx = portal.pool.begin().await?;
    let mut keys: Vec<String> = email.iter().chain(phone.iter()).cloned().collect();
    keys.sort();
    // Locked in sorted order (unnest keeps the array's), so two submissions cannot deadlock.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('soho-lead-person'), hashtext(key)) FROM unnest($1::text[]) AS key",
    )
    .bind(&keys)
    .execute(&mut *tx)
    .await?;
    // A separate statement from the lock: it must see what the lock's previous holder committed.
    // Only the keys the lead has: a `phone_key = NULL` arm would keep the planner's generic plan
    // off the email and phone indexes (it then scanned all of the partner's leads).
    let same_person = match (&email, &phone) {
        (Some(_), Some(_)) => "(lower(email) = $2 OR phone_key = $3)",
        (Some(_), None) => "(lower(email) = $2 AND $3::text IS NULL)",
        (None, _) => "($2::text IS NULL AND phone_key = $3)",
    };
    let (existing, channel_conflict): (Option<uuid::Uuid>, bool) = sqlx::query_as(&format!(
        "SELECT (SELECT lead_id FROM leads WHERE partner_id = $1 AND {same_person} \
                 AND created_at > now() - interval '24 hours' ORDER BY created_at DESC LIMIT 1), \
                EXISTS (SELECT 1 FROM leads WHERE partner_id <> $1 AND {same_person} \
                 AND created_at > now() - interval '90 days')"
    ))
    .bind(partner.as_uuid())
    .bind(&email)
    .bind(&phone)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(existing) = existing {
        let lead = queries::lead(&portal.pool, existing, None).await?.ok_or(ApiError::NotFound)?;
        return Ok(Submitted::Existing(lead));
    }
    let lead_id = LeadId::new();
    let command = LeadCommand::Submit {
        lead_id,
        partner_id: partner,
        submitted_by: submitter,
        details,
        channel_conflict,
        at: Utc::now(),
    };
    let commands = &portal.commands;
    commands.execute(&commands.leads, &lead_id.to_string(), command, context).await.map_err(
        |e| match e {
            crate::commands::CommandError::Rule(rule) => ApiError::Conflict(rule.to_string()),
            other => ApiError::internal(anyhow::anyhow!(other.to_string())),
        },
    )?;
    // The lock is held until the lead is in the read model, so the next submission sees it.
    let lead =
        queries::lead(&portal.pool, lead_id.as_uuid(), None).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Submitted::Created(lead))
}
