//! One batch of CRM tasks: the leads they are about, one call for all of them (up to 100
//! records, one credit), and each record's outcome recorded: synced leads and refused ones as
//! events through the lead writer (which writes a burst of them in one commit), the outbox rows
//! in one statement.
//!
//! A crash anywhere leaves the tasks pending; the call is made again, which the CRM takes as
//! the same (upserts match on `Portal_Lead_Id`, a status set twice is set once).

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use soho_aggregates::lead::SyncState;
use soho_aggregates::{Actor, Lead, LeadCommand, LeadId};
use sqlx::PgConnection;

use super::client::{CrmError, RecordAnswer};
use super::limits::{self, Spend};
use super::worker::{CrmSync, Task, Worked, ELIGIBLE};
use crate::commands::CommandContext;
use crate::metrics::Metrics;

/// What became of one task.
#[derive(Debug, Clone)]
enum Outcome {
    /// The CRM has it; `synced` is the lead's CRM id when the lead must be marked synced.
    Done { synced: Option<String> },
    /// Refused for good: the lead is failed until an operator retries it.
    Failed { code: String, message: String },
    /// Not now: try again after `after` (or the backoff of its attempts).
    Retry { reason: String, after: Option<Duration> },
}

pub(super) struct Batch<'a> {
    sync: &'a CrmSync,
    task_ids: Vec<i64>,
}

impl<'a> Batch<'a> {
    pub fn new(sync: &'a CrmSync, task_ids: Vec<i64>) -> Self {
        Self { sync, task_ids }
    }

