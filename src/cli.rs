//! The command line: `serve` (the default), `migrate`, `replay`.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use soho_projections::{replay, Projection};

mod audit;

pub use audit::AuditCommand;

use crate::config::Settings;
use crate::db::{self, Database};
use soho_embedded_postgres::Leftover;

#[derive(Parser)]
#[command(
    name = "soho-portal",
    version,
    about = "Soho Partner Portal: the partners' side of Soho CRM"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the portal (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (what `/openapi.json` serves); the web client is typed from it.
    Openapi,
    /// Exit 0 if the portal at LISTEN_ADDR answers /healthz (for container health checks).
    Healthcheck,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The Soho CRM sync: its backlog, and retrying failed calls.
    Crm {
        #[command(subcommand)]
        command: CrmCommand,
    },
    /// Read the log as an auditor does.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Rebuild read models from the event log.
    Replay {
        /// Read models to rebuild (all when none is named).
        names: Vec<String>,
        /// Rebuild in a transaction that is rolled back and report any difference from the live
        /// tables, instead of replacing them. Exits non-zero on a difference.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an auditor (read-only access to every lead's history) and print a one-time
    /// registration link for them.
    CreateAuditor {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum CrmCommand {
    /// Pending and failed calls, the oldest pending call's age, the last error.
    Status,
    /// Retry the failed calls of one lead, or all of them.
    Retry {
        /// The lead whose failed calls to retry.
        lead: Option<soho_aggregates::LeadId>,
        #[arg(long, conflicts_with = "lead")]
        all_failed: bool,
    },
}

pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::app::serve(settings).await,
        Command::Healthcheck => {
            let mut address = settings.listen_addr;
            if address.ip().is_unspecified() {
                address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let client =
                reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()?;
            let response = client.get(format!("http://{address}/healthz")).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "/healthz answered {}",
                response.status()
            );
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify { file: Some(file) } } => {
            audit::verify_file(&file)
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&crate::http::openapi::document())?);
            Ok(())
        }
        command => {
            let database = Database::open(&settings, Leftover::Share).await?;
            let result = run_tool(command, settings, &database).await;
            database.close().await;
            result
        }
    }
}

async fn run_tool(command: Command, settings: Settings, database: &Database) -> anyhow::Result<()> {
    let pool = &database.pool;
    db::migrate(pool).await?;
    match command {
        Command::Serve | Command::Openapi | Command::Healthcheck => unreachable!("handled by run"),
        Command::Migrate => {
            // Events written before the hash chain existed are chained here, not at first start.
            let sealed = audit::seal(pool).await?;
            println!("migrations applied; log sealed up to chain position {sealed}");
            Ok(())
        }
        Command::Audit { command } => audit::run(pool, command).await,
        Command::Crm { command: CrmCommand::Status } => {
            let backlog = crate::crm::outbox::backlog(pool).await?;
            let usage = crate::crm::limits::usage(
                pool,
                settings.soho_concurrency,
                settings.soho_daily_credits,
            )
            .await?;
            println!("pending calls:        {}", backlog.pending);
            println!("failed calls:         {}", backlog.failed);
            println!("oldest pending (s):   {:.1}", backlog.oldest_pending_seconds);
            println!("last error:           {}", backlog.last_error.as_deref().unwrap_or("-"));
            println!("calls in flight:      {} of {}", usage.calls_in_flight, usage.concurrency);
            println!("credits used (24 h):  {} of {}", usage.credits_used, usage.daily_credits);
            println!("records per call:     {:.1}", usage.records_per_call);
            match usage.hours_to_budget {
                Some(hours) => {
                    println!("budget lasts:         {hours:.1} h at the last 15 min's rate")
                }
                None => println!("budget lasts:         - (no calls in the last 15 min)"),
            }
            match &usage.paused {
                Some((until, reason)) => {
                    println!("sync:                 paused until {until}: {reason}")
                }
                None => println!("sync:                 running"),
            }
            Ok(())
        }
        Command::Crm { command: CrmCommand::Retry { lead, all_failed } } => {
            if lead.is_none() && !all_failed {
                bail!("name a lead id, or --all-failed");
            }
            let retried = crate::crm::outbox::retry_failed(pool, lead).await?;
            println!("{retried} failed call(s) will be retried by the running portal");
            Ok(())
        }
        Command::User { command: UserCommand::CreateAuditor { email, name } } => {
            create_auditor(settings, pool, email, name).await
        }
        Command::Replay { names, check } => {
            let projections = select(&names)?;
            let total = replay::log_length(pool).await?;
            if !check {
                return rebuild(pool, &projections, total).await;
            }
            let mut differences = 0;
            for projection in projections {
                let bar = ProgressBar::new(total).with_style(
                    ProgressStyle::with_template(
                        "{prefix:>10} [{bar:30}] {pos}/{len} events {per_sec}",
                    )
                    .context("progress bar template")?
                    .progress_chars("=> "),
                );
                bar.set_prefix(projection.name());
                let progress = |n: u64| bar.set_position(n);
                let found = replay::check(pool, projection.as_ref(), &progress).await?;
                bar.finish_and_clear();
                if found.is_empty() {
                    println!("{}: the rebuild equals the live tables", projection.name());
                }
                for difference in found {
                    differences += 1;
                    println!(
                        "{}: table {} differs from its rebuild in {} row(s)",
                        projection.name(),
                        difference.table,
                        difference.rows
                    );
                }
            }
            if differences > 0 {
                bail!("{differences} read-model table(s) differ from their rebuild");
            }
            Ok(())
        }
    }
}

