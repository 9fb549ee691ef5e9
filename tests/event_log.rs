//! The catch-up reader over the event log: ordering without gaps, exactly-once application,
//! several readers on one database, and replay.

mod common;

use std::sync::Arc;
use std::time::Duration;

use soho_projections::reader::Batch;
use soho_projections::{CatchUpReader, Checkpoints, Projection, ProjectionError, StoredEvent};
use sqlx::{Connection, PgConnection, PgPool};

/// Records every event it is handed; the primary key turns a second delivery into an error.
struct Seen;

#[async_trait::async_trait]
impl Projection for Seen {
    fn name(&self) -> &'static str {
        "test_seen"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["test_seen"]
    }
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            sqlx::query("INSERT INTO test_seen (global_position, aggregate_id) VALUES ($1, $2)")
                .bind(event.global_position)
                .bind(&event.aggregate_id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

async fn setup() -> (PgPool, common::TestDatabase) {
    let (pool, database) = common::fresh_database().await;
    sqlx::query(
        "CREATE TABLE test_seen (applied bigint GENERATED ALWAYS AS IDENTITY, \
         global_position bigint PRIMARY KEY, aggregate_id text NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    (pool, database)
}

fn reader(pool: &PgPool) -> CatchUpReader {
    CatchUpReader::new(pool.clone(), vec![Arc::new(Seen)], Checkpoints::default())
        .with_batch_size(50)
}

async fn append(conn: &mut PgConnection, aggregate_id: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Test', $1, 1, 'Tested', '1', '{}', '{}') RETURNING global_position",
    )
    .bind(aggregate_id)
    .fetch_one(conn)
    .await
    .unwrap()
}

/// The next batch that applies something. Other tests' transactions in the same cluster hold the
/// snapshot's xmin back for a moment (transaction ids are cluster-wide), so a batch may find the
/// newest events held: that is the reader being careful, and it only delays them.
async fn next_applied(reader: &CatchUpReader) -> usize {
    for _ in 0..2000 {
        match reader.run_batch(&Seen).await.unwrap() {
            Batch::Applied(n) => return n,
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    panic!("nothing was applied in 10 s");
}

/// What the projection applied, in the order it applied it.
async fn seen(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT aggregate_id FROM test_seen ORDER BY applied")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_event_that_commits_late_is_not_skipped() {
    let (pool, _database) = setup().await;
    let reader = reader(&pool);
    reader.register().await.unwrap();

    // The first writer takes its position, then holds its transaction open...
    let mut slow = pool.acquire().await.unwrap();
    let mut slow_tx = slow.begin().await.unwrap();
    let slow_position = append(&mut slow_tx, "slow").await;
    // ...while a second writer takes a later position and commits.
    let mut fast = pool.acquire().await.unwrap();
    let fast_position = append(&mut fast, "fast").await;
    assert!(fast_position > slow_position);

    // The reader must not pass the open transaction's position.
    assert_eq!(reader.run_batch(&Seen).await.unwrap(), Batch::Held);
    assert!(
        seen(&pool).await.is_empty(),
        "the committed later event was read past an open earlier one"
    );

    // Once it commits, both arrive, the late one included, in the log's order: by writing
    // transaction (the slow one wrote first), then position.
    slow_tx.commit().await.unwrap();
    // Possibly over two batches: another test's open transaction may hold the newer one back.
    let mut applied = next_applied(&reader).await;
    if applied < 2 {
        applied += next_applied(&reader).await;
    }
    assert_eq!(applied, 2);
    let log_order: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'Test' ORDER BY tx_id, global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(log_order, vec!["slow", "fast"]);
    assert_eq!(seen(&pool).await, log_order);
    reader.catch_up().await.unwrap();
    assert_eq!(seen(&pool).await.len(), 2);
}

#[tokio::test]
async fn a_rolled_back_event_leaves_no_hole_that_stalls_the_reader() {
    let (pool, _database) = setup().await;
    let reader = reader(&pool);
    reader.register().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    append(&mut tx, "rolled-back").await;
    tx.rollback().await.unwrap();
    append(&mut conn, "kept").await;
    reader.catch_up().await.unwrap();
    assert_eq!(seen(&pool).await, vec!["kept"]);
}

#[tokio::test]
async fn no_event_is_delivered_twice_across_a_restart() {
    let (pool, _database) = setup().await;
    let mut conn = pool.acquire().await.unwrap();
    for i in 0..120 {
        append(&mut conn, &format!("a{i:03}")).await;
    }
    let first = reader(&pool);
    first.register().await.unwrap();
    // Stop part-way: one batch (of at most 50), as if the process died after it.
    let applied = next_applied(&first).await;
    assert!((1..=50).contains(&applied));
    assert_eq!(seen(&pool).await.len(), applied);
    drop(first);
    for i in 0..30 {
        append(&mut conn, &format!("b{i:03}")).await;
    }
    let restarted = reader(&pool);
    restarted.register().await.unwrap();
    restarted.catch_up().await.unwrap();
    let ids = seen(&pool).await;
    assert_eq!(ids.len(), 150);
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 150);
}

#[tokio::test]
async fn two_readers_on_one_database_apply_each_event_once() {
    let (pool, _database) = setup().await;
    // Two readers with their own pools: two sessions, as two server processes would have.
    let (options, _) = (pool.connect_options().as_ref().clone(), ());
    let other_pool = sqlx::postgres::PgPoolOptions::new().connect_with(options).await.unwrap();
    let one = Arc::new(reader(&pool));
    let two = Arc::new(reader(&other_pool));
    one.register().await.unwrap();
    two.register().await.unwrap();
    let mut tasks = Arc::clone(&one).spawn();
    tasks.extend(Arc::clone(&two).spawn());

    // Writers in parallel, so transactions commit out of position order.
    let mut writers = Vec::new();
    for w in 0..8 {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..50 {
                let mut conn = pool.acquire().await.unwrap();
                let mut tx = conn.begin().await.unwrap();
                append(&mut tx, &format!("w{w}-{i:02}")).await;
                if i % 7 == 0 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                tx.commit().await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM test_seen").fetch_one(&pool).await.unwrap();
        if count >= 400 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in tasks {
        task.abort();
    }
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM test_seen s WHERE s.global_position = e.global_position)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(missing, 0, "every event is applied");
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM test_seen").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 400, "and applied once (a second apply would violate the primary key)");
}

#[tokio::test]
async fn a_command_can_wait_until_the_projections_have_its_events() {
    let (pool, _database) = setup().await;
    let checkpoints = Checkpoints::default();
    let reader = Arc::new(
        CatchUpReader::new(pool.clone(), vec![Arc::new(Seen)], checkpoints.clone())
            .with_batch_size(50),
    );
    reader.register().await.unwrap();
    let tasks = Arc::clone(&reader).spawn();
    let mut conn = pool.acquire().await.unwrap();
    append(&mut conn, "mine").await;
    let head =
        soho_projections::log::stream_head(&mut conn, "Test", "mine").await.unwrap().unwrap();
    let passed =
        checkpoints.wait_for(&pool, &["test_seen"], head, Duration::from_secs(10)).await.unwrap();
    assert!(passed);
    assert_eq!(seen(&pool).await, vec!["mine"], "a read right after the wait sees the write");
    for task in tasks {
        task.abort();
    }
}
