//! What every scenario runs against: a fresh embedded PostgreSQL with its durable defaults
//! (`fsync` and `synchronous_commit` on), the Soho CRM simulator (in this process), and portal
//! servers as child processes of the release or debug build next to this binary, so their memory
//! is their own and several can share the database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use soho_crm_sim::SimConfig;
use soho_embedded_postgres::{self as embedded, EmbeddedPostgres, Leftover};
use soho_portal::config::Settings;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";
const JWT_SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

/// One portal server process.
pub struct Server {
    pub base: String,
    child: Child,
}

impl Server {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resets the kernel's peak-resident counter, so the next reading is this scenario's.
    pub fn reset_peak(&self) {
        if let Some(pid) = self.pid() {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }

    /// Peak resident memory since the last reset, in MiB.
    pub fn peak_mib(&self) -> f64 {
        let Some(pid) = self.pid() else { return 0.0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub cluster: EmbeddedPostgres,
    pub pool: sqlx::PgPool,
    pub servers: Vec<Server>,
    /// Ports picked up front, so the simulator knows where server 1 will listen.
    ports: Vec<u16>,
    simulator: JoinHandle<()>,
    sim_url: String,
    pub http: reqwest::Client,
    pub jwt: String,
    pub partner: uuid::Uuid,
    pub user: uuid::Uuid,
}

impl Stack {
    /// The database, the simulator and one server, with one approved partner whose admin has
    /// registered (its session in `jwt`).
    pub async fn start(max_servers: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut settings = vec![("shared_preload_libraries", "pg_stat_statements")];
        // For a profile: the plans of statements slower than this many ms, as they ran, are
        // copied to target/bench/postgres.log when the benchmark ends.
        let explain = std::env::var("SOHO_BENCH_EXPLAIN_MS").ok();
        if let Some(ms) = &explain {
            settings = vec![
                ("shared_preload_libraries", "pg_stat_statements,auto_explain"),
                ("auto_explain.log_min_duration", ms.as_str()),
                ("auto_explain.log_analyze", "on"),
                ("auto_explain.log_buffers", "on"),
                ("auto_explain.log_nested_statements", "on"),
            ];
        }
        let cluster =
            EmbeddedPostgres::start_with(dir.path(), Leftover::TakeOver, &settings).await?;
        let pool = soho_portal::db::pool(cluster.connect_options(embedded::DATABASE)).await?;
        soho_portal::db::migrate(&pool).await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;
        let mut ports = Vec::new();
        for _ in 0..max_servers.max(1) {
            ports.push(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
        }
        let config = SimConfig {
            portal_url: format!("http://127.0.0.1:{}", ports[0]),
            webhook_secret: SECRET.into(),
            token_ttl_seconds: 3600,
            retry_scale: 1.0,
            seed: rand::random(),
        };
        let (sim_address, _, simulator) =
            soho_crm_sim::start(config, "127.0.0.1:0".parse()?).await?;
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        let mut stack = Self {
            dir,
            cluster,
            pool,
            servers: Vec::new(),
            ports,
            simulator,
            sim_url: format!("http://{sim_address}"),
            http,
            jwt: String::new(),
            partner: uuid::Uuid::nil(),
            user: uuid::Uuid::nil(),
        };
        // The CRM as a real org serves it: a second a call, 10 calls at once (issue 14's row).
        stack
            .sim_post("/sim/limits", json!({"concurrency": 10, "dailyCredits": 1_000_000}))
            .await?;
        stack.sim_post("/sim/faults", json!({"latencyMs": 1000})).await?;
        stack.add_server().await?;
        stack.register_partner().await?;
        Ok(stack)
    }

    async fn sim_post(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let response = self.http.post(format!("{}{path}", self.sim_url)).json(&body).send().await?;
        anyhow::ensure!(response.status().is_success(), "{path}: {}", response.status());
        Ok(())
    }

    fn environment(&self, port: u16) -> HashMap<&'static str, String> {
        [
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}")),
            ("DB_URL", self.cluster.url(embedded::DATABASE)),
            ("JWT_SECRET", JWT_SECRET.into()),
            ("SOHO_WEBHOOK_SECRET", SECRET.into()),
            ("SOHO_API_BASE", format!("{}/crm/v8", self.sim_url)),
            ("SOHO_ACCOUNTS_URL", self.sim_url.clone()),
            ("SOHO_CLIENT_ID", "portal-dev".into()),
            ("SOHO_CLIENT_SECRET", "portal-dev".into()),
            ("SOHO_REFRESH_TOKEN", "portal-dev".into()),
            ("SOHO_CONCURRENCY", "10".into()),
            ("SOHO_DAILY_CREDITS", "1000000".into()),
            ("DATA_DIR", self.dir.path().join("data").display().to_string()),
            ("RUST_LOG", "warn".into()),
            // No SMTP: invitations go to the dev mailbox. The load comes from one user.
            ("DEV_MODE", "true".into()),
            ("LEAD_LIMIT_PER_USER", "100000000".into()),
            ("LEAD_LIMIT_PER_PARTNER", "100000000".into()),
        ]
        .into_iter()
        .collect()
    }

    /// Starts the next server (at most the count given to `start`) and waits until it is ready.
    pub async fn add_server(&mut self) -> anyhow::Result<()> {
        let port = *self.ports.get(self.servers.len()).context("no port left for a server")?;
        let binary = std::env::current_exe()?.with_file_name("soho-portal");
        anyhow::ensure!(binary.is_file(), "{} is missing: build the workspace", binary.display());
        let log = std::fs::File::create(self.dir.path().join(format!("server-{port}.log")))?;
        let child = Command::new(&binary)
            .arg("serve")
            .envs(self.environment(port))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            let ready = self.http.get(format!("{base}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                self.servers.push(Server { base, child });
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the server on port {port} did not become ready (see {})",
            self.log_path(port).display()
        )
    }

    fn log_path(&self, port: u16) -> PathBuf {
        self.dir.path().join(format!("server-{port}.log"))
    }

    /// Stops every server but the first `keep` (SIGTERM, then waits).
    pub async fn keep_servers(&mut self, keep: usize) -> anyhow::Result<()> {
        while self.servers.len() > keep {
            let mut server = self.servers.pop().context("a server")?;
            if let Some(pid) = server.pid() {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                )?;
            }
            tokio::time::timeout(Duration::from_secs(30), server.child.wait()).await??;
        }
        Ok(())
    }

    /// Forgets the statements counted so far (see [`Self::statements`]).
    pub async fn reset_statements(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&self.pool).await?;
        Ok(())
    }

    /// Statements run in `database` since the last reset, by every client (BEGIN and COMMIT
    /// count): what a request costs the database, background work included.
    pub async fn statements(&self, database: &str) -> anyhow::Result<i64> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT sum(calls)::bigint FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)",
        )
        .bind(database)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.unwrap_or(0))
    }

    /// The `n` statements of `database` that took the most time since the last reset, printed
    /// to stderr (the profile behind a scenario's figure): total ms, calls, mean ms, query.
    pub async fn print_top_statements(&self, database: &str, n: i64) -> anyhow::Result<()> {
        let rows: Vec<(f64, i64, f64, String)> = sqlx::query_as(
            "SELECT total_exec_time, calls, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) \
             FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) \
             ORDER BY total_exec_time DESC LIMIT $2",
        )
        .bind(database)
        .bind(n)
        .fetch_all(&self.pool)
        .await?;
        for (total, calls, mean, query) in rows {
            eprintln!("   {total:>9.0} ms {calls:>8} calls {mean:>7.2} ms  {query}");
        }
        Ok(())
    }

    /// The base URLs of the first `n` servers, for round-robin.
    pub fn bases(&self, n: usize) -> Vec<String> {
        self.servers.iter().take(n).map(|s| s.base.clone()).collect()
    }

    pub fn reset_peaks(&self) {
        self.servers.iter().for_each(Server::reset_peak);
    }

    /// The highest peak resident memory among the servers, in MiB.
    pub fn peak_mib(&self) -> f64 {
        self.servers.iter().map(Server::peak_mib).fold(0.0, f64::max)
    }

    async fn register_partner(&mut self) -> anyhow::Result<()> {
        let base = self.servers[0].base.clone();
        let partner = json!({"event": "partner.created", "occurredAt": chrono::Utc::now(), "partner": {
            "sohoPartnerId": "bench", "name": "Bench Partner", "email": "bench@example.com", "approved": true}});
        webhook(&self.http, &base, "/webhooks/soho/partner", "msg_bench_partner", &partner).await?;
        let (user, partner, invitation): (uuid::Uuid, uuid::Uuid, uuid::Uuid) = sqlx::query_as(
            "SELECT user_id, partner_id, invitation_id FROM users WHERE email = 'bench@example.com'",
        )
        .fetch_one(&self.pool)
        .await?;
        let environment = self.environment(self.ports[0]);
        let settings = Settings::from_lookup(|k| environment.get(k).cloned())?;
        let token = soho_portal::auth::keys::Keys::load(&settings)?
            .invitation_token(soho_aggregates::InvitationId(invitation));
        let session: Value = self
            .http
            .post(format!("{base}/auth/register"))
            .json(&json!({"token": token, "password": "a benchmark password"}))
            .send()
            .await?
            .json()
            .await?;
        self.jwt = session["accessToken"].as_str().context("a session")?.to_string();
        // The benchmark measures the portal, not a mail relay: with notifications on, every
        // status change of the bench user's leads would be an email into the dev mailbox.
        self.http
            .patch(format!("{base}/me"))
            .bearer_auth(&self.jwt)
            .json(&json!({"notifications": "off"}))
            .send()
            .await?
            .error_for_status()?;
        self.partner = partner;
        self.user = user;
        Ok(())
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.keep_servers(0).await?;
        self.simulator.abort();
        self.pool.close().await;
        self.cluster.stop().await;
        if std::env::var_os("SOHO_BENCH_EXPLAIN_MS").is_some() {
            std::fs::create_dir_all("target/bench")?;
            std::fs::copy(self.dir.path().join("postgres.log"), "target/bench/postgres.log")?;
            eprintln!("slow statements' plans: target/bench/postgres.log");
        }
        Ok(())
    }
}

/// Sends a signed Soho CRM webhook.
pub async fn webhook(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    id: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let body = body.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = standardwebhooks::Webhook::new(SECRET)?.sign(id, timestamp, body.as_bytes())?;
    let response = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "webhook answered {}", response.status());
    Ok(())
}
