//! The catch-up reader: follows the event log for each subscriber, in batches, each batch applied
//! and checkpointed in one transaction.
//!
//! Several server processes may run the same subscribers against one database: a batch is taken
//! under a transaction-scoped advisory lock on the subscriber's name, and the checkpoint is read
//! under that lock, so each event is applied once whichever process gets there first. The others
//! find the lock taken and wait for the next wake-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::log::{self, LogPosition};
use crate::{Projection, ProjectionError};

const EVENTS_CHANNEL: &str = "events_appended";
const CHECKPOINT_CHANNEL: &str = "checkpoint_advanced";

/// Where each subscriber stands, as far as this process knows: updated by its own batches and by
/// other processes' through `NOTIFY`, so waiting for a checkpoint usually costs no query.
#[derive(Clone)]
pub struct Checkpoints {
    known: Arc<watch::Sender<HashMap<String, LogPosition>>>,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self { known: Arc::new(watch::channel(HashMap::new()).0) }
    }
}

impl Checkpoints {
    pub fn advance(&self, subscriber: &str, position: LogPosition) {
        self.known.send_if_modified(|known| match known.get_mut(subscriber) {
            Some(current) if *current >= position => false,
            Some(current) => {
                *current = position;
                true
            }
            None => {
                known.insert(subscriber.to_string(), position);
                true
            }
        });
    }

    /// A receiver that sees every advance of any checkpoint (to wake work that follows one).
    pub fn subscribe(&self) -> watch::Receiver<HashMap<String, LogPosition>> {
        self.known.subscribe()
    }

    fn passed(&self, subscribers: &[&str], position: LogPosition) -> bool {
        let known = self.known.borrow();
        subscribers.iter().all(|s| known.get(*s).is_some_and(|p| *p >= position))
    }

    /// Waits until every named subscriber has applied `position`; false on timeout. Falls back to
    /// reading the checkpoints table now and then, in case a notification was lost.
    pub async fn wait_for(
        &self,
        pool: &PgPool,
        subscribers: &[&str],
        position: LogPosition,
        timeout: Duration,
    ) -> Result<bool, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.known.subscribe();
        loop {
            changes.borrow_and_update();
            if self.passed(subscribers, position) {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let poll = tokio::time::sleep((deadline - now).min(Duration::from_millis(100)));
            tokio::select! {
                _ = changes.changed() => {}
                _ = poll => self.refresh(pool).await?,
            }
        }
    }

    /// Reads every checkpoint from the database.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT subscriber, tx_id::text::bigint, global_position FROM subscriber_checkpoints",
        )
        .fetch_all(pool)
        .await?;
        for (name, tx_id, global_position) in rows {
            self.advance(&name, LogPosition { tx_id, global_position });
        }
        Ok(())
    }
}

/// What one batch found.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Applied this many events; there may be more.
    Applied(usize),
    /// Nothing new has committed.
    Idle,
    /// Newer events exist but a transaction older than theirs is still open: try again shortly.
    Held,
    /// Another process is applying a batch for this subscriber.
    Busy,
}

/// What a batch did inside its transaction: applied events up to a place, to be committed, or
/// nothing (and why), to be rolled back.
enum Outcome {
    Applied(usize, LogPosition),
    Nothing(Batch),
}

pub struct CatchUpReader {
    pool: PgPool,
    subscribers: Vec<Arc<dyn Projection>>,
    checkpoints: Checkpoints,
    wake: watch::Sender<Wakes>,
    batch_size: i64,
    poll_interval: Duration,
}

impl CatchUpReader {
    pub fn new(
        pool: PgPool,
        subscribers: Vec<Arc<dyn Projection>>,
        checkpoints: Checkpoints,
    ) -> Self {
        Self {
            pool,
            subscribers,
            checkpoints,
            wake: watch::channel(Wakes::default()).0,
            batch_size: 1000,
            poll_interval: Duration::from_secs(1),
        }
    }

    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Makes sure every subscriber has a checkpoint row (at the start of the log).
    pub async fn register(&self) -> Result<(), sqlx::Error> {
        for subscriber in &self.subscribers {
            register(&self.pool, subscriber.name()).await?;
        }
        self.checkpoints.refresh(&self.pool).await
    }

