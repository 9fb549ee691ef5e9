//! The running portal: database, migrations, the subscribers (read models and side effects),
//! and the HTTP server, started in that order and stopped in reverse.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use soho_projections::{CatchUpReader, Checkpoints, Projection};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::Keys;
use crate::config::Settings;
use crate::db::embedded::Leftover;
use crate::db::{self, Database};
use crate::email::sender::InvitationSender;
use crate::email::Mailer;
use crate::http;
use crate::portal::Portal;

/// Runs the portal until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let database = Database::open(&settings, Leftover::TakeOver).await?;
    let result = async {
        db::migrate(&database.pool).await?;
        let running = start(settings, database.pool.clone()).await?;
        // Scripts and tests read this line to find the portal.
        println!("Soho Partner Portal is running: open {}", running.open_at);
        shutdown_signal().await;
        running.stop().await
    }
    .await;
    database.close().await;
    result
}

/// A portal serving HTTP, with its background subscribers.
pub struct RunningPortal {
    pub address: SocketAddr,
    /// Where people open it.
    pub open_at: String,
    pub portal: Arc<Portal>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    subscribers: Vec<JoinHandle<()>>,
}

/// Starts the portal on a migrated database: subscribers, then the HTTP server.
pub async fn start(settings: Settings, pool: PgPool) -> anyhow::Result<RunningPortal> {
    let keys = Keys::load(&settings)?;
    let mailer = Mailer::from_settings(&settings, pool.clone())?;
    let listener = TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {} (LISTEN_ADDR)", settings.listen_addr))?;
    let address = listener.local_addr()?;
    let open_at = if settings.listen_addr.port() == 0 {
        format!("http://{address}")
    } else {
        settings.public_base_url.clone()
    };
    let checkpoints = Checkpoints::default();
    let portal = Arc::new(Portal::new(pool.clone(), settings, keys, checkpoints.clone()));

    let mut subscribers: Vec<Arc<dyn Projection>> = soho_projections::all();
    subscribers.push(Arc::new(InvitationSender { portal: Arc::clone(&portal), mailer }));
    let reader = Arc::new(CatchUpReader::new(pool, subscribers, checkpoints));
    reader.register().await.context("registering the subscribers")?;
    let subscribers = reader.spawn();

    let (shutdown, stopped) = oneshot::channel::<()>();
    let app = http::router(Arc::clone(&portal)).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .await
    });
    tracing::info!(%address, "listening");
    Ok(RunningPortal { address, open_at, portal, shutdown, server, subscribers })
}

impl RunningPortal {
    /// Stops taking requests, lets those in flight finish, then stops the subscribers.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.send(()).ok();
        let served = self.server.await;
        for task in self.subscribers {
            task.abort();
        }
        served?.context("the HTTP server failed")
    }
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
