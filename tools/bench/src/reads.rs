//! The read side at scale: a log of `leads × 3` events written straight into the event store,
//! `replay` of every read model over it, then `GET /leads` and `GET /dashboard/stats` against the
//! raw SQL of each, run from this process on the same pool size the server has.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::Utc;
use soho_aggregates::lead::{LeadDetails, LeadEvent, StatusChange, StatusSource, Submitter};
use soho_aggregates::{Actor, ActorKind, LeadId, LeadStatus, PartnerId, UserId};
use soho_portal::leads::queries::{self, LeadFilter, LeadScope};

use crate::load::{closed_loop, Row, Sample};
use crate::stack::Stack;

/// The two status changes each seeded lead goes through, by `n % 5`: every status ends up with
/// a fifth of the leads.
const PATHS: [(LeadStatus, LeadStatus); 5] = [
    (LeadStatus::Contacted, LeadStatus::Qualified),
    (LeadStatus::Contacted, LeadStatus::Converted),
    (LeadStatus::Contacted, LeadStatus::Lost),
    (LeadStatus::Qualified, LeadStatus::Contacted),
    (LeadStatus::Contacted, LeadStatus::New),
];

/// Writes `leads` leads of the bench partner, 3 events each, with COPY in one transaction, and
/// moves the side-effect subscribers (CRM outbox, invitations) past them: history, not work.
/// The servers must be stopped; the read models are then rebuilt by [`replay`].
pub async fn seed(
    stack: &Stack,
    leads: usize,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let partner = PartnerId(stack.partner);
    let user = UserId(stack.user);
    let metadata =
        serde_json::json!({"actorType": "crm", "correlationId": uuid::Uuid::now_v7()}).to_string();
    let mut tx = stack.pool.begin().await?;
    let mut copy = tx
        .copy_in_raw(
            "COPY events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at) FROM STDIN",
        )
        .await?;
    let now = Utc::now();
    let mut chunk = String::with_capacity(4 << 20);
    for n in 0..leads {
        let id = LeadId::new();
        let at = now - chrono::Duration::seconds((leads - n) as i64 * 2);
        let (second, third) = PATHS[n % PATHS.len()];
        let change = |status: LeadStatus, minutes: i64| StatusChange {
            status,
            crm_status: crm_status(status).into(),
            source: StatusSource::Crm,
            actor: Actor { kind: ActorKind::Crm, id: Some(format!("msg_seed_{n}_{minutes}")) },
            note: None,
            occurred_at: at + chrono::Duration::minutes(minutes),
        };
        let events = [
            LeadEvent::LeadSubmitted {
                lead_id: id,
                partner_id: partner,
                submitted_by: Submitter::User { id: user },
                details: LeadDetails::new(
                    Some("Grace".into()),
                    format!("Seed {n}"),
                    Some(format!("seed-{n}@example.com")),
                    None,
                    Some(format!("Company {}", n % 997)),
                    None,
                    Default::default(),
                )?,
                channel_conflict: false,
                at,
            },
            LeadEvent::LeadStatusChanged {
                old_status: LeadStatus::New,
                old_crm_status: crm_status(LeadStatus::New).into(),
                change: change(second, 1),
                at: at + chrono::Duration::minutes(1),
            },
            LeadEvent::LeadStatusChanged {
                old_status: second,
                old_crm_status: crm_status(second).into(),
                change: change(third, 2),
                at: at + chrono::Duration::minutes(2),
            },
        ];
        for (sequence, event) in events.iter().enumerate() {
            let payload = serde_json::to_string(event)?.replace('\\', "\\\\");
            let event_type = cqrs_es::DomainEvent::event_type(event);
            let recorded = (at + chrono::Duration::minutes(sequence as i64)).to_rfc3339();
            writeln!(
                chunk,
                "Lead\t{id}\t{}\t{event_type}\t1\t{payload}\t{metadata}\t{recorded}",
                sequence + 1
            )?;
        }
        if chunk.len() > (4 << 20) - 4096 {
            copy.send(chunk.as_bytes()).await?;
            chunk.clear();
            progress.set_position(n as u64 * 3);
        }
    }
    copy.send(chunk.as_bytes()).await?;
    let rows = copy.finish().await?;
    sqlx::query(
        "UPDATE subscriber_checkpoints SET tx_id = pg_current_xact_id(), \
         global_position = (SELECT global_position FROM events WHERE tx_id = pg_current_xact_id() \
                            ORDER BY global_position DESC LIMIT 1) \
         WHERE subscriber IN ('crm_outbox', 'invitation_emails', 'lead_notifications')",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // What autovacuum would soon do after a bulk load: without statistics the planner takes the
    // log for a few thousand rows and sorts it instead of following its index.
    sqlx::query("ANALYZE events").execute(&stack.pool).await?;
    progress.finish_and_clear();
    Ok(rows)
}

fn crm_status(status: LeadStatus) -> &'static str {
    match status {
        LeadStatus::New => "Not Contacted",
        LeadStatus::Contacted => "Contacted",
        LeadStatus::Qualified => "Pre-Qualified",
        LeadStatus::Converted => "Converted",
        LeadStatus::Lost => "Lost Lead",
    }
}

