//! Soho CRM's limits, kept for every server on one database (CONTRACT.md 4): the org's cap on
//! calls at once and its rolling 24 h credit budget.
//!
//! The cap is `SOHO_CONCURRENCY` slots, each a session advisory lock a worker holds on its own
//! connection while it makes a call (from before the batch is chosen until the answer is in): whichever server it runs on, no more than that many calls
//! are in flight, and a server that dies lets go of its slots as its connections close.
//!
//! Credits are counted one per call (Zoho charges one per upsert or update of up to 100 records)
//! in `crm_credits`, a row per minute. A call is made only if the last 24 hours leave a credit
//! of `SOHO_DAILY_CREDITS`; otherwise sync pauses, every task kept, until the oldest minute
//! leaves the window. When the CRM itself answers `LIMIT_REACHED` (its budget is shared with the
//! org's other apps) every server pauses on `crm_pause` instead of each retrying on its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// The advisory lock class of the concurrency slots (two-key form: class, slot).
const SLOT_CLASS: i32 = 0x534F_4843; // "SOHC"

/// How long every server holds off after `LIMIT_REACHED` without a `Retry-After`.
pub const LIMIT_REACHED_PAUSE: Duration = Duration::from_secs(30);

/// Takes a free slot of `concurrency`, if there is one.
pub async fn take_slot(conn: &mut PgConnection, concurrency: usize) -> sqlx::Result<Option<i32>> {
    // LIMIT stops the scan at the first slot locked, so no other slot is taken by the way.
    sqlx::query_scalar(
        "SELECT slot FROM generate_series(0, $2 - 1) AS slot \
         WHERE pg_try_advisory_lock($1, slot) LIMIT 1",
    )
    .bind(SLOT_CLASS)
    .bind(concurrency as i32)
    .fetch_optional(conn)
    .await
}

/// Gives `slot` back (unless it went back already) with the task locks `tasks`.
pub async fn release(
    conn: &mut PgConnection,
    slot: Option<i32>,
    tasks: &[i64],
) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT CASE WHEN $2::int IS NOT NULL THEN pg_advisory_unlock($1, $2) END, \
                (SELECT count(*) FROM unnest($3::bigint[]) AS task WHERE pg_advisory_unlock(task))",
    )
    .bind(SLOT_CLASS)
    .bind(slot)
    .bind(tasks)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Gives `slot` back as soon as its call is answered: the cap is on calls at once, and the
/// outcomes are recorded without one.
pub async fn release_slot(conn: &mut PgConnection, slot: i32) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(SLOT_CLASS)
        .bind(slot)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Whether a call may be made now.
#[derive(Debug)]
pub enum Spend {
    /// A credit is spent on it.
    Spent,
    /// Not before `until`, for `reason`.
    Paused { until: DateTime<Utc>, reason: String },
}

/// Spends a credit on a call of `records` records, unless the day's budget is spent or the CRM
/// asked every server to hold off. One statement: the old minutes go, the window is summed, and
/// the credit is spent only if one is left.
pub async fn spend(conn: &mut PgConnection, budget: u64, records: usize) -> sqlx::Result<Spend> {
    #[derive(sqlx::FromRow)]
    struct Row {
        spent: bool,
        used: i64,
        oldest: Option<DateTime<Utc>>,
        paused_until: Option<DateTime<Utc>>,
        paused_for: Option<String>,
    }
    let row: Row = sqlx::query_as(
        "WITH gone AS (DELETE FROM crm_credits WHERE minute < now() - interval '25 hours'), \
         window_ AS (SELECT COALESCE(sum(calls), 0)::bigint AS used, min(minute) AS oldest \
                     FROM crm_credits WHERE minute > now() - interval '24 hours'), \
         paused AS (SELECT until, reason FROM crm_pause WHERE until > now()), \
         spend AS (INSERT INTO crm_credits (minute, calls, records) \
                   SELECT date_trunc('minute', now()), 1, $2 FROM window_ \
                   WHERE used < $1 AND NOT EXISTS (SELECT 1 FROM paused) \
                   ON CONFLICT (minute) DO UPDATE SET calls = crm_credits.calls + 1, \
                                                      records = crm_credits.records + excluded.records \
                   RETURNING 1) \
         SELECT EXISTS (SELECT 1 FROM spend) AS spent, (SELECT used FROM window_) AS used, \
                (SELECT oldest FROM window_) AS oldest, (SELECT until FROM paused) AS paused_until, \
                (SELECT reason FROM paused) AS paused_for",
    )
    .bind(budget as i64)
    .bind(records as i32)
    .fetch_one(conn)
    .await?;
    let (used, oldest) = (row.used, row.oldest);
    Ok(match (row.spent, row.paused_until, row.paused_for) {
        (true, _, _) => Spend::Spent,
        (false, Some(until), Some(reason)) => Spend::Paused { until, reason },
        _ => {
            let (until, reason) = budget_spent(used, budget, oldest);
            Spend::Paused { until, reason }
        }
    })
}

