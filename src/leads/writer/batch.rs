//! One batch of lead commands, in one transaction.
//!
//! The batch's opening query takes its locks and reads what its rules need (see
//! [`super::opening`]); the Lead aggregate decides each command; the batch reads back the stored
//! leads its duplicates are answered with, if any; then one more simple query takes the
//! writers' order lock, runs the batch's one writing statement (prepared on the connection,
//! `writer_write`) and commits. Two round trips a batch, and the order lock is held only while
//! the database writes and commits, never across a round trip (see [`super::locks`]). The
//! duplicate rules see every earlier submission of the same person (its lock was held until
//! that batch committed), from any server.

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use soho_aggregates::lead::LeadCommand;
use soho_aggregates::{Lead, LeadId};
use soho_projections::leads::{
    bind_writes, write_statement, LeadWrites, FIRST_FREE_PARAMETER as FIRST,
};
use soho_projections::log::{self, NewEvent};
use soho_projections::params::Literals;
use sqlx::PgConnection;
use uuid::Uuid;

use super::connection::WriterConnection;
use super::locks;
use super::opening::{Opening, Read};
use super::people::InBatch;
use super::receipts::Receipts;
use super::soho_ids::SohoIds;
use super::streams::{Recent, Stream};
use super::{Job, Request, WriteError, Written};
use crate::leads::queries;

/// How often a batch is tried after a deadlock before its requests are told it failed.
const ATTEMPTS: usize = 3;

/// Writes `requests` and answers each.
pub(super) async fn write(
    conn: &mut WriterConnection,
    recent: &mut Recent,
    requests: Vec<Request>,
) {
    let mut attempt = 1;
    let answers = loop {
        let written = try_write(conn, recent, &requests).await;
        match written {
            Ok(answers) => break answers,
            Err(error) if attempt < ATTEMPTS && transient(&error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    attempt,
                    "lead batch failed; trying again"
                );
                attempt += 1;
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    requests = requests.len(),
                    "lead batch failed"
                );
                let message = "the database failed".to_string();
                break requests.iter().map(|_| Err(WriteError::Store(message.clone()))).collect();
            }
        }
    };
    for (request, answer) in requests.into_iter().zip(answers) {
        // The caller may have gone (a closed connection): its write stands all the same.
        let _ = request.reply.send(answer);
    }
}

