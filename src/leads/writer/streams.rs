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
use soho_projections::params::{Binder, Literals, NulByte};
use soho_projections::{log, StoredEvent};
use sqlx::postgres::PgRow;
use sqlx::FromRow;
use uuid::Uuid;

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

/// The leads of the last committed batches, at most [`Recent::MOST`] of them: when full, the
/// half written longest ago goes. (It used to drop whichever lead the map listed first, which
/// the leads written now hit as often as the ones long done: with the map full of an earlier
/// load's leads, the webhooks' hot leads pushed each other out and were read whole from the log
/// again and again, a quarter of the server's time.)
#[derive(Default)]
pub(super) struct Recent {
    streams: HashMap<Uuid, Kept>,
    /// Batches kept so far: when each lead was last written.
    batches: u64,
}

#[derive(Debug)]
struct Kept {
    stream: Stream,
    written: u64,
}

impl Recent {
    /// About 1 KiB each: a bounded few MiB, enough for the leads a server is working on now.
    const MOST: usize = 10_000;

    /// Keeps what a committed batch left its leads as.
    pub(super) fn keep(&mut self, streams: HashMap<Uuid, Stream>) {
        self.batches += 1;
        let written = self.batches;
        // A lead the log does not know (a command about a stranger) is not worth a place.
        for (id, stream) in streams.into_iter().filter(|(_, s)| s.sequence > 0) {
            self.streams.insert(id, Kept { stream, written });
        }
        if self.streams.len() > Self::MOST {
            self.forget_older_half();
        }
    }

    /// Drops the half of the kept leads written longest ago (once every `MOST / 2` new leads or
    /// so, so each costs O(1) on average). A lead not kept is read from the log, as it always
    /// could be.
    fn forget_older_half(&mut self) {
        let mut times: Vec<u64> = self.streams.values().map(|k| k.written).collect();
        let newest_half = times.len() / 2;
        let (_, cutoff, _) = times.select_nth_unstable_by(newest_half, |a, b| b.cmp(a));
        let cutoff = *cutoff;
        self.streams.retain(|_, kept| kept.written > cutoff);
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
            let kept = self.streams.get(&id).map(|k| k.stream.clone()).unwrap_or_default();
            ids.push(id.to_string());
            after.push(kept.sequence);
            streams.insert(id, kept);
        }
        if ids.is_empty() {
            return Ok((streams, None));
        }
        let statement = Literals::default().value(ids).value(after).execute(PREPARED)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn written(recent: &mut Recent, ids: &[Uuid]) {
        let stream = Stream { sequence: 1, ..Stream::default() };
        recent.keep(ids.iter().map(|id| (*id, stream.clone())).collect());
    }

    #[test]
    fn the_leads_written_lately_stay_when_a_full_map_makes_room() {
        let mut recent = Recent::default();
        let old: Vec<Uuid> = (0..Recent::MOST).map(|_| Uuid::new_v4()).collect();
        for chunk in old.chunks(100) {
            written(&mut recent, chunk);
        }
        let hot: Vec<Uuid> = (0..1_024).map(|_| Uuid::new_v4()).collect();
        for _ in 0..20 {
            for chunk in hot.chunks(16) {
                written(&mut recent, chunk);
            }
        }
        assert!(hot.iter().all(|id| recent.streams.contains_key(id)), "a hot lead was dropped");
        assert!(recent.streams.len() <= Recent::MOST);
        // The oldest went first.
        assert!(!recent.streams.contains_key(&old[0]));
    }

    #[test]
    fn leads_the_log_does_not_know_are_not_kept() {
        let mut recent = Recent::default();
        recent.keep([(Uuid::new_v4(), Stream::default())].into_iter().collect());
        assert!(recent.streams.is_empty());
    }
}
