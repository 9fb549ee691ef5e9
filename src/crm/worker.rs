//! The CRM sync workers: take the calls the outbox owes Soho CRM in batches of up to 100 records,
//! and hand each batch to `batch` to make the call and record its outcomes.
//!
//! A worker first takes one of the org's concurrency slots (`limits`), then locks the tasks of
//! its batch with session advisory locks on its own connection, so no two workers (on any
//! server) make the same call at once, and a worker that dies lets go as its connection closes.
//! No transaction stays open during a call: an open transaction would hold back every
//! subscriber (their reads stop at the oldest open one). A lead's tasks run in order (a task is
//! taken only once every earlier task of its lead is done), so a batch holds at most one task of
//! a lead; different leads' tasks share batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::batch::Batch;
use super::client::CrmClient;
use super::limits;
use crate::portal::Portal;

/// A task of the outbox, as a batch works it.
#[derive(sqlx::FromRow, Debug, Clone)]
pub(super) struct Task {
    pub task_id: i64,
    pub lead_id: uuid::Uuid,
    pub kind: String,
    pub crm_status: Option<String>,
    pub attempts: i32,
}

/// A task a worker may take (of the outbox row `o`): pending, due, and the first unfinished of
/// its lead. The earlier task is looked for by a subquery run for each candidate with its lead
/// (`… LIMIT 1) IS NULL`, never `NOT EXISTS`, which the planner may turn into a join): its
/// statistics lag behind an outbox that fills by thousands of tasks a second, and with them
/// taken while the outbox was empty it joined every candidate with every unfinished task, not
/// by lead (measured in the benchmark: 1.7–5.8 s a call instead of 5 ms, every CRM worker busy
/// with it and the submissions starved). A lead's upsert is its first task (its submission is
/// its first event), so for those, most of a backlog, the subquery is not run at all (CASE
/// keeps that order).
pub(super) const ELIGIBLE: &str = "o.state = 'pending' AND o.next_attempt_at <= now() AND \
    CASE WHEN o.kind = 'upsert' THEN true ELSE (SELECT e.task_id FROM crm_outbox e \
     WHERE e.lead_id = o.lead_id AND e.task_id < o.task_id AND e.state <> 'done' LIMIT 1) IS NULL END";

/// How many of the oldest ready tasks are shared out fairly across partners: about twice what
/// every slot's next call takes (`BATCH` × slots), and each is a lookup in the choosing query,
/// which runs before every call.
const FAIRNESS_WINDOW: usize = 2048;

/// The most records Soho CRM takes in one call.
pub(super) const BATCH: usize = 100;

/// How long ready tasks may wait for a fuller call while another call of this server is in
/// flight. Each call costs a credit whatever it carries, so a steady trickle goes in calls of many
/// records; a lone lead, with nothing in flight, goes at once.
const LINGER: Duration = Duration::from_secs(2);

/// Whose checkpoint news means new tasks (the lead writer announces it with each batch).
const OUTBOX: &str = super::outbox::NAME;

