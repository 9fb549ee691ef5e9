//! The Soho CRM simulator: the CRM side of CONTRACT.md as a real HTTP server, for the dev mode
//! and the tests. It issues OAuth tokens that expire, keeps leads (upsert idempotent on
//! `Portal_Lead_Id`), lets an operator create and approve partners and change lead statuses
//! (each sending a signed webhook to the portal, retried on the Standard Webhooks schedule), and
//! injects faults set at run time: latency, a share of 500s, 429 bursts, timeouts, dropped
//! connections, an outage, expired tokens, refused records. Like a real org it takes up to 100
//! records a call and meters calls at once and credits a day (`Limits`).

mod api;
mod operator;
mod records;
mod state;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

pub use state::{Faults, Limits, SimLead, SimPartner, Simulator};

/// reqwest is built without a TLS provider (the workspace's Cargo.toml says why): this installs
/// ring, unless the process installed one already (which serves as well).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where the simulator sends its webhooks, and with which key.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The portal's base URL, e.g. `http://127.0.0.1:8080`.
    pub portal_url: String,
    /// The `whsec_...` secret the portal checks webhooks with.
    pub webhook_secret: String,
    /// How long issued access tokens live.
    pub token_ttl_seconds: u64,
    /// Multiplies the webhook retry schedule (1.0 is Standard Webhooks' own: 5 s, 5 min, ...).
    pub retry_scale: f64,
    /// Seeds the fault dice, so that a run's faults can be asked for again.
    pub seed: u64,
}

pub fn router(sim: Arc<Simulator>) -> Router {
    Router::new().merge(api::routes()).merge(operator::routes()).with_state(sim)
}

/// A simulator serving on `address` (port 0 for any), until the returned task is aborted.
pub async fn start(
    config: SimConfig,
    address: SocketAddr,
) -> std::io::Result<(SocketAddr, Arc<Simulator>, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let sim = Arc::new(Simulator::new(config));
    let app = router(Arc::clone(&sim));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the Soho CRM simulator stopped");
        }
    });
    Ok((address, sim, task))
}
