//! The statements that write a [`LeadBatch`], with the rows passed as arrays (`unnest`): one
//! for the leads' rows and their status history, one for the counters and the live feed (which
//! read the rows the first wrote). Each part of a statement is a data-modifying CTE, so a part
//! with no rows costs nothing and a batch costs two round trips whatever it holds.
//!
//! A lead is looked up by id through `LATERAL (… LIMIT 1)`, never a plain join: the lead writer
//! keeps its prepared statements for the life of its connection, and a plan made while `leads`
//! was small (a new portal; the statistics lag behind) would otherwise hash-join the whole table
//! on every batch.

use std::collections::HashMap;

use soho_aggregates::lead::INITIAL_CRM_STATUS;
use soho_aggregates::LeadStatus;
use sqlx::PgConnection;
use uuid::Uuid;

use super::LeadBatch;

/// The current status of `leads` in the table (before the batch is written).
pub(super) async fn statuses(
    tx: &mut PgConnection,
    leads: &[Uuid],
) -> Result<HashMap<Uuid, LeadStatus>, sqlx::Error> {
    if leads.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT l.lead_id, l.status FROM unnest($1::uuid[]) AS w(id) \
         CROSS JOIN LATERAL (SELECT lead_id, status FROM leads WHERE lead_id = w.id LIMIT 1) l",
    )
    .bind(leads)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|(id, s)| (id, LeadStatus::parse(&s).unwrap_or_default())).collect())
}

