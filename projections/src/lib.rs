//! Read models and the machinery that keeps them: a catch-up reader over the event log that
//! hands ordered batches to named subscribers, each checkpointed in the transaction of its own
//! writes, and a replay that rebuilds any read model from the log.
//!
//! Why not cqrs-es `Query`s: they run after commit, inside the request, at most once, and drop
//! their errors (DESIGN.md 3). A subscriber here sees every event exactly once, in log order,
//! whichever server process happens to run it.

/// Planner settings for a connection that writes read models: every statement there finds rows
/// by key, and a plan made while a table was small (a new portal, or a replay into emptied
/// tables: the statistics lag behind tables growing by thousands of rows a second) would scan
/// the whole table on every batch. With these off the planner takes the index whatever the
/// statistics say. (PostgreSQL still scans where no index serves: they penalise, not forbid.)
pub const KEYED_PLANS: [(&str, &str); 3] =
    [("enable_seqscan", "off"), ("enable_hashjoin", "off"), ("enable_mergejoin", "off")];

pub mod copy;
pub mod leads;
pub mod log;
pub mod params;
pub mod partners;
pub mod reader;
pub mod replay;
pub mod users;

use std::sync::Arc;

pub use log::{LogPosition, StoredEvent};
pub use reader::{CatchUpReader, Checkpoints};

/// A read model kept up to date from the event log.
#[async_trait::async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The subscriber name: the checkpoint's key and the name `replay` takes.
    fn name(&self) -> &'static str;

    /// The tables this projection owns and a replay rebuilds, in an order safe to empty
    /// (children first).
    fn tables(&self) -> &'static [&'static str];

    /// Tables its statements also write but a replay keeps as they are: a record of messages
    /// already sent, whose positions others hold (a client resuming its live updates, the
    /// outbound webhooks' fan-out). Renumbering them would send a message twice or never. A
    /// rebuild writes their rows into a scratch table it drops; [`replay::check`] still
    /// compares them with what the log yields, in order.
    fn kept(&self) -> &'static [Kept] {
        &[]
    }

    /// The aggregate types whose events it reads (a command on one of them waits for this
    /// projection before answering). Empty: it reads nobody's (it is not a read model).
    fn follows(&self) -> &'static [&'static str] {
        &[]
    }

    /// The aggregate types whose events it acts on: it is woken as soon as one is appended.
    /// Other events only move its checkpoint, on its next poll. Defaults to [`Self::follows`].
    fn reads(&self) -> &'static [&'static str] {
        self.follows()
    }

    /// How long it lets events gather before each batch. Zero (the default) applies each event
    /// as soon as it is committed; a subscriber that nobody waits on closely (the audit chain's
    /// sealer) lingers, so that under load its batches are large and its cost per event, in
    /// statements against the writers' database, close to nothing.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Whether its batches carry the events' payload and metadata as JSON values (a subscriber
    /// that reads them in another form, as text, leaves them out of the batch).
    fn wants_payloads(&self) -> bool {
        true
    }

    /// Written by the commands themselves, in the transaction that appends the events, under
    /// the lock `replay` takes: not followed by a catch-up reader (its checkpoint is retired,
    /// see [`reader::retire`]), only replayed.
    fn written_inline(&self) -> bool {
        false
    }

    /// Applies a batch of events, in log order, inside the reader's transaction.
    async fn apply(
        &self,
        tx: &mut sqlx::PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError>;

    /// A loader for a replay from the start of the log into its empty tables (in `schema`,
    /// written through connections of its own from `pool`), when it has a faster way than
    /// [`Self::apply`] batch by batch. Its tables are loaded with no key or index; they are
    /// built after.
    fn bulk(&self, _pool: &sqlx::PgPool, _schema: &'static str) -> Option<Box<dyn BulkLoad>> {
        None
    }
}

/// A table a replay keeps (see [`Projection::kept`]), and the column its rows are ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub table: &'static str,
    pub order: &'static str,
}

/// A read model being loaded by a replay from the start of the log (see [`Projection::bulk`]).
#[async_trait::async_trait]
pub trait BulkLoad: Send {
    /// Takes the next events, in log order (every event of the log passes through here once).
    async fn add(&mut self, events: &[log::RawEvent]) -> Result<(), ProjectionError>;

    /// Ends the COPYs of the tables that took their rows as the log was read (rows final as soon
    /// as their event is read), and names those tables: their keys and indexes are built while
    /// [`Self::finish`] writes the rest. Called once, after the last [`Self::add`].
    async fn close_streamed(&mut self) -> Result<Vec<&'static str>, ProjectionError> {
        Ok(Vec::new())
    }

    /// Writes what is left; when it returns, every row is committed.
    async fn finish(self: Box<Self>) -> Result<(), ProjectionError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("event at position {position} ({event_type}) could not be read: {source}")]
    Decode { position: i64, event_type: String, source: serde_json::Error },
    #[error("event at position {position} has aggregate id {id:?}, which is not a UUID")]
    BadId { position: i64, id: String },
    #[error("no projection named {0}")]
    Unknown(String),
    /// A side effect (an email, a CRM call) failed in a way worth retrying: the batch is rolled
    /// back and tried again later.
    #[error("{0}")]
    Effect(String),
}

/// The read models a catch-up reader follows (the others are written inline).
pub fn followed() -> Vec<Arc<dyn Projection>> {
    all().into_iter().filter(|p| !p.written_inline()).collect()
}

/// Every read model the portal keeps, in the order they are replayed.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(partners::PartnersProjection),
        Arc::new(users::UsersProjection),
        Arc::new(leads::LeadsProjection),
    ]
}
