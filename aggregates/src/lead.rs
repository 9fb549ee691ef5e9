//! The Lead aggregate: a prospect a partner (or its public form) sent us, its sync with Soho CRM,
//! and its status as sales work it.
//!
//! Status changes come from two sides: the portal (a partner's user) and Soho CRM (a webhook).
//! Webhooks can arrive late or out of order, so each change carries when it happened
//! (`occurred_at`); one older than the latest applied change is kept in the log for auditors but
//! does not move the status back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::{Actor, LeadId, PartnerId, UserId};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum LeadStatus {
    #[default]
    New,
    Contacted,
    Qualified,
    Converted,
    Lost,
}

impl LeadStatus {
    pub const ALL: [LeadStatus; 5] =
        [Self::New, Self::Contacted, Self::Qualified, Self::Converted, Self::Lost];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Contacted => "contacted",
            Self::Qualified => "qualified",
            Self::Converted => "converted",
            Self::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// Where a status change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusSource {
    Portal,
    Crm,
}

impl StatusSource {
    /// The name stored in the read models (as serialised).
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusSource::Portal => "portal",
            StatusSource::Crm => "crm",
        }
    }
}

/// Who submitted a lead: a logged-in user, or someone on the partner's public form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Submitter {
    User { id: UserId },
    Public,
}

/// The person a lead is about: a last name and a way to reach them (an email or a phone).
///
/// Parsed, not validated: outside this crate one is made only by [`LeadDetails::new`] (the
/// edge's field rules then hold: trimmed, bounded, well-formed, see `src/fields.rs`), or read
/// back from the log, whose events are facts accepted earlier and never judged again. The Lead
/// aggregate therefore receives only complete details, and does not check them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LeadDetails {
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub notes: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl LeadDetails {
    /// The details of a lead, from fields the edge has parsed (trimmed, bounded, well-formed):
    /// `Incomplete` without a last name, or with neither an email nor a phone.
    pub fn new(
        first_name: Option<String>,
        last_name: String,
        email: Option<String>,
        phone: Option<String>,
        company: Option<String>,
        notes: Option<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<Self, LeadError> {
        if last_name.trim().is_empty() || (email.is_none() && phone.is_none()) {
            return Err(LeadError::Incomplete);
        }
        Ok(Self { first_name, last_name, email, phone, company, notes, metadata })
    }

    /// The phone number reduced to what identifies it: its digits, with a leading `+` kept, so
    /// "+44 20 7946 0000" and "+44 (20) 7946-0000" are the same person. `None` for fewer than
    /// six digits, which identify nobody.
    pub fn phone_key(&self) -> Option<String> {
        let phone = self.phone.as_deref()?.trim();
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 6 {
            return None;
        }
        Some(if phone.starts_with('+') { format!("+{digits}") } else { digits })
    }

    /// The lower-cased email, for matching the same person.
    pub fn email_key(&self) -> Option<String> {
        self.email.as_deref().map(|e| e.trim().to_lowercase())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    #[default]
    Pending,
    Synced,
    Failed,
}

impl SyncState {
    /// The name stored in the read models and sent on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Synced => "synced",
            Self::Failed => "failed",
        }
    }
}

/// A status change as asked for, by the portal or by Soho CRM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub status: LeadStatus,
    /// The Soho CRM `Lead_Status` value this change corresponds to.
    pub crm_status: String,
    pub source: StatusSource,
    pub actor: Actor,
    pub note: Option<String>,
    /// When the change happened at its source (the webhook's `occurredAt` for the CRM).
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LeadCommand {
    Submit {
        lead_id: LeadId,
        partner_id: PartnerId,
        submitted_by: Submitter,
        details: LeadDetails,
        channel_conflict: bool,
        at: DateTime<Utc>,
    },
    RecordCrmSync {
        soho_lead_id: String,
        at: DateTime<Utc>,
    },
    RecordCrmSyncFailure {
        code: String,
        message: String,
        at: DateTime<Utc>,
    },
    ChangeStatus {
        change: StatusChange,
        at: DateTime<Utc>,
    },
}

