//! Benchmarks that print figures (never asserted on), each on a fresh embedded PostgreSQL with
//! its durable defaults (`fsync` and `synchronous_commit` on), the load generator in the same
//! process as the server:
//!
//! - `soho-bench live`: how long a status change takes from the CRM's webhook to the sockets;
//! - `soho-bench submit`: lead submissions over HTTP, with pgbench's single-row insert of a
//!   lead-sized event at the same client count as the physical limit.
//!
//! Each prints a table and writes its figures as JSON under `target/bench/`.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{json, Value};
use soho_portal::config::Settings;
use soho_portal::db::embedded::{self, EmbeddedPostgres, Leftover};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(name = "soho-bench", about = "Soho Partner Portal benchmarks")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Webhook → WebSocket latency with many sockets connected.
    Live {
        #[arg(long, default_value_t = 500)]
        sockets: usize,
        #[arg(long, default_value_t = 1000)]
        changes: usize,
        /// Small sizes, for CI: the figures are printed, nothing is asserted.
        #[arg(long)]
        quick: bool,
    },
    /// Lead submissions by a logged-in user over HTTP, against pgbench.
    Submit {
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        quick: bool,
    },
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    soho_portal::install_crypto_provider();
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    match Cli::parse().scenario {
        Scenario::Live { sockets, changes, quick } => {
            let (sockets, changes) = if quick { (50, 100) } else { (sockets, changes) };
            live(sockets, changes).await
        }
        Scenario::Submit { clients, seconds, quick } => {
            submit(clients, if quick { 3 } else { seconds }).await
        }
    }
}

/// A portal on a fresh embedded PostgreSQL, with one approved partner and its registered admin.
struct Bench {
    dir: tempfile::TempDir,
    cluster: EmbeddedPostgres,
    pool: sqlx::PgPool,
    running: soho_portal::app::RunningPortal,
    base: String,
    http: reqwest::Client,
    jwt: String,
}

impl Bench {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let cluster = EmbeddedPostgres::start(dir.path(), Leftover::TakeOver).await?;
        let pool = soho_portal::db::pool(cluster.connect_options(embedded::DATABASE)).await?;
        soho_portal::db::migrate(&pool).await?;
        let vars: std::collections::HashMap<&str, &str> = [
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("DB_URL", "postgres://unused/unused"),
            ("JWT_SECRET", "bench-secret-0123456789abcdef0123456789abcdef"),
            ("SOHO_WEBHOOK_SECRET", SECRET),
        ]
        .into_iter()
        .collect();
        let settings = Settings::from_lookup(|k| vars.get(k).map(|v| v.to_string()))?;
        let running = soho_portal::app::start(settings, pool.clone()).await?;
        let base = format!("http://{}", running.address);
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
        let partner = json!({"event": "partner.created", "occurredAt": chrono::Utc::now(), "partner": {
            "sohoPartnerId": "bench", "name": "Bench Partner", "email": "bench@example.com", "approved": true}});
        webhook(&http, &base, "/webhooks/soho/partner", "msg_bench_partner", &partner).await?;
        let invitation: uuid::Uuid =
            sqlx::query_scalar("SELECT invitation_id FROM users WHERE email = 'bench@example.com'")
                .fetch_one(&pool)
                .await?;
        let token = running.portal.keys.invitation_token(invitation);
        let session: Value = http
            .post(format!("{base}/auth/register"))
            .json(&json!({"token": token, "password": "a benchmark password"}))
            .send()
            .await?
            .json()
            .await?;
        let jwt = session["accessToken"].as_str().context("a session")?.to_string();
        Ok(Self { dir, cluster, pool, running, base, http, jwt })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await?;
        self.pool.close().await;
        self.cluster.stop().await;
        Ok(())
    }
}

async fn live(sockets: usize, changes: usize) -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let (base, http, jwt) = (&bench.base, &bench.http, &bench.jwt);
    let lead: Value = http
        .post(format!("{base}/leads"))
        .bearer_auth(jwt)
        .json(&json!({"lastName": "Bench", "email": "lead@example.com"}))
        .send()
        .await?
        .json()
        .await?;
    let lead = lead["id"].as_str().context("a lead")?.to_string();

    // The sockets, each noting when every status change reaches it.
    let ws = format!("{}/ws?access_token={jwt}", base.replace("http://", "ws://"));
    let mut receivers = Vec::new();
    for _ in 0..sockets {
        let (socket, _) = tokio_tungstenite::connect_async(&ws).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        tokio::spawn(async move {
            let (_, mut read) = socket.split();
            while let Some(Ok(message)) = read.next().await {
                if let Message::Text(text) = message {
                    if text.contains("lead.status_changed") && tx.send(Instant::now()).is_err() {
                        return;
                    }
                }
            }
        });
        receivers.push(rx);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let statuses = ["Contacted", "Pre-Qualified", "Converted", "Lost Lead", "Not Contacted"];
    let mut latencies: Vec<Duration> = Vec::with_capacity(sockets * changes);
    let started = Instant::now();
    for n in 0..changes {
        let body = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now(),
            "lead": {"portalLeadId": lead, "status": statuses[n % statuses.len()]}});
        let sent = Instant::now();
        webhook(http, base, "/webhooks/soho/lead-status", &format!("msg_bench_{n}"), &body).await?;
        for receiver in receivers.iter_mut() {
            let at = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
                .await?
                .context("socket closed")?;
            latencies.push(at.duration_since(sent));
        }
    }
    let per_second = changes as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| percentile(&latencies, p);
    let figures = json!({
        "scenario": "webhook → WebSocket message",
        "sockets": sockets, "changes": changes, "deliveries": latencies.len(), "changesPerSecond": per_second,
        "p50Ms": pct(0.50), "p99Ms": pct(0.99), "p999Ms": pct(0.999), "maxMs": pct(1.0),
        "peakRssKiB": peak_rss_kib(),
    });
    println!("| scenario | sockets | changes | deliveries | changes/s | p50 ms | p99 ms | p99.9 ms | max ms | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| webhook → socket | {sockets} | {changes} | {} | {per_second:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        peak_rss_kib() as f64 / 1024.0
    );
    write_figures("live", &figures)?;
    bench.stop().await
}

