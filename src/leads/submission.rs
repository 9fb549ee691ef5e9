//! Submitting a lead: the contract's field rules, duplicate detection, and the command.
//!
//! The same person (email, case-insensitive, or phone, by its digits) submitted again by one
//! partner within 24 hours gets the existing lead back instead of a second one; submitted by
//! another partner within 90 days, the new lead is flagged `channelConflict` (which partner is
//! never said). Both rules are applied by the lead writer (`super::writer`), in the transaction
//! that writes the lead, so two submissions racing for the same person cannot both miss each
//! other.

use std::collections::BTreeMap;

use serde::Deserialize;
use soho_aggregates::lead::{LeadDetails, Submitter};
use soho_aggregates::PartnerId;
use utoipa::ToSchema;

use super::queries::LeadView;
use super::writer::{LeadWriter, Submission, WriteError, Written};
use crate::commands::CommandContext;
use crate::fields::{self, FieldError, Invalid};

/// The body of `POST /leads`.
#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
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
pub fn parse(request: &LeadRequest) -> Result<LeadDetails, Invalid> {
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
        return Err(Invalid(errors));
    }
    // Each rule of the domain type was checked above, field by field, to name the field.
    LeadDetails::new(first_name, last_name, email, phone, company, notes, metadata).map_err(|_| {
        Invalid(vec![FieldError::new(
            "lastName",
            "a last name, and an email or a phone, are required",
        )])
    })
}

/// What a submission came to.
pub enum Submitted {
    /// A new lead (201).
    Created(LeadView),
    /// The same person, already submitted by this partner in the last 24 hours (200).
    Existing(LeadView),
}

/// Submits a lead for `partner` (already checked to be approved), by `submitter`, through the
/// lead writer, which applies the duplicate rules in its transaction.
#[tracing::instrument(skip_all, fields(partner = %partner), err)]
pub async fn submit(
    writer: &LeadWriter,
    partner: PartnerId,
    submitter: Submitter,
    details: LeadDetails,
    context: &CommandContext,
) -> Result<Submitted, WriteError> {
    let submission = Submission { partner, submitter, details };
    match writer.submit(submission, context).await? {
        Written::Existing(lead) => Ok(Submitted::Existing(lead)),
        Written::Created(lead) | Written::Changed(lead) => Ok(Submitted::Created(lead)),
        Written::Repeated(_) => {
            Err(WriteError::Store("the lead writer answered a submission as a webhook".into()))
        }
    }
}