    /// Applies the next batch for one subscriber.
    pub async fn run_batch(&self, subscriber: &dyn Projection) -> Result<Batch, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        match self.batch_in(&mut tx, subscriber).await {
            Ok(Outcome::Applied(applied, last)) => {
                tx.commit().await?;
                self.checkpoints.advance(subscriber.name(), last);
                Ok(Batch::Applied(applied))
            }
            // Every other outcome, failures included, ends the transaction here: a dropped one
            // is rolled back only when its connection is used again, and the subscriber's lock
            // stays held until then, so its next batch would find it busy.
            Ok(Outcome::Nothing(batch)) => {
                tx.rollback().await?;
                Ok(batch)
            }
            Err(error) => {
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }

    /// The batch's work inside `tx`: how many events it applied and up to where, or why none.
    async fn batch_in(
        &self,
        tx: &mut PgConnection,
        subscriber: &dyn Projection,
    ) -> Result<Outcome, ProjectionError> {
        let name = subscriber.name();
        if !try_lock(tx, name).await? {
            return Ok(Outcome::Nothing(Batch::Busy));
        }
        let after = checkpoint(tx, name).await?;
        let (events, held) =
            log::read_settled(tx, after, self.batch_size, payloads_of(subscriber)).await?;
        let Some(last) = events.last().map(|e| e.position()) else {
            return Ok(Outcome::Nothing(if held { Batch::Held } else { Batch::Idle }));
        };
        subscriber.apply(tx, &events).await?;
        save_checkpoint(tx, name, last).await?;
        Ok(Outcome::Applied(events.len(), last))
    }

    /// Runs until every subscriber has applied everything committed so far (tests, `replay`).
    pub async fn catch_up(&self) -> Result<(), ProjectionError> {
        for subscriber in &self.subscribers {
            loop {
                match self.run_batch(subscriber.as_ref()).await? {
                    Batch::Applied(_) => continue,
                    Batch::Idle => break,
                    Batch::Held | Batch::Busy => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
        Ok(())
    }

    /// Follows the log for every subscriber until the returned tasks are aborted.
    pub fn spawn(self: Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(listen(
            self.pool.clone(),
            self.wake.clone(),
            self.checkpoints.clone(),
        ))];
        for subscriber in &self.subscribers {
            let reader = Arc::clone(&self);
            let subscriber = Arc::clone(subscriber);
            let span = tracing::info_span!("subscriber", name = subscriber.name());
            tasks.push(tokio::spawn(
                async move { reader.follow(subscriber).await }.instrument(span),
            ));
        }
        tasks
    }

    async fn follow(&self, subscriber: Arc<dyn Projection>) {
        let mut wake = self.wake.subscribe();
        let mut seen = wake.borrow_and_update().clone();
        let mut backoff = Duration::from_millis(100);
        let linger = subscriber.linger();
        loop {
            if !linger.is_zero() {
                tokio::time::sleep(linger).await;
            }
            let pause = match self.run_batch(subscriber.as_ref()).await {
                Ok(Batch::Applied(n)) => {
                    tracing::debug!(events = n, "applied");
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(Batch::Held) => Duration::from_millis(2),
                Ok(Batch::Busy) => {
                    // Another server is applying this subscriber's batches; it gets the same
                    // wake-ups and keeps going while events remain, so racing it for each one
                    // only costs both of them queries. Look again after the poll interval.
                    tokio::time::sleep(self.poll_interval).await;
                    seen = wake.borrow_and_update().clone();
                    continue;
                }
                Ok(Batch::Idle) => self.poll_interval,
                Err(error) => {
                    tracing::error!(%error, "batch failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            let pause = tokio::time::sleep(pause);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    changed = wake.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let now = wake.borrow_and_update().clone();
                        let relevant = now.concerns(&seen, subscriber.reads());
                        seen = now;
                        if relevant {
                            break;
                        }
                    }
                    _ = &mut pause => break,
                }
            }
        }
    }
}

/// The aggregate types whose events reach `subscriber` with their payload and metadata.
fn payloads_of(subscriber: &dyn Projection) -> &'static [&'static str] {
    if subscriber.wants_payloads() {
        subscriber.reads()
    } else {
        &[]
    }
}

/// Wake-up counters: one bumped for everyone (a reconnect, an old trigger's empty payload), and
/// one per aggregate type whose events were appended.
#[derive(Debug, Clone, Default)]
struct Wakes {
    all: u64,
    by_type: HashMap<String, u64>,
}

impl Wakes {
    fn bump(&mut self, aggregate_type: &str) {
        match aggregate_type {
            "" => self.all += 1,
            t => *self.by_type.entry(t.to_string()).or_default() += 1,
        }
    }

    /// Whether anything changed since `before` that a subscriber reading `types` must act on.
    fn concerns(&self, before: &Wakes, types: &[&str]) -> bool {
        self.all != before.all
            || types.iter().any(|t| self.by_type.get(*t) != before.by_type.get(*t))
    }
}

pub async fn register(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscriber_checkpoints (subscriber) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn try_lock(conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext('soho-subscriber'), hashtext($1))",
    )
    .bind(name)
    .fetch_one(conn)
    .await
}

/// Takes a subscriber's lock for the transaction (also what writers of an inline read model take).
pub async fn lock(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('soho-subscriber'), hashtext($1))")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// `lock`'s statement as SQL text, to send with others in one round trip (one simple query).
pub fn lock_statement(name: &str) -> String {
    format!(
        "SELECT pg_advisory_xact_lock(hashtext('soho-subscriber'), hashtext({}))",
        literal(name)
    )
}

/// `lock`'s statement in its shared form: writers of an inline read model take it so that a
/// replay (which takes `lock`) waits for them and holds them off, without holding off each other.
pub fn lock_shared_statement(name: &str) -> String {
    format!(
        "SELECT pg_advisory_xact_lock_shared(hashtext('soho-subscriber'), hashtext({}))",
        literal(name)
    )
}

/// The checkpoint news as a SQL expression (`pg_notify` of "name tx_id global_position", sent at
/// commit), its three parts SQL expressions too: the one place its format is written, whether
/// the parts are parameters ([`save_checkpoint`]) or columns of a writer's statement
/// ([`announce_expression`]). [`parse_checkpoint`] reads it.
fn checkpoint_notice(name: &str, tx_id: &str, global_position: &str) -> String {
    format!(
        "pg_notify('{CHECKPOINT_CHANNEL}', concat_ws(' ', ({name})::text, ({tx_id})::text, \
         ({global_position})::text))"
    )
}

/// Tells every server's readers that `name` has moved to a position (at commit), without saving
/// it, as an expression of a statement that knows the position as SQL (`tx_id` and
/// `global_position`, not null): how an inline writer wakes what waits on a subscriber it stands
/// in for, with the statement that makes its writes.
pub fn announce_expression(name: &str, tx_id: &str, global_position: &str) -> String {
    checkpoint_notice(&literal(name), tx_id, global_position)
}

/// `text` as a SQL string literal (standard_conforming_strings, on since PostgreSQL 9.1).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub(crate) async fn checkpoint(
    conn: &mut PgConnection,
    name: &str,
) -> Result<LogPosition, sqlx::Error> {
    let (tx_id, global_position): (i64, i64) = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM subscriber_checkpoints WHERE subscriber = $1",
    )
    .bind(name)
    .fetch_one(conn)
    .await?;
    Ok(LogPosition { tx_id, global_position })
}