async fn submit(clients: usize, seconds: u64) -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, base, jwt) = (bench.http.clone(), bench.base.clone(), bench.jwt.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let body = json!({"lastName": format!("Load{client}-{n}"), "email": format!("load{client}-{n}@example.com")});
                let sent = Instant::now();
                let response = http.post(format!("{base}/leads")).bearer_auth(&jwt).json(&body).send().await?;
                anyhow::ensure!(response.status().as_u16() == 201, "submission answered {}", response.status());
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let pgbench_tps = pgbench_insert(&bench, clients, seconds).await?;
    let ratio = if pgbench_tps > 0.0 { rate / pgbench_tps } else { 0.0 };
    let pct = |p: f64| percentile(&latencies, p);
    let figures = json!({
        "scenario": "lead submission (HTTP, logged-in user)",
        "clients": clients, "seconds": seconds, "leads": latencies.len(), "leadsPerSecond": rate,
        "p50Ms": pct(0.5), "p99Ms": pct(0.99), "p999Ms": pct(0.999),
        "pgbenchInsertTps": pgbench_tps, "ratioToPgbench": ratio, "peakRssKiB": peak_rss_kib(),
    });
    println!("| scenario | clients | leads/s | p50 ms | p99 ms | p99.9 ms | pgbench insert TPS | × pgbench | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| lead submission | {clients} | {rate:.0} | {:.1} | {:.1} | {:.1} | {pgbench_tps:.0} | {ratio:.3} | {:.0} |",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        peak_rss_kib() as f64 / 1024.0
    );
    write_figures("submit", &figures)?;
    bench.stop().await
}

/// The physical limit: pgbench inserting one lead-sized event per transaction into a table shaped
/// like the event log, with `clients` clients for `seconds`. Returns its TPS.
async fn pgbench_insert(bench: &Bench, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    sqlx::query(
        "CREATE TABLE bench_events (aggregate_type text, aggregate_id text, sequence bigint, event_type text, \
         event_version text, payload jsonb, metadata jsonb, global_position bigint GENERATED ALWAYS AS IDENTITY, \
         tx_id xid8 DEFAULT pg_current_xact_id(), recorded_at timestamptz DEFAULT now(), \
         PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    )
    .execute(&bench.pool)
    .await?;
    let script = bench.dir.path().join("insert.sql");
    let payload = json!({"LeadSubmitted": {"details": {"lastName": "Lovelace", "email": "ada@example.com",
        "company": "Analytical Engines"}, "channelConflict": false}});
    let metadata = json!({"actorType": "user", "correlationId": uuid::Uuid::now_v7()});
    std::fs::write(
        &script,
        format!(
            "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('Lead', gen_random_uuid()::text, 1, 'LeadSubmitted', '1', '{payload}', '{metadata}');\n"
        ),
    )?;
    let bin_dir = embedded::find_bin_dir().context("PostgreSQL binaries")?;
    let output = tokio::process::Command::new(bin_dir.join("pgbench"))
        .args(["-n", "-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string(), "-f"])
        .arg(&script)
        .arg(bench.cluster.url(embedded::DATABASE))
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

async fn webhook(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    id: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let body = body.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = standardwebhooks::Webhook::new(SECRET)?.sign(id, timestamp, body.as_bytes())?;
    let response = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "webhook answered {}", response.status());
    Ok(())
}

/// The `p` percentile of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => sorted[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1000.0,
    }
}

/// This process's peak resident memory (server and load generator together), from /proc.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn write_figures(name: &str, figures: &Value) -> anyhow::Result<()> {
    std::fs::create_dir_all("target/bench")?;
    std::fs::write(format!("target/bench/{name}.json"), serde_json::to_string_pretty(figures)?)?;
    println!("(figures also in target/bench/{name}.json)");
    Ok(())
}