pub(super) async fn write(tx: &mut PgConnection, batch: &LeadBatch) -> Result<(), sqlx::Error> {
    if !(batch.inserts.is_empty() && batch.changes.is_empty() && batch.history.is_empty()) {
        let sql = format!(
            "WITH inserted AS ({INSERT_LEADS}), changed AS ({UPDATE_LEADS}) {INSERT_HISTORY}"
        );
        let rows = sqlx::query(&sql);
        bind_history(bind_changes(bind_inserts(rows, batch), batch), batch)
            .execute(&mut *tx)
            .await?;
    }
    if !(batch.counts.is_empty() && batch.feed.is_empty()) {
        let sql =
            format!("WITH counted AS ({COUNT_LEADS}), weeks AS ({COUNT_WEEKS}) {INSERT_FEED}");
        let counts = sqlx::query(&sql);
        bind_feed(bind_counts(counts, batch), batch).execute(&mut *tx).await?;
    }
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// $1–$20.
const INSERT_LEADS: &str = "INSERT INTO leads (lead_id, partner_id, submitted_by_user, first_name, \
     last_name, email, phone, phone_key, company, notes, metadata, status, crm_status, sync_state, \
     channel_conflict, created_at, updated_at, search_text, soho_lead_id, sync_error) \
     SELECT id, partner, submitter, first_name, last_name, email, phone, phone_key, company, notes, \
            metadata, status, crm_status, sync_state, conflict, at, updated_at, search, soho_lead_id, \
            sync_error \
     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::text[], $13::bool[], \
                 $14::timestamptz[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], \
                 $20::timestamptz[]) \
          AS n(id, partner, submitter, first_name, last_name, email, phone, phone_key, company, notes, \
               metadata, crm_status, conflict, at, search, status, sync_state, soho_lead_id, sync_error, \
               updated_at)";

fn bind_inserts<'q>(query: Query<'q>, batch: &LeadBatch) -> Query<'q> {
    let leads = &batch.inserts;
    let details =
        |f: fn(&soho_aggregates::lead::LeadDetails) -> Option<String>| -> Vec<Option<String>> {
            leads.iter().map(|l| f(&l.details)).collect()
        };
    let search: Vec<String> = leads
        .iter()
        .map(|l| {
            let d = &l.details;
            [
                d.first_name.as_deref(),
                Some(d.last_name.as_str()),
                d.email.as_deref(),
                d.company.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
        })
        .collect();
    query
        .bind(leads.iter().map(|l| l.id).collect::<Vec<_>>())
        .bind(leads.iter().map(|l| l.partner_id).collect::<Vec<_>>())
        .bind(leads.iter().map(|l| l.submitted_by_user).collect::<Vec<_>>())
        .bind(details(|d| d.first_name.clone()))
        .bind(leads.iter().map(|l| l.details.last_name.clone()).collect::<Vec<_>>())
        .bind(details(|d| d.email.clone()))
        .bind(details(|d| d.phone.clone()))
        .bind(details(|d| d.phone_key()))
        .bind(details(|d| d.company.clone()))
        .bind(details(|d| d.notes.clone()))
        .bind(
            leads
                .iter()
                .map(|l| serde_json::to_value(&l.details.metadata).unwrap_or_default())
                .collect::<Vec<_>>(),
        )
        .bind(
            leads
                .iter()
                .map(|l| {
                    l.change.status.as_ref().map_or(INITIAL_CRM_STATUS.to_string(), |s| s.1.clone())
                })
                .collect::<Vec<_>>(),
        )
        .bind(leads.iter().map(|l| l.channel_conflict).collect::<Vec<_>>())
        .bind(leads.iter().map(|l| l.at).collect::<Vec<_>>())
        .bind(search)
        .bind(
            leads
                .iter()
                .map(|l| l.change.status.as_ref().map_or(LeadStatus::New, |s| s.0).as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            leads
                .iter()
                .map(|l| l.change.sync.as_ref().map_or("pending", |s| s.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            leads
                .iter()
                .map(|l| l.change.sync.as_ref().and_then(|s| s.1.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(
            leads
                .iter()
                .map(|l| l.change.sync.as_ref().and_then(|s| s.2.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(leads.iter().map(|l| l.change.updated_at.unwrap_or(l.at)).collect::<Vec<_>>())
}

/// $21–$27: what the batch changed on leads written before it.
const UPDATE_LEADS: &str = "UPDATE leads l SET status = COALESCE(c.status, l.status), \
         crm_status = COALESCE(c.crm_status, l.crm_status), \
         sync_state = COALESCE(c.sync_state, l.sync_state), \
         soho_lead_id = COALESCE(c.soho_lead_id, l.soho_lead_id), \
         sync_error = CASE WHEN c.sync_state IS NULL THEN l.sync_error ELSE c.sync_error END, \
         updated_at = COALESCE(c.updated_at, l.updated_at) \
     FROM unnest($21::uuid[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[], \
                 $27::timestamptz[]) \
          AS c(lead_id, status, crm_status, sync_state, soho_lead_id, sync_error, updated_at) \
     WHERE l.lead_id = c.lead_id";

fn bind_changes<'q>(query: Query<'q>, batch: &LeadBatch) -> Query<'q> {
    let changes = &batch.changes;
    query
        .bind(changes.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            changes
                .iter()
                .map(|(_, c)| c.status.as_ref().map(|s| s.0.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            changes.iter().map(|(_, c)| c.status.as_ref().map(|s| s.1.clone())).collect::<Vec<_>>(),
        )
        .bind(changes.iter().map(|(_, c)| c.sync.as_ref().map(|s| s.0)).collect::<Vec<_>>())
        .bind(
            changes
                .iter()
                .map(|(_, c)| c.sync.as_ref().and_then(|s| s.1.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(
            changes
                .iter()
                .map(|(_, c)| c.sync.as_ref().and_then(|s| s.2.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(changes.iter().map(|(_, c)| c.updated_at).collect::<Vec<_>>())
}

/// $28–$38.
const INSERT_HISTORY: &str = "INSERT INTO lead_status_history (lead_id, sequence, old_status, \
     new_status, crm_status, source, actor_type, actor_id, note, applied, occurred_at) \
     SELECT * FROM unnest($28::uuid[], $29::bigint[], $30::text[], $31::text[], $32::text[], \
                          $33::text[], $34::text[], $35::text[], $36::text[], $37::bool[], \
                          $38::timestamptz[])";

fn bind_history<'q>(query: Query<'q>, batch: &LeadBatch) -> Query<'q> {
    let rows = &batch.history;
    query
        .bind(rows.iter().map(|r| r.lead).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.old_status.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.change.status.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.change.crm_status.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.change.source.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.change.actor.kind.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.change.actor.id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.change.note.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.applied).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.change.occurred_at).collect::<Vec<_>>())
}

/// $1–$3: the net deltas added to the counters of each lead's partner and, if a user submitted
/// it, the user's. Zero deltas still create the row (a counter that exists at 0 is what a replay
/// makes).
const COUNT_LEADS: &str = "INSERT INTO lead_counts (scope, scope_id, status, leads) \
     SELECT s.scope, s.scope_id, d.status, sum(d.delta) \
     FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS d(lead_id, status, delta) \
     CROSS JOIN LATERAL (SELECT partner_id, submitted_by_user FROM leads \
                         WHERE lead_id = d.lead_id LIMIT 1) l \
     CROSS JOIN LATERAL (VALUES ('partner', l.partner_id), ('user', l.submitted_by_user)) AS s(scope, scope_id) \
     WHERE s.scope_id IS NOT NULL \
     GROUP BY s.scope, s.scope_id, d.status \
     ON CONFLICT (scope, scope_id, status) DO UPDATE SET leads = lead_counts.leads + EXCLUDED.leads";

/// $4–$6: the weekly series. A lead submitted adds to its week; a lead that became (or stopped
/// being) converted adds (or takes) one from the week it was submitted in.
const COUNT_WEEKS: &str = "INSERT INTO lead_weeks (scope, scope_id, week, submitted, converted) \
     SELECT s.scope, s.scope_id, date_trunc('week', l.created_at AT TIME ZONE 'UTC')::date, \
            sum(w.submitted), sum(w.converted) \
     FROM unnest($4::uuid[], $5::bigint[], $6::bigint[]) AS w(lead_id, submitted, converted) \
     CROSS JOIN LATERAL (SELECT partner_id, submitted_by_user, created_at FROM leads \
                         WHERE lead_id = w.lead_id LIMIT 1) l \
     CROSS JOIN LATERAL (VALUES ('partner', l.partner_id), ('user', l.submitted_by_user)) AS s(scope, scope_id) \
     WHERE s.scope_id IS NOT NULL \
     GROUP BY 1, 2, 3 \
     ON CONFLICT (scope, scope_id, week) DO UPDATE SET \
       submitted = lead_weeks.submitted + EXCLUDED.submitted, \
       converted = lead_weeks.converted + EXCLUDED.converted";

fn bind_counts<'q>(query: Query<'q>, batch: &LeadBatch) -> Query<'q> {
    let (keys, deltas): (Vec<_>, Vec<i64>) = batch.counts.iter().map(|(k, d)| (*k, *d)).unzip();
    let inserted: std::collections::HashSet<Uuid> = batch.inserts.iter().map(|l| l.id).collect();
    let mut weeks: HashMap<Uuid, (i64, i64)> = HashMap::new();
    for ((lead, status), delta) in &batch.counts {
        if inserted.contains(lead) && *status == LeadStatus::New {
            weeks.entry(*lead).or_default().0 += 1;
        }
        if *status == LeadStatus::Converted {
            weeks.entry(*lead).or_default().1 += delta;
        }
    }
    // Rows come only from submissions (a replay batches events differently, and must make the
    // same rows): a change that nets to nothing writes nothing.
    weeks.retain(|_, (submitted, converted)| *submitted != 0 || *converted != 0);
    let (week_leads, week_deltas): (Vec<Uuid>, Vec<(i64, i64)>) = weeks.into_iter().unzip();
    query
        .bind(keys.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(keys.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>())
        .bind(deltas)
        .bind(week_leads)
        .bind(week_deltas.iter().map(|(s, _)| *s).collect::<Vec<_>>())
        .bind(week_deltas.iter().map(|(_, c)| *c).collect::<Vec<_>>())
}

/// $7–$9: live-update messages, scoped as their lead is, in the batch's order.
const INSERT_FEED: &str =
    "INSERT INTO live_feed (kind, lead_id, partner_id, submitted_by_user, data) \
     SELECT f.kind, f.lead_id, l.partner_id, l.submitted_by_user, f.data \
     FROM unnest($7::text[], $8::uuid[], $9::jsonb[]) WITH ORDINALITY AS f(kind, lead_id, data, n) \
     CROSS JOIN LATERAL (SELECT partner_id, submitted_by_user FROM leads \
                         WHERE lead_id = f.lead_id LIMIT 1) l \
     ORDER BY f.n";

fn bind_feed<'q>(query: Query<'q>, batch: &LeadBatch) -> Query<'q> {
    let rows = &batch.feed;
    query
        .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.lead).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.data.clone()).collect::<Vec<_>>())
}
