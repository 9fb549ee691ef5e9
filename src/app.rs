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

use secrecy::ExposeSecret;

use crate::auth::Keys;
use crate::config::Settings;
use crate::crm;
use crate::crm::outbox::CrmOutbox;
use crate::crm::worker::CrmSync;
use crate::db::{self, Database};
use crate::email::sender::InvitationSender;
use crate::email::Mailer;
use crate::http;
use crate::portal::Portal;
use soho_crm_sim::{SimConfig, Simulator};
use soho_embedded_postgres::Leftover;

/// Runs the portal until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let database = Database::open(&settings, Leftover::TakeOver).await?;
    let result = async {
        db::migrate(&database.pool).await?;
        let running = start(settings, database.pool.clone()).await?;
        if let Some((address, _)) = &running.simulator {
            println!("Soho CRM simulator (in-process): open http://{address}/sim");
        }
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
    /// The in-process Soho CRM simulator, when no `SOHO_API_BASE` is set.
    pub simulator: Option<(SocketAddr, Arc<Simulator>)>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    subscribers: Vec<JoinHandle<()>>,
}

/// Starts the portal on a migrated database: subscribers, then the HTTP server.
pub async fn start(settings: Settings, pool: PgPool) -> anyhow::Result<RunningPortal> {
    settings.check_for_serving()?;
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
    let mut settings = settings;
    // Listening on any free port with no PUBLIC_BASE_URL: links must name the port we got.
    if settings.public_base_url.ends_with(":0") {
        settings.public_base_url = open_at.clone();
    }
    let mut background = Vec::new();
    // Only in dev mode: `check_for_serving` refuses to serve elsewhere without SOHO_API_BASE.
    let simulator = match settings.soho_api_base {
        Some(_) => None,
        None => {
            let (address, sim, task) = start_simulator(&settings, &keys, address).await?;
            background.push(task);
            Some((address, sim))
        }
    };
    let crm = Arc::new(crm::client(
        &settings,
        simulator.as_ref().map(|(a, _)| format!("http://{a}")).as_deref(),
    ));
    let checkpoints = Checkpoints::default();
    retire_inline_subscribers(&pool, &checkpoints).await?;
    let mut portal = Portal::new(pool.clone(), settings, keys, checkpoints.clone());
    portal.simulator_url = simulator.as_ref().map(|(address, _)| format!("http://{address}/sim"));
    let portal = Arc::new(portal);

    let mut subscribers: Vec<Arc<dyn Projection>> = soho_projections::followed();
    subscribers.push(Arc::new(crate::audit::sealer::Sealer));
    subscribers.push(Arc::new(InvitationSender { portal: Arc::clone(&portal), mailer }));
    let notifier = Mailer::from_settings(&portal.settings, portal.pool.clone())?;
    subscribers.push(Arc::new(crate::notifications::sender::LeadNotifier {
        portal: Arc::clone(&portal),
        mailer: notifier,
    }));
    let reader = Arc::new(CatchUpReader::new(pool, subscribers, checkpoints));
    reader.register().await.context("registering the subscribers")?;
    background.extend(reader.spawn());
    background.push(portal.live.spawn(portal.pool.clone()));
    background.extend(Arc::new(CrmSync::new(Arc::clone(&portal), crm)).spawn());
    background.push(crate::outbound::fanout::spawn(Arc::clone(&portal)));
    background.push(crate::outbound::delivery::spawn(Arc::clone(&portal)));
    let digests = Mailer::from_settings(&portal.settings, portal.pool.clone())?;
    background.push(crate::notifications::digest::spawn(Arc::clone(&portal), digests));
    let notices = Mailer::from_settings(&portal.settings, portal.pool.clone())?;
    background.push(crate::outbound::notice::spawn(Arc::clone(&portal), notices));
    let subscribers = background;

    let (shutdown, stopped) = oneshot::channel::<()>();
    let app = http::router(http::AppState(Arc::clone(&portal)));
    let limits = http::server::ConnectionLimits {
        header_timeout: portal.settings.http_header_timeout,
        max_connections: portal.settings.http_max_connections,
    };
    let server = tokio::spawn(http::server::serve(listener, app, limits, async {
        stopped.await.ok();
    }));
    tracing::info!(%address, "listening");
    Ok(RunningPortal { address, open_at, portal, simulator, shutdown, server, subscribers })
}

/// The read models the lead writer now writes with its events were once written by catch-up
/// subscribers. Whatever those had not applied yet (events of an earlier version of the portal)
/// is applied now, once, and their checkpoints are retired, before any writer runs.
async fn retire_inline_subscribers(pool: &PgPool, checkpoints: &Checkpoints) -> anyhow::Result<()> {
    let inline: Vec<Arc<dyn Projection>> = soho_projections::all()
        .into_iter()
        .filter(|p| p.written_inline())
        .chain([Arc::new(CrmOutbox) as Arc<dyn Projection>])
        .collect();
    let names: Vec<&'static str> = inline.iter().map(|p| p.name()).collect();
    let catch_up = CatchUpReader::new(pool.clone(), inline, checkpoints.clone());
    catch_up.register().await.context("registering the inline read models")?;
    catch_up.catch_up().await.context("catching up the inline read models")?;
    soho_projections::reader::retire(pool, &names).await.context("retiring their checkpoints")?;
    checkpoints.refresh(pool).await?;
    Ok(())
}

/// The Soho CRM simulator, in this process, sending its webhooks to this portal.
async fn start_simulator(
    settings: &Settings,
    keys: &Keys,
    portal_address: SocketAddr,
) -> anyhow::Result<(SocketAddr, Arc<Simulator>, JoinHandle<()>)> {
    let config = SimConfig {
        portal_url: format!("http://{portal_address}"),
        webhook_secret: keys
            .webhook_secret()
            .map(|s| s.expose_secret().to_string())
            .unwrap_or_default(),
        token_ttl_seconds: 3600,
        retry_scale: 1.0,
        seed: rand::random(),
    };
    // On loopback whatever the portal listens on (its operator API is open and signs webhooks
    // with the portal's secret), next to the portal's port by default, so the address is the
    // same every time in dev.
    let loopback = std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST);
    let wanted = settings.simulator_listen_addr.unwrap_or_else(|| {
        let port = portal_address.port();
        SocketAddr::new(loopback, if port == 0 || port == u16::MAX { 0 } else { port + 1 })
    });
    let started = match soho_crm_sim::start(config.clone(), wanted).await {
        Ok(started) => started,
        Err(_) => soho_crm_sim::start(config, SocketAddr::new(loopback, 0)).await?,
    };
    Ok(started)
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
