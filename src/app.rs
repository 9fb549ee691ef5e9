//! The running portal: database, migrations, the read-model subscribers, and the HTTP server,
//! started in that order and stopped in reverse on SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use soho_projections::{CatchUpReader, Checkpoints};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::db::embedded::Leftover;
use crate::db::{self, Database};
use crate::http::{self, AppState};

/// Runs the portal until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let database = Database::open(&settings, Leftover::TakeOver).await?;
    let result = run(settings, &database).await;
    database.close().await;
    result
}

async fn run(settings: Settings, database: &Database) -> anyhow::Result<()> {
    let pool = database.pool.clone();
    db::migrate(&pool).await?;
    let checkpoints = Checkpoints::default();
    let reader =
        Arc::new(CatchUpReader::new(pool.clone(), soho_projections::all(), checkpoints.clone()));
    reader.register().await.context("registering the read-model subscribers")?;
    let subscribers = reader.spawn();

    let listener = TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {} (LISTEN_ADDR)", settings.listen_addr))?;
    let address = listener.local_addr()?;
    let open_at = if settings.listen_addr.port() == 0 {
        format!("http://{address}")
    } else {
        settings.public_base_url.clone()
    };
    tracing::info!(%address, "listening");
    // Scripts and tests read this line to find the portal.
    println!("Soho Partner Portal is running: open {open_at}");

    let state = AppState { pool, settings: Arc::new(settings), checkpoints };
    let served =
        axum::serve(listener, http::router(state)).with_graceful_shutdown(shutdown_signal()).await;
    for task in subscribers {
        task.abort();
    }
    served.context("the HTTP server failed")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        tracing::error!("cannot watch for shutdown signals");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