/// A deadlock or a serialization failure: the same batch may well pass on a second try. (A
/// database that is away is not retried here: its callers are told at once.)
fn transient(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

/// What one request decided, before the batch is written.
enum Decided {
    /// Events to append; answered `Created` or `Changed` with the lead as they leave it (the
    /// row the batch writes holds the same: both are folded from these events).
    Write {
        view: Box<queries::LeadView>,
        created: bool,
    },
    /// The same person's lead of this partner, from the last 24 hours.
    Existing(Uuid),
    /// A webhook written before: its answer then.
    Repeated(serde_json::Value),
    Refused(WriteError),
}

/// Answers to a batch's requests, the statements that end its transaction (see
/// [`finishing`]), and its leads as it leaves them (kept once it commits).
type Outcome = (Vec<Result<Written, WriteError>>, String, HashMap<Uuid, Stream>);

/// Opens a transaction for `requests`, decides them, writes and commits.
#[tracing::instrument(skip_all, fields(requests = requests.len()), err)]
async fn try_write(
    conn: &mut WriterConnection,
    recent: &mut Recent,
    requests: &[Request],
) -> anyhow::Result<Vec<Result<Written, WriteError>>> {
    let opening = Opening::new(recent, requests)?;
    let rows = conn.begin(opening.sql()).await?;
    let tx = conn.transaction()?;
    let decided = match opening.read(&rows, requests) {
        Ok(read) => decide(tx, read, requests).await,
        Err(error) => Err(error),
    };
    match decided {
        Ok((answers, finishing, leads)) => {
            conn.finish(&finishing).await?;
            recent.keep(leads);
            Ok(answers)
        }
        Err(error) => {
            conn.roll_back().await;
            Err(error)
        }
    }
}

/// Decides every request of the batch on what its opening `read`, in the open transaction `tx`.
async fn decide(
    tx: &mut PgConnection,
    read: Read,
    requests: &[Request],
) -> anyhow::Result<Outcome> {
    let Read { people, mut leads, mut soho_ids, mut receipts } = read;
    let mut events = Vec::new();
    // The same events, as the read models and the CRM outbox take them.
    let mut lead_events = Vec::new();
    let mut tasks = crate::crm::outbox::Tasks::default();
    let mut decided = Vec::with_capacity(requests.len());
    let mut submitted = InBatch::default();
    for (n, request) in requests.iter().enumerate() {
        let metadata = serde_json::to_value(request.context.metadata())?;
        let (lead, command, created) = match &request.job {
            Job::Submit(submission) => {
                let found = people.decide(n, submission, &submitted);
                if let Some(existing) = found.existing {
                    decided.push(Decided::Existing(existing));
                    continue;
                }
                let lead = LeadId::new();
                let command = LeadCommand::Submit {
                    lead_id: lead,
                    partner_id: submission.partner,
                    submitted_by: submission.submitter.clone(),
                    details: submission.details.clone(),
                    channel_conflict: found.conflict,
                    at: request.at,
                };
                (lead.as_uuid(), command, true)
            }
            Job::Command { lead, command, receipt } => {
                if let Some(answer) =
                    receipt.as_ref().and_then(|r| receipts.answered(&r.webhook_id))
                {
                    decided.push(Decided::Repeated(answer.clone()));
                    continue;
                }
                if let LeadCommand::RecordCrmSync { soho_lead_id, .. } = command {
                    if !soho_ids.may_hold(soho_lead_id, lead.as_uuid()) {
                        decided.push(Decided::Refused(WriteError::Taken(SohoIds::RULE)));
                        continue;
                    }
                }
                (lead.as_uuid(), command.clone(), false)
            }
        };
        let stream = leads.entry(lead).or_default();
        let sink = EventSink::default();
        match stream.aggregate.handle(command, &(), &sink).await {
            Ok(()) => {
                // Taken: what it claims counts for the rest of the batch.
                match &request.job {
                    Job::Submit(submission) => submitted.add(submission, lead),
                    Job::Command {
                        command: LeadCommand::RecordCrmSync { soho_lead_id, .. },
                        ..
                    } => soho_ids.claim(soho_lead_id, lead),
                    Job::Command { .. } => {}
                }
                let Some(partner) = stream.aggregate.partner_id else {
                    anyhow::bail!("lead {lead} has no partner after its events");
                };
                for event in sink.collect().await {
                    stream.sequence += 1;
                    events.push(NewEvent {
                        aggregate_type: Lead::TYPE,
                        aggregate_id: lead.to_string(),
                        sequence: stream.sequence,
                        event_type: event.event_type(),
                        event_version: event.event_version(),
                        payload: serde_json::to_value(&event)?,
                        metadata: metadata.clone(),
                    });
                    tasks.add(LeadId(lead), partner, &event);
                    lead_events.push((LeadId(lead), stream.sequence, event));
                }
                let Some(view) = queries::LeadView::of_aggregate(&stream.aggregate) else {
                    anyhow::bail!("lead {lead} has no state after its events");
                };
                if let Job::Command { receipt: Some(receipt), .. } = &request.job {
                    receipts.add(
                        &receipt.webhook_id,
                        receipt.endpoint,
                        serde_json::to_value(&view)?,
                    );
                }
                decided.push(Decided::Write { view: Box::new(view), created });
            }
            Err(refused) => decided.push(Decided::Refused(refused.into())),
        }
    }
    // A duplicate is answered with its lead as this batch leaves it, or else as stored (it is
    // committed already). The others are what the batch writes.
    let duplicates: std::collections::HashSet<Uuid> = decided
        .iter()
        .filter_map(|d| match d {
            Decided::Existing(lead) => Some(*lead),
            _ => None,
        })
        .collect();
    let mut views: HashMap<Uuid, queries::LeadView> = HashMap::new();
    for d in &decided {
        match d {
            Decided::Write { view, .. } if duplicates.contains(&view.id) => {
                views.insert(view.id, (**view).clone());
            }
            _ => {}
        }
    }
    let stored: Vec<LeadId> =
        duplicates.into_iter().filter(|lead| !views.contains_key(lead)).map(LeadId).collect();
    if !stored.is_empty() {
        views.extend(queries::leads_by_id(&mut *tx, &stored).await?.into_iter().map(|v| (v.id, v)));
    }
    let finishing = if events.is_empty() && soho_ids.claimed.is_empty() && receipts.is_empty() {
        "COMMIT".to_string()
    } else {
        let writes = LeadWrites::gather(tx, lead_events).await?;
        let write = soho_ids.bind(receipts.bind(
            tasks.bind(log::bind_append(bind_writes(Literals::default(), &writes), &events)),
        ));
        finishing(&write.execute(WRITE)?)
    };
    let answers = decided
        .into_iter()
        .map(|decided| {
            let view = |lead: Uuid| {
                views
                    .get(&lead)
                    .cloned()
                    .ok_or(WriteError::Refused(soho_aggregates::LeadError::NotFound))
            };
            match decided {
                Decided::Write { view, created: true } => Ok(Written::Created(*view)),
                Decided::Write { view, created: false } => Ok(Written::Changed(*view)),
                Decided::Existing(lead) => view(lead).map(Written::Existing),
                Decided::Repeated(answer) => Ok(Written::Repeated(answer)),
                Decided::Refused(error) => Err(error),
            }
        })
        .collect();
    Ok((answers, finishing, leads))
}

/// The name of the batch's writing statement, prepared on the writer's connection.
const WRITE: &str = "writer_write";

/// The batch's writing statement, prepared on the writer's connection when it opens: its
/// events (postgres-es's table), the read models that follow leads, the CRM outbox tasks, the
/// Soho CRM ids claimed and the webhooks' receipts, and the news for the Soho CRM workers on
/// every server (sent with the COMMIT) that the outbox has new tasks.
pub(super) fn prepare() -> String {
    let also = format!(
        "appended AS ({}), outbox AS ({}), receipts AS ({}), {}",
        log::append_sql(FIRST),
        crate::crm::outbox::Tasks::sql(FIRST + 7),
        Receipts::sql(FIRST + 11),
        SohoIds::sql(FIRST + 14),
    );
    let announce = soho_projections::reader::announce_expression(
        crate::crm::outbox::NAME,
        "max(tx_id::text::bigint)",
        "max(global_position)",
    );
    let select =
        format!("SELECT CASE WHEN count(*) > 0 THEN {announce} END AS announced FROM appended");
    format!("PREPARE {WRITE} AS {}", write_statement(&also, &select))
}

/// What ends a batch that writes, as one simple query: the writers' order lock, `write` (the
/// `EXECUTE` of [`WRITE`]), COMMIT. Statements of a simple query run one after the other, each
/// seeing what was committed before it began: the write sees every batch that held the order
/// lock before it. An error skips the rest (the transaction then stays open, failed, for the
/// caller to roll back).
fn finishing(write: &str) -> String {
    format!("{}; {write}; COMMIT", locks::ORDER)
}
