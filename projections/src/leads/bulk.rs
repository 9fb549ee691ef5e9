//! The lead read models loaded in bulk, for a replay from the start of the log into empty
//! tables: the whole log is gathered into one [`LeadBatch`] (each lead's row merged in memory,
//! its counters summed), and the rows are written with COPY instead of statements. History rows
//! and search rows are final as soon as their event is read, so they stream out while the log is
//! still being read (and their indexes are built while the rest loads); the leads' rows,
//! counters and weeks are written at the end. The live feed is not loaded: a replay keeps it
//! (see [`crate::Projection::kept`]).
//!
//! Row for row this writes what [`super::write`] does batch by batch (the same [`LeadBatch`]
//! decides every value); `replay --check`, which rebuilds batch by batch, compares the two.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use soho_aggregates::aggregate_type;
use soho_aggregates::lead::LeadEvent;
use sqlx::PgPool;
use uuid::Uuid;

use super::{LeadBatch, NewLead};
use crate::copy::{CopyRows, CopyStream};
use crate::log::RawEvent;
use crate::{BulkLoad, ProjectionError};

const LEAD_COLUMNS: &str = "lead_id, partner_id, submitted_by_user, first_name, last_name, \
     email, phone, phone_key, company, notes, metadata, status, crm_status, sync_state, \
     channel_conflict, created_at, updated_at, soho_lead_id, sync_error";
const HISTORY_COLUMNS: &str = "lead_id, sequence, old_status, new_status, crm_status, source, \
     actor_type, actor_id, note, applied, occurred_at";

pub(super) struct LeadsBulk {
    pool: PgPool,
    /// The schema of the tables loaded.
    schema: &'static str,
    batch: LeadBatch,
    history: Streamed,
    search: Streamed,
}

impl LeadsBulk {
    pub(super) fn new(pool: PgPool, schema: &'static str) -> Self {
        Self {
            pool,
            schema,
            batch: LeadBatch { without_feed: true, ..LeadBatch::default() },
            history: Streamed::new("lead_status_history", HISTORY_COLUMNS),
            search: Streamed::new("lead_search", "lead_id, search_text"),
        }
    }

    async fn open(&self, table: &str, columns: &str) -> Result<CopyStream, ProjectionError> {
        Ok(CopyStream::open(&self.pool, &format!("{}.{table}", self.schema), columns).await?)
    }

    /// Writes the history rows gathered so far into their COPY buffer.
    fn render_history(&mut self) {
        let batch = &mut self.batch;
        for row in batch.history.drain(..) {
            let change = &row.change;
            self.history
                .rows
                .uuid(row.lead)
                .int(row.sequence)
                .text(row.old_status.as_str())
                .text(change.status.as_str())
                .text(&change.crm_status)
                .text(change.source.as_str())
                .text(change.actor.kind.as_str())
                .opt_text(change.actor.id.as_deref())
                .opt_text(change.note.as_deref())
                .bool(row.applied)
                .time(change.occurred_at)
                .end_row();
        }
    }
}

/// A table whose rows are final as soon as their event is read: COPYed while the log is read,
/// on a connection opened with its first rows.
struct Streamed {
    table: &'static str,
    columns: &'static str,
    rows: CopyRows,
    stream: Option<CopyStream>,
}

impl Streamed {
    fn new(table: &'static str, columns: &'static str) -> Self {
        Self { table, columns, rows: CopyRows::default(), stream: None }
    }

