//! A partner's dashboard figures as they stood at a past instant, rebuilt from the log: every
//! lead of the partner folded from its events recorded up to then.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use soho_aggregates::aggregate_type;
use soho_aggregates::{Lead, PartnerId};
use sqlx::PgPool;

use super::AuditError;
use crate::leads::queries::DashboardStats;

/// How many leads' streams one query reads.
const CHUNK: usize = 2_000;

/// `None` if the portal has no such partner.
pub async fn partner_stats_at(
    pool: &PgPool,
    partner: PartnerId,
    at: DateTime<Utc>,
) -> Result<Option<DashboardStats>, AuditError> {
    let known: Option<(uuid::Uuid,)> =
        sqlx::query_as("SELECT partner_id FROM partners WHERE partner_id = $1")
            .bind(partner.as_uuid())
            .fetch_optional(pool)
            .await?;
    if known.is_none() {
        return Ok(None);
    }
    // A lead's partner never changes, so the read model finds the streams to fold; leads
    // recorded after `at` fold to nothing and are not counted. (`created_at` is the server's
    // clock when it decided, `recorded_at` the database's: the hour allows for their drift.)
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT lead_id::text FROM leads \
         WHERE partner_id = $1 AND created_at <= $2 + interval '1 hour'",
    )
    .bind(partner.as_uuid())
    .bind(at)
    .fetch_all(pool)
    .await?;
    let mut counts = std::collections::HashMap::<String, i64>::new();
    let mut conn = pool.acquire().await?;
    for chunk in ids.chunks(CHUNK) {
        let events =
            soho_projections::log::read_streams(&mut conn, aggregate_type::LEAD, chunk).await?;
        let mut current: Option<(&str, Lead)> = None;
        for stored in events.iter().filter(|e| e.recorded_at <= at) {
            if current.as_ref().is_none_or(|(id, _)| *id != stored.aggregate_id) {
                if let Some((_, lead)) = current.take() {
                    count(&mut counts, &lead);
                }
                current = Some((&stored.aggregate_id, Lead::default()));
            }
            if let Some((_, lead)) = current.as_mut() {
                lead.apply(stored.decode().map_err(|e| AuditError::Replay(e.into()))?);
            }
        }
        if let Some((_, lead)) = current {
            count(&mut counts, &lead);
        }
    }
    Ok(Some(DashboardStats::of_counts("partner", counts)))
}

fn count(counts: &mut std::collections::HashMap<String, i64>, lead: &Lead) {
    if lead.created_at.is_some() {
        *counts.entry(lead.status.as_str().to_string()).or_default() += 1;
    }
}