/// Invites an auditor and prints the link (auditors get no email: the operator hands it over).
async fn create_auditor(
    settings: Settings,
    pool: &sqlx::PgPool,
    email: String,
    name: Option<String>,
) -> anyhow::Result<()> {
    use crate::onboarding::invitations::{invite, Invitee};
    let mut errors = vec![];
    let email = crate::fields::email("--email", Some(email), &mut errors);
    let name = crate::fields::optional_text("--name", name, 100, &mut errors);
    if let Some(error) = errors.first() {
        bail!("{} {}", error.field, error.message);
    }
    let keys = crate::auth::Keys::load(&settings)?;
    let checkpoints = soho_projections::Checkpoints::default();
    let portal = crate::portal::Portal::new(pool.clone(), settings, keys, checkpoints.clone());
    // The command waits for the read models; run them here, as no server may be running.
    let reader = soho_projections::CatchUpReader::new(
        pool.clone(),
        soho_projections::followed(),
        checkpoints,
    );
    reader.register().await?;
    let reader = Arc::new(reader);
    let tasks = Arc::clone(&reader).spawn();
    let invitee = Invitee {
        user_id: soho_aggregates::UserId::new(),
        partner_id: None,
        email: email.clone(),
        name,
        role: soho_aggregates::Role::Auditor,
    };
    let context = crate::commands::CommandContext::new(soho_aggregates::Actor::system());
    let invited = invite(&portal, invitee, &context).await;
    for task in tasks {
        task.abort();
    }
    let invitation = invited.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("Auditor {email} created. One-time registration link (valid 72 h):");
    println!("{}", portal.registration_link(invitation.invitation_id));
    Ok(())
}

/// Rebuilds the read models together, in one pass over the log.
async fn rebuild(
    pool: &sqlx::PgPool,
    projections: &[Arc<dyn Projection>],
    total: u64,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("rebuilding [{bar:30}] {pos}/{len} events {per_sec}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    let progress = |n: u64| bar.set_position(n);
    let started = std::time::Instant::now();
    let projections: Vec<&dyn Projection> = projections.iter().map(|p| p.as_ref()).collect();
    let rebuilt = replay::rebuild_all(pool, &projections, &progress).await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    println!(
        "{}: rebuilt from {} events in {:.2} s ({:.0} events/s)",
        names.join(", "),
        rebuilt.events,
        seconds,
        rebuilt.events as f64 / seconds.max(1e-9)
    );
    Ok(())
}

fn select(names: &[String]) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    let all = soho_projections::all();
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            all.iter().find(|p| p.name() == name).cloned().with_context(|| {
                let known: Vec<_> = all.iter().map(|p| p.name()).collect();
                format!("no read model named {name:?}; known: {}", known.join(", "))
            })
        })
        .collect()
}