/// Rebuilds every read model from the whole log, as `soho-portal replay` does. Returns the
/// events in the log and the seconds it took; the baseline is one plain read of the log in
/// the readers' order.
pub async fn replay(stack: &Stack) -> anyhow::Result<Row> {
    let events = soho_projections::replay::log_length(&stack.pool).await?;
    let started = Instant::now();
    let projections = soho_projections::all();
    let projections: Vec<&dyn soho_projections::Projection> =
        projections.iter().map(|p| p.as_ref()).collect();
    soho_projections::replay::rebuild_all(&stack.pool, &projections, &|_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let scan = Instant::now();
    sqlx::query("SELECT count(*), sum(length(payload::text)) FROM (SELECT payload FROM events ORDER BY tx_id, global_position) AS log")
        .execute(&stack.pool)
        .await?;
    let scan_rate = events as f64 / scan.elapsed().as_secs_f64();
    let rate = events as f64 / seconds;
    Ok(Row {
        scenario: "replay of all read models".into(),
        servers: 0,
        clients: 1,
        operations: events as usize,
        throughput: rate,
        unit: "events/s",
        target: "≥ 150,000 events/s (≥ 0.3 × one read of the log)",
        notes: format!("{events} events in {seconds:.1} s"),
        ..Default::default()
    }
    .against("one read of the log, events/s", scan_rate, rate))
}

/// The filters of a partner's lead list: a status, and every other page a month of it.
fn filter(n: u64) -> LeadFilter {
    let status = LeadStatus::ALL[n as usize % LeadStatus::ALL.len()];
    let created_after = (n % 2 == 1).then(|| Utc::now() - chrono::Duration::days(30));
    LeadFilter { status: Some(status), created_after, ..Default::default() }
}

/// A search for a person by name: "seed 12345" finds that lead and the ten "seed 12345x".
fn search(n: u64) -> LeadFilter {
    LeadFilter { q: Some(format!("seed {}", 10_000 + (n * 7_919) % 90_000)), ..Default::default() }
}

fn query_string(filter: &LeadFilter) -> String {
    let mut query = String::from("limit=50");
    if let Some(status) = filter.status {
        query.push_str(&format!("&status={}", status.as_str()));
    }
    if let Some(after) = filter.created_after {
        query.push_str(&format!("&createdAfter={}", after.format("%Y-%m-%dT%H:%M:%SZ")));
    }
    if let Some(q) = &filter.q {
        query.push_str(&format!("&q={}", q.replace(' ', "+")));
    }
    query
}

/// `GET /leads` (page of 50, filtered) over HTTP, then the same query straight on the pool.
pub async fn list(
    stack: &Stack,
    clients: usize,
    duration: Duration,
    searching: bool,
) -> anyhow::Result<Row> {
    let filter = if searching { search } else { filter };
    let ours = get_loop(stack, clients, duration, move |client, n| {
        format!("/leads?{}", query_string(&filter(client as u64 * 7919 + n)))
    })
    .await?;
    let (pool, scope) = (stack.pool.clone(), LeadScope::Partner(PartnerId(stack.partner)));
    let raw = closed_loop(clients, duration, move |client, n| {
        let pool = pool.clone();
        async move {
            let filter = filter(client as u64 * 7919 + n);
            let (page, _) = queries::page(&pool, scope, &filter, None, 50).await?;
            serde_json::to_vec(&page)?;
            Ok(())
        }
    })
    .await?;
    let (scenario, target) = if searching {
        ("GET /leads, page of 50, searching a name (q)", "(no target)")
    } else {
        ("GET /leads, page of 50 with filters", "p99 ≤ 10 ms; ≤ 2 × raw SQL")
    };
    Ok(read_row(scenario, clients, &ours, &raw, target))
}

/// `GET /dashboard/stats` over HTTP, then its query straight on the pool.
pub async fn stats(stack: &Stack, clients: usize, duration: Duration) -> anyhow::Result<Row> {
    let ours = get_loop(stack, clients, duration, |_, _| "/dashboard/stats".to_string()).await?;
    let (pool, scope) = (stack.pool.clone(), LeadScope::Partner(PartnerId(stack.partner)));
    let raw = closed_loop(clients, duration, move |_, _| {
        let pool = pool.clone();
        async move {
            serde_json::to_vec(&queries::stats(&pool, scope).await?)?;
            Ok(())
        }
    })
    .await?;
    Ok(read_row("GET /dashboard/stats", clients, &ours, &raw, "p99 ≤ 5 ms"))
}

/// `clients` clients sending the admin's `GET path(client, n)` to the first server.
async fn get_loop(
    stack: &Stack,
    clients: usize,
    duration: Duration,
    path: impl Fn(usize, u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<Sample> {
    let (http, jwt, base) = (stack.http.clone(), stack.jwt.clone(), stack.servers[0].base.clone());
    closed_loop(clients, duration, move |client, n| {
        let (http, jwt) = (http.clone(), jwt.clone());
        let url = format!("{base}{}", path(client, n));
        async move {
            let response = http.get(&url).bearer_auth(&jwt).send().await?;
            anyhow::ensure!(response.status().is_success(), "{url} answered {}", response.status());
            response.bytes().await?;
            Ok(())
        }
    })
    .await
}

fn read_row(
    scenario: &str,
    clients: usize,
    ours: &Sample,
    raw: &Sample,
    target: &'static str,
) -> Row {
    let mut row = Row::from_sample(scenario, clients, "req/s", ours).against(
        "raw SQL p99 ms",
        raw.percentile(0.99),
        ours.percentile(0.99),
    );
    row.target = target;
    row.notes = format!("raw SQL: {:.0} queries/s, p50 {:.1} ms", raw.rate(), raw.percentile(0.5));
    row
}

/// The seeded leads, for the notes.
pub async fn lead_count(stack: &Stack) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM leads").fetch_one(&stack.pool).await?)
}
