//! The write paths: lead submission (and the CRM sync behind it), lead-status webhooks, and the
//! physical limit they are measured against: pgbench inserting one lead-sized event per
//! transaction into a table shaped like the event log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::load::{closed_loop, Row, Sample};
use crate::stack::{webhook, Stack};

/// Submissions by the logged-in admin over HTTP, round-robin over the first `servers` servers.
pub async fn submit(
    stack: &Stack,
    servers: usize,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let bases = Arc::new(stack.bases(servers));
    let (http, jwt) = (stack.http.clone(), stack.jwt.clone());
    let run = uuid::Uuid::new_v4().simple().to_string();
    closed_loop(clients, duration, move |client, n| {
        let (http, jwt, bases) = (http.clone(), jwt.clone(), Arc::clone(&bases));
        let email = format!("load-{}-{client}-{n}@example.com", &run[..8]);
        async move {
            let base = &bases[(client + n as usize) % bases.len()];
            let body = json!({"firstName": "Ada", "lastName": format!("Load {client}-{n}"), "email": email,
                "company": "Analytical Engines", "notes": "Wants a demo"});
            let response = http.post(format!("{base}/leads")).bearer_auth(&jwt).json(&body).send().await?;
            anyhow::ensure!(response.status().as_u16() == 201, "submission answered {}", response.status());
            Ok(())
        }
    })
    .await
}

/// After a submission run: how long the CRM sync backlog takes to drain once the load stops,
/// and the submitted → synced latencies of the leads submitted since `since`.
pub async fn sync_backlog(
    stack: &Stack,
    since: chrono::DateTime<chrono::Utc>,
    load: &Sample,
) -> anyhow::Result<Row> {
    let ended = Instant::now();
    let mut pending: i64;
    loop {
        pending = sqlx::query_scalar("SELECT count(*) FROM crm_outbox WHERE state <> 'done'")
            .fetch_one(&stack.pool)
            .await?;
        if pending == 0 || ended.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = ended.elapsed();
    let (synced, p50, p99, p999): (i64, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "WITH lags AS (SELECT extract(epoch FROM s.recorded_at - l.recorded_at) * 1000 AS ms \
             FROM events l JOIN events s ON s.aggregate_type = 'Lead' AND s.aggregate_id = l.aggregate_id \
              AND s.event_type = 'LeadSyncedToCrm' \
             WHERE l.aggregate_type = 'Lead' AND l.event_type = 'LeadSubmitted' AND l.recorded_at >= $1) \
         SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), percentile_cont(0.999) WITHIN GROUP (ORDER BY ms) FROM lags",
    )
    .bind(since)
    .fetch_one(&stack.pool)
    .await?;
    let window = load.elapsed + drained;
    let (calls, records): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(calls), 0)::bigint, COALESCE(sum(records), 0)::bigint \
         FROM crm_credits WHERE minute >= date_trunc('minute', $1::timestamptz)",
    )
    .bind(since)
    .fetch_one(&stack.pool)
    .await?;
    Ok(Row {
        scenario: "submission → synced in the CRM simulator".into(),
        servers: 1,
        clients: 0,
        operations: synced as usize,
        throughput: synced as f64 / window.as_secs_f64(),
        unit: "leads/s",
        p50_ms: p50,
        p99_ms: p99,
        p999_ms: p999,
        target: "keeps up with the submission rate; backlog 0 within 3 s of the load ending",
        notes: format!(
            "simulator at 1 s a call, 10 calls at once; {synced} of {} submitted leads synced \
             in {calls} calls ({:.1} records a call); backlog drained {:.2} s after the load ended{}",
            load.latencies.len(),
            records as f64 / calls.max(1) as f64,
            drained.as_secs_f64(),
            if pending > 0 {
                format!(" ({pending} still pending after 120 s)")
            } else {
                String::new()
            }
        ),
        ..Default::default()
    })
}