    /// With the tasks' locks and a slot held: checks they are still due (another worker may have
    /// just done them), makes the call if the limits allow, gives the slot back, and records the
    /// outcomes.
    pub async fn work(
        self,
        conn: &mut PgConnection,
        slot: &mut Option<i32>,
    ) -> anyhow::Result<Worked> {
        // Each task by its key: with `task_id = ANY($1)` the planner preferred the index of
        // ready tasks and filtered all of them (15 ms a call with a 20,000-task backlog).
        let tasks: Vec<Task> = sqlx::query_as(&format!(
            "SELECT o.task_id, o.lead_id, o.kind, o.crm_status, o.attempts \
             FROM unnest($1::bigint[]) AS w(id) CROSS JOIN LATERAL ( \
               SELECT * FROM crm_outbox o WHERE o.task_id = w.id AND {ELIGIBLE} LIMIT 1) o \
             ORDER BY o.task_id"
        ))
        .bind(&self.task_ids)
        .fetch_all(&mut *conn)
        .await?;
        let Some(kind) = tasks.first().map(|t| t.kind.clone()) else { return Ok(Worked::Idle) };
        let leads = self.load_leads(conn, &tasks).await?;
        let partners = self.partner_soho_ids(conn, leads.values()).await?;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; tasks.len()];
        // The records of the call, and which task each is.
        let mut upserts = Vec::new();
        let mut updates = Vec::new();
        let mut in_call = Vec::new();
        let mut paused = None;
        for (n, task) in tasks.iter().enumerate() {
            // A lead has details from its first event on: without them, it has no events.
            let Some((lead, details)) =
                leads.get(&task.lead_id).and_then(|l| Some((l, l.details.as_ref()?)))
            else {
                outcomes[n] = Some(Outcome::Failed {
                    code: "UNKNOWN_LEAD".into(),
                    message: "the lead has no events".into(),
                });
                continue;
            };
            match task.kind.as_str() {
                "upsert" => {
                    let partner = lead.partner_id.and_then(|p| partners.get(&p.as_uuid()).cloned());
                    upserts.push(record(task.lead_id, lead, details, partner));
                }
                "status" => {
                    let Some(soho_id) = lead.soho_lead_id.clone() else {
                        outcomes[n] = Some(Outcome::Retry {
                            reason: "the lead is not in Soho CRM yet".into(),
                            after: None,
                        });
                        continue;
                    };
                    let crm_status =
                        task.crm_status.clone().unwrap_or_else(|| lead.crm_status.clone());
                    updates.push((soho_id, crm_status));
                }
                other => {
                    outcomes[n] = Some(Outcome::Failed {
                        code: "UNKNOWN_TASK".into(),
                        message: format!("unknown task kind {other}"),
                    });
                    continue;
                }
            }
            in_call.push(n);
        }
        if !in_call.is_empty() {
            if let Spend::Paused { until, reason } =
                limits::spend(conn, self.sync.portal.settings.soho_daily_credits, in_call.len())
                    .await?
            {
                tracing::info!(%until, %reason, "Soho CRM sync paused");
                return Ok(Worked::Paused((until - Utc::now()).to_std().unwrap_or_default()));
            }
            let span = tracing::info_span!("crm_call", %kind, records = in_call.len());
            let answers = tracing::Instrument::instrument(
                async {
                    match kind.as_str() {
                        "upsert" => self.sync.client.upsert_leads(upserts).await,
                        _ => self.sync.client.update_statuses(&updates).await,
                    }
                },
                span,
            )
            .await;
            if let Some(slot) = slot.take() {
                limits::release_slot(conn, slot).await?;
            }
            if let Err(CrmError::LimitReached { after }) = &answers {
                let after = after.unwrap_or(limits::LIMIT_REACHED_PAUSE);
                let reason = "Soho CRM answered LIMIT_REACHED: the org's API credits are spent";
                tracing::warn!(pause_seconds = after.as_secs(), "{reason}; every server holds off");
                limits::pause(conn, after, reason).await?;
                paused = Some(after);
                for n in &in_call {
                    outcomes[*n] =
                        Some(Outcome::Retry { reason: reason.into(), after: Some(after) });
                }
            } else {
                self.read_answers(&tasks, &in_call, answers, &mut outcomes);
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Retry { reason: "not called".into(), after: None }))
            .collect();
        let outcomes = self.record(&tasks, &leads, outcomes).await;
        finish(conn, &tasks, &outcomes).await?;
        Ok(paused.map_or(Worked::Batch, Worked::Paused))
    }

    /// Each called task's outcome, from its record's answer or the call's failure.
    fn read_answers(
        &self,
        tasks: &[Task],
        in_call: &[usize],
        answers: Result<Vec<RecordAnswer>, CrmError>,
        outcomes: &mut [Option<Outcome>],
    ) {
        let metrics: &Metrics = &self.sync.portal.metrics;
        let answers = match answers {
            Ok(answers) => {
                Metrics::count(&metrics.crm_calls);
                metrics
                    .crm_records
                    .fetch_add(answers.len() as u64, std::sync::atomic::Ordering::Relaxed);
                answers
            }
            Err(error) => {
                let outcome = match error {
                    CrmError::Permanent { code, message } => Outcome::Failed { code, message },
                    CrmError::Retry { reason, after } => Outcome::Retry { reason, after },
                    CrmError::LimitReached { after } => {
                        Outcome::Retry { reason: "LIMIT_REACHED".into(), after }
                    }
                };
                if matches!(outcome, Outcome::Retry { .. }) {
                    Metrics::count(&metrics.crm_retries);
                }
                tracing::info!(?outcome, records = in_call.len(), "Soho CRM call failed");
                for n in in_call {
                    outcomes[*n] = Some(outcome.clone());
                }
                return;
            }
        };
        for (n, answer) in in_call.iter().zip(answers) {
            outcomes[*n] = Some(match answer {
                RecordAnswer::Done(soho_id) if tasks[*n].kind == "upsert" && soho_id.is_empty() => {
                    Outcome::Retry {
                        reason: "the upsert answer has no record id".into(),
                        after: None,
                    }
                }
                RecordAnswer::Done(soho_id) => {
                    Outcome::Done { synced: (tasks[*n].kind == "upsert").then_some(soho_id) }
                }
                RecordAnswer::Refused { code, message } => {
                    tracing::warn!(lead = %tasks[*n].lead_id, %code, %message, "Soho CRM refused a record for good");
                    Outcome::Failed { code, message }
                }
            });
        }
    }

    /// Records the leads' events: synced (a new lead, or one failed before and now in step
    /// again) or failed. All at once, so the lead writer takes them in one commit; a lead whose
    /// event could not be written has its task retried (the call is repeated, harmlessly).
    async fn record(
        &self,
        tasks: &[Task],
        leads: &HashMap<uuid::Uuid, Lead>,
        outcomes: Vec<Outcome>,
    ) -> Vec<Outcome> {
        let writes = tasks.iter().zip(&outcomes).map(|(task, outcome)| {
            let lead = leads.get(&task.lead_id);
            let command = match outcome {
                Outcome::Done { synced: Some(soho_lead_id) } => Some(LeadCommand::RecordCrmSync {
                    soho_lead_id: soho_lead_id.clone(),
                    at: Utc::now(),
                }),
                Outcome::Done { synced: None } => lead
                    .filter(|l| l.sync_state == SyncState::Failed)
                    .and_then(|l| l.soho_lead_id.clone())
                    .map(|soho_lead_id| LeadCommand::RecordCrmSync {
                        soho_lead_id,
                        at: Utc::now(),
                    }),
                Outcome::Failed { code, message } => {
                    Metrics::count(&self.sync.portal.metrics.crm_failures);
                    Some(LeadCommand::RecordCrmSyncFailure {
                        code: code.clone(),
                        message: message.clone(),
                        at: Utc::now(),
                    })
                }
                Outcome::Retry { .. } => None,
            };
            async move {
                let Some(command) = command else { return Ok(()) };
                let context = CommandContext::new(Actor::system());
                let writer = &self.sync.portal.writer;
                writer.execute(LeadId(task.lead_id), command, &context).await.map(|_| ())
            }
        });
        let written = futures::future::join_all(writes).await;
        outcomes
            .into_iter()
            .zip(written)
            .map(|(outcome, written)| match written {
                Ok(()) => outcome,
                Err(error) => Outcome::Retry { reason: format!("portal: {error}"), after: None },
            })
            .collect()
    }

    /// The tasks' leads, folded from the log in one read.
    async fn load_leads(
        &self,
        conn: &mut PgConnection,
        tasks: &[Task],
    ) -> anyhow::Result<HashMap<uuid::Uuid, Lead>> {
        let ids: Vec<String> = tasks.iter().map(|t| t.lead_id.to_string()).collect();
        let mut leads: HashMap<uuid::Uuid, Lead> = HashMap::new();
        for stored in soho_projections::log::read_streams(conn, Lead::TYPE, &ids).await? {
            leads.entry(stored.aggregate_uuid()?).or_default().apply(stored.decode()?);
        }
        Ok(leads)
    }

    /// The Soho CRM ids of the leads' partners, remembered (they never change once a partner is
    /// registered); the ones not known yet are read in one statement.
    async fn partner_soho_ids(
        &self,
        conn: &mut PgConnection,
        leads: impl Iterator<Item = &Lead>,
    ) -> sqlx::Result<HashMap<uuid::Uuid, String>> {
        let mut wanted: Vec<uuid::Uuid> =
            leads.filter_map(|l| l.partner_id.map(|p| p.as_uuid())).collect();
        wanted.sort();
        wanted.dedup();
        let mut known: HashMap<uuid::Uuid, String> = match self.sync.partner_soho_ids.lock() {
            Ok(remembered) => {
                wanted.iter().filter_map(|p| remembered.get(p).map(|id| (*p, id.clone()))).collect()
            }
            Err(_) => HashMap::new(),
        };
        let missing: Vec<uuid::Uuid> =
            wanted.into_iter().filter(|p| !known.contains_key(p)).collect();
        if missing.is_empty() {
            return Ok(known);
        }
        let found: Vec<(uuid::Uuid, String)> = sqlx::query_as(
            "SELECT partner_id, soho_partner_id FROM partners WHERE partner_id = ANY($1)",
        )
        .bind(&missing)
        .fetch_all(conn)
        .await?;
        if let Ok(mut remembered) = self.sync.partner_soho_ids.lock() {
            remembered.extend(found.iter().cloned());
        }
        known.extend(found);
        Ok(known)
    }
}

