//! Counters for operators, exposed with the database's own figures at `/metrics` in Prometheus'
//! text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub webhooks_received: AtomicU64,
    pub webhooks_refused: AtomicU64,
    pub crm_calls: AtomicU64,
    /// Records carried by the successful calls (each carries up to 100).
    pub crm_records: AtomicU64,
    pub crm_retries: AtomicU64,
    pub crm_failures: AtomicU64,
}

impl Metrics {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn render(
    metrics: &Metrics,
    backlog: &crate::crm::outbox::Backlog,
    usage: &crate::crm::limits::Usage,
) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    metric(
        "soho_webhooks_received_total",
        "counter",
        "Soho CRM webhooks accepted (signature valid).",
        load(&metrics.webhooks_received),
    );
    metric(
        "soho_webhooks_refused_total",
        "counter",
        "Soho CRM webhooks refused for their signature.",
        load(&metrics.webhooks_refused),
    );
    metric(
        "soho_crm_calls_total",
        "counter",
        "Soho CRM calls that succeeded.",
        load(&metrics.crm_calls),
    );
    metric(
        "soho_crm_retries_total",
        "counter",
        "Soho CRM calls that failed and will be retried.",
        load(&metrics.crm_retries),
    );
    metric(
        "soho_crm_failures_total",
        "counter",
        "Soho CRM calls refused for good (leads marked failed).",
        load(&metrics.crm_failures),
    );
    metric(
        "soho_crm_pending",
        "gauge",
        "Soho CRM calls waiting to be made.",
        backlog.pending as f64,
    );
    metric(
        "soho_crm_failed",
        "gauge",
        "Soho CRM calls refused for good, awaiting `crm retry`.",
        backlog.failed as f64,
    );
    metric(
        "soho_crm_sync_lag_seconds",
        "gauge",
        "Age of the oldest pending Soho CRM call.",
        backlog.oldest_pending_seconds,
    );
    metric(
        "soho_crm_records_total",
        "counter",
        "Records carried by the Soho CRM calls that succeeded (up to 100 a call).",
        load(&metrics.crm_records),
    );
    metric(
        "soho_crm_records_per_call",
        "gauge",
        "Records per Soho CRM call over the last 24 hours, every server.",
        usage.records_per_call,
    );
    metric(
        "soho_crm_calls_in_flight",
        "gauge",
        "Soho CRM concurrency slots held now, every server.",
        usage.calls_in_flight as f64,
    );
    metric(
        "soho_crm_concurrency_limit",
        "gauge",
        "The org's cap on Soho CRM calls at once (SOHO_CONCURRENCY).",
        usage.concurrency as f64,
    );
    metric(
        "soho_crm_credits_used",
        "gauge",
        "Soho CRM API credits spent in the last 24 hours, every server.",
        usage.credits_used as f64,
    );
    metric(
        "soho_crm_credits_daily_budget",
        "gauge",
        "The org's Soho CRM API credits per 24 hours (SOHO_DAILY_CREDITS).",
        usage.daily_credits as f64,
    );
    metric(
        "soho_crm_credits_hours_left",
        "gauge",
        "Hours until the credit budget is spent at the last 15 minutes' rate (+Inf at rate 0).",
        usage.hours_to_budget.unwrap_or(f64::INFINITY),
    );
    metric(
        "soho_crm_sync_paused",
        "gauge",
        "1 while Soho CRM sync is paused for its limits (credits spent, LIMIT_REACHED).",
        if usage.paused.is_some() { 1.0 } else { 0.0 },
    );
    out
}
