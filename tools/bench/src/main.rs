//! `soho-bench`: every performance scenario of the portal in one command, each figure next to a
//! baseline run in the same command (pgbench, the raw SQL, stock cqrs-es), printed as a table and
//! written as JSON. Figures are printed, never asserted: `--quick` runs small sizes in CI so the
//! benchmark never rots.
//!
//! The portal servers run as child processes on an embedded PostgreSQL with its durable defaults;
//! the load generator and the Soho CRM simulator run in this process, on the same machine.

mod audit;
mod live;
mod load;
mod peer;
mod reads;
mod stack;
mod writes;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::json;

use load::Row;
use soho_embedded_postgres::DATABASE;
use stack::Stack;

#[derive(Parser)]
#[command(
    name = "soho-bench",
    about = "Soho Partner Portal benchmarks, against the physical limit"
)]
struct Cli {
    /// Small sizes, for CI: the figures are printed, nothing is asserted.
    #[arg(long)]
    quick: bool,
    /// Concurrent clients of the load scenarios.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds each load scenario runs [default: 10; quick: 2].
    #[arg(long)]
    seconds: Option<u64>,
    /// Servers for the scale-out rows (1 to this many, round-robin) [default: 3; quick: 2].
    #[arg(long)]
    servers: Option<usize>,
    /// Leads seeded for the read and replay scenarios, 3 events each [default: 1000000; quick: 5000].
    #[arg(long)]
    leads: Option<usize>,
    /// WebSockets connected for the live scenarios [default: 1000; quick: 50].
    #[arg(long)]
    sockets: Option<usize>,
    /// Status changes sent for the webhook → socket latency [default: 200; quick: 20].
    #[arg(long)]
    changes: Option<usize>,
    /// Only the scenarios over a seeded log (audit, replay, reads), skipping the load scenarios.
    #[arg(long)]
    log_only: bool,
    /// Where the figures are written as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    soho_portal::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sqlx::query=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let quick = cli.quick;
    let pick = |value: Option<usize>, full: usize, small: usize| {
        value.unwrap_or(if quick { small } else { full })
    };
    let sizes = Sizes {
        clients: cli.clients,
        duration: Duration::from_secs(cli.seconds.unwrap_or(if quick { 2 } else { 10 })),
        servers: pick(cli.servers, 3, 2).max(1),
        leads: pick(cli.leads, 1_000_000, 5_000),
        sockets: pick(cli.sockets, 1_000, 50),
        changes: pick(cli.changes, 200, 20),
    };
    let mut stack = Stack::start(sizes.servers).await?;
    let result = run(&mut stack, &sizes, cli.log_only).await;
    stack.stop().await?;
    let rows = result?;
    load::print_table(&rows);
    if let Some(dir) = cli.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let report = json!({
        "generatedAt": chrono::Utc::now(), "quick": quick, "cpus": std::thread::available_parallelism()?.get(),
        "clients": sizes.clients, "secondsPerScenario": sizes.duration.as_secs(), "seededLeads": sizes.leads,
        "rows": rows,
    });
    std::fs::write(&cli.json, serde_json::to_string_pretty(&report)?)?;
    println!("\n(figures also in {})", cli.json.display());
    Ok(())
}

struct Sizes {
    clients: usize,
    duration: Duration,
    servers: usize,
    leads: usize,
    sockets: usize,
    changes: usize,
}

fn step(what: &str) {
    eprintln!("→ {what}");
}

async fn run(stack: &mut Stack, sizes: &Sizes, log_only: bool) -> anyhow::Result<Vec<Row>> {
    let mut rows = if log_only { Vec::new() } else { run_load(stack, sizes).await? };
    rows.extend(run_log(stack, sizes).await?);
    Ok(rows)
}

