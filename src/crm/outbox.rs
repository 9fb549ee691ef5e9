//! The `crm_outbox` subscriber: turns the events that owe Soho CRM a call into outbox tasks, in
//! the subscriber's own transaction, so each is written exactly once. Status changes that came
//! from the CRM owe it nothing (that would echo them back).

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
        &["Lead"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut leads = Vec::new();
        let mut kinds = Vec::new();
        let mut crm_statuses = Vec::new();
        for stored in events.iter().filter(|e| e.aggregate_type == "Lead") {
            let (kind, crm_status) = match stored.decode::<LeadEvent>()? {
                LeadEvent::LeadSubmitted { .. } => ("upsert", None),
                LeadEvent::LeadStatusChanged { change, .. }
                    if change.source == StatusSource::Portal =>
                {
                    ("status", Some(change.crm_status))
                }
                _ => continue,
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
