//! The CRM sync workers: make the calls the outbox owes Soho CRM and record the outcome as
//! events (`LeadSyncedToCrm`, `CrmSyncFailed`).
//!
//! A task is worked under a session advisory lock on its id, taken on the worker's own
//! connection, so no two workers (on any server) make the same call at once, and a worker that
//! dies lets go as its connection closes. No transaction stays open during a call: an open
//! transaction would hold back every subscriber (their reads stop at the oldest open one). A
//! lead's tasks run in order; different leads' run in parallel, up to the number of workers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use soho_aggregates::{Actor, Lead, LeadCommand};
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::client::{CrmClient, CrmError};
use crate::commands::{load_aggregate, CommandContext};
use crate::metrics::Metrics;
use crate::portal::Portal;

#[derive(sqlx::FromRow, Debug)]
struct Task {
    task_id: i64,
    lead_id: uuid::Uuid,
    kind: String,
    crm_status: Option<String>,
    attempts: i32,
}

const ELIGIBLE: &str = "state = 'pending' AND next_attempt_at <= now() AND NOT EXISTS \
    (SELECT 1 FROM crm_outbox e WHERE e.lead_id = o.lead_id AND e.task_id < o.task_id AND e.state <> 'done')";

/// How many of the oldest ready tasks are shared out fairly across partners.
const FAIRNESS_WINDOW: usize = 4096;

/// Passes the baton each time the outbox subscriber moves on (here, or on another server).
async fn watch_outbox(
    mut checkpoints: tokio::sync::watch::Receiver<
        std::collections::HashMap<String, soho_projections::LogPosition>,
    >,
    baton: Arc<Notify>,
) {
    let mut seen = checkpoints.borrow_and_update().get(OUTBOX).copied();
    while checkpoints.changed().await.is_ok() {
        let now = checkpoints.borrow_and_update().get(OUTBOX).copied();
        if now != seen {
            seen = now;
            baton.notify_one();
        }
    }
}

/// Whose checkpoint news means new tasks (the lead writer announces it with each batch).
const OUTBOX: &str = super::outbox::NAME;

pub struct CrmSync {
    pub portal: Arc<Portal>,
    pub client: Arc<CrmClient>,
    partner_soho_ids: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, String>>,
    turns: Turns,
}

/// When this server last took a task of each partner, to serve them in turn.
#[derive(Default)]
struct Turns {
    served: std::sync::Mutex<(u64, std::collections::HashMap<Option<uuid::Uuid>, u64>)>,
}

impl Turns {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, (u64, std::collections::HashMap<Option<uuid::Uuid>, u64>)> {
        self.served.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The candidates' task ids, partners served longest ago (or never) first; the database's
    /// order otherwise.
    fn order(&self, candidates: &[(i64, Option<uuid::Uuid>)]) -> Vec<i64> {
        let served = self.lock();
        let mut ordered: Vec<_> = candidates.to_vec();
        ordered.sort_by_key(|(_, partner)| served.1.get(partner).copied().unwrap_or(0));
        ordered.into_iter().map(|(task, _)| task).collect()
    }

    fn served(&self, partner: Option<uuid::Uuid>) {
        let mut served = self.lock();
        served.0 += 1;
        let turn = served.0;
        served.1.insert(partner, turn);
    }
}

impl CrmSync {
    pub fn new(portal: Arc<Portal>, client: Arc<CrmClient>) -> Self {
        Self { portal, client, partner_soho_ids: Default::default(), turns: Turns::default() }
    }

    /// The workers, and a watcher that hands them a baton when the outbox gains tasks: one idle
    /// worker looks, and passes the baton on as soon as it has a task, so the number of workers
    /// looking follows the number of tasks instead of every worker scanning on every wake-up.
    pub fn spawn(self: Arc<Self>, workers: usize) -> Vec<JoinHandle<()>> {
        let baton = Arc::new(Notify::new());
        let mut tasks = vec![tokio::spawn(watch_outbox(
            self.portal.checkpoints.subscribe(),
            Arc::clone(&baton),
        ))];
        tasks.extend((0..workers.max(1)).map(|n| {
            let (sync, baton) = (Arc::clone(&self), Arc::clone(&baton));
            tokio::spawn(async move { sync.work(n, &baton).await })
        }));
        tasks
    }

