//! Soho Partner Portal: the server as a library, so that `main.rs`, the tests and the other
//! binaries share it.

pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crm;
pub mod db;
pub mod email;
pub mod fields;
pub mod http;
#[cfg(test)]
mod layers;
pub mod leads;
pub mod live;
pub mod metrics;
pub mod notifications;
pub mod onboarding;
pub mod outbound;
pub mod portal;
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

/// Makes the allocator hand large blocks (a password hash's 19 MiB) back to the system when they
/// are freed. glibc raises its mmap threshold to the largest block freed so far, after which such
/// blocks come from per-thread arenas and stay there: with hashes running on many blocking
/// threads over time, the process kept hundreds of MiB it no longer used. A fixed threshold
/// turns that adjustment off. Call it first thing in `main`, before other threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
