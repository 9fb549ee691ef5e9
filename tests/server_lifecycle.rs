//! The server on the embedded defaults: starts on an empty data directory, keeps its data across
//! a clean restart, and comes back after being killed with SIGKILL.

mod common;

use common::PortalProcess;
use nix::sys::signal::Signal;
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

async fn healthy(portal: &PortalProcess) {
    let client = common::client();
    for path in ["/healthz", "/readyz"] {
        let response = client.get(format!("{}{path}", portal.base_url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

/// Stops the embedded PostgreSQL left running in `data` when a test ends early (a panic kills
/// the portal with SIGKILL, which leaves its cluster behind, holding a port and memory).
struct ClusterGuard(std::path::PathBuf);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let Ok(pid_file) = std::fs::read_to_string(self.0.join("pg/postmaster.pid")) else {
            return;
        };
        let Some(pid) = pid_file.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else {
            return;
        };
        // Only if that process is still a PostgreSQL (the file may be stale, its pid reused).
        let is_postgres = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("postgres"));
        if is_postgres {
            // SIGQUIT: immediate shutdown; the postmaster takes its children with it.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGQUIT);
        }
    }
}

fn database(dir: &std::path::Path) -> PgConnectOptions {
    PgConnectOptions::new()
        .socket(dir.join("run"))
        .port(5432)
        .username("postgres")
        .database("portal")
}

async fn events(dir: &std::path::Path) -> i64 {
    let mut conn = database(dir).connect().await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&mut conn).await.unwrap()
}

async fn append_marker(dir: &std::path::Path, id: &str) {
    let mut conn = database(dir).connect().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Marker', $1, 1, 'Marked', '1', '{}', '{}')",
    )
    .bind(id)
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_server_survives_restarts_and_sigkill_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("portal.log");
    let envs = [("DATA_DIR", data.to_str().unwrap())];
    let _cluster = ClusterGuard(data.clone());

    // First start: an empty data directory is initialised.
    let mut portal = PortalProcess::start(&envs, &log).await;
    healthy(&portal).await;
    append_marker(&data, "first").await;
    portal.signal(Signal::SIGTERM);
    assert!(portal.wait().await.success(), "a clean stop exits 0");
    assert!(!data.join("pg/postmaster.pid").exists(), "PostgreSQL stopped with the server");

    // A restart finds its data.
    let mut portal = PortalProcess::start(&envs, &log).await;
    healthy(&portal).await;
    assert_eq!(events(&data).await, 1);
    append_marker(&data, "second").await;

    // Killed without a chance to clean up: PostgreSQL is left behind with its postmaster.pid.
    portal.signal(Signal::SIGKILL);
    portal.wait().await;
    assert!(data.join("pg/postmaster.pid").exists());

    let mut portal = PortalProcess::start(&envs, &log).await;
    healthy(&portal).await;
    assert_eq!(events(&data).await, 2, "nothing committed was lost");
    portal.signal(Signal::SIGINT);
    assert!(portal.wait().await.success());
    assert!(!data.join("pg/postmaster.pid").exists());
}

#[tokio::test]
async fn a_stale_postmaster_pid_does_not_stop_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("portal.log");
    let envs = [("DATA_DIR", data.to_str().unwrap())];
    let _cluster = ClusterGuard(data.clone());
    let mut portal = PortalProcess::start(&envs, &log).await;
    portal.signal(Signal::SIGTERM);
    portal.wait().await;
    // A crash of the whole machine leaves a postmaster.pid naming a process that is gone.
    std::fs::write(data.join("pg/postmaster.pid"), "999999\n").unwrap();
    let mut portal = PortalProcess::start(&envs, &log).await;
    healthy(&portal).await;
    portal.signal(Signal::SIGTERM);
    assert!(portal.wait().await.success());
}

#[tokio::test]
async fn a_malformed_setting_stops_start_up_naming_it() {
    let output =
        common::portal_command(&[]).env("LISTEN_ADDR", "not-an-address").output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LISTEN_ADDR"), "{stderr}");
}