/// The load scenarios: submissions, webhooks, live sockets, more servers.
async fn run_load(stack: &mut Stack, sizes: &Sizes) -> anyhow::Result<Vec<Row>> {
    let (clients, duration) = (sizes.clients, sizes.duration);
    let mut rows = Vec::new();

    step("lead submission, then the CRM sync backlog");
    stack.reset_peaks();
    stack.reset_statements().await?;
    let since = chrono::Utc::now();
    let submitted = writes::submit(stack, 1, clients, duration).await?;
    let peak = stack.peak_mib();
    let synced = writes::sync_backlog(stack, since, &submitted).await?;
    let per_lead =
        stack.statements(DATABASE).await? as f64 / submitted.latencies.len().max(1) as f64;
    stack.print_top_statements(DATABASE, 8).await?;
    let lost = writes::lost_by_read_model(stack).await?;
    step("lead submission with the audit chain sealing and held off, in turns");
    let since = chrono::Utc::now();
    let (sealing, unsealed) = audit::sealing_cost(stack, clients, duration).await?;
    writes::sync_backlog(stack, since, &submitted).await?;
    step("pgbench single-row insert");
    let pgbench = writes::pgbench_insert(stack, clients, duration).await?;
    step("the stock cqrs-es + postgres-es path");
    stack.reset_statements().await?;
    let peer = peer::run(stack, clients, duration).await?;
    let per_command =
        stack.statements("peer").await? as f64 / peer.sample.latencies.len().max(1) as f64;
    let mut row =
        Row::from_sample("lead submission (logged-in users)", clients, "leads/s", &submitted)
            .against("pgbench insert TPS", pgbench, submitted.rate());
    row.server_peak_mib = Some(peak);
    row.target = "≥ 3,000/s, p99 ≤ 25 ms, ≥ 0.25 × pgbench, ≥ 1.5 × stock cqrs-es";
    row.notes = format!(
        "{:.2} × the stock cqrs-es path; read model lost {lost} of {} leads; \
         {per_lead:.1} SQL statements per lead, CRM sync included",
        submitted.rate() / peer.sample.rate().max(f64::EPSILON),
        submitted.latencies.len()
    );
    rows.push(row);
    let mut row =
        Row::from_sample("stock cqrs-es + postgres-es (peer)", clients, "commands/s", &peer.sample)
            .against("pgbench insert TPS", pgbench, peer.sample.rate());
    row.servers = 0;
    row.target = "(baseline)";
    row.notes = format!(
        "view updates lost: {} of {}; {per_command:.1} SQL statements per command",
        peer.lost_views,
        peer.sample.latencies.len()
    );
    rows.push(row);
    rows.push(synced);
    rows.push(Row {
        scenario: "lead submission while the audit chain seals (hashing after commit)".into(),
        clients,
        servers: 1,
        throughput: sealing,
        unit: "leads/s",
        target: "≥ 0.95 × appending without hashes",
        notes: format!(
            "{:.0} leads/s sealing, {unsealed:.0} with the sealer held off (turns of {} s: on, off, off, on)",
            sealing,
            duration.as_secs_f64() / 2.0
        ),
        ..Default::default()
    }
    .against("sealer held off, leads/s", unsealed, sealing));
    step("CRM credits per 1,000 leads and status changes");
    rows.push(writes::credits_per_thousand(stack).await?);

    step("lead-status webhooks");
    stack.reset_peaks();
    stack.reset_statements().await?;
    let webhooks = writes::status_webhooks(stack, clients, duration).await?;
    let per_webhook =
        stack.statements(DATABASE).await? as f64 / webhooks.latencies.len().max(1) as f64;
    let mut row = Row::from_sample("lead-status webhooks", clients, "webhooks/s", &webhooks)
        .against("pgbench insert TPS", pgbench, webhooks.rate());
    row.server_peak_mib = Some(stack.peak_mib());
    row.target = "≥ 4,000/s, p99 ≤ 20 ms";
    row.notes = format!("{per_webhook:.1} SQL statements per webhook");
    rows.push(row);

    step(&format!("{} sockets: webhook → message", sizes.sockets));
    let mut sockets = live::Sockets::connect(stack, sizes.sockets).await?;
    stack.reset_peaks();
    let delivered = live::webhook_to_socket(stack, &mut sockets, sizes.changes).await?;
    let mut row =
        Row::from_sample("webhook → WebSocket message", sizes.sockets, "deliveries/s", &delivered);
    row.server_peak_mib = Some(stack.peak_mib());
    row.target = "p99 ≤ 50 ms with 1,000 sockets";
    row.notes = format!("{} sockets × {} status changes", sizes.sockets, sizes.changes);
    rows.push(row);

    step(&format!("{} sockets under the submission load", sizes.sockets));
    stack.reset_peaks();
    let before = sockets.messages.load(std::sync::atomic::Ordering::Relaxed);
    let loaded = writes::submit(stack, 1, clients, duration).await?;
    let mut row = Row::from_sample(
        format!("server memory: {} sockets under the submission load", sizes.sockets),
        clients,
        "leads/s",
        &loaded,
    );
    row.server_peak_mib = Some(stack.peak_mib());
    row.target = "≤ 150 MB resident";
    row.notes = format!(
        "{} live messages delivered to the sockets",
        sockets.messages.load(std::sync::atomic::Ordering::Relaxed) - before
    );
    rows.push(row);
    sockets.close();

    for servers in 2..=sizes.servers {
        step(&format!("lead submission over {servers} servers"));
        stack.add_server().await?;
        stack.reset_peaks();
        stack.reset_statements().await?;
        let since = chrono::Utc::now();
        let sample = writes::submit(stack, servers, clients, duration).await?;
        let synced = writes::sync_backlog(stack, since, &sample).await?;
        let per_lead_here =
            stack.statements(DATABASE).await? as f64 / sample.latencies.len().max(1) as f64;
        stack.print_top_statements(DATABASE, 8).await?;
        let mut row = Row::from_sample(
            format!("lead submission, {servers} servers round-robin"),
            clients,
            "leads/s",
            &sample,
        )
        .against("1 server leads/s", submitted.rate(), sample.rate());
        row.servers = servers;
        row.server_peak_mib = Some(stack.peak_mib());
        row.target = "throughput does not fall as servers are added";
        row.notes = format!(
            "{per_lead_here:.1} SQL statements per lead (1 server: {per_lead:.1}); {}",
            synced.notes
        );
        rows.push(row);
    }

    Ok(rows)
}

