//! The audit side at scale, over the seeded log: sealing it (the hash chain a running portal
//! writes a moment after each commit), `audit verify` of the whole log, and a replay while leads
//! keep being submitted (no request may fail).

use std::time::{Duration, Instant};

use soho_portal::audit::{sealer, verify};

use crate::load::Row;
use crate::stack::Stack;
use crate::writes;

/// One plain read of the log in commit order with its payloads: the baseline of reading it.
async fn plain_read_rate(stack: &Stack, events: u64) -> anyhow::Result<f64> {
    let scan = Instant::now();
    sqlx::query(
        "SELECT count(*), sum(length(payload::text) + length(metadata::text)) \
         FROM (SELECT payload, metadata FROM events ORDER BY tx_id, global_position) AS log",
    )
    .execute(&stack.pool)
    .await?;
    Ok(events as f64 / scan.elapsed().as_secs_f64())
}

/// Seals whatever the seeding wrote, then checks the whole chain as `audit verify` does.
pub async fn seal_and_verify(stack: &Stack) -> anyhow::Result<Vec<Row>> {
    let events = soho_projections::replay::log_length(&stack.pool).await?;
    let started = Instant::now();
    sealer::seal_all(&stack.pool).await?;
    let sealing = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let verdict = verify::verify_log(&stack.pool, &|_| {}).await?;
    let verifying = started.elapsed().as_secs_f64();
    anyhow::ensure!(verdict.ok, "the seeded log does not verify: {verdict:?}");
    let baseline = plain_read_rate(stack, events).await?;
    let seal_rate = events as f64 / sealing;
    let verify_rate = verdict.events as f64 / verifying;
    Ok(vec![
        Row {
            scenario: "sealing the log (hash chain, after commit)".into(),
            clients: 1,
            operations: events as usize,
            throughput: seal_rate,
            unit: "events/s",
            target: "keeps up with the writers",
            notes: format!("{events} events in {sealing:.1} s"),
            ..Default::default()
        }
        .against("one read of the log, events/s", baseline, seal_rate),
        Row {
            scenario: "audit verify of the whole log".into(),
            clients: 1,
            operations: verdict.events as usize,
            throughput: verify_rate,
            unit: "events/s",
            target: "≥ 300,000 events/s",
            notes: format!(
                "{} events in {verifying:.1} s, head {}…",
                verdict.events,
                &verdict.head[..12]
            ),
            ..Default::default()
        }
        .against("one read of the log, events/s", baseline, verify_rate),
    ])
}

/// Rebuilds every read model while `clients` submit leads to one server for as long as it runs
/// (and `margin` after): every request must succeed.
pub async fn replay_under_load(
    stack: &Stack,
    clients: usize,
    expected: Duration,
) -> anyhow::Result<Row> {
    let events = soho_projections::replay::log_length(&stack.pool).await?;
    let projections = soho_projections::all();
    let projections: Vec<&dyn soho_projections::Projection> =
        projections.iter().map(|p| p.as_ref()).collect();
    let load_for = expected + Duration::from_secs(2);
    let replay = async {
        // Let the submissions start first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        soho_projections::replay::rebuild_all(&stack.pool, &projections, &|_| {}).await?;
        anyhow::Ok(started.elapsed())
    };
    let (load, replayed) = tokio::join!(writes::submit(stack, 1, clients, load_for), replay);
    let replayed = replayed?;
    let (served, failed) = match &load {
        Ok(sample) => (sample.latencies.len(), 0),
        Err(error) => {
            tracing::warn!(%error, "a submission failed during the replay");
            (0, 1)
        }
    };
    let p99 = load.as_ref().map(|s| s.percentile(0.99)).ok();
    Ok(Row {
        scenario: "replay under submission load".into(),
        servers: 1,
        clients,
        operations: served,
        throughput: events as f64 / replayed.as_secs_f64(),
        unit: "events/s",
        p99_ms: p99,
        target: "0 requests failed",
        notes: format!(
            "{failed} request(s) failed; {served} leads submitted over {:.1} s while {events} events were replayed in {:.1} s",
            load_for.as_secs_f64(),
            replayed.as_secs_f64()
        ),
        ..Default::default()
    })
}

/// Lead submissions with the audit chain sealing and with its sealer held off, in turns of
/// half `duration` (on, off, off, on: what drifts over the runs, a growing table, the CRM
/// backlog, a checkpoint, weighs on both alike): leads/s with hashing, and without.
pub async fn sealing_cost(
    stack: &Stack,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(f64, f64)> {
    let (mut on, mut off) = ((0usize, 0f64), (0usize, 0f64));
    for held in [false, true, true, false] {
        let sample = if held {
            submit_unsealed(stack, clients, duration / 2).await?
        } else {
            writes::submit(stack, 1, clients, duration / 2).await?
        };
        let sums = if held { &mut off } else { &mut on };
        sums.0 += sample.latencies.len();
        sums.1 += sample.elapsed.as_secs_f64();
    }
    Ok((on.0 as f64 / on.1.max(f64::EPSILON), off.0 as f64 / off.1.max(f64::EPSILON)))
}

/// Lead submissions while the bench holds the audit chain's sealer off (its subscriber lock,
/// which the sealer only ever tries): appending without hashing. The sealer is let catch up
/// before this returns.
async fn submit_unsealed(
    stack: &Stack,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<crate::load::Sample> {
    let mut hold = stack.pool.acquire().await?;
    let lock = "hashtext('soho-subscriber'), hashtext($1)";
    sqlx::query(&format!("SELECT pg_advisory_lock({lock})"))
        .bind(sealer::NAME)
        .execute(&mut *hold)
        .await?;
    let sealed = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_chain");
    let before = sealed().fetch_one(&stack.pool).await?;
    let sample = writes::submit(stack, 1, clients, duration).await;
    let after = sealed().fetch_one(&stack.pool).await?;
    sqlx::query(&format!("SELECT pg_advisory_unlock({lock})"))
        .bind(sealer::NAME)
        .execute(&mut *hold)
        .await?;
    anyhow::ensure!(after == before, "the sealer ran while held off: {} events", after - before);
    // The sealer catches up before the next turn, so that the turns with it running pay for
    // sealing their own events, not these.
    let events = soho_projections::replay::log_length(&stack.pool).await? as i64;
    let started = Instant::now();
    while sealed().fetch_one(&stack.pool).await? < events {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the sealer fell behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sample
}
