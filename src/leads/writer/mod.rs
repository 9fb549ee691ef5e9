//! The lead writer: one per server, it owns the transactions every lead command is written in
//! (DESIGN.md "Write path").
//!
//! Requests queue; a batch takes whatever is queued (no timer: one request alone pays no
//! batching delay, sixteen at once share one commit) and is written in one transaction:
//! the locks on the people, leads and webhooks it is about, the duplicate rules for submissions,
//! the Lead aggregate's decisions (`Lead::handle`, the only place a lead rule lives), and then,
//! under the writers' order lock, the events (postgres-es's table) and the read models that
//! follow leads (list row, counters, status history, CRM outbox, live feed), set-based for the
//! whole batch, in one statement (see `locks` for why only that part is serialised across
//! servers). A command its aggregate refuses fails alone; its neighbours commit. A full queue is
//! answered at once (`Busy`), never waited on.

mod batch;
mod connection;
mod locks;
mod opening;
mod people;
mod receipts;
mod soho_ids;
mod streams;

use chrono::{DateTime, Utc};
use soho_aggregates::lead::{LeadCommand, LeadDetails, Submitter};
use soho_aggregates::{LeadError, LeadId, PartnerId};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::queries::LeadView;
use crate::commands::CommandContext;

/// Requests waiting for the writer; past this, callers are told to come back.
const QUEUE: usize = 4096;
/// The most requests one transaction takes.
const BATCH: usize = 256;

/// A lead to submit: checked fields, and who submits it for which partner.
#[derive(Debug, Clone)]
pub struct Submission {
    pub partner: PartnerId,
    pub submitter: Submitter,
    pub details: LeadDetails,
}

/// What a request came to.
#[derive(Debug)]
pub enum Written {
    /// A new lead (201).
    Created(LeadView),
    /// The same person, already submitted by this partner in the last 24 hours (200).
    Existing(LeadView),
    /// A command on an existing lead: the lead as it now is.
    Changed(LeadView),
    /// A webhook delivered before and written then: the answer it got (`webhook_receipts`).
    Repeated(serde_json::Value),
}

/// A Soho CRM webhook a command comes from: it is written once, with its receipt, in the
/// command's transaction; a repeat (the same `webhook_id`) gets the first answer and writes
/// nothing. A refused command leaves no receipt, so a retry is decided afresh.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub webhook_id: String,
    /// Which webhook route it came to (`lead-status`).
    pub endpoint: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The Lead aggregate refused the command.
    #[error(transparent)]
    Refused(#[from] LeadError),
    /// A set-based rule refused, by its name (`lead_soho_id_unique`: another lead has this Soho
    /// CRM id).
    #[error("{0} is already taken")]
    Taken(&'static str),
    /// The queue is full: retry shortly.
    #[error("too many lead commands at once; retry shortly")]
    Busy,
    #[error("writing leads failed: {0}")]
    Store(String),
}

enum Job {
    Submit(Submission),
    Command { lead: LeadId, command: LeadCommand, receipt: Option<Receipt> },
}

struct Request {
    job: Job,
    context: CommandContext,
    at: DateTime<Utc>,
    reply: oneshot::Sender<Result<Written, WriteError>>,
}

/// The writer's queue, shared by every request of this server.
#[derive(Clone)]
pub struct LeadWriter {
    queue: mpsc::Sender<Request>,
}

/// The writer's side of the queue, until `spawn` takes it.
pub struct WriterTask {
    requests: mpsc::Receiver<Request>,
}

impl LeadWriter {
    pub fn new() -> (Self, WriterTask) {
        let (queue, requests) = mpsc::channel(QUEUE);
        (Self { queue }, WriterTask { requests })
    }

    /// Submits a lead (duplicates answered with the existing lead).
    pub async fn submit(
        &self,
        submission: Submission,
        context: &CommandContext,
    ) -> Result<Written, WriteError> {
        self.send(Job::Submit(submission), context).await
    }

    /// Runs `command` on an existing lead.
    pub async fn execute(
        &self,
        lead: LeadId,
        command: LeadCommand,
        context: &CommandContext,
    ) -> Result<LeadView, WriteError> {
        match self.send(Job::Command { lead, command, receipt: None }, context).await? {
            Written::Changed(view) | Written::Created(view) | Written::Existing(view) => Ok(view),
            Written::Repeated(_) => Err(WriteError::Store("a receipt without a webhook".into())),
        }
    }

    /// Runs `command` on an existing lead once per webhook: `Changed`, or `Repeated` with the
    /// answer the first delivery got.
    pub async fn execute_once(
        &self,
        lead: LeadId,
        command: LeadCommand,
        receipt: Receipt,
        context: &CommandContext,
    ) -> Result<Written, WriteError> {
        self.send(Job::Command { lead, command, receipt: Some(receipt) }, context).await
    }

    async fn send(&self, job: Job, context: &CommandContext) -> Result<Written, WriteError> {
        let (reply, answer) = oneshot::channel();
        let request = Request { job, context: context.clone(), at: Utc::now(), reply };
        self.queue.try_send(request).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => WriteError::Busy,
            mpsc::error::TrySendError::Closed(_) => WriteError::Store("the writer stopped".into()),
        })?;
        answer.await.map_err(|_| WriteError::Store("the writer stopped".into()))?
    }
}

impl WriterTask {
    /// Writes batches until every `LeadWriter` is gone. (One batch at a time: two in flight,
    /// one deciding while the other writes, each on its own connection, ran 0.8–1.0 × the
    /// stock cqrs-es path where one ran 0.84–1.15 ×, as the batches halve and each pays its
    /// round trips and commit: docs/benchmarks.md.)
    pub fn spawn(mut self, pool: PgPool) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut requests = Vec::with_capacity(BATCH);
            let mut conn = connection::WriterConnection::new(&pool, opening::prepare_all());
            let mut recent = streams::Recent::default();
            while self.requests.recv_many(&mut requests, BATCH).await > 0 {
                batch::write(&mut conn, &mut recent, std::mem::take(&mut requests)).await;
            }
        })
    }
}