/// The scenarios over a seeded log of `sizes.leads` leads: audit, replay, reads.
async fn run_log(stack: &mut Stack, sizes: &Sizes) -> anyhow::Result<Vec<Row>> {
    let (clients, duration) = (sizes.clients, sizes.duration);
    let mut rows = Vec::new();
    step(&format!(
        "seeding {} leads ({} events) with the servers stopped",
        sizes.leads,
        sizes.leads * 3
    ));
    stack.keep_servers(0).await?;
    let bar = indicatif::ProgressBar::new(sizes.leads as u64 * 3);
    reads::seed(stack, sizes.leads, &bar).await?;
    step("sealing the seeded log, and audit verify of all of it");
    rows.extend(audit::seal_and_verify(stack).await?);
    step("replay of every read model");
    let replay = reads::replay(stack).await?;
    let replay_took =
        std::time::Duration::from_secs_f64(replay.operations as f64 / replay.throughput.max(1.0));
    rows.push(replay);
    stack.add_server().await?;
    step("replay of every read model while leads are submitted");
    rows.push(audit::replay_under_load(stack, clients, replay_took).await?);
    let leads = reads::lead_count(stack).await?;

    for searching in [false, true] {
        step(&format!("GET /leads at {leads} leads{}", if searching { ", searching" } else { "" }));
        stack.reset_peaks();
        let mut row = reads::list(stack, clients, duration, searching).await?;
        row.server_peak_mib = Some(stack.peak_mib());
        row.scenario = format!("{} ({leads} leads)", row.scenario);
        rows.push(row);
    }
    step(&format!("GET /dashboard/stats at {leads} leads"));
    stack.reset_peaks();
    let mut row = reads::stats(stack, clients, duration).await?;
    row.server_peak_mib = Some(stack.peak_mib());
    row.scenario = format!("{} ({leads} leads)", row.scenario);
    rows.push(row);
    Ok(rows)
}
