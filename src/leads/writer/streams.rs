//! The Lead aggregates a batch decides with, and the ones this writer keeps between batches.
//!
//! A command on a lead is decided by the aggregate folded from its whole stream. Read from the
//! log for every batch, that cost grew with each lead's history (a lead with twenty status
//! changes read twenty events per webhook). The writer keeps the leads it wrote last, each with
//! the sequence it has: a batch then reads only the events after it. That read happens under the
//! lead's lock (taken earlier in the batch's opening query), so what another server committed
//! meanwhile is read and folded in; the log stays the only truth, and what is kept is only ever
//! a prefix of it.
//! Only committed batches are kept: a batch that fails leaves nothing behind.

use std::collections::HashMap;

use cqrs_es::Aggregate;
use soho_aggregates::Lead;
use soho_projections::{log, StoredEvent};
use sqlx::postgres::PgRow;
use sqlx::FromRow;
use uuid::Uuid;

use super::literals::{self, NulByte};
use super::{Job, Request};

/// The opening query's rows of events.
const TAG: &str = "streams";
const PREPARED: &str = "writer_streams";

/// The read of the leads' events after the kept sequences, prepared once a connection.
pub(super) fn prepare() -> String {
    format!(
        "PREPARE {PREPARED} (text[], bigint[]) AS {}",
        log::streams_after_statement(TAG, &format!("'{}'", Lead::TYPE), "$1", "$2")
    )
}

/// A lead's state and its last sequence, as the log has them (or as a batch left them).
#[derive(Debug, Default, Clone)]
pub(super) struct Stream {
    pub(super) aggregate: Lead,
    pub(super) sequence: i64,
}

/// The leads of the last committed batches, at most [`Recent::MOST`] of them.
#[derive(Default)]
pub(super) struct Recent {
    streams: HashMap<Uuid, Stream>,
}

impl Recent {
    /// About 1 KiB each: a bounded few MiB, enough for the leads a server is working on now.
    const MOST: usize = 10_000;

    /// Keeps what a committed batch left its leads as.
    pub(super) fn keep(&mut self, streams: HashMap<Uuid, Stream>) {
        // A lead the log does not know (a command about a stranger) is not worth a place.
        for (id, stream) in streams.into_iter().filter(|(_, s)| s.sequence > 0) {
            if self.streams.len() >= Self::MOST && !self.streams.contains_key(&id) {
                // Any one goes: a lead not kept is read from the log, as it always could be.
                if let Some(gone) = self.streams.keys().next().copied() {
                    self.streams.remove(&gone);
                }
            }
            self.streams.insert(id, stream);
        }
    }

    /// The existing leads the batch's commands are about, as kept (or new, if not kept), and
    /// the statement that reads the events committed after them, by this server or another
    /// (tagged rows of the opening query, which runs it under the leads' locks).
    pub(super) fn kept_for(
        &self,
        requests: &[Request],
    ) -> Result<(HashMap<Uuid, Stream>, Option<String>), NulByte> {
        let mut streams: HashMap<Uuid, Stream> = HashMap::new();
        let (mut ids, mut after) = (Vec::new(), Vec::new());
        for request in requests {
            let Job::Command { lead, .. } = &request.job else { continue };
            let id = lead.as_uuid();
            if streams.contains_key(&id) {
                continue;
            }
            let kept = self.streams.get(&id).cloned().unwrap_or_default();
            ids.push(id.to_string());
            after.push(kept.sequence);
            streams.insert(id, kept);
        }
        if ids.is_empty() {
            return Ok((streams, None));
        }
        let statement = format!(
            "EXECUTE {PREPARED}({}, {})",
            literals::texts(ids.iter().map(|id| Some(id.as_str())))?,
            literals::ints(after),
        );
        Ok((streams, Some(statement)))
    }

    /// Folds the events the opening query read into `streams`.
    pub(super) fn catch_up(
        streams: &mut HashMap<Uuid, Stream>,
        rows: &[PgRow],
    ) -> anyhow::Result<()> {
        for row in super::opening::tagged(rows, TAG) {
            let stored = StoredEvent::from_row(row)?;
            let stream = streams.entry(stored.aggregate_uuid()?).or_default();
            stream.aggregate.apply(stored.decode()?);
            stream.sequence = stored.sequence;
        }
        Ok(())
    }
}
