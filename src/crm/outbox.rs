//! The `crm_outbox` subscriber: turns the events that owe Soho CRM a call into outbox tasks, in
//! the subscriber's own transaction, so each is written exactly once. Status changes that came
//! from the CRM owe it nothing (that would echo them back).

use soho_aggregates::aggregate_type;
use soho_aggregates::lead::{LeadEvent, StatusSource};
use soho_projections::{Projection, ProjectionError, StoredEvent};
use sqlx::PgConnection;
/// Workers wake when this subscriber's checkpoint advances (after its commit), here or on
/// another server (through the checkpoint `NOTIFY`).
/// The subscriber name this once ran under (its checkpoint wakes the CRM workers).
pub const NAME: &str = "crm_outbox";

/// Written inline by the lead writer; run as a subscriber only to catch up at start.
pub struct CrmOutbox;

#[async_trait::async_trait]
impl Projection for CrmOutbox {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn reads(&self) -> &'static [&'static str] {
        &[aggregate_type::LEAD]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut leads = Vec::new();
        let mut kinds = Vec::new();
        let mut crm_statuses = Vec::new();
        for stored in events.iter().filter(|e| e.aggregate_type == aggregate_type::LEAD) {
            let Some((kind, crm_status)) = task_of(&stored.decode::<LeadEvent>()?) else {
                continue;
            };
            leads.push(stored.aggregate_uuid()?);
            kinds.push(kind);
            crm_statuses.push(crm_status);
        }
        if leads.is_empty() {
            return Ok(());
        }
        // One statement for the batch; WITH ORDINALITY keeps the tasks in log order.
        sqlx::query(
            "INSERT INTO crm_outbox (lead_id, kind, crm_status, partner_id) \
             SELECT t.lead_id, t.kind, t.crm_status, l.partner_id \
             FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS t(lead_id, kind, crm_status, n) \
             LEFT JOIN LATERAL (SELECT partner_id FROM leads WHERE lead_id = t.lead_id LIMIT 1) l ON true \
             ORDER BY t.n",
        )
        .bind(leads)
        .bind(kinds)
        .bind(crm_statuses)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// The task `event` owes Soho CRM, if any: its kind, and for a status the value to send.
pub fn task_of(event: &LeadEvent) -> Option<(&'static str, Option<String>)> {
    match event {
        LeadEvent::LeadSubmitted { .. } => Some(("upsert", None)),
        LeadEvent::LeadStatusChanged { change, .. } if change.source == StatusSource::Portal => {
            Some(("status", Some(change.crm_status.clone())))
        }
        _ => None,
    }
}

/// Tasks the lead writer adds in its own statement, as a CTE ([`Tasks::sql`]).
#[derive(Default)]
pub struct Tasks {
    leads: Vec<uuid::Uuid>,
    kinds: Vec<&'static str>,
    crm_statuses: Vec<Option<String>>,
    partners: Vec<uuid::Uuid>,
}

impl Tasks {
    /// Adds the task `event` of `lead` (of `partner`) owes, if any.
    pub fn add(&mut self, lead: uuid::Uuid, partner: uuid::Uuid, event: &LeadEvent) {
        if let Some((kind, crm_status)) = task_of(event) {
            self.leads.push(lead);
            self.kinds.push(kind);
            self.crm_statuses.push(crm_status);
            self.partners.push(partner);
        }
    }

    /// The INSERT, its four parameters numbered from `first`, tasks in the order added.
    pub fn sql(first: usize) -> String {
        let p: Vec<String> = (first..first + 4).map(|n| format!("${n}")).collect();
        format!(
            "INSERT INTO crm_outbox (lead_id, kind, crm_status, partner_id) \
             SELECT lead_id, kind, crm_status, partner_id \
             FROM unnest({}::uuid[], {}::text[], {}::text[], {}::uuid[]) WITH ORDINALITY \
               AS t(lead_id, kind, crm_status, partner_id, n) \
             ORDER BY n",
            p[0], p[1], p[2], p[3]
        )
    }

    pub fn bind<'q>(
        &self,
        query: soho_projections::leads::Query<'q>,
    ) -> soho_projections::leads::Query<'q> {
        query
            .bind(self.leads.clone())
            .bind(self.kinds.clone())
            .bind(self.crm_statuses.clone())
            .bind(self.partners.clone())
    }
}
