//! The statement that writes a [`LeadBatch`], with the rows passed as arrays (`unnest`): the
//! leads' rows, their status history, the counters, the weekly series and the live feed, each a
//! data-modifying CTE, so a part with no rows costs nothing and a batch costs one round trip
//! whatever it holds.
//!
//! A lead is looked up by id through `LATERAL (… LIMIT 1)`, never a plain join: the lead writer
//! keeps its prepared statements for the life of its connection, and a plan made while `leads`
//! was small (a new portal; the statistics lag behind) would otherwise hash-join the whole table
//! on every batch.

use std::collections::HashMap;

use soho_aggregates::lead::{SyncState, INITIAL_CRM_STATUS};
use soho_aggregates::LeadStatus;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{LeadBatch, NewLead};
use crate::params::Binder;

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
    // A status the code does not know is a broken table, not a `new` lead.
    rows.into_iter()
        .map(|(id, status)| match LeadStatus::parse(&status) {
            Some(status) => Ok((id, status)),
            None => Err(sqlx::Error::Decode(format!("lead {id} has status {status:?}").into())),
        })
        .collect()
}

pub(super) async fn write(tx: &mut PgConnection, batch: &LeadBatch) -> Result<(), sqlx::Error> {
    let nothing = batch.inserts.is_empty()
        && batch.changes.is_empty()
        && batch.history.is_empty()
        && batch.counts.is_empty()
        && batch.feed.is_empty();
    if nothing {
        return Ok(());
    }
    let known = Known::of(batch);
    let query = sqlx::query(&WRITE_BATCH);
    let query = bind_history(bind_changes(bind_inserts(query, batch), batch), batch);
    bind_feed(bind_counts(query, batch, &known), batch, &known).execute(tx).await?;
    Ok(())
}

/// The first parameter number the `also` of [`write_statement`] may use.
pub const FIRST_FREE_PARAMETER: usize = 55;

/// The statement that writes a batch's [`LeadWrites`](super::LeadWrites) with `also`: more
/// data-modifying CTEs (`name AS (…), …`, numbering their parameters from
/// [`FIRST_FREE_PARAMETER`]); its result is the row `select` makes (it may read `also`'s CTEs).
/// For the lead writer: its events, their read models and the CRM outbox in one statement,
/// prepared once on its connection; [`bind_writes`] gives it its first parameters.
pub fn write_statement(also: &str, select: &str) -> String {
    format!(
        "WITH inserted AS ({INSERT_LEADS}), searched AS ({INSERT_SEARCH}), \
           changed AS ({UPDATE_LEADS}), history AS ({INSERT_HISTORY}), counted AS ({}), \
           weeks AS ({}), feed AS ({}), {also} {select}",
        *COUNT_LEADS, *COUNT_WEEKS, *INSERT_FEED
    )
}

/// Gives `binder` the values of [`write_statement`]'s parameters below
/// [`FIRST_FREE_PARAMETER`].
pub fn bind_writes<'q, B: Binder<'q>>(binder: B, writes: &super::LeadWrites) -> B {
    let batch = &writes.0;
    let known = Known::of(batch);
    let binder = bind_history(bind_changes(bind_inserts(binder, batch), batch), batch);
    bind_feed(bind_counts(binder, batch, &known), batch, &known)
}

/// The whole statement: $1–$20 new leads and their search rows, $21–$27 changed leads, $28–$38 history, $39–$49
/// counters and weeks, $50–$54 the feed.
static WRITE_BATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH inserted AS ({INSERT_LEADS}), searched AS ({INSERT_SEARCH}), \
           changed AS ({UPDATE_LEADS}), history AS ({INSERT_HISTORY}), counted AS ({}), \
           weeks AS ({}) {}",
        *COUNT_LEADS, *COUNT_WEEKS, *INSERT_FEED
    )
});

/// The leads this batch inserts: their rows are not visible to the statement that inserts them,
/// so what the counters and the feed need of them is passed along; other leads are looked up.
struct Known(HashMap<Uuid, (Uuid, Option<Uuid>, chrono::DateTime<chrono::Utc>)>);

impl Known {
    fn of(batch: &LeadBatch) -> Self {
        Self(
            batch
                .inserts
                .iter()
                .map(|l| (l.id, (l.partner_id, l.submitted_by_user, l.at)))
                .collect(),
        )
    }