/// Stored externally tagged, so the tag equals `event_type()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeadEvent {
    #[serde(rename_all = "camelCase")]
    LeadSubmitted {
        lead_id: LeadId,
        partner_id: PartnerId,
        submitted_by: Submitter,
        details: LeadDetails,
        channel_conflict: bool,
        at: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    LeadSyncedToCrm { soho_lead_id: String, at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    CrmSyncFailed { code: String, message: String, at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    LeadStatusChanged {
        old_status: LeadStatus,
        old_crm_status: String,
        change: StatusChange,
        at: DateTime<Utc>,
    },
    /// A change older than the latest applied one: kept for the record, not applied.
    #[serde(rename_all = "camelCase")]
    LeadStatusChangeSuperseded { change: StatusChange, at: DateTime<Utc> },
}

impl DomainEvent for LeadEvent {
    fn event_type(&self) -> String {
        match self {
            Self::LeadSubmitted { .. } => "LeadSubmitted",
            Self::LeadSyncedToCrm { .. } => "LeadSyncedToCrm",
            Self::CrmSyncFailed { .. } => "CrmSyncFailed",
            Self::LeadStatusChanged { .. } => "LeadStatusChanged",
            Self::LeadStatusChangeSuperseded { .. } => "LeadStatusChangeSuperseded",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeadError {
    #[error("the lead has already been submitted")]
    AlreadySubmitted,
    #[error("no such lead")]
    NotFound,
    #[error("a lead needs a last name and an email or a phone")]
    Incomplete,
}

/// The Soho CRM value a new lead starts with (contract section 4).
pub const INITIAL_CRM_STATUS: &str = "Not Contacted";

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    pub id: Option<LeadId>,
    pub partner_id: Option<PartnerId>,
    pub submitted_by: Option<Submitter>,
    /// `None` until the lead is submitted.
    pub details: Option<LeadDetails>,
    pub status: LeadStatus,
    pub crm_status: String,
    pub soho_lead_id: Option<String>,
    pub sync_state: SyncState,
    pub sync_error: Option<String>,
    pub channel_conflict: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// When the latest applied status change happened at its source.
    pub status_occurred_at: Option<DateTime<Utc>>,
}

impl Aggregate for Lead {
    const TYPE: &'static str = "Lead";
    type Command = LeadCommand;
    type Event = LeadEvent;
    type Error = LeadError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            LeadCommand::Submit {
                lead_id,
                partner_id,
                submitted_by,
                details,
                channel_conflict,
                at,
            } => {
                if self.id.is_some() {
                    return Err(LeadError::AlreadySubmitted);
                }
                let event = LeadEvent::LeadSubmitted {
                    lead_id,
                    partner_id,
                    submitted_by,
                    details,
                    channel_conflict,
                    at,
                };
                sink.write(event, self).await;
            }
            _ if self.id.is_none() => return Err(LeadError::NotFound),
            LeadCommand::RecordCrmSync { soho_lead_id, at } => {
                if self.soho_lead_id.as_deref() != Some(&soho_lead_id)
                    || self.sync_state != SyncState::Synced
                {
                    sink.write(LeadEvent::LeadSyncedToCrm { soho_lead_id, at }, self).await;
                }
            }
            LeadCommand::RecordCrmSyncFailure { code, message, at } => {
                sink.write(LeadEvent::CrmSyncFailed { code, message, at }, self).await;
            }
            LeadCommand::ChangeStatus { change, at } => {
                if self.status_occurred_at.is_some_and(|latest| change.occurred_at < latest) {
                    sink.write(LeadEvent::LeadStatusChangeSuperseded { change, at }, self).await;
                } else if change.status != self.status || change.crm_status != self.crm_status {
                    let event = LeadEvent::LeadStatusChanged {
                        old_status: self.status,
                        old_crm_status: self.crm_status.clone(),
                        change,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            LeadEvent::LeadSubmitted {
                lead_id,
                partner_id,
                submitted_by,
                details,
                channel_conflict,
                at,
            } => {
                self.id = Some(lead_id);
                self.partner_id = Some(partner_id);
                self.submitted_by = Some(submitted_by);
                self.details = Some(details);
                self.status = LeadStatus::New;
                self.crm_status = INITIAL_CRM_STATUS.to_string();
                self.channel_conflict = channel_conflict;
                self.created_at = Some(at);
                self.updated_at = Some(at);
            }
            LeadEvent::LeadSyncedToCrm { soho_lead_id, at } => {
                self.soho_lead_id = Some(soho_lead_id);
                self.sync_state = SyncState::Synced;
                self.sync_error = None;
                self.updated_at = Some(at);
            }
            LeadEvent::CrmSyncFailed { code, message, at } => {
                self.sync_state = SyncState::Failed;
                self.sync_error = Some(format!("{code}: {message}"));
                self.updated_at = Some(at);
            }
            LeadEvent::LeadStatusChanged { change, at, .. } => {
                self.status = change.status;
                self.crm_status = change.crm_status;
                self.status_occurred_at = Some(change.occurred_at);
                self.updated_at = Some(at);
            }
            LeadEvent::LeadStatusChangeSuperseded { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Lead>;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().with_timezone(&Utc)
    }
    fn details() -> LeadDetails {
        let email = Some("ada@example.com".into());
        LeadDetails::new(None, "Lovelace".into(), email, None, None, None, Default::default())
            .unwrap()
    }
    fn submitted() -> LeadEvent {
        LeadEvent::LeadSubmitted {
            lead_id: LeadId(uuid::Uuid::from_u128(3)),
            partner_id: PartnerId(uuid::Uuid::from_u128(1)),
            submitted_by: Submitter::Public,
            details: details(),
            channel_conflict: false,
            at: at(),
        }
    }
    fn change(status: LeadStatus, crm: &str, minutes: i64) -> StatusChange {
        StatusChange {
            status,
            crm_status: crm.into(),
            source: StatusSource::Crm,
            actor: Actor::crm("msg_1"),
            note: None,
            occurred_at: at() + Duration::minutes(minutes),
        }
    }

    #[test]
    fn a_lead_is_submitted_once() {
        let submit = LeadCommand::Submit {
            lead_id: LeadId(uuid::Uuid::from_u128(3)),
            partner_id: PartnerId(uuid::Uuid::from_u128(1)),
            submitted_by: Submitter::Public,
            details: details(),
            channel_conflict: false,
            at: at(),
        };
        Given::with(())
            .given_no_previous_events()
            .when(submit.clone())
            .then_expect_events(vec![submitted()]);
        Given::with(())
            .given(vec![submitted()])
            .when(submit)
            .then_expect_error(LeadError::AlreadySubmitted);
    }

    #[test]
    fn details_without_a_last_name_or_a_way_to_reach_the_person_cannot_be_made() {
        let made = |last: &str, email: Option<&str>, phone: Option<&str>| {
            let (email, phone) = (email.map(str::to_string), phone.map(str::to_string));
            LeadDetails::new(None, last.into(), email, phone, None, None, Default::default())
        };
        assert_eq!(made("Lovelace", None, None), Err(LeadError::Incomplete));
        assert_eq!(made(" ", Some("ada@example.com"), None), Err(LeadError::Incomplete));
        assert!(made("Lovelace", None, Some("+44 20 7946 0000")).is_ok());
        assert!(made("Lovelace", Some("ada@example.com"), None).is_ok());
    }

    #[test]
    fn a_status_change_is_recorded_with_the_old_status() {
        let c = change(LeadStatus::Contacted, "Contacted", 5);
        Given::with(())
            .given(vec![submitted()])
            .when(LeadCommand::ChangeStatus { change: c.clone(), at: at() })
            .then_expect_events(vec![LeadEvent::LeadStatusChanged {
                old_status: LeadStatus::New,
                old_crm_status: "Not Contacted".into(),
                change: c,
                at: at(),
            }]);
    }

    #[test]
    fn the_same_status_again_records_nothing() {
        let c = change(LeadStatus::Contacted, "Contacted", 5);
        let applied = LeadEvent::LeadStatusChanged {
            old_status: LeadStatus::New,
            old_crm_status: "Not Contacted".into(),
            change: c.clone(),
            at: at(),
        };
        Given::with(())
            .given(vec![submitted(), applied])
            .when(LeadCommand::ChangeStatus {
                change: change(LeadStatus::Contacted, "Contacted", 9),
                at: at(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_older_change_is_kept_but_not_applied() {
        let applied = LeadEvent::LeadStatusChanged {
            old_status: LeadStatus::New,
            old_crm_status: "Not Contacted".into(),
            change: change(LeadStatus::Qualified, "Qualified", 10),
            at: at(),
        };
        let late = change(LeadStatus::Contacted, "Contacted", 5);
        Given::with(())
            .given(vec![submitted(), applied])
            .when(LeadCommand::ChangeStatus { change: late.clone(), at: at() })
            .then_expect_events(vec![LeadEvent::LeadStatusChangeSuperseded {
                change: late,
                at: at(),
            }]);
    }

    #[test]
    fn syncing_twice_with_the_same_id_records_once() {
        let synced = LeadEvent::LeadSyncedToCrm { soho_lead_id: "42".into(), at: at() };
        Given::with(())
            .given(vec![submitted(), synced])
            .when(LeadCommand::RecordCrmSync { soho_lead_id: "42".into(), at: at() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn phones_are_matched_on_their_digits() {
        let with = |phone: &str| LeadDetails { phone: Some(phone.into()), ..details() }.phone_key();
        assert_eq!(with("+44 20 7946 0000"), with("+44 (20) 7946-0000"));
        assert_eq!(with("+44 20 7946 0000").as_deref(), Some("+442079460000"));
        assert_eq!(with("12-34"), None);
    }

    #[test]
    fn commands_on_an_unknown_lead_are_refused() {
        Given::with(())
            .given_no_previous_events()
            .when(LeadCommand::RecordCrmSync { soho_lead_id: "42".into(), at: at() })
            .then_expect_error(LeadError::NotFound);
    }

    #[test]
    fn a_failed_sync_then_a_success_clears_the_error() {
        let mut lead = Lead::default();
        lead.apply(submitted());
        lead.apply(LeadEvent::CrmSyncFailed {
            code: "INVALID_DATA".into(),
            message: "bad".into(),
            at: at(),
        });
        assert_eq!(lead.sync_state, SyncState::Failed);
        assert_eq!(lead.sync_error.as_deref(), Some("INVALID_DATA: bad"));
        lead.apply(LeadEvent::LeadSyncedToCrm { soho_lead_id: "42".into(), at: at() });
        assert_eq!(lead.sync_state, SyncState::Synced);
        assert_eq!(lead.sync_error, None);
    }
}
