//! Rebuilding a read model from the log, and checking that a rebuild equals the live tables.
//!
//! A rebuild loads shadow tables and swaps them in (see [`rebuild_all`]): readers see the old
//! rows or the new ones, never a half-built model, and writers wait only for the last events and
//! the swap. Tables a projection keeps ([`crate::Projection::kept`], the live feed) are left as
//! they are. The check runs in one transaction under the subscriber's lock: it rebuilds up to
//! the live checkpoint exactly, compares, and rolls back, changing nothing.

use sqlx::{PgConnection, PgPool};

mod shadow;

use crate::log::{self, LogPosition};
use crate::reader::{checkpoint, lock, register, save_checkpoint};
use crate::{Projection, ProjectionError};

const REPLAY_BATCH: i64 = 5_000;
/// Events read at once by a bulk load (each read costs a sort of its range's index entries and
/// a round trip; the rows are gone from memory as soon as they are folded).
const BULK_BATCH: i64 = 20_000;

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

/// Rebuilds several read models in one pass over the log, while the portal keeps serving: the
/// rebuild goes into shadow tables (`shadow`), read once from the log and handed to each
/// projection; their indexes are built after the bulk; then what was appended meanwhile is
/// applied, and only the last few events and the swap run under the projections' locks (writers
/// of inline read models and their subscribers wait that long, readers only for the swap).
pub async fn rebuild_all(
    pool: &PgPool,
    projections: &[&dyn Projection],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Rebuilt, ProjectionError> {
    for projection in projections {
        register(pool, projection.name()).await?;
    }
    let tables = tables_of(projections);
    // A connection of its own: its search_path sends the projections' writes to the shadow.
    let mut conn = pool.acquire().await?.detach();
    let result = rebuild_in_shadow(pool, &mut conn, projections, &tables, progress).await;
    let _ = sqlx::Connection::close(conn).await;
    if result.is_ok() {
        let phase = std::time::Instant::now();
        let mut conn = pool.acquire().await?;
        shadow::clean_up(&mut conn).await?;
        for table in &tables {
            sqlx::query(&format!("ANALYZE {table}")).execute(&mut *conn).await?;
        }
        tracing::info!(seconds = phase.elapsed().as_secs_f64(), "replay: swapped and analysed");
    }
    result
}

async fn rebuild_in_shadow(
    pool: &PgPool,
    conn: &mut PgConnection,
    projections: &[&dyn Projection],
    tables: &[&'static str],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Rebuilt, ProjectionError> {
    if !shadow::claim(&mut *conn).await? {
        return Err(ProjectionError::Effect("another replay is running".into()));
    }
    // Read models with a bulk loader are folded in memory and written with COPY, into tables
    // that get their keys after; the others are applied batch by batch.
    let (mut loaders, mut bare, mut row_by_row) = (Vec::new(), Vec::new(), Vec::new());
    for projection in projections {
        match projection.bulk(pool, shadow::SHADOW) {
            Some(loader) => {
                loaders.push(loader);
                bare.extend(projection.tables().iter().copied());
            }
            None => row_by_row.push(*projection),
        }
    }
    // The kept tables get scratch shadows, bare and dropped with the schema: the projections'
    // statements write them, nothing reads them.
    let kept: Vec<&str> = kept_of(projections).iter().map(|k| k.table).collect();
    shadow::create(&mut *conn, &[tables, &kept].concat(), &[bare.as_slice(), &kept].concat())
        .await?;
    sqlx::query(&format!("SET search_path = {}, public", shadow::SHADOW))
        .execute(&mut *conn)
        .await?;
    for (name, value) in crate::KEYED_PLANS {
        sqlx::query(&format!("SET {name} = {value}")).execute(&mut *conn).await?;
    }
    // No commit here need wait for its flush: a crash that loses one loses only the rebuild (the
    // swap and its checkpoints commit together, so the live tables stay whole) and the next
    // replay starts over.
    sqlx::query("SET synchronous_commit = off").execute(&mut *conn).await?;
    let mut done = Rebuilt { events: 0, checkpoint: LogPosition::START };
    let phase = std::time::Instant::now();
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    load_range(pool, &mut tx, &row_by_row, &mut loaders, &mut done, progress).await?;
    tx.commit().await?;
    tracing::info!(
        events = done.events,
        seconds = phase.elapsed().as_secs_f64(),
        "replay: log read"
    );
    let phase = std::time::Instant::now();
    let mut streamed = Vec::new();
    for loader in &mut loaders {
        streamed.extend(loader.close_streamed().await?);
    }
    // The tables complete already get their indexes (one build at a time, the longest first)
    // while the others load; then the others' indexes, two builds at a time.
    let early = {
        let (pool, streamed) = (pool.clone(), streamed.clone());
        tokio::spawn(
            async move { shadow::build_keys_and_indexes(&pool, &streamed, &streamed, 1).await },
        )
    };
    let rest = async {
        for loader in loaders {
            loader.finish().await?;
        }
        tracing::info!(seconds = phase.elapsed().as_secs_f64(), "replay: bulk rows written");
        let not_streamed = |t: &&str| !streamed.contains(t);
        let bare: Vec<&str> = bare.iter().copied().filter(not_streamed).collect();
        let tables: Vec<&str> = tables.iter().copied().filter(not_streamed).collect();
        shadow::build_keys_and_indexes(pool, &bare, &tables, 2).await?;
        Ok::<_, ProjectionError>(())
    }
    .await;
    // Awaited even when the rest failed: no build may outlive the replay that started it.
    let early = early.await;
    rest?;
    early.map_err(|e| ProjectionError::Effect(format!("an index build stopped: {e}")))??;
    tracing::info!(
        seconds = phase.elapsed().as_secs_f64(),
        "replay: rows written, keys and indexes built"
    );
    let phase = std::time::Instant::now();
    // What was appended during the bulk, without holding anyone off, until little is left.
    loop {
        let before = done.events;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        apply_range(pool, &mut tx, projections, &mut done, None, progress).await?;
        tx.commit().await?;
        if done.events - before < REPLAY_BATCH as u64 {
            break;
        }
    }
    tracing::info!(
        events = done.events,
        seconds = phase.elapsed().as_secs_f64(),
        "replay: caught up"
    );
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for projection in projections {
        lock(&mut tx, projection.name()).await?;
    }
    await_inline_writes(&mut tx, projections).await?;
    apply_range(pool, &mut tx, projections, &mut done, None, progress).await?;
    shadow::swap(&mut tx, tables).await?;
    for projection in projections {
        // Rebuilt under the lock its writers take: up to the head, and retired again if written
        // inline (the writers apply what comes next).
        let checkpoint =
            if projection.written_inline() { crate::reader::RETIRED } else { done.checkpoint };
        save_checkpoint(&mut tx, projection.name(), checkpoint).await?;
    }
    tx.commit().await?;
    Ok(done)
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
    let kept = projection.kept();
    for table in projection.tables().iter().chain(kept.iter().map(|k| &k.table)) {
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
    for crate::Kept { table, order } in kept {
        // In order, not by position: a rebuild numbers its rows afresh, and the live table's
        // numbers have gaps (a batch rolled back after taking some).
        let numbered = |from: &str| {
            format!(
                "SELECT row_number() OVER (ORDER BY {order}) AS n, to_jsonb(t) - '{order}' AS row \
                 FROM {from} t"
            )
        };
        let (live, rebuilt) = (numbered(&format!("live_{table}")), numbered(table));
        let rows: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (({live} EXCEPT ALL {rebuilt}) \
             UNION ALL ({rebuilt} EXCEPT ALL {live})) AS difference"
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

/// Every table the projections own and a replay rebuilds, children first within each.
fn tables_of(projections: &[&dyn Projection]) -> Vec<&'static str> {
    projections.iter().flat_map(|p| p.tables().iter().copied()).collect()
}

/// Every table the projections write that a replay keeps.
fn kept_of(projections: &[&dyn Projection]) -> Vec<crate::Kept> {
    projections.iter().flat_map(|p| p.kept().iter().copied()).collect()
}

/// Empties the tables (as `conn` finds them) and applies the log from its start, up to `up_to`.
async fn apply_from_start(
    pool: &PgPool,
    conn: &mut PgConnection,
    projections: &[&dyn Projection],
    up_to: Option<LogPosition>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Rebuilt, ProjectionError> {
    for (name, value) in crate::KEYED_PLANS {
        sqlx::query(&format!("SET LOCAL {name} = {value}")).execute(&mut *conn).await?;
    }
    let kept = kept_of(projections).into_iter().map(|k| k.table);
    let tables: Vec<&str> = tables_of(projections).into_iter().chain(kept).collect();
    sqlx::query(&format!("TRUNCATE {} RESTART IDENTITY", tables.join(", ")))
        .execute(&mut *conn)
        .await?;
    let mut done = Rebuilt { events: 0, checkpoint: LogPosition::START };
    apply_range(pool, conn, projections, &mut done, up_to, progress).await?;
    for (name, _) in crate::KEYED_PLANS {
        // Back to the session's settings, for what the transaction does next (comparisons).
        sqlx::query(&format!("RESET {name}")).execute(&mut *conn).await?;
    }
    Ok(done)
}

/// Applies the log after `done.checkpoint`, up to `up_to` or everything settled, advancing
/// `done`. The next batch is read, on another connection, while the current one is applied:
/// reading and decoding the log is a good part of a replay's time, and the database and the
/// portal then work at once.
async fn apply_range(
    pool: &PgPool,
    conn: &mut PgConnection,
    projections: &[&dyn Projection],
    done: &mut Rebuilt,
    up_to: Option<LogPosition>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), ProjectionError> {
    let read = |after: LogPosition| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut reader = pool.acquire().await?;
            log::read_after(&mut reader, after, up_to, REPLAY_BATCH).await
        })
    };
    let mut next = read(done.checkpoint);
    loop {
        let batch = next
            .await
            .map_err(|e| ProjectionError::Effect(format!("reading the log failed: {e}")))??;
        let Some(last) = batch.last().map(|e| e.position()) else { break };
        next = read(last);
        for projection in projections {
            projection.apply(&mut *conn, &batch).await?;
        }
        done.events += batch.len() as u64;
        done.checkpoint = last;
        progress(done.events);
    }
    Ok(())
}

/// A replay's first pass, from the start of the log into empty tables: every event goes to the
/// bulk loaders as read (its payload decoded once, by the loader that wants it), and the events
/// the other projections follow, decoded for them, to their `apply`. Reads run a batch ahead, on
/// another connection.
async fn load_range(
    pool: &PgPool,
    conn: &mut PgConnection,
    projections: &[&dyn Projection],
    loaders: &mut [Box<dyn crate::BulkLoad>],
    done: &mut Rebuilt,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), ProjectionError> {
    let types: Vec<&str> =
        projections.iter().flat_map(|p| p.follows().iter().chain(p.reads()).copied()).collect();
    let read = |after: LogPosition| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut reader = pool.acquire().await?;
            log::read_raw_after(&mut reader, after, BULK_BATCH).await
        })
    };
    let mut next = read(done.checkpoint);
    loop {
        let batch = next
            .await
            .map_err(|e| ProjectionError::Effect(format!("reading the log failed: {e}")))??;
        let Some(last) = batch.last().map(|e| e.position()) else { break };
        next = read(last);
        let theirs = batch
            .iter()
            .filter(|e| types.contains(&e.aggregate_type.as_str()))
            .map(log::RawEvent::to_stored)
            .collect::<Result<Vec<_>, _>>()?;
        if !theirs.is_empty() {
            for projection in projections {
                projection.apply(&mut *conn, &theirs).await?;
            }
        }
        for loader in loaders.iter_mut() {
            loader.add(&batch).await?;
        }
        done.events += batch.len() as u64;
        done.checkpoint = last;
        progress(done.events);
    }
    Ok(())
}
