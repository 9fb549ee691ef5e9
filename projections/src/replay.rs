//! Rebuilding a read model from the log, and checking that a rebuild equals the live tables.
//!
//! Both run in one transaction under the subscriber's lock, so the live reader pauses meanwhile
//! and readers of the tables see either the old rows or the new ones, never a half-built model.
//! The check rebuilds up to the live checkpoint exactly, compares, and rolls back: it changes
//! nothing.

use sqlx::{PgConnection, PgPool};

use crate::log::{self, LogPosition};
use crate::reader::{checkpoint, lock, register, save_checkpoint};
use crate::{Projection, ProjectionError};

const REPLAY_BATCH: i64 = 5_000;

/// How a rebuild went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: u64,
    pub checkpoint: LogPosition,
}

/// A table whose rebuilt rows differ from its live rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub table: &'static str,
    /// Rows live but not in the rebuild, plus rows in the rebuild but not live.
    pub rows: i64,
}

/// How many events the log holds (for a progress bar's length).
pub async fn log_length(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await?;
    Ok(n as u64)
}

/// Empties the projection's tables and applies the whole log again.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Rebuilt, ProjectionError> {
    rebuild_all(pool, &[projection], progress).await
}

/// Rebuilds several read models in one pass over the log: each batch is read once and handed
/// to each of them. Their secondary indexes are dropped meanwhile and built again at the end
/// (one sorted build is far cheaper than a million index insertions); readers are held off by
/// the TRUNCATE's lock until the commit either way.
pub async fn rebuild_all(
    pool: &PgPool,
    projections: &[&dyn Projection],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Rebuilt, ProjectionError> {
    for projection in projections {
        register(pool, projection.name()).await?;
    }
    let mut tx = pool.begin().await?;
    for projection in projections {
        lock(&mut tx, projection.name()).await?;
    }
    await_inline_writes(&mut tx, projections).await?;
    let tables = tables_of(projections);
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i \
         WHERE i.schemaname = current_schema() AND i.tablename = ANY($1) \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
                           WHERE c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)",
    )
    .bind(&tables)
    .fetch_all(&mut *tx)
    .await?;
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))
            .execute(&mut *tx)
            .await?;
    }
    let rebuilt = apply_from_start(pool, &mut tx, projections, None, progress).await?;
    for (_, definition) in &indexes {
        sqlx::query(definition).execute(&mut *tx).await?;
    }
    for projection in projections {
        // Rebuilt under the lock its writers take: up to the head, and retired again if written
        // inline (the writers apply what comes next).
        let checkpoint =
            if projection.written_inline() { crate::reader::RETIRED } else { rebuilt.checkpoint };
        save_checkpoint(&mut tx, projection.name(), checkpoint).await?;
    }
    tx.commit().await?;
    Ok(rebuilt)
}

/// Rebuilds up to the live checkpoint inside a transaction that is rolled back, and reports every
/// table whose rows differ. An empty answer means the live read model equals its rebuild.
pub async fn check(
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Difference>, ProjectionError> {
    register(pool, projection.name()).await?;
    let mut tx = pool.begin().await?;
    lock(&mut tx, projection.name()).await?;
    await_inline_writes(&mut tx, &[projection]).await?;
    let live_checkpoint = checkpoint(&mut tx, projection.name()).await?;
    for table in projection.tables() {
        sqlx::query(&format!("CREATE TEMP TABLE live_{table} ON COMMIT DROP AS TABLE {table}"))
            .execute(&mut *tx)
            .await?;
    }
    apply_from_start(pool, &mut tx, &[projection], Some(live_checkpoint), progress).await?;
    let mut differences = Vec::new();
    for table in projection.tables() {
        let rows: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM ((TABLE live_{table} EXCEPT ALL TABLE {table}) \
             UNION ALL (TABLE {table} EXCEPT ALL TABLE live_{table})) AS difference"
        ))
        .fetch_one(&mut *tx)
        .await?;
        if rows > 0 {
            differences.push(Difference { table, rows });
        }
    }
    tx.rollback().await?;
    Ok(differences)
}

/// A read model written inline has every committed event of its types applied, while the log
/// is read in the order that holds back events committed behind an older open transaction (of
/// any database of the cluster). With its writers held off by the lock taken, this waits until
/// none of its events is held back, so the rebuild reads all that the live tables have.
async fn await_inline_writes(
    conn: &mut PgConnection,
    projections: &[&dyn Projection],
) -> Result<(), ProjectionError> {
    let types: Vec<&str> = projections
        .iter()
        .filter(|p| p.written_inline())
        .flat_map(|p| p.follows().iter().copied())
        .collect();
    if types.is_empty() {
        return Ok(());
    }
    loop {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = ANY($1) \
             AND tx_id >= pg_snapshot_xmin(pg_current_snapshot()))",
        )
        .bind(&types)
        .fetch_one(&mut *conn)
        .await?;
        if !held {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Every table the projections own, children first within each projection.
fn tables_of(projections: &[&dyn Projection]) -> Vec<&'static str> {
    projections.iter().flat_map(|p| p.tables().iter().copied()).collect()
}

/// Applies the log from its start. The next batch is read, on another connection, while the
/// current one is applied: reading and decoding the log is a good part of a replay's time, and
/// the database and the portal then work at once.
async fn apply_from_start(
    pool: &PgPool,
    conn: &mut PgConnection,
    projections: &[&dyn Projection],
    up_to: Option<LogPosition>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Rebuilt, ProjectionError> {
    let tables = tables_of(projections).join(", ");
    // RESTART IDENTITY: positions numbered by the projection come out the same on a rebuild.
    sqlx::query(&format!("TRUNCATE {tables} RESTART IDENTITY")).execute(&mut *conn).await?;
    for (name, value) in crate::KEYED_PLANS {
        sqlx::query(&format!("SET LOCAL {name} = {value}")).execute(&mut *conn).await?;
    }
    let read = |after: LogPosition| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut reader = pool.acquire().await?;
            log::read_after(&mut reader, after, up_to, REPLAY_BATCH).await
        })
    };
    let mut at = LogPosition::START;
    let mut events = 0u64;
    let mut next = read(at);
    loop {
        let batch = next
            .await
            .map_err(|e| ProjectionError::Effect(format!("reading the log failed: {e}")))??;
        let Some(last) = batch.last().map(|e| e.position()) else { break };
        next = read(last);
        for projection in projections {
            projection.apply(&mut *conn, &batch).await?;
        }
        events += batch.len() as u64;
        at = last;
        progress(events);
    }
    for (name, _) in crate::KEYED_PLANS {
        // Back to the session's settings, for what the transaction does next (comparisons).
        sqlx::query(&format!("RESET {name}")).execute(&mut *conn).await?;
    }
    Ok(Rebuilt { events, checkpoint: at })
}
