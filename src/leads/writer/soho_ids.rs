//! One lead per Soho CRM id (`lead_soho_ids`), kept by the lead writer.

use std::collections::HashMap;

use soho_aggregates::lead::LeadCommand;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::opening::KeyedRead;
use super::{Job, Request};
use soho_projections::params::NulByte;

/// One lead per Soho CRM id (`lead_soho_ids`): the rule is checked here, so a command that
/// breaks it fails alone, and the table is written in the batch's transaction.
pub(super) struct SohoIds {
    /// Each Soho CRM id the batch is about, and the lead holding it (stored, or claimed here).
    holders: HashMap<String, Uuid>,
    pub(super) claimed: Vec<(String, Uuid)>,
}

impl SohoIds {
    pub(super) const RULE: &'static str = "lead_soho_id_unique";

    /// A Soho CRM id's holder.
    pub(super) const READ: KeyedRead = KeyedRead {
        name: "writer_soho_ids",
        tag: "soho_ids",
        table: "lead_soho_ids",
        key: "soho_lead_id",
        value: "lead_id",
    };

    /// The statement that finds each Soho CRM id's holder (tagged rows of the opening query),
    /// or none if the batch records no CRM sync.
    pub(super) fn statement(requests: &[Request]) -> Result<Option<String>, NulByte> {
        Self::READ.statement(requests.iter().filter_map(|r| match &r.job {
            Job::Command { command: LeadCommand::RecordCrmSync { soho_lead_id, .. }, .. } => {
                Some(soho_lead_id.as_str())
            }
            _ => None,
        }))
    }

    pub(super) fn from_rows(rows: &[PgRow]) -> anyhow::Result<Self> {
        Ok(Self { holders: Self::READ.found(rows)?, claimed: Vec::new() })
    }

    /// Whether `lead` may hold `soho_lead_id`: it already does, or nobody does.
    pub(super) fn may_hold(&self, soho_lead_id: &str, lead: Uuid) -> bool {
        self.holders.get(soho_lead_id).is_none_or(|holder| *holder == lead)
    }

    /// `lead` holds `soho_lead_id` from this batch on (its command was taken).
    pub(super) fn claim(&mut self, soho_lead_id: &str, lead: Uuid) {
        if self.holders.insert(soho_lead_id.to_string(), lead).is_none() {
            self.claimed.push((soho_lead_id.to_string(), lead));
        }
    }

    /// The claims, as CTEs of the batch's statement (parameters numbered from `first`); a lead
    /// whose CRM record was recreated moves to its new id.
    pub(super) fn sql(first: usize) -> String {
        let (ids, leads) = (first, first + 1);
        format!(
            "moved AS (DELETE FROM lead_soho_ids WHERE ctid = ANY(ARRAY( \
               SELECT s.ctid FROM unnest(${leads}::uuid[]) AS w(id) CROSS JOIN LATERAL \
                 (SELECT ctid FROM lead_soho_ids WHERE lead_id = w.id LIMIT 1) s))), \
             claimed AS (INSERT INTO lead_soho_ids (soho_lead_id, lead_id) \
               SELECT * FROM unnest(${ids}::text[], ${leads}::uuid[]))"
        )
    }

    pub(super) fn bind<'q, B: soho_projections::params::Binder<'q>>(&self, query: B) -> B {
        let (ids, leads): (Vec<String>, Vec<Uuid>) = self.claimed.iter().cloned().unzip();
        query.value(ids).value(leads)
    }
}