/// The position a retired checkpoint stands at: past every event there will ever be.
pub const RETIRED: LogPosition = LogPosition { tx_id: i64::MAX, global_position: i64::MAX };

/// Retires the checkpoints of subscribers whose read models are now written inline, once
/// they have caught up with what was appended before (by an earlier version of the portal):
/// no reader applies anything for them again, and a restart does not either.
pub async fn retire(pool: &PgPool, names: &[&str]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for name in names {
        lock(&mut tx, name).await?;
        save_checkpoint(&mut tx, name, RETIRED).await?;
    }
    tx.commit().await
}

pub(crate) async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    position: LogPosition,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "WITH saved AS (UPDATE subscriber_checkpoints \
             SET tx_id = $2::text::xid8, global_position = $3, updated_at = now() WHERE subscriber = $1) \
         SELECT {}",
        checkpoint_notice("$1", "$2", "$3")
    ))
    .bind(name)
    .bind(position.tx_id)
    .bind(position.global_position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Turns `NOTIFY`s into wake-ups and checkpoint news; reconnects after a lost connection and
/// wakes every subscriber then, since notifications may have been missed meanwhile.
async fn listen(pool: PgPool, wake: watch::Sender<Wakes>, checkpoints: Checkpoints) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for new events; polling meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(error) = listener.listen_all([EVENTS_CHANNEL, CHECKPOINT_CHANNEL]).await {
            tracing::warn!(%error, "LISTEN failed");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        wake.send_modify(|w| w.bump(""));
        loop {
            match listener.recv().await {
                Ok(notification) if notification.channel() == EVENTS_CHANNEL => {
                    wake.send_modify(|w| w.bump(notification.payload()))
                }
                Ok(notification) => {
                    if let Some((name, position)) = parse_checkpoint(notification.payload()) {
                        checkpoints.advance(name, position);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "lost the LISTEN connection; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Reads checkpoint news (what a save or [`announce_expression`] sends): the subscriber and its
/// position.
pub fn parse_checkpoint(payload: &str) -> Option<(&str, LogPosition)> {
    let mut parts = payload.split(' ');
    let name = parts.next()?;
    let tx_id = parts.next()?.parse().ok()?;
    let global_position = parts.next()?.parse().ok()?;
    Some((name, LogPosition { tx_id, global_position }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_notifications_are_parsed() {
        assert_eq!(
            parse_checkpoint("users 12 34"),
            Some(("users", LogPosition { tx_id: 12, global_position: 34 }))
        );
        assert_eq!(parse_checkpoint("users x 34"), None);
    }

    #[test]
    fn subscribers_wake_for_the_types_they_read() {
        let before = Wakes::default();
        let mut after = before.clone();
        after.bump("Lead");
        assert!(after.concerns(&before, &["Lead"]));
        assert!(!after.concerns(&before, &["User", "Partner"]));
        after.bump("");
        assert!(after.concerns(&before, &["User"]), "an empty payload wakes everyone");
    }

    #[test]
    fn checkpoints_only_move_forward() {
        let checkpoints = Checkpoints::default();
        checkpoints.advance("a", LogPosition { tx_id: 5, global_position: 9 });
        checkpoints.advance("a", LogPosition { tx_id: 4, global_position: 99 });
        assert!(checkpoints.passed(&["a"], LogPosition { tx_id: 5, global_position: 9 }));
        assert!(!checkpoints.passed(&["a", "b"], LogPosition { tx_id: 1, global_position: 1 }));
    }
}
