//! Benchmarks that print figures (never asserted on): `soho-bench live` measures how long a
//! status change takes from the CRM's webhook to the browsers' sockets, on the embedded
//! PostgreSQL with its durable defaults (`fsync` and `synchronous_commit` on).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{json, Value};
use soho_portal::config::Settings;
use soho_portal::db::embedded::{EmbeddedPostgres, Leftover};
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
    }
}

async fn live(sockets: usize, changes: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = EmbeddedPostgres::start(dir.path(), Leftover::TakeOver).await?;
    let pool =
        soho_portal::db::pool(cluster.connect_options(soho_portal::db::embedded::DATABASE)).await?;
    soho_portal::db::migrate(&pool).await?;
    let vars: std::collections::HashMap<&str, &str> = [
        ("LISTEN_ADDR", "127.0.0.1:0"),
        ("DB_URL", "postgres://unused/unused"),
        ("JWT_SECRET", "bench-secret-0123456789abcdef0123456789abcdef"),
        ("SOHO_WEBHOOK_SECRET", SECRET),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .collect();
    let settings = Settings::from_lookup(|k| vars.get(k).map(|v| v.to_string()))?;
    let running = soho_portal::app::start(settings, pool.clone()).await?;
    let base = format!("http://{}", running.address);
    let http = reqwest::Client::new();

    // A partner, its admin, and one lead whose status the CRM keeps changing.
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
    let lead: Value = http
        .post(format!("{base}/leads"))
        .bearer_auth(&jwt)
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

    let rss_before = rss_kib();
    let statuses = ["Contacted", "Pre-Qualified", "Converted", "Lost Lead", "Not Contacted"];
    let mut latencies: Vec<Duration> = Vec::with_capacity(sockets * changes);
    let started = Instant::now();
    for n in 0..changes {
        let body = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now(),
            "lead": {"portalLeadId": lead, "status": statuses[n % statuses.len()]}});
        let sent = Instant::now();
        webhook(&http, &base, "/webhooks/soho/lead-status", &format!("msg_bench_{n}"), &body)
            .await?;
        for receiver in receivers.iter_mut() {
            let at = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
                .await?
                .context("socket closed")?;
            latencies.push(at.duration_since(sent));
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    let figures = json!({
        "scenario": "webhook → WebSocket message",
        "sockets": sockets,
        "changes": changes,
        "deliveries": latencies.len(),
        "changesPerSecond": changes as f64 / elapsed.as_secs_f64(),
        "p50Ms": pct(0.50), "p99Ms": pct(0.99), "p999Ms": pct(0.999), "maxMs": pct(1.0),
        "serverRssKiB": {"before": rss_before, "after": rss_kib()},
    });
    println!("| scenario | sockets | changes | deliveries | changes/s | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| webhook → socket | {sockets} | {changes} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
        latencies.len(),
        changes as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/live.json", serde_json::to_string_pretty(&figures)?)?;
    println!("(figures also in target/bench/live.json; the client runs in the server's process)");
    running.stop().await?;
    pool.close().await;
    cluster.stop().await;
    Ok(())
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

/// This process's resident memory, from /proc.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