    /// Partner, submitter and submission time of each lead, where known (else `None`s).
    #[allow(clippy::type_complexity)]
    fn columns(
        &self,
        leads: impl Iterator<Item = Uuid>,
    ) -> (Vec<Option<Uuid>>, Vec<Option<Uuid>>, Vec<Option<chrono::DateTime<chrono::Utc>>>) {
        let mut columns = (Vec::new(), Vec::new(), Vec::new());
        for lead in leads {
            let known = self.0.get(&lead);
            columns.0.push(known.map(|k| k.0));
            columns.1.push(known.and_then(|k| k.1));
            columns.2.push(known.map(|k| k.2));
        }
        columns
    }
}

/// A lead's partner, submitter and submission time: as passed when the batch inserts it (`p`,
/// `s`, `at` not null), else from its row. (`UNION ALL … LIMIT 1`: the lookup runs only then.)
fn scope_of(row: &str, with_time: bool) -> String {
    let (time, passed_time) =
        if with_time { (", created_at", ", {row}.at AS created_at") } else { ("", "") };
    let passed_time = passed_time.replace("{row}", row);
    format!(
        "CROSS JOIN LATERAL (SELECT {row}.p AS partner_id, {row}.s AS submitted_by_user{passed_time} \
           WHERE {row}.p IS NOT NULL \
           UNION ALL SELECT partner_id, submitted_by_user{time} FROM leads \
           WHERE lead_id = {row}.lead_id AND {row}.p IS NULL LIMIT 1) l"
    )
}

/// $1–$20 but $15.
const INSERT_LEADS: &str = "INSERT INTO leads (lead_id, partner_id, submitted_by_user, first_name, \
     last_name, email, phone, phone_key, company, notes, metadata, status, crm_status, sync_state, \
     channel_conflict, created_at, updated_at, soho_lead_id, sync_error) \
     SELECT id, partner, submitter, first_name, last_name, email, phone, phone_key, company, notes, \
            metadata, status, crm_status, sync_state, conflict, at, updated_at, soho_lead_id, \
            sync_error \
     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::text[], $13::bool[], \
                 $14::timestamptz[], $16::text[], $17::text[], $18::text[], $19::text[], \
                 $20::timestamptz[]) \
          AS n(id, partner, submitter, first_name, last_name, email, phone, phone_key, company, notes, \
               metadata, crm_status, conflict, at, status, sync_state, soho_lead_id, sync_error, \
               updated_at)";

/// $1 and $15: what a search of the new leads matches.
const INSERT_SEARCH: &str =
    "INSERT INTO lead_search (lead_id, search_text) SELECT * FROM unnest($1::uuid[], $15::text[])";

fn bind_inserts<'q, B: Binder<'q>>(query: B, batch: &LeadBatch) -> B {
    let leads = &batch.inserts;
    let details =
        |f: fn(&soho_aggregates::lead::LeadDetails) -> Option<String>| -> Vec<Option<String>> {
            leads.iter().map(|l| f(&l.details)).collect()
        };
    query
        .value(leads.iter().map(|l| l.id).collect::<Vec<_>>())
        .value(leads.iter().map(|l| l.partner_id).collect::<Vec<_>>())
        .value(leads.iter().map(|l| l.submitted_by_user).collect::<Vec<_>>())
        .value(details(|d| d.first_name.clone()))
        .value(leads.iter().map(|l| l.details.last_name.clone()).collect::<Vec<_>>())
        .value(details(|d| d.email.clone()))
        .value(details(|d| d.phone.clone()))
        .value(details(|d| d.phone_key()))
        .value(details(|d| d.company.clone()))
        .value(details(|d| d.notes.clone()))
        .value(leads.iter().map(NewLead::metadata).collect::<Vec<_>>())
        .value(leads.iter().map(|l| l.crm_status().to_string()).collect::<Vec<_>>())
        .value(leads.iter().map(|l| l.channel_conflict).collect::<Vec<_>>())
        .value(leads.iter().map(|l| l.at).collect::<Vec<_>>())
        .value(leads.iter().map(|l| search_text(&l.details)).collect::<Vec<_>>())
        .value(leads.iter().map(|l| l.status().as_str()).collect::<Vec<_>>())
        .value(leads.iter().map(NewLead::sync_state).collect::<Vec<_>>())
        .value(leads.iter().map(|l| l.soho_lead_id().map(str::to_string)).collect::<Vec<_>>())
        .value(leads.iter().map(|l| l.sync_error().map(str::to_string)).collect::<Vec<_>>())
        .value(leads.iter().map(NewLead::updated_at).collect::<Vec<_>>())
}

