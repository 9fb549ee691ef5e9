//! The command line: `serve` (the default), `migrate`, `replay`.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use soho_projections::{replay, Projection};

use crate::config::Settings;
use crate::db::embedded::Leftover;
use crate::db::{self, Database};

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

pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::app::serve(settings).await,
        command => {
            let database = Database::open(&settings, Leftover::Share).await?;
            let result = run_tool(command, &database).await;
            database.close().await;
            result
        }
    }
}

async fn run_tool(command: Command, database: &Database) -> anyhow::Result<()> {
    let pool = &database.pool;
    db::migrate(pool).await?;
    match command {
        Command::Serve => unreachable!("handled by run"),
        Command::Migrate => {
            println!("migrations applied");
            Ok(())
        }
        Command::Replay { names, check } => {
            let projections = select(&names)?;
            let total = replay::log_length(pool).await?;
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
                if check {
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
                } else {
                    let started = std::time::Instant::now();
                    let rebuilt = replay::rebuild(pool, projection.as_ref(), &progress).await?;
                    bar.finish_and_clear();
                    let seconds = started.elapsed().as_secs_f64();
                    println!(
                        "{}: rebuilt from {} events in {:.2} s ({:.0} events/s)",
                        projection.name(),
                        rebuilt.events,
                        seconds,
                        rebuilt.events as f64 / seconds.max(1e-9)
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