/// Passes the baton each time the outbox subscriber moves on (here, or on another server).
async fn watch_outbox(
    mut checkpoints: tokio::sync::watch::Receiver<HashMap<String, soho_projections::LogPosition>>,
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

pub struct CrmSync {
    pub portal: Arc<Portal>,
    pub client: Arc<CrmClient>,
    pub(super) partner_soho_ids: std::sync::Mutex<HashMap<uuid::Uuid, String>>,
    turns: Turns,
    /// Batches this server is working now.
    in_flight: std::sync::atomic::AtomicUsize,
}

/// What one turn of a worker came to.
pub(super) enum Worked {
    /// A batch was worked: there may be more.
    Batch,
    /// Nothing this worker could take.
    Idle,
    /// A partial batch is ready: look again after this long, when it may be fuller.
    Linger(Duration),
    /// Every slot of the org's cap is taken.
    NoSlot,
    /// The credits are spent, or the CRM asked to hold off: for this long.
    Paused(Duration),
}

/// When this server last took a task of each partner, to serve them in turn.
#[derive(Default)]
struct Turns {
    served: std::sync::Mutex<(u64, HashMap<Option<uuid::Uuid>, u64>)>,
}

impl Turns {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<Option<uuid::Uuid>, u64>)> {
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

    fn served(&self, partners: impl Iterator<Item = Option<uuid::Uuid>>) {
        let mut served = self.lock();
        for partner in partners {
            served.0 += 1;
            let turn = served.0;
            served.1.insert(partner, turn);
        }
    }
}

/// A ready task as the choosing query reads it: id, partner, kind, seconds it has waited.
type Ready<K> = (i64, Option<uuid::Uuid>, K, f64);

/// Ready tasks (in their order: oldest first) by turns: each partner's first, then each one's
/// second, and so on, the oldest first within a turn; the first `limit` of them.
fn by_turns<K>(ready: Vec<Ready<K>>, limit: usize) -> Vec<Ready<K>> {
    let mut seen: HashMap<Option<uuid::Uuid>, usize> = HashMap::new();
    let mut turns: Vec<(usize, Ready<K>)> = ready
        .into_iter()
        .map(|task| {
            let turn = seen.entry(task.1).or_default();
            *turn += 1;
            (*turn, task)
        })
        .collect();
    // Stable: within a turn, the order the tasks came in.
    turns.sort_by_key(|(turn, _)| *turn);
    turns.into_iter().take(limit).map(|(_, task)| task).collect()
}

impl CrmSync {
    pub fn new(portal: Arc<Portal>, client: Arc<CrmClient>) -> Self {
        Self {
            portal,
            client,
            partner_soho_ids: Default::default(),
            turns: Turns::default(),
            in_flight: Default::default(),
        }
    }

    /// The workers (half as many again as the org's cap has slots: a worker gives its slot back
    /// when its call is answered, and another calls while it records the outcomes), and a
    /// watcher that hands them a baton when the outbox gains tasks: one idle worker looks, and
    /// passes the baton on as soon as it has a batch, so the number of workers looking follows
    /// the work instead of every worker scanning on every wake-up.
    pub fn spawn(self: Arc<Self>) -> Vec<JoinHandle<()>> {
        let baton = Arc::new(Notify::new());
        let mut tasks = vec![tokio::spawn(watch_outbox(
            self.portal.checkpoints.subscribe(),
            Arc::clone(&baton),
        ))];
        tasks.push(tokio::spawn(limits::watch(Arc::clone(&self.portal))));
        let slots = self.portal.settings.soho_concurrency.max(1);
        let workers = slots + slots.div_ceil(2);
        tasks.extend((0..workers).map(|n| {
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
            let wait = match self.work_one(c, baton).await {
                Ok(Worked::Batch) => continue,
                Ok(Worked::Idle) => Duration::from_millis(500),
                Ok(Worked::Linger(wait)) => wait,
                // Another worker (maybe on another server) frees a slot within a call's time.
                Ok(Worked::NoSlot) => Duration::from_millis(100 + rand::random_range(0..100)),
                Ok(Worked::Paused(wait)) => {
                    wait.clamp(Duration::from_secs(1), Duration::from_secs(30))
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), worker = n, "CRM worker error");
                    conn = None;
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = baton.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// With a slot of the org's cap: takes a batch of eligible tasks, if this worker can lock
    /// any, and works it.
    async fn work_one(&self, conn: &mut PgConnection, baton: &Notify) -> anyhow::Result<Worked> {
        let Some(slot) = limits::take_slot(conn, self.portal.settings.soho_concurrency).await?
        else {
            return Ok(Worked::NoSlot);
        };
        let mut slot = Some(slot);
        let locked = self.lock_batch(conn).await;
        let tasks = locked.as_ref().map(|(t, _)| t.clone()).unwrap_or_default();
        let worked = match locked {
            Ok((_, Some(linger))) => Ok(Worked::Linger(linger)),
            Ok((tasks, None)) if tasks.is_empty() => Ok(Worked::Idle),
            Ok((tasks, None)) => {
                // There may be more: another worker looks while this one makes its call.
                baton.notify_one();
                use std::sync::atomic::Ordering::Relaxed;
                self.in_flight.fetch_add(1, Relaxed);
                let worked = Batch::new(self, tasks).work(conn, &mut slot).await;
                self.in_flight.fetch_sub(1, Relaxed);
                // A worker lingering over a partial batch may send it now.
                baton.notify_one();
                worked
            }
            Err(error) => Err(error),
        };
        limits::release(conn, slot, &tasks).await?;
        worked
    }

    /// Locks up to a batch of eligible tasks of one kind; with how long to linger instead (the
    /// locks to be given back) when only a partial batch is free, it has not waited `LINGER`,
    /// and this server has a call in flight. Fair across partners: the candidates are each partner's oldest ready task, then
    /// each one's second, and so on (counted over the oldest two thousand ready tasks, which
    /// bounds the scan); of those, the partners this server served longest ago go first. So one
    /// partner's burst does not hold up the others. The candidates are enough for every slot to
    /// lock a full batch past the ones other workers hold.
    async fn lock_batch(
        &self,
        conn: &mut PgConnection,
    ) -> anyhow::Result<(Vec<i64>, Option<Duration>)> {
        let slots = self.portal.settings.soho_concurrency;
        // The oldest ready tasks in the index's order (no sort in the database); the turns are
        // counted here (`by_turns`), which in SQL took a sort and a window over all of them and
        // was as costly as the scan itself.
        let ready: Vec<Ready<String>> = sqlx::query_as(&format!(
            "SELECT task_id, COALESCE(partner_id, (SELECT partner_id FROM leads WHERE lead_id = o.lead_id)), \
               kind, extract(epoch FROM now() - next_attempt_at)::float8 \
             FROM crm_outbox o WHERE {ELIGIBLE} \
             ORDER BY next_attempt_at, task_id LIMIT {FAIRNESS_WINDOW}"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let candidates = by_turns(ready, (BATCH * (slots + 1)).min(FAIRNESS_WINDOW));
        // One kind a call: the kind of the task that comes first.
        let Some(kind) = candidates.first().map(|(_, _, kind, _)| kind.clone()) else {
            return Ok((Vec::new(), None));
        };
        let candidates: Vec<(i64, Option<uuid::Uuid>, f64)> = candidates
            .into_iter()
            .filter(|(_, _, k, _)| *k == kind)
            .map(|(t, p, _, waited)| (t, p, waited))
            .collect();
        let waited: HashMap<i64, f64> = candidates.iter().map(|(t, _, w)| (*t, *w)).collect();
        let candidates: Vec<(i64, Option<uuid::Uuid>)> =
            candidates.into_iter().map(|(t, p, _)| (t, p)).collect();
        let order = self.turns.order(&candidates);
        // One statement locks the first tasks free in that order: unnest yields the array in
        // order, and LIMIT stops the scan once a batch is locked.
        let locked: Vec<i64> = sqlx::query_scalar(
            "SELECT task_id FROM unnest($1::bigint[]) AS task_id \
             WHERE pg_try_advisory_lock(task_id) LIMIT $2",
        )
        .bind(&order)
        .bind(BATCH as i64)
        .fetch_all(&mut *conn)
        .await?;
        let busy = self.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0;
        let oldest = locked.iter().filter_map(|t| waited.get(t)).fold(0.0, |a: f64, b| a.max(*b));
        if busy && locked.len() < BATCH && oldest < LINGER.as_secs_f64() {
            let linger = LINGER.saturating_sub(Duration::from_secs_f64(oldest.max(0.0)));
            return Ok((locked, Some(linger)));
        }
        let partners = candidates.iter().filter(|(t, _)| locked.contains(t)).map(|(_, p)| *p);
        self.turns.served(partners);
        Ok((locked, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partners_take_turns_and_each_turn_keeps_the_oldest_first() {
        let (a, b, c) = (Some(uuid::Uuid::from_u128(1)), Some(uuid::Uuid::from_u128(2)), None);
        // Oldest first: a burst of a's, then b's two and a lead of no known partner.
        let ready: Vec<_> = [(1, a), (2, a), (3, a), (4, b), (5, a), (6, c), (7, b)]
            .into_iter()
            .map(|(task, partner)| (task, partner, (), 0.0))
            .collect();
        let order = |limit| by_turns(ready.clone(), limit).iter().map(|t| t.0).collect::<Vec<_>>();
        assert_eq!(order(10), [1, 4, 6, 2, 7, 3, 5]);
        assert_eq!(order(3), [1, 4, 6]);
        assert!(by_turns(Vec::<Ready<()>>::new(), 5).is_empty());
    }
}