    /// Sends the rows gathered once they fill a chunk (all of them, and the end, if `last`).
    async fn send(
        &mut self,
        pool: &PgPool,
        schema: &str,
        last: bool,
    ) -> Result<(), ProjectionError> {
        if self.stream.is_none() && !self.rows.is_empty() {
            let table = format!("{schema}.{}", self.table);
            self.stream = Some(CopyStream::open(pool, &table, self.columns).await?);
        }
        match (self.stream.take(), last) {
            (Some(stream), true) => {
                stream.finish(&mut self.rows).await?;
            }
            (Some(stream), false) => {
                stream.send(&mut self.rows, false).await?;
                self.stream = Some(stream);
            }
            (None, _) => {}
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BulkLoad for LeadsBulk {
    async fn add(&mut self, events: &[RawEvent]) -> Result<(), ProjectionError> {
        for stored in events.iter().filter(|e| e.aggregate_type == aggregate_type::LEAD) {
            let event: LeadEvent = stored.decode()?;
            let lead = stored.aggregate_uuid()?;
            if let LeadEvent::LeadSubmitted { details, .. } = &event {
                self.search.rows.uuid(lead).text(&super::write::search_text(details)).end_row();
            }
            self.batch.add(lead, stored.sequence, event);
        }
        self.render_history();
        self.history.send(&self.pool, self.schema, false).await?;
        self.search.send(&self.pool, self.schema, false).await
    }

    async fn close_streamed(&mut self) -> Result<Vec<&'static str>, ProjectionError> {
        self.history.send(&self.pool, self.schema, true).await?;
        self.search.send(&self.pool, self.schema, true).await?;
        Ok(vec![self.history.table, self.search.table])
    }

    async fn finish(mut self: Box<Self>) -> Result<(), ProjectionError> {
        // Two COPYs take the leads' rows chunk by chunk: the database parses and stores them on
        // two cores while this one renders.
        let leads =
            [self.open("leads", LEAD_COLUMNS).await?, self.open("leads", LEAD_COLUMNS).await?];
        let mut rows = CopyRows::default();
        let mut chunks = 0;
        for lead in &self.batch.inserts {
            render_lead(&mut rows, lead);
            if rows.len() >= crate::copy::CHUNK {
                leads[chunks % 2].send(&mut rows, true).await?;
                chunks += 1;
            }
        }
        let [first, second] = leads;
        let loaded_leads = first.finish(&mut rows).await.and(second.finish(&mut rows).await);
        let mut counters = CopyRows::default();
        for ((scope, scope_id, status), leads) in scope_counts(&self.batch) {
            counters.text(scope).uuid(scope_id).text(status.as_str()).int(leads).end_row();
        }
        let mut week_rows = CopyRows::default();
        for ((scope, scope_id, week), (submitted, converted)) in scope_weeks(&self.batch) {
            week_rows.text(scope).uuid(scope_id).date(week).int(submitted).int(converted).end_row();
        }
        let counts = self.open("lead_counts", "scope, scope_id, status, leads").await?;
        counts.finish(&mut counters).await?;
        let weeks = self.open("lead_weeks", "scope, scope_id, week, submitted, converted").await?;
        weeks.finish(&mut week_rows).await?;
        loaded_leads?;
        Ok(())
    }
}

fn render_lead(rows: &mut CopyRows, lead: &NewLead) {
    let d = &lead.details;
    rows.uuid(lead.id)
        .uuid(lead.partner_id)
        .opt_uuid(lead.submitted_by_user)
        .opt_text(d.first_name.as_deref())
        .text(&d.last_name)
        .opt_text(d.email.as_deref())
        .opt_text(d.phone.as_deref())
        .opt_text(d.phone_key().as_deref())
        .opt_text(d.company.as_deref())
        .opt_text(d.notes.as_deref())
        .json(&d.metadata)
        .text(lead.status().as_str())
        .text(lead.crm_status())
        .text(lead.sync_state())
        .bool(lead.channel_conflict)
        .time(lead.at)
        .time(lead.updated_at())
        .opt_text(lead.soho_lead_id())
        .opt_text(lead.sync_error())
        .end_row();
}

/// The scopes a lead counts in: its partner's and, if a user submitted it, the user's.
fn scopes(lead: &NewLead) -> impl Iterator<Item = (&'static str, Uuid)> {
    [("partner", Some(lead.partner_id)), ("user", lead.submitted_by_user)]
        .into_iter()
        .filter_map(|(scope, id)| id.map(|id| (scope, id)))
}

fn lead_of(batch: &LeadBatch, lead: Uuid) -> Option<&NewLead> {
    batch.insert_index.get(&lead).map(|i| &batch.inserts[*i])
}

/// The counters: every `(lead, status)` delta summed per scope, zero sums kept (as the
/// statement's upsert keeps them).
fn scope_counts(
    batch: &LeadBatch,
) -> HashMap<(&'static str, Uuid, soho_aggregates::LeadStatus), i64> {
    let mut counts = HashMap::new();
    for ((lead, status), delta) in &batch.counts {
        let Some(lead) = lead_of(batch, *lead) else { continue };
        for (scope, id) in scopes(lead) {
            *counts.entry((scope, id, *status)).or_default() += delta;
        }
    }
    counts
}

/// The weekly series, per scope and week of submission (weeks start on Monday, in UTC).
fn scope_weeks(batch: &LeadBatch) -> HashMap<(&'static str, Uuid, NaiveDate), (i64, i64)> {
    let mut weeks: HashMap<_, (i64, i64)> = HashMap::new();
    for (lead, (submitted, converted)) in batch.week_deltas() {
        let Some(lead) = lead_of(batch, lead) else { continue };
        let week = week_of(lead.at.date_naive());
        for (scope, id) in scopes(lead) {
            let sums = weeks.entry((scope, id, week)).or_default();
            sums.0 += submitted;
            sums.1 += converted;
        }
    }
    weeks
}

/// The Monday that starts `day`'s week (as `date_trunc('week', …)` has it).
fn week_of(day: NaiveDate) -> NaiveDate {
    day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        // 2026-12-06 is a Sunday: its week began on Monday 2026-11-30.
        assert_eq!(week_of(day(6)), NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert_eq!(week_of(day(7)), day(7));
        assert_eq!(week_of(day(9)), day(7));
    }
}