/// A new lead's columns as its row is first written (what later events of its batch changed
/// already merged in).
impl NewLead {
    pub(super) fn metadata(&self) -> serde_json::Value {
        serde_json::to_value(&self.details.metadata).unwrap_or_default()
    }

    pub(super) fn status(&self) -> LeadStatus {
        self.change.status.as_ref().map_or(LeadStatus::New, |s| s.0)
    }

    pub(super) fn crm_status(&self) -> &str {
        self.change.status.as_ref().map_or(INITIAL_CRM_STATUS, |s| s.1.as_str())
    }

    pub(super) fn sync_state(&self) -> &'static str {
        self.change.sync.as_ref().map_or(SyncState::Pending, |s| s.0).as_str()
    }

    pub(super) fn soho_lead_id(&self) -> Option<&str> {
        self.change.sync.as_ref().and_then(|s| s.1.as_deref())
    }

    pub(super) fn sync_error(&self) -> Option<&str> {
        self.change.sync.as_ref().and_then(|s| s.2.as_deref())
    }

    pub(super) fn updated_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.change.updated_at.unwrap_or(self.at)
    }
}

/// What a name search matches: the names, email and company, lower-cased.
pub(super) fn search_text(d: &soho_aggregates::lead::LeadDetails) -> String {
    [d.first_name.as_deref(), Some(d.last_name.as_str()), d.email.as_deref(), d.company.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
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

fn bind_changes<'q, B: Binder<'q>>(query: B, batch: &LeadBatch) -> B {
    let changes = &batch.changes;
    query
        .value(changes.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .value(
            changes
                .iter()
                .map(|(_, c)| c.status.as_ref().map(|s| s.0.as_str()))
                .collect::<Vec<_>>(),
        )
        .value(
            changes.iter().map(|(_, c)| c.status.as_ref().map(|s| s.1.clone())).collect::<Vec<_>>(),
        )
        .value(
            changes.iter().map(|(_, c)| c.sync.as_ref().map(|s| s.0.as_str())).collect::<Vec<_>>(),
        )
        .value(
            changes
                .iter()
                .map(|(_, c)| c.sync.as_ref().and_then(|s| s.1.clone()))
                .collect::<Vec<_>>(),
        )
        .value(
            changes
                .iter()
                .map(|(_, c)| c.sync.as_ref().and_then(|s| s.2.clone()))
                .collect::<Vec<_>>(),
        )
        .value(changes.iter().map(|(_, c)| c.updated_at).collect::<Vec<_>>())
}

/// $28–$38.
const INSERT_HISTORY: &str = "INSERT INTO lead_status_history (lead_id, sequence, old_status, \
     new_status, crm_status, source, actor_type, actor_id, note, applied, occurred_at) \
     SELECT * FROM unnest($28::uuid[], $29::bigint[], $30::text[], $31::text[], $32::text[], \
                          $33::text[], $34::text[], $35::text[], $36::text[], $37::bool[], \
                          $38::timestamptz[])";

fn bind_history<'q, B: Binder<'q>>(query: B, batch: &LeadBatch) -> B {
    let rows = &batch.history;
    query
        .value(rows.iter().map(|r| r.lead).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.old_status.as_str()).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.change.status.as_str()).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.change.crm_status.clone()).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.change.source.as_str()).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.change.actor.kind.as_str()).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.change.actor.id.clone()).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.change.note.clone()).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.applied).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.change.occurred_at).collect::<Vec<_>>())
}

/// $39–$43: the net deltas added to the counters of each lead's partner and, if a user
/// submitted it, the user's. Zero deltas still create the row (a counter that exists at 0 is
/// what a replay makes).
static COUNT_LEADS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO lead_counts (scope, scope_id, status, leads) \
         SELECT s.scope, s.scope_id, d.status, sum(d.delta) \
         FROM unnest($39::uuid[], $40::text[], $41::bigint[], $42::uuid[], $43::uuid[]) \
           AS d(lead_id, status, delta, p, s) \
         {} \
         CROSS JOIN LATERAL (VALUES ('partner', l.partner_id), ('user', l.submitted_by_user)) AS s(scope, scope_id) \
         WHERE s.scope_id IS NOT NULL \
         GROUP BY s.scope, s.scope_id, d.status \
         ON CONFLICT (scope, scope_id, status) DO UPDATE SET leads = lead_counts.leads + EXCLUDED.leads",
        scope_of("d", false)
    )
});

