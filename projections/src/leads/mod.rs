//! The lead read models: the lead list (`leads`), each lead's status history
//! (`lead_status_history`), the dashboard counters (`lead_counts`) and the live feed
//! (`live_feed`), kept together because they change on the same events.
//!
//! A batch is applied set-based: the events are first gathered in memory into rows to insert,
//! one merged change per lead, and counter deltas (`LeadBatch`), then written with a handful of
//! statements whatever the batch's size ([`write`]). Per-event statements cost a round trip each,
//! which bounded both live throughput and `replay` (issue 8).

mod bulk;
mod write;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use soho_aggregates::aggregate_type;
use soho_aggregates::lead::{LeadEvent, StatusChange, Submitter, SyncState};
use soho_aggregates::{LeadId, LeadStatus};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError, StoredEvent};

/// The subscriber name, and the lock every writer of these tables takes.
pub const NAME: &str = "leads";

/// The kinds of live-feed message (contract 6), as stored in `live_feed.kind` and sent as
/// `type`; outbound webhooks use the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedKind {
    Created,
    StatusChanged,
    Synced,
    SyncFailed,
}

impl FeedKind {
    pub const ALL: [Self; 4] = [Self::Created, Self::StatusChanged, Self::Synced, Self::SyncFailed];

    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "lead.created",
            Self::StatusChanged => "lead.status_changed",
            Self::Synced => "lead.synced",
            Self::SyncFailed => "lead.sync_failed",
        }
    }

    /// The kind a stored or sent name stands for; `None` for any other name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

pub struct LeadsProjection;

#[async_trait::async_trait]
impl Projection for LeadsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Lead commands write these tables with their events (`soho_portal::leads::writer`).
    fn written_inline(&self) -> bool {
        true
    }

    fn tables(&self) -> &'static [&'static str] {
        &["lead_counts", "lead_search", "lead_status_history", "lead_weeks", "leads"]
    }

    /// The live feed is what clients were sent, numbered: a replay leaves it alone.
    fn kept(&self) -> &'static [crate::Kept] {
        &[crate::Kept { table: "live_feed", order: "position" }]
    }

    fn follows(&self) -> &'static [&'static str] {
        &[aggregate_type::LEAD]
    }

    fn bulk(&self, pool: &sqlx::PgPool, schema: &'static str) -> Option<Box<dyn crate::BulkLoad>> {
        Some(Box::new(bulk::LeadsBulk::new(pool.clone(), schema)))
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        for stored in events.iter().filter(|e| e.aggregate_type == aggregate_type::LEAD) {
            decoded.push((
                LeadId(stored.aggregate_uuid()?),
                stored.sequence,
                stored.decode::<LeadEvent>()?,
            ));
        }
        if decoded.is_empty() {
            return Ok(());
        }
        let writes = LeadWrites::gather(tx, decoded).await?;
        write::write(tx, &writes.0).await?;
        Ok(())
    }
}

/// Lead events gathered into the rows they write, for a writer that writes them in its own
/// statement ([`write_statement`]) together with the events themselves.
pub struct LeadWrites(LeadBatch);

impl LeadWrites {
    /// `events`: (lead, sequence, event), in log order.
    pub async fn gather(
        tx: &mut PgConnection,
        events: Vec<(LeadId, i64, LeadEvent)>,
    ) -> Result<Self, ProjectionError> {
        // A superseded change is recorded against the status the lead has at that point: known
        // from the batch itself, or else from the table as it stands before the batch.
        let unknown: Vec<Uuid> = events
            .iter()
            .filter(|(_, _, e)| matches!(e, LeadEvent::LeadStatusChangeSuperseded { .. }))
            .map(|(id, _, _)| id.as_uuid())
            .collect();
        let mut batch = LeadBatch {
            statuses: write::statuses(tx, &unknown).await?.into_iter().collect(),
            ..Default::default()
        };
        for (id, sequence, event) in events {
            batch.add(id.as_uuid(), sequence, event);
        }
        Ok(Self(batch))
    }
}

pub use write::{bind_writes, write_statement, FIRST_FREE_PARAMETER};

/// A lead as the batch first saw it.
struct NewLead {
    id: Uuid,
    partner_id: Uuid,
    submitted_by_user: Option<Uuid>,
    details: soho_aggregates::lead::LeadDetails,
    channel_conflict: bool,
    at: DateTime<Utc>,
    /// What later events of the same batch changed: written with the insert, not after it
    /// (in a replay, most leads are inserted and changed in one batch).
    change: LeadChange,
}

/// Everything the batch changes on one lead's row, merged: the latest value of each column wins.
#[derive(Default)]
struct LeadChange {
    status: Option<(LeadStatus, String)>,
    /// `(sync_state, soho_lead_id if it changed, sync_error)`.
    sync: Option<(SyncState, Option<String>, Option<String>)>,
    updated_at: Option<DateTime<Utc>>,
}

struct HistoryRow {
    lead: Uuid,
    sequence: i64,
    old_status: LeadStatus,
    change: StatusChange,
    applied: bool,
}

struct FeedRow {
    kind: FeedKind,
    lead: Uuid,
    /// The message's data, as JSON text (made straight from the event: a replay makes millions).
    data: String,
}