/// Until when, and why, sync pauses with `used` of `budget` credits spent in the window whose
/// oldest minute is `oldest`: credits come back as that minute leaves the window.
fn budget_spent(used: i64, budget: u64, oldest: Option<DateTime<Utc>>) -> (DateTime<Utc>, String) {
    let until = oldest.unwrap_or_else(Utc::now) + chrono::Duration::hours(24);
    let reason = format!("the daily credit budget is spent ({used} of {budget} in 24 h)");
    (until + chrono::Duration::minutes(1), reason)
}

/// Asks every server to hold off until `after` from now: the CRM answered `LIMIT_REACHED`.
pub async fn pause(conn: &mut PgConnection, after: Duration, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO crm_pause (until, reason) VALUES (now() + make_interval(secs => $1), $2) \
         ON CONFLICT (singleton) DO UPDATE SET until = excluded.until, reason = excluded.reason",
    )
    .bind(after.as_secs_f64())
    .bind(reason)
    .execute(conn)
    .await
    .map(|_| ())
}

/// The CRM side's use of its limits, for `crm status`, `/metrics` and the budget warning.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub concurrency: usize,
    /// Slots held now, on every server: calls in flight or about to be.
    pub calls_in_flight: i64,
    pub daily_credits: u64,
    /// Credits spent in the last 24 hours.
    pub credits_used: i64,
    /// Records per call over the last 24 hours (0 with no calls).
    pub records_per_call: f64,
    /// Hours until the budget is spent at the rate of the last 15 minutes; none at rate 0.
    pub hours_to_budget: Option<f64>,
    /// Why sync is paused, and until when, if it is.
    pub paused: Option<(DateTime<Utc>, String)>,
}

pub async fn usage(pool: &PgPool, concurrency: usize, budget: u64) -> sqlx::Result<Usage> {
    #[derive(sqlx::FromRow)]
    struct Row {
        in_flight: i64,
        used: i64,
        records: i64,
        oldest: Option<DateTime<Utc>>,
        recent: i64,
        paused_until: Option<DateTime<Utc>>,
        paused_for: Option<String>,
    }
    let row: Row = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                   AND objsubid = 2 AND classid = $1::bigint::oid) AS in_flight, \
                COALESCE(sum(calls), 0)::bigint AS used, COALESCE(sum(records), 0)::bigint AS records, \
                min(minute) AS oldest, \
                COALESCE(sum(calls) FILTER (WHERE minute > now() - interval '15 minutes'), 0)::bigint AS recent, \
                (SELECT until FROM crm_pause WHERE until > now()) AS paused_until, \
                (SELECT reason FROM crm_pause WHERE until > now()) AS paused_for \
         FROM crm_credits WHERE minute > now() - interval '24 hours'",
    )
    .bind(SLOT_CLASS)
    .fetch_one(pool)
    .await?;
    let Row { in_flight, used, records, oldest, recent, paused_until, paused_for } = row;
    let left = (budget as i64 - used).max(0) as f64;
    let per_hour = recent as f64 * 4.0;
    let mut paused = paused_until.zip(paused_for);
    if paused.is_none() && used >= budget as i64 {
        paused = Some(budget_spent(used, budget, oldest));
    }
    Ok(Usage {
        concurrency,
        calls_in_flight: in_flight,
        daily_credits: budget,
        credits_used: used,
        records_per_call: if used > 0 { records as f64 / used as f64 } else { 0.0 },
        hours_to_budget: (per_hour > 0.0).then(|| left / per_hour),
        paused,
    })
}

/// Once a minute, looks at the budget: warns once when, at the rate of the last 15 minutes, it
/// runs out within 6 hours (again only after the projection has gone back above).
pub async fn watch(portal: std::sync::Arc<crate::portal::Portal>) {
    let (concurrency, budget) =
        (portal.settings.soho_concurrency, portal.settings.soho_daily_credits);
    let mut warned = false;
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        let Ok(usage) = usage(&portal.pool, concurrency, budget).await else { continue };
        match usage.hours_to_budget {
            Some(hours) if hours < 6.0 => {
                if !warned {
                    tracing::warn!(
                        hours_left = format!("{hours:.1}"),
                        used = usage.credits_used,
                        budget,
                        "Soho CRM credits will run out within 6 hours at the current rate; \
                         sync will pause then (raise SOHO_DAILY_CREDITS if the org has more)"
                    );
                }
                warned = true;
            }
            _ => warned = false,
        }
    }
}
