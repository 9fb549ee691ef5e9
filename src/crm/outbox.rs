//! The calls owed to Soho CRM (`crm_outbox`): the tasks the lead writer adds with the events that
//! owe them (and the subscriber that caught up on them before), the backlog operators see, and
//! putting failed calls back in line. Status changes that came from the CRM owe it nothing (that
//! would echo them back). The sync workers that work the tasks are `super::worker`.

use soho_aggregates::aggregate_type;
use soho_aggregates::lead::{LeadEvent, StatusSource};
use soho_aggregates::{LeadId, PartnerId};
use soho_projections::{Projection, ProjectionError, StoredEvent};
use sqlx::PgConnection;

/// The CRM sync backlog, as `crm status` and `/metrics` show it.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Backlog {
    pub pending: i64,
    pub failed: i64,
    /// Age of the oldest pending call, in seconds (0 with none).
    pub oldest_pending_seconds: f64,
    pub last_error: Option<String>,
}

pub async fn backlog(pool: &sqlx::PgPool) -> Result<Backlog, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, \
                count(*) FILTER (WHERE state = 'failed') AS failed, \
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE state = 'pending')), 0)::float8 AS oldest_pending_seconds, \
                (SELECT last_error FROM crm_outbox WHERE state <> 'done' AND last_error IS NOT NULL ORDER BY task_id DESC LIMIT 1) AS last_error \
         FROM crm_outbox WHERE state <> 'done'",
    )
    .fetch_one(pool)
    .await
}

/// Puts failed calls back in line (`crm retry`): one lead's, or every failed one. Returns how
/// many; the running portal's workers take them.
pub async fn retry_failed(pool: &sqlx::PgPool, lead: Option<LeadId>) -> Result<u64, sqlx::Error> {
    let retried = sqlx::query(
        "UPDATE crm_outbox SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL \
         WHERE state = 'failed' AND ($1::uuid IS NULL OR lead_id = $1)",
    )
    .bind(lead.map(|l| l.as_uuid()))
    .execute(pool)
    .await?;
    Ok(retried.rows_affected())
}

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
    pub fn add(&mut self, lead: LeadId, partner: PartnerId, event: &LeadEvent) {
        if let Some((kind, crm_status)) = task_of(event) {
            self.leads.push(lead.as_uuid());
            self.kinds.push(kind);
            self.crm_statuses.push(crm_status);
            self.partners.push(partner.as_uuid());
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

    pub fn bind<'q, B: soho_projections::params::Binder<'q>>(&self, query: B) -> B {
        query
            .value(self.leads.clone())
            .value(self.kinds.clone())
            .value(self.crm_statuses.clone())
            .value(self.partners.clone())
    }
}