/// The data of a `lead.synced` message.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Synced<'a> {
    soho_lead_id: &'a str,
}

/// The data of a `lead.sync_failed` message.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncFailed<'a> {
    sync_error: &'a str,
}

/// The data of a `lead.status_changed` message.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusChanged {
    old_status: LeadStatus,
    new_status: LeadStatus,
    source: soho_aggregates::lead::StatusSource,
    at: DateTime<Utc>,
}

fn feed_data(data: &impl serde::Serialize) -> String {
    // Plain structs of strings: serialising them cannot fail.
    serde_json::to_string(data).unwrap_or_else(|_| "{}".into())
}

/// A map keyed by leads (a replay fills it with every lead): foldhash, seeded per process, is
/// several times faster than std's SipHash, and lead ids are random, not chosen by a client.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One batch of lead events, gathered into the rows and changes [`write::write`] sends.
#[derive(Default)]
struct LeadBatch {
    inserts: Vec<NewLead>,
    insert_index: Map<Uuid, usize>,
    /// Per lead, in the order leads were first changed.
    changes: Vec<(Uuid, LeadChange)>,
    change_index: Map<Uuid, usize>,
    /// Net change of each `(lead, status)` count, applied to the lead's partner and submitter.
    counts: Map<(Uuid, LeadStatus), i64>,
    history: Vec<HistoryRow>,
    feed: Vec<FeedRow>,
    /// No feed rows are gathered (a replay's bulk load: the live feed is kept, not rebuilt).
    without_feed: bool,
    /// The status each lead has reached so far (for superseded changes).
    statuses: Map<Uuid, LeadStatus>,
}

impl LeadBatch {
    fn change(&mut self, lead: Uuid) -> &mut LeadChange {
        if let Some(index) = self.insert_index.get(&lead) {
            return &mut self.inserts[*index].change;
        }
        let index = *self.change_index.entry(lead).or_insert_with(|| {
            self.changes.push((lead, LeadChange::default()));
            self.changes.len() - 1
        });
        &mut self.changes[index].1
    }

    /// A feed message about `lead`, its data rendered only if the feed is gathered.
    fn message(&mut self, kind: FeedKind, lead: Uuid, data: impl FnOnce() -> String) {
        if !self.without_feed {
            self.feed.push(FeedRow { kind, lead, data: data() });
        }
    }

    fn add(&mut self, id: Uuid, sequence: i64, event: LeadEvent) {
        match event {
            LeadEvent::LeadSubmitted {
                partner_id,
                submitted_by,
                details,
                channel_conflict,
                at,
                ..
            } => {
                let submitted_by_user = match submitted_by {
                    Submitter::User { id } => Some(id.as_uuid()),
                    Submitter::Public => None,
                };
                self.insert_index.insert(id, self.inserts.len());
                self.inserts.push(NewLead {
                    id,
                    partner_id: partner_id.as_uuid(),
                    submitted_by_user,
                    details,
                    channel_conflict,
                    at,
                    change: LeadChange::default(),
                });
                *self.counts.entry((id, LeadStatus::New)).or_default() += 1;
                self.statuses.insert(id, LeadStatus::New);
                self.message(FeedKind::Created, id, || "{}".into());
            }
            LeadEvent::LeadSyncedToCrm { soho_lead_id, at } => {
                let change = self.change(id);
                change.sync = Some((SyncState::Synced, Some(soho_lead_id.clone()), None));
                change.updated_at = Some(at);
                self.message(FeedKind::Synced, id, || {
                    feed_data(&Synced { soho_lead_id: &soho_lead_id })
                });
            }
            LeadEvent::CrmSyncFailed { code, message, at } => {
                let change = self.change(id);
                let synced_id = change.sync.as_mut().and_then(|(_, soho_id, _)| soho_id.take());
                let error = format!("{code}: {message}");
                change.sync = Some((SyncState::Failed, synced_id, Some(error.clone())));
                change.updated_at = Some(at);
                self.message(FeedKind::SyncFailed, id, || {
                    feed_data(&SyncFailed { sync_error: &error })
                });
            }
            LeadEvent::LeadStatusChanged { old_status, change: status_change, at, .. } => {
                let change = self.change(id);
                change.status = Some((status_change.status, status_change.crm_status.clone()));
                change.updated_at = Some(at);
                *self.counts.entry((id, old_status)).or_default() -= 1;
                *self.counts.entry((id, status_change.status)).or_default() += 1;
                self.statuses.insert(id, status_change.status);
                self.message(FeedKind::StatusChanged, id, || {
                    feed_data(&StatusChanged {
                        old_status,
                        new_status: status_change.status,
                        source: status_change.source,
                        at: status_change.occurred_at,
                    })
                });
                self.history.push(HistoryRow {
                    lead: id,
                    sequence,
                    old_status,
                    change: status_change,
                    applied: true,
                });
            }
            LeadEvent::LeadStatusChangeSuperseded { change, .. } => {
                let current = self.statuses.get(&id).copied().unwrap_or_default();
                self.history.push(HistoryRow {
                    lead: id,
                    sequence,
                    old_status: current,
                    change,
                    applied: false,
                });
            }
        }
    }
}