/// Credits spent to sync 1,000 leads with one status change each: the leads submitted by 16
/// clients, then each moved to `contacted`, and the CRM calls counted until the backlog is 0.
pub async fn credits_per_thousand(stack: &Stack) -> anyhow::Result<Row> {
    const LEADS: usize = 1000;
    let spent = || async {
        sqlx::query_scalar::<_, i64>("SELECT COALESCE(sum(calls), 0)::bigint FROM crm_credits")
            .fetch_one(&stack.pool)
            .await
    };
    let before = spent().await?;
    let started = Instant::now();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let base = stack.bases(1)[0].clone();
    let requests = (0..LEADS).map(|n| {
        let (http, jwt, base) = (stack.http.clone(), stack.jwt.clone(), base.clone());
        let email = format!("credits-{}-{n}@example.com", &run[..8]);
        async move {
            let body = json!({"lastName": format!("Credits {n}"), "email": email});
            let response =
                http.post(format!("{base}/leads")).bearer_auth(&jwt).json(&body).send().await?;
            anyhow::ensure!(
                response.status().as_u16() == 201,
                "submission answered {}",
                response.status()
            );
            let id = response.json::<serde_json::Value>().await?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let response = http
                .patch(format!("{base}/leads/{id}/status"))
                .bearer_auth(&jwt)
                .json(&json!({"status": "contacted"}))
                .send()
                .await?;
            anyhow::ensure!(
                response.status().as_u16() == 200,
                "status change answered {}",
                response.status()
            );
            anyhow::Ok(())
        }
    });
    let done: Vec<anyhow::Result<()>> = futures::StreamExt::collect(
        futures::StreamExt::buffer_unordered(futures::stream::iter(requests), 16),
    )
    .await;
    done.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM crm_outbox WHERE state <> 'done'")
                .fetch_one(&stack.pool)
                .await?;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "{pending} calls still pending"
        );
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let credits = spent().await? - before;
    Ok(Row {
        scenario: "credits per 1,000 leads synced (new lead + one status change each)".into(),
        servers: 1,
        clients: 16,
        operations: LEADS * 2,
        throughput: credits as f64,
        unit: "credits",
        target: "≤ 25 (one call a lead and a change: 2,000)",
        notes: format!(
            "{credits} CRM calls for {} records, synced in {:.1} s",
            LEADS * 2,
            started.elapsed().as_secs_f64()
        ),
        ..Default::default()
    })
}

/// Events recorded against rows in the read model: a projection that lost an update shows here.
pub async fn lost_by_read_model(stack: &Stack) -> anyhow::Result<i64> {
    let lost: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM events WHERE aggregate_type = 'Lead' AND event_type = 'LeadSubmitted') \
              - (SELECT count(*) FROM leads)",
    )
    .fetch_one(&stack.pool)
    .await?;
    Ok(lost)
}

/// Lead-status webhooks from Soho CRM, each client moving its own leads through the statuses.
pub async fn status_webhooks(
    stack: &Stack,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let leads: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT lead_id FROM leads ORDER BY created_at DESC LIMIT $1")
            .bind((clients * 64) as i64)
            .fetch_all(&stack.pool)
            .await?;
    anyhow::ensure!(
        leads.len() >= clients,
        "the webhook scenario needs leads: run the submissions first"
    );
    let leads = Arc::new(leads);
    let (http, base) = (stack.http.clone(), stack.servers[0].base.clone());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let statuses = ["Contacted", "Pre-Qualified", "Converted", "Lost Lead", "Not Contacted"];
    closed_loop(clients, duration, move |client, n| {
        let (http, base, leads) = (http.clone(), base.clone(), Arc::clone(&leads));
        let id = format!("msg_{}_{client}_{n}", &run[..8]);
        async move {
            let mine = leads.len() / clients;
            let lead = leads[client * mine + (n as usize % mine)];
            let body = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now(),
                "lead": {"portalLeadId": lead, "status": statuses[(n as usize / mine) % statuses.len()]}});
            webhook(&http, &base, "/webhooks/soho/lead-status", &id, &body).await
        }
    })
    .await
}

/// pgbench: one lead-sized event per transaction into an event-shaped table, `clients` clients.
pub async fn pgbench_insert(
    stack: &Stack,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_events (aggregate_type text, aggregate_id text, sequence bigint, \
         event_type text, event_version text, payload jsonb, metadata jsonb, \
         global_position bigint GENERATED ALWAYS AS IDENTITY, tx_id xid8 DEFAULT pg_current_xact_id(), \
         recorded_at timestamptz DEFAULT now(), PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    )
    .execute(&stack.pool)
    .await?;
    let script = stack.dir.path().join("insert.sql");
    let payload = json!({"LeadSubmitted": {"details": {"firstName": "Ada", "lastName": "Lovelace",
        "email": "ada@example.com", "company": "Analytical Engines", "notes": "Wants a demo"},
        "channelConflict": false}});
    let metadata = json!({"actorType": "user", "correlationId": uuid::Uuid::now_v7()});
    std::fs::write(
        &script,
        format!(
            "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('Lead', gen_random_uuid()::text, 1, 'LeadSubmitted', '1', '{payload}', '{metadata}');\n"
        ),
    )?;
    let bin_dir = soho_embedded_postgres::find_bin_dir().context("PostgreSQL binaries")?;
    let output = tokio::process::Command::new(bin_dir.join("pgbench"))
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &duration.as_secs().max(1).to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(stack.cluster.url(soho_embedded_postgres::DATABASE))
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .with_context(|| {
            format!("pgbench printed no TPS: {text} {}", String::from_utf8_lossy(&output.stderr))
        })
}
