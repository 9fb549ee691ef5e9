//! The Partner aggregate: a reseller or referrer, mirrored from Soho CRM.
//!
//! Soho CRM is the source of truth for a partner's details and approval; the portal only follows
//! it. So the one command is "here is what the CRM says now", and the aggregate decides which
//! life-cycle events that amounts to (pending → approved → suspended → reinstated).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::PartnerId;

/// What Soho CRM holds about a partner beyond its approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartnerDetails {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub commission_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PartnerStatus {
    #[default]
    Pending,
    Approved,
    Suspended,
}

impl PartnerStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Suspended => "suspended",
        }
    }
}

/// A stored status the portal does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown partner status {0:?}")]
pub struct UnknownPartnerStatus(pub String);

impl std::str::FromStr for PartnerStatus {
    type Err = UnknownPartnerStatus;

    /// The inverse of [`PartnerStatus::as_str`]: anything else is an error, never a default.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pending" => Ok(Self::Pending),
            "approved" => Ok(Self::Approved),
            "suspended" => Ok(Self::Suspended),
            other => Err(UnknownPartnerStatus(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PartnerCommand {
    /// Soho CRM reported the partner's current state (a `partner.created`/`partner.updated` webhook).
    ApplyCrmState {
        partner_id: PartnerId,
        soho_partner_id: String,
        details: PartnerDetails,
        approved: bool,
        at: DateTime<Utc>,
    },
}

/// Stored externally tagged, so the tag equals `event_type()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PartnerEvent {
    #[serde(rename_all = "camelCase")]
    PartnerRegistered {
        partner_id: PartnerId,
        soho_partner_id: String,
        details: PartnerDetails,
        at: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    PartnerApproved { at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    PartnerSuspended { at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    PartnerReinstated { at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    PartnerDetailsChanged { details: PartnerDetails, at: DateTime<Utc> },
}

impl DomainEvent for PartnerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PartnerRegistered { .. } => "PartnerRegistered",
            Self::PartnerApproved { .. } => "PartnerApproved",
            Self::PartnerSuspended { .. } => "PartnerSuspended",
            Self::PartnerReinstated { .. } => "PartnerReinstated",
            Self::PartnerDetailsChanged { .. } => "PartnerDetailsChanged",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PartnerError {
    #[error("the partner is linked to Soho CRM partner {0}, not {1}")]
    SohoIdMismatch(String, String),
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partner {
    pub id: Option<PartnerId>,
    pub soho_partner_id: Option<String>,
    pub details: Option<PartnerDetails>,
    pub status: PartnerStatus,
    /// Whether it was ever approved: a reinstated partner is not a new partner.
    pub ever_approved: bool,
}

impl Partner {
    pub fn is_registered(&self) -> bool {
        self.id.is_some()
    }
}

impl Aggregate for Partner {
    const TYPE: &'static str = "Partner";
    type Command = PartnerCommand;
    type Event = PartnerEvent;
    type Error = PartnerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let PartnerCommand::ApplyCrmState { partner_id, soho_partner_id, details, approved, at } =
            command;
        match &self.soho_partner_id {
            None => {
                sink.write(
                    PartnerEvent::PartnerRegistered { partner_id, soho_partner_id, details, at },
                    self,
                )
                .await;
            }
            Some(known) if *known != soho_partner_id => {
                return Err(PartnerError::SohoIdMismatch(known.clone(), soho_partner_id));
            }
            Some(_) => {
                if self.details.as_ref() != Some(&details) {
                    sink.write(PartnerEvent::PartnerDetailsChanged { details, at }, self).await;
                }
            }
        }
        match (self.status, approved) {
            (PartnerStatus::Pending, true) => {
                sink.write(PartnerEvent::PartnerApproved { at }, self).await
            }
            (PartnerStatus::Approved, false) => {
                sink.write(PartnerEvent::PartnerSuspended { at }, self).await
            }
            (PartnerStatus::Suspended, true) => {
                sink.write(PartnerEvent::PartnerReinstated { at }, self).await
            }
            _ => {}
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PartnerEvent::PartnerRegistered { partner_id, soho_partner_id, details, .. } => {
                self.id = Some(partner_id);
                self.soho_partner_id = Some(soho_partner_id);
                self.details = Some(details);
                self.status = PartnerStatus::Pending;
            }
            PartnerEvent::PartnerApproved { .. } => {
                self.status = PartnerStatus::Approved;
                self.ever_approved = true;
            }
            PartnerEvent::PartnerSuspended { .. } => self.status = PartnerStatus::Suspended,
            PartnerEvent::PartnerReinstated { .. } => self.status = PartnerStatus::Approved,
            PartnerEvent::PartnerDetailsChanged { details, .. } => self.details = Some(details),
        }
    }
}

#[cfg(test)]
mod status_tests {
    use super::PartnerStatus;

    #[test]
    fn statuses_read_back_as_written_and_unknown_ones_are_refused() {
        for status in [PartnerStatus::Pending, PartnerStatus::Approved, PartnerStatus::Suspended] {
            assert_eq!(status.as_str().parse::<PartnerStatus>().unwrap(), status);
        }
        assert!("Approved".parse::<PartnerStatus>().is_err());
        assert!("".parse::<PartnerStatus>().is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Partner>;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().with_timezone(&Utc)
    }
    fn id() -> PartnerId {
        PartnerId(uuid::Uuid::from_u128(1))
    }
    fn details(name: &str) -> PartnerDetails {
        PartnerDetails {
            name: name.into(),
            email: "owner@acme.example".into(),
            tier: Some("gold".into()),
            commission_rate: Some(12.5),
        }
    }
    fn crm_state(name: &str, approved: bool) -> PartnerCommand {
        PartnerCommand::ApplyCrmState {
            partner_id: id(),
            soho_partner_id: "5725767000000524157".into(),
            details: details(name),
            approved,
            at: at(),
        }
    }
    fn registered() -> PartnerEvent {
        PartnerEvent::PartnerRegistered {
            partner_id: id(),
            soho_partner_id: "5725767000000524157".into(),
            details: details("Acme"),
            at: at(),
        }
    }

    #[test]
    fn an_unapproved_new_partner_is_registered_as_pending() {
        Given::with(())
            .given_no_previous_events()
            .when(crm_state("Acme", false))
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn an_approved_new_partner_is_registered_and_approved() {
        Given::with(())
            .given_no_previous_events()
            .when(crm_state("Acme", true))
            .then_expect_events(vec![registered(), PartnerEvent::PartnerApproved { at: at() }]);
    }

    #[test]
    fn approving_twice_changes_nothing() {
        Given::with(())
            .given(vec![registered(), PartnerEvent::PartnerApproved { at: at() }])
            .when(crm_state("Acme", true))
            .then_expect_events(vec![]);
    }

    #[test]
    fn unapproving_suspends_and_approving_again_reinstates() {
        Given::with(())
            .given(vec![registered(), PartnerEvent::PartnerApproved { at: at() }])
            .when(crm_state("Acme", false))
            .then_expect_events(vec![PartnerEvent::PartnerSuspended { at: at() }]);
        Given::with(())
            .given(vec![
                registered(),
                PartnerEvent::PartnerApproved { at: at() },
                PartnerEvent::PartnerSuspended { at: at() },
            ])
            .when(crm_state("Acme", true))
            .then_expect_events(vec![PartnerEvent::PartnerReinstated { at: at() }]);
    }

    #[test]
    fn a_pending_partner_set_unapproved_again_stays_pending() {
        Given::with(())
            .given(vec![registered()])
            .when(crm_state("Acme", false))
            .then_expect_events(vec![]);
    }

    #[test]
    fn changed_details_are_recorded() {
        Given::with(())
            .given(vec![registered(), PartnerEvent::PartnerApproved { at: at() }])
            .when(crm_state("Acme Ltd", true))
            .then_expect_events(vec![PartnerEvent::PartnerDetailsChanged {
                details: details("Acme Ltd"),
                at: at(),
            }]);
    }

    #[test]
    fn another_crm_partner_id_is_refused() {
        Given::with(())
            .given(vec![registered()])
            .when(PartnerCommand::ApplyCrmState {
                partner_id: id(),
                soho_partner_id: "other".into(),
                details: details("Acme"),
                approved: true,
                at: at(),
            })
            .then_expect_error(PartnerError::SohoIdMismatch(
                "5725767000000524157".into(),
                "other".into(),
            ));
    }
}
