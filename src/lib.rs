//! Soho Partner Portal: the server as a library, so that `main.rs`, the tests and the other
//! binaries share it.

pub mod app;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crm;
pub mod db;
pub mod email;
pub mod http;
pub mod leads;
pub mod live;
pub mod metrics;
pub mod onboarding;
pub mod portal;
pub mod simulator;
pub mod telemetry;

/// reqwest is built without a default TLS provider (Cargo.toml says why); this installs ring
/// as the process-wide one. Call it before building any HTTP client; later calls do nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