/// The outbox rows after the call, in one statement: done, failed (until `crm retry`), or
/// pending again after a backoff.
async fn finish(conn: &mut PgConnection, tasks: &[Task], outcomes: &[Outcome]) -> sqlx::Result<()> {
    let mut ids = Vec::with_capacity(tasks.len());
    let mut states = Vec::with_capacity(tasks.len());
    let mut errors: Vec<Option<String>> = Vec::with_capacity(tasks.len());
    let mut delays = Vec::with_capacity(tasks.len());
    // One backoff for the batch: its tasks failed together and come back together, as a batch
    // (a jitter each would scatter them over small calls).
    let backoff = backoff(tasks.iter().map(|t| t.attempts).max().unwrap_or(0));
    for (task, outcome) in tasks.iter().zip(outcomes) {
        ids.push(task.task_id);
        let (state, error, delay) = match outcome {
            Outcome::Done { .. } => ("done", None, 0.0),
            Outcome::Failed { code, message } => {
                ("failed", Some(format!("{code}: {message}")), 0.0)
            }
            Outcome::Retry { reason, after } => {
                let delay = after.unwrap_or(backoff);
                ("pending", Some(reason.clone()), delay.as_secs_f64())
            }
        };
        states.push(state);
        errors.push(error);
        delays.push(delay);
    }
    sqlx::query(
        "UPDATE crm_outbox o SET state = u.state, last_error = u.error, \
           attempts = o.attempts + CASE WHEN u.state = 'done' THEN 0 ELSE 1 END, \
           next_attempt_at = CASE WHEN u.state = 'pending' \
             THEN now() + make_interval(secs => u.delay) ELSE o.next_attempt_at END, \
           done_at = CASE WHEN u.state = 'done' THEN now() END \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[]) AS u(task_id, state, error, delay) \
         WHERE o.task_id = u.task_id",
    )
    .bind(ids)
    .bind(states)
    .bind(errors)
    .bind(delays)
    .execute(conn)
    .await
    .map(|_| ())
}

