//! The `crm_outbox` subscriber: turns the events that owe Soho CRM a call into outbox tasks, in
//! the subscriber's own transaction, so each is written exactly once. Status changes that came
//! from the CRM owe it nothing (that would echo them back).

use soho_aggregates::lead::{LeadEvent, StatusSource};
use soho_projections::{Projection, ProjectionError, StoredEvent};
use sqlx::PgConnection;
/// Workers wake when this subscriber's checkpoint advances (after its commit), here or on
/// another server (through the checkpoint `NOTIFY`).
pub struct CrmOutbox;

#[async_trait::async_trait]
impl Projection for CrmOutbox {
    fn name(&self) -> &'static str {
        "crm_outbox"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
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
            sqlx::query("INSERT INTO crm_outbox (lead_id, kind, crm_status) VALUES ($1, $2, $3)")
                .bind(stored.aggregate_uuid()?)
                .bind(kind)
                .bind(crm_status)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}