/// $44–$49: the weekly series. A lead submitted adds to its week; a lead that became (or
/// stopped being) converted adds (or takes) one from the week it was submitted in.
static COUNT_WEEKS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO lead_weeks (scope, scope_id, week, submitted, converted) \
         SELECT s.scope, s.scope_id, date_trunc('week', l.created_at AT TIME ZONE 'UTC')::date, \
                sum(w.submitted), sum(w.converted) \
         FROM unnest($44::uuid[], $45::bigint[], $46::bigint[], $47::uuid[], $48::uuid[], \
                     $49::timestamptz[]) AS w(lead_id, submitted, converted, p, s, at) \
         {} \
         CROSS JOIN LATERAL (VALUES ('partner', l.partner_id), ('user', l.submitted_by_user)) AS s(scope, scope_id) \
         WHERE s.scope_id IS NOT NULL \
         GROUP BY 1, 2, 3 \
         ON CONFLICT (scope, scope_id, week) DO UPDATE SET \
           submitted = lead_weeks.submitted + EXCLUDED.submitted, \
           converted = lead_weeks.converted + EXCLUDED.converted",
        scope_of("w", true)
    )
});

fn bind_counts<'q, B: Binder<'q>>(query: B, batch: &LeadBatch, known: &Known) -> B {
    let (keys, deltas): (Vec<_>, Vec<i64>) = batch.counts.iter().map(|(k, d)| (*k, *d)).unzip();
    let (week_leads, week_deltas): (Vec<Uuid>, Vec<(i64, i64)>) =
        batch.week_deltas().into_iter().unzip();
    let (partners, submitters, _) = known.columns(keys.iter().map(|(id, _)| *id));
    let (week_partners, week_submitters, week_times) = known.columns(week_leads.iter().copied());
    query
        .value(keys.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .value(keys.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>())
        .value(deltas)
        .value(partners)
        .value(submitters)
        .value(week_leads)
        .value(week_deltas.iter().map(|(s, _)| *s).collect::<Vec<_>>())
        .value(week_deltas.iter().map(|(_, c)| *c).collect::<Vec<_>>())
        .value(week_partners)
        .value(week_submitters)
        .value(week_times)
}

impl LeadBatch {
    /// What the batch adds to each lead's week: `(submitted, converted)`. A lead submitted adds
    /// one submission; a lead that became (or stopped being) converted adds (or takes) one
    /// conversion. Rows come only from submissions and conversions (a replay batches events
    /// differently, and must make the same rows): a change that nets to nothing writes nothing.
    pub(super) fn week_deltas(&self) -> super::Map<Uuid, (i64, i64)> {
        let mut weeks: super::Map<Uuid, (i64, i64)> = super::Map::default();
        for ((lead, status), delta) in &self.counts {
            if *status == LeadStatus::New && self.insert_index.contains_key(lead) {
                weeks.entry(*lead).or_default().0 += 1;
            }
            if *status == LeadStatus::Converted {
                weeks.entry(*lead).or_default().1 += delta;
            }
        }
        weeks.retain(|_, (submitted, converted)| *submitted != 0 || *converted != 0);
        weeks
    }
}

/// $50–$54: live-update messages, scoped as their lead is, in the batch's order.
static INSERT_FEED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO live_feed (kind, lead_id, partner_id, submitted_by_user, data) \
         SELECT f.kind, f.lead_id, l.partner_id, l.submitted_by_user, f.data::jsonb \
         FROM unnest($50::text[], $51::uuid[], $52::text[], $53::uuid[], $54::uuid[]) \
           WITH ORDINALITY AS f(kind, lead_id, data, p, s, n) \
         {} \
         ORDER BY f.n",
        scope_of("f", false)
    )
});

fn bind_feed<'q, B: Binder<'q>>(query: B, batch: &LeadBatch, known: &Known) -> B {
    let rows = &batch.feed;
    let (partners, submitters, _) = known.columns(rows.iter().map(|r| r.lead));
    query
        .value(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.lead).collect::<Vec<_>>())
        .value(rows.iter().map(|r| r.data.clone()).collect::<Vec<_>>())
        .value(partners)
        .value(submitters)
}