/// The lead as a Soho CRM `Leads` record (CONTRACT.md 4).
fn record(
    lead_id: uuid::Uuid,
    lead: &Lead,
    d: &soho_aggregates::lead::LeadDetails,
    partner_soho_id: Option<String>,
) -> Value {
    let mut record = json!({
        "Last_Name": d.last_name,
        "Lead_Source": "Partner Portal",
        "Lead_Status": soho_aggregates::lead::INITIAL_CRM_STATUS,
        "Portal_Lead_Id": lead_id.to_string(),
        "Channel_Conflict": lead.channel_conflict,
    });
    for (field, value) in [
        ("First_Name", &d.first_name),
        ("Email", &d.email),
        ("Phone", &d.phone),
        ("Company", &d.company),
        ("Description", &d.notes),
        ("Partner_Id", &partner_soho_id),
    ] {
        if let Some(value) = value {
            record[field] = Value::String(value.clone());
        }
    }
    record
}

/// Exponential backoff with jitter: about 0.5 s, 1 s, 2 s, ... up to 30 s.
fn backoff(attempts: i32) -> Duration {
    let base = 0.5 * 2f64.powi(attempts.clamp(0, 6));
    let jitter = 0.5 + rand::random::<f64>();
    Duration::from_secs_f64((base * jitter).min(30.0))
}
