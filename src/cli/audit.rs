//! `soho-portal audit ...`: a lead's events and past state, checking the hash chain (the whole
//! log, or an export offline), and exporting a lead for such a check.

use anyhow::{bail, Context};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use soho_aggregates::LeadId;
use soho_projections::{replay, Checkpoints};
use sqlx::PgPool;

use crate::audit::{self, sealer, verify};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print every event of a lead, in order, with who caused it; with --at, also the lead as it
    /// was at that instant.
    Lead {
        id: LeadId,
        /// An RFC 3339 instant, e.g. 2026-11-24T12:00:00Z.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Check the whole log against its hash chain and name the first broken position; with
    /// --file, check an export offline instead (no database needed). Exits non-zero if broken.
    Verify {
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Write a lead's events with their hashes as JSON lines, for `audit verify --file`.
    Export {
        #[arg(long)]
        lead: LeadId,
    },
}

pub async fn run(pool: &PgPool, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Lead { id, at } => lead(pool, id, at).await,
        AuditCommand::Verify { file: Some(file) } => verify_file(&file),
        AuditCommand::Verify { file: None } => verify_log(pool).await,
        AuditCommand::Export { lead } => {
            seal(pool).await?;
            let lines = audit::export_lead(pool, &Checkpoints::default(), lead).await?;
            if lines.is_empty() {
                bail!("no lead {lead} in the log");
            }
            print!("{lines}");
            Ok(())
        }
    }
}

/// Seals what no running portal has sealed yet; returns the chain's length.
pub async fn seal(pool: &PgPool) -> anyhow::Result<i64> {
    sealer::seal_all(pool).await.context("sealing the log")
}

async fn verify_log(pool: &PgPool) -> anyhow::Result<()> {
    let total = replay::log_length(pool).await?;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("verifying [{bar:30}] {pos}/{len} events {per_sec}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let verdict = verify::verify_log(pool, &|n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    report(&verdict)
}

pub fn verify_file(file: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    report(&verify::verify_export(&text))
}

fn report(verdict: &verify::Verdict) -> anyhow::Result<()> {
    match &verdict.first_broken {
        None => {
            println!("ok: {} events verified, head {}", verdict.events, verdict.head);
            if verdict.unsealed > 0 {
                println!("{} newer events are not sealed yet", verdict.unsealed);
            }
            Ok(())
        }
        Some(broken) => {
            println!("BROKEN at position {}: {}", broken.position, broken.reason);
            println!("{} events verified before it", verdict.events);
            bail!("the log does not match its hash chain")
        }
    }
}

async fn lead(
    pool: &PgPool,
    id: LeadId,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<()> {
    seal(pool).await?;
    let events = audit::lead_events(pool, &Checkpoints::default(), id).await?;
    if events.is_empty() {
        bail!("no lead {id} in the log");
    }
    println!("Lead {id}: {} event(s)", events.len());
    for event in &events {
        let meta = &event.metadata;
        let who = match (meta["actorType"].as_str(), meta["actorId"].as_str()) {
            (Some(kind), Some(id)) => format!("{kind} {id}"),
            (Some(kind), None) => kind.to_string(),
            _ => "unknown".to_string(),
        };
        let webhook =
            meta["webhookId"].as_str().map(|w| format!(" webhook {w}")).unwrap_or_default();
        println!(
            "#{:<3} {}  {:<28} by {who}{webhook}\n      {}\n      hash {}",
            event.sequence,
            event.recorded_at.to_rfc3339(),
            event.event_type,
            event.payload,
            event.hash
        );
    }
    if let Some(at) = at {
        match audit::lead_state(pool, id, at).await? {
            Some(lead) => {
                println!("State at {}:\n{}", at.to_rfc3339(), serde_json::to_string_pretty(&lead)?)
            }
            None => println!("The lead did not exist yet at {}.", at.to_rfc3339()),
        }
    }
    Ok(())
}