    async fn work(&self, n: usize, baton: &Notify) {
        let mut conn: Option<PgConnection> = None;
        loop {
            if conn.is_none() {
                match self.portal.pool.connect_options().connect().await {
                    Ok(c) => conn = Some(c),
                    Err(error) => {
                        tracing::warn!(%error, worker = n, "CRM worker cannot connect");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            match self.work_one(c, baton).await {
                Ok(true) => continue,
                Ok(false) => {
                    tokio::select! {
                        _ = baton.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), worker = n, "CRM worker error");
                    conn = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Works one eligible task, if there is one this worker can lock.
    async fn work_one(&self, conn: &mut PgConnection, baton: &Notify) -> anyhow::Result<bool> {
        // Fair across partners: the candidates are each partner's oldest ready task, then each
        // one's second, and so on (counted over the oldest few thousand ready tasks, which bounds
        // the scan); of those, the partner this server served longest ago goes first. So one
        // partner's burst of leads does not hold up everyone else's.
        let candidates: Vec<(i64, Option<uuid::Uuid>)> = sqlx::query_as(&format!(
            "SELECT task_id, partner_id FROM ( \
               SELECT t.task_id, t.next_attempt_at, l.partner_id, row_number() OVER ( \
                 PARTITION BY l.partner_id ORDER BY t.next_attempt_at, t.task_id) AS turn \
               FROM (SELECT task_id, lead_id, next_attempt_at FROM crm_outbox o WHERE {ELIGIBLE} \
                     ORDER BY next_attempt_at, task_id LIMIT {FAIRNESS_WINDOW}) t \
               LEFT JOIN leads l ON l.lead_id = t.lead_id) ready \
             ORDER BY turn, next_attempt_at, task_id LIMIT 32"
        ))
        .fetch_all(&mut *conn)
        .await?;
        if candidates.is_empty() {
            return Ok(false);
        }
        let order = self.turns.order(&candidates);
        // One statement locks the first task free in that order: unnest yields the array in
        // order and LIMIT stops at the first lock.
        let locked: Option<i64> = sqlx::query_scalar(
            "SELECT task_id FROM unnest($1::bigint[]) AS task_id WHERE pg_try_advisory_lock(task_id) LIMIT 1",
        )
        .bind(&order)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(task_id) = locked else { return Ok(false) };
        if let Some((_, partner)) = candidates.iter().find(|(id, _)| *id == task_id) {
            self.turns.served(*partner);
        }
        // There may be more: another worker looks while this one makes its call.
        baton.notify_one();
        let result = self.work_locked(conn, task_id).await;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(task_id).execute(&mut *conn).await?;
        result
    }

    /// With the task's lock held: checks it is still due (another worker may have just done it),
    /// makes the call, and records the outcome.
    async fn work_locked(&self, conn: &mut PgConnection, task_id: i64) -> anyhow::Result<bool> {
        let task: Option<Task> = sqlx::query_as(&format!(
            "SELECT task_id, lead_id, kind, crm_status, attempts FROM crm_outbox o WHERE task_id = $1 AND {ELIGIBLE}"
        ))
        .bind(task_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(task) = task else { return Ok(false) };
        let span = tracing::info_span!("crm_task", task = task.task_id, lead = %task.lead_id, kind = %task.kind);
        let outcome = tracing::Instrument::instrument(self.call(&task), span).await;
        let metrics: &Metrics = &self.portal.metrics;
        match outcome {
            Ok(()) => {
                Metrics::count(&metrics.crm_calls);
                sqlx::query("UPDATE crm_outbox SET state = 'done', done_at = now(), last_error = NULL WHERE task_id = $1")
                    .bind(task.task_id)
                    .execute(&mut *conn)
                    .await?;
            }
            Err(CrmError::Retry { reason, after }) => {
                Metrics::count(&metrics.crm_retries);
                let delay = after.unwrap_or_else(|| backoff(task.attempts));
                tracing::info!(%reason, delay_ms = delay.as_millis() as u64, "CRM call will be retried");
                sqlx::query(
                    "UPDATE crm_outbox SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at = now() + make_interval(secs => $3) WHERE task_id = $1",
                )
                .bind(task.task_id)
                .bind(&reason)
                .bind(delay.as_secs_f64())
                .execute(&mut *conn)
                .await?;
            }
            Err(CrmError::Permanent { code, message }) => {
                Metrics::count(&metrics.crm_failures);
                tracing::warn!(%code, %message, "Soho CRM refused the call for good");
                let command = LeadCommand::RecordCrmSyncFailure {
                    code: code.clone(),
                    message: message.clone(),
                    at: Utc::now(),
                };
                self.record(task.lead_id, command).await?;
                sqlx::query("UPDATE crm_outbox SET state = 'failed', attempts = attempts + 1, last_error = $2 WHERE task_id = $1")
                    .bind(task.task_id)
                    .bind(format!("{code}: {message}"))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(true)
    }

    /// A partner's Soho CRM id, remembered: it never changes once the partner is registered.
    async fn partner_soho_id(
        &self,
        conn: &mut PgConnection,
        partner: uuid::Uuid,
    ) -> Result<Option<String>, sqlx::Error> {
        if let Some(known) =
            self.partner_soho_ids.lock().ok().and_then(|m| m.get(&partner).cloned())
        {
            return Ok(Some(known));
        }
        let found: Option<String> =
            sqlx::query_scalar("SELECT soho_partner_id FROM partners WHERE partner_id = $1")
                .bind(partner)
                .fetch_optional(conn)
                .await?;
        if let (Some(found), Ok(mut known)) = (&found, self.partner_soho_ids.lock()) {
            known.insert(partner, found.clone());
        }
        Ok(found)
    }

    async fn call(&self, task: &Task) -> Result<(), CrmError> {
        let unavailable =
            |e: anyhow::Error| CrmError::Retry { reason: format!("portal: {e:#}"), after: None };
        let mut conn = self.portal.pool.acquire().await.map_err(|e| unavailable(e.into()))?;
        let (lead, _) = load_aggregate::<Lead>(&mut conn, &task.lead_id.to_string(), None)
            .await
            .map_err(unavailable)?;
        match task.kind.as_str() {
            "upsert" => {
                let partner_soho_id = match lead.partner_id {
                    Some(partner) => self
                        .partner_soho_id(&mut conn, partner.as_uuid())
                        .await
                        .map_err(|e| unavailable(e.into()))?,
                    None => None,
                };
                drop(conn);
                let soho_lead_id =
                    self.client.upsert_lead(record(task.lead_id, &lead, partner_soho_id)).await?;
                let command = LeadCommand::RecordCrmSync { soho_lead_id, at: Utc::now() };
                self.record(task.lead_id, command).await.map_err(unavailable)
            }
            "status" => {
                drop(conn);
                let soho_lead_id = lead.soho_lead_id.ok_or_else(|| CrmError::Retry {
                    reason: "the lead is not in Soho CRM yet".into(),
                    after: None,
                })?;
                let crm_status = task.crm_status.clone().unwrap_or_else(|| lead.crm_status.clone());
                self.client.update_status(&soho_lead_id, &crm_status).await?;
                // A lead failed by an earlier refusal (this call, retried by an operator) is in
                // step with the CRM again.
                if lead.sync_state == soho_aggregates::lead::SyncState::Failed {
                    let command = LeadCommand::RecordCrmSync { soho_lead_id, at: Utc::now() };
                    self.record(task.lead_id, command).await.map_err(unavailable)?;
                }
                Ok(())
            }
            other => Err(CrmError::Permanent {
                code: "UNKNOWN_TASK".into(),
                message: format!("unknown task kind {other}"),
            }),
        }
    }

    async fn record(&self, lead: uuid::Uuid, command: LeadCommand) -> anyhow::Result<()> {
        let context = CommandContext::new(Actor::system());
        self.portal
            .writer
            .execute(soho_aggregates::LeadId(lead), command, &context)
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The lead as a Soho CRM `Leads` record (CONTRACT.md 4).
fn record(lead_id: uuid::Uuid, lead: &Lead, partner_soho_id: Option<String>) -> Value {
    let d = &lead.details;
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
