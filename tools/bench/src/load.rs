//! The load generator (closed loop: each client sends its next request when the last answers)
//! and the report: one row per scenario, printed as a table and written as JSON.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What a run of requests came to.
pub struct Sample {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The `p` percentile in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }
}

/// `p` percentile of sorted latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => sorted[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1000.0,
    }
}

/// Runs `clients` clients for `duration`, each calling `operation(client, n)` in a loop; the
/// first error stops the run and is returned.
pub async fn closed_loop<F, Fut>(
    clients: usize,
    duration: Duration,
    operation: F,
) -> anyhow::Result<Sample>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let operation = Arc::new(operation);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let operation = Arc::clone(&operation);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                operation(client, n).await?;
                latencies.push(sent.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Sample { latencies, elapsed })
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub scenario: String,
    pub servers: usize,
    pub clients: usize,
    pub operations: usize,
    pub throughput: f64,
    pub unit: &'static str,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// The highest peak resident memory among the servers during the scenario.
    pub server_peak_mib: Option<f64>,
    /// What the figure is compared with, run in this same command.
    pub baseline: Option<String>,
    pub baseline_value: Option<f64>,
    /// Ours over the baseline's, for the figure the baseline names: throughput for writes
    /// (above 1 is faster), p99 for reads (above 1 is slower).
    pub ratio: Option<f64>,
    pub target: &'static str,
    pub notes: String,
}

impl Row {
    pub fn from_sample(
        scenario: impl Into<String>,
        clients: usize,
        unit: &'static str,
        sample: &Sample,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            servers: 1,
            clients,
            operations: sample.latencies.len(),
            throughput: sample.rate(),
            unit,
            p50_ms: Some(sample.percentile(0.50)),
            p99_ms: Some(sample.percentile(0.99)),
            p999_ms: Some(sample.percentile(0.999)),
            ..Default::default()
        }
    }

    pub fn against(mut self, baseline: impl Into<String>, value: f64, ours: f64) -> Self {
        self.baseline = Some(baseline.into());
        self.baseline_value = Some(value);
        self.ratio = (value > 0.0).then(|| ours / value);
        self
    }
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
}

pub fn print_table(rows: &[Row]) {
    println!();
    println!("| scenario | servers | clients | throughput | p50 ms | p99 ms | p99.9 ms | server peak MiB | baseline | × baseline | target | notes |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let baseline = match (&row.baseline, row.baseline_value) {
            (Some(name), Some(value)) => format!("{name}: {value:.1}"),
            _ => "–".into(),
        };
        println!(
            "| {} | {} | {} | {:.0} {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.servers,
            row.clients,
            row.throughput,
            row.unit,
            cell(row.p50_ms, 1),
            cell(row.p99_ms, 1),
            cell(row.p999_ms, 1),
            cell(row.server_peak_mib, 0),
            baseline,
            cell(row.ratio, 2),
            row.target,
            row.notes
        );
    }
}
