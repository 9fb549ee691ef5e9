//! Shared test harness: one real PostgreSQL for the whole run, a fresh database per test.
//!
//! The cluster is the portal's own embedded one, under `target/test-pg`, started by whichever
//! test binary gets there first (a file lock keeps two from starting it at once) and left running
//! for the others; the test command stops it at the end. `TEST_DATABASE_URL` points the tests at
//! another server instead (a URL of a database whose user may create databases).
#![allow(dead_code)]

pub mod smtp;

use std::path::PathBuf;
use std::str::FromStr;

use soho_embedded_postgres::{EmbeddedPostgres, Leftover};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::OnceCell;

/// The cluster's admin connection, and its URL with `{db}` where the database name goes.
static ADMIN: OnceCell<(PgConnectOptions, String)> = OnceCell::const_new();

pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn admin_options() -> (PgConnectOptions, String) {
    ADMIN
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
                let options =
                    PgConnectOptions::from_str(&url).expect("TEST_DATABASE_URL is a postgres URL");
                let (before, after) =
                    url.split_once('?').map_or((url.as_str(), ""), |(b, a)| (b, a));
                let base = before.rsplit_once('/').map_or(before, |(b, _)| b);
                let query = if after.is_empty() { String::new() } else { format!("?{after}") };
                return (options, format!("{base}/{{db}}{query}"));
            }
            let dir = workspace_dir().join("target/test-pg");
            std::fs::create_dir_all(&dir).expect("create target/test-pg");
            let lock =
                std::fs::File::create(dir.join("start.lock")).expect("create the start lock");
            lock.lock().expect("take the start lock");
            let cluster = EmbeddedPostgres::start(&dir, Leftover::Share)
                .await
                .expect("start the test PostgreSQL");
            let options = cluster.connect_options("postgres");
            let url = cluster.url("{db}");
            cluster.detach();
            drop(lock);
            (options, url)
        })
        .await
        .clone()
}

/// An HTTP client for talking to the portal under test.
pub fn client() -> reqwest::Client {
    soho_portal::install_crypto_provider();
    reqwest::Client::new()
}

/// A new, migrated, empty database for one test, dropped with the returned guard.
pub async fn fresh_database() -> (PgPool, TestDatabase) {
    let database = fresh_database_options().await;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(database.options.clone())
        .await
        .expect("connect");
    soho_portal::db::migrate(&pool).await.expect("migrate");
    (pool, database)
}

/// One test's database: dropped (its connections cut) when this is, so a run does not pile
/// up databases, whether the test passed or panicked.
pub struct TestDatabase {
    pub options: PgConnectOptions,
    /// For child processes.
    pub url: String,
    name: String,
    admin: PgConnectOptions,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own,
        // with a runtime of its own, does the work.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            runtime.expect("a runtime").block_on(async {
                let mut conn = admin.connect().await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop the test database {}: {error}", self.name);
        }
    }
}

/// A new empty database (not migrated), as connection options and a URL for child processes.
pub async fn fresh_database_options() -> TestDatabase {
    let (admin, url) = admin_options().await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin.connect().await.expect("connect to the test cluster");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let options = admin.clone().database(&name);
    TestDatabase { options, url: url.replace("{db}", &name), name, admin }
}

/// The portal binary with `args`, run as a person would from an empty directory (no `.env`
/// leaks in) with nothing from this process's environment but PATH and HOME.
pub fn portal_command(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_soho-portal"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .current_dir(std::env::temp_dir());
    command
}

/// The portal binary running as a child process, as people and scripts run it.
pub struct PortalProcess {
    child: tokio::process::Child,
    pub base_url: String,
}

impl PortalProcess {
    /// Starts `soho-portal serve` on a free port with `envs` (see [`portal_command`]), and waits
    /// for the line saying where it listens.
    pub async fn start(envs: &[(&str, &str)], log: &std::path::Path) -> Self {
        use tokio::io::AsyncBufReadExt;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut command = portal_command(&["serve"]);
        command
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start soho-portal");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let base_url = tokio::time::timeout(std::time::Duration::from_secs(90), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("Soho Partner Portal is running: open ") {
                    return url.trim().to_string();
                }
            }
            panic!("soho-portal exited before listening");
        })
        .await
        .expect("soho-portal listens within 90 s");
        Self { child, base_url }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Sends a correctly signed Soho CRM webhook.
    pub async fn webhook(
        &self,
        path: &str,
        id: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let body = body.to_string();
        let now = chrono::Utc::now().timestamp();
        client()
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", sign(WEBHOOK_SECRET, id, now, &body))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Approves a partner owned by `email` and registers the owner with the link mailed to
    /// `smtp`; returns the owner's access token.
    pub async fn partner_admin(&self, smtp: &smtp::SmtpSink, soho_id: &str, email: &str) -> String {
        let approval = partner_webhook(soho_id, email, true);
        let approved =
            self.webhook("/webhooks/soho/partner", &format!("msg_{soho_id}"), &approval).await;
        assert_eq!(approved.status(), 200);
        let token = smtp.wait_for_mail_to(email, 20).await.token();
        let session: serde_json::Value = client()
            .post(format!("{}/auth/register", self.base_url))
            .json(&serde_json::json!({"token": token, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        session["accessToken"].as_str().unwrap().to_string()
    }

    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.child.wait())
            .await
            .expect("soho-portal exits within 60 s")
            .unwrap()
    }
}

/// Rate limits out of the way, for tests about something else (each limit has its own test).
pub const NO_LIMITS: &[(&str, &str)] = &[
    ("AUTH_RATE_LIMIT_PER_ADDRESS", "100000"),
    ("AUTH_RATE_LIMIT_PER_EMAIL", "100000"),
    ("AUTH_FAILURE_LIMIT_PER_EMAIL", "100000"),
    ("INVITE_LIMIT_PER_ADMIN", "100000"),
    ("INVITE_LIMIT_PER_RECIPIENT", "100000"),
    ("LEAD_LIMIT_PER_USER", "1000000"),
    ("LEAD_LIMIT_PER_PARTNER", "1000000"),
];

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";
/// Base64 of 32 bytes, Standard Webhooks style.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";

/// A portal running in this process on a fresh database, with real SMTP.
pub struct TestPortal {
    pub base_url: String,
    pub pool: PgPool,
    pub db_url: String,
    pub running: Option<soho_portal::app::RunningPortal>,
    pub http: reqwest::Client,
    /// The database this portal made (a second server on it has none), dropped last.
    database: Option<TestDatabase>,
}

impl TestPortal {
    /// Starts on a fresh database with `settings` on top of the test defaults.
    pub async fn start(smtp: &smtp::SmtpSink, settings: &[(&str, &str)]) -> Self {
        let database = fresh_database_options().await;
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .connect_with(database.options.clone())
            .await
            .expect("connect");
        soho_portal::db::migrate(&pool).await.expect("migrate");
        let mut portal = Self::start_on(pool, database.url.clone(), smtp, settings).await;
        portal.database = Some(database);
        portal
    }

    pub async fn start_on(
        pool: PgPool,
        db_url: String,
        smtp: &smtp::SmtpSink,
        settings: &[(&str, &str)],
    ) -> Self {
        let smtp_url = smtp.url();
        let mut vars: std::collections::HashMap<String, String> = [
            ("DB_URL", db_url.as_str()),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("JWT_SECRET", JWT_SECRET),
            ("SOHO_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("SMTP_URL", smtp_url.as_str()),
            // The in-process simulator runs in dev mode only; mail still goes to the SMTP sink.
            ("DEV_MODE", "true"),
        ]
        .into_iter()
        .chain(NO_LIMITS.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in settings {
            vars.insert(k.to_string(), v.to_string());
        }
        let settings = soho_portal::config::Settings::from_lookup(|name| vars.get(name).cloned())
            .expect("settings");
        let running =
            soho_portal::app::start(settings, pool.clone()).await.expect("start the portal");
        Self {
            base_url: format!("http://{}", running.address),
            pool,
            db_url,
            running: Some(running),
            http: client(),
            database: None,
        }
    }

    pub fn portal(&self) -> &soho_portal::portal::Portal {
        &self.running.as_ref().expect("running").portal
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("stop");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a correctly signed Soho CRM webhook.
    pub async fn webhook(
        &self,
        path: &str,
        webhook_id: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let body = body.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        self.webhook_raw(
            path,
            webhook_id,
            timestamp,
            &sign(WEBHOOK_SECRET, webhook_id, timestamp, &body),
            &body,
        )
        .await
    }

    pub async fn webhook_raw(
        &self,
        path: &str,
        webhook_id: &str,
        timestamp: i64,
        signature: &str,
        body: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn patch(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut request = self.http.patch(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Waits until `subscriber` has applied every event in the log now (its effects are done).
    pub async fn settled(&self, subscriber: &str) {
        settled(&self.pool, subscriber).await
    }

    /// Waits until every lead submitted so far is synced with Soho CRM (or refused by it), and
    /// the read models and the live feed show it.
    pub async fn crm_synced(&self) {
        self.settled("crm_outbox").await;
        self.crm_drained().await;
        self.settled("leads").await;
    }

    /// Waits until no Soho CRM call is pending (each one made, and its answer recorded).
    pub async fn crm_drained(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.count("SELECT count(*) FROM crm_outbox WHERE state = 'pending'").await > 0 {
            assert!(std::time::Instant::now() < deadline, "CRM calls still pending after 30 s");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// Approves a partner through a signed webhook; returns its id.
    pub async fn approve_partner(&self, soho_id: &str, email: &str) -> uuid::Uuid {
        let response = self
            .webhook(
                "/webhooks/soho/partner",
                &format!("msg_{}", uuid::Uuid::new_v4()),
                &partner_webhook(soho_id, email, true),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["partnerId"].as_str().unwrap().parse().unwrap()
    }

    /// Registers with the token of an invitation email and returns the access token.
    pub async fn register(&self, token: &str, password: &str) -> String {
        let response = self
            .post(
                "/auth/register",
                None,
                &serde_json::json!({"token": token, "password": password}),
            )
            .await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let body: serde_json::Value = response.json().await.unwrap();
        body["accessToken"].as_str().unwrap().to_string()
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/auth/login", None, &serde_json::json!({"email": email, "password": password}))
            .await
    }
}

/// Waits until `subscriber` (in this database, whichever process runs it) has applied every
/// event in the log now: its effects are done, and counting them can no longer race them.
pub async fn settled(pool: &PgPool, subscriber: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let behind: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM subscriber_checkpoints WHERE subscriber = $1) \
                 OR EXISTS (SELECT 1 FROM events e JOIN subscriber_checkpoints c ON c.subscriber = $1 \
                            WHERE (e.tx_id, e.global_position) > (c.tx_id, c.global_position))",
        )
        .bind(subscriber)
        .fetch_one(pool)
        .await
        .unwrap();
        if !behind {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{subscriber} not caught up within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A webhook secret that is not the portal's.
pub const OTHER_SECRET: &str = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

/// Sends `body` to the webhook at `path` with every kind of bad signature (wrong, another
/// secret's, stale or future timestamp, body altered, another id's, each header missing) and
/// asserts each is a 401 problem.
pub async fn refuses_bad_signatures(portal: &TestPortal, path: &str, id: &str, body: &str) {
    let now = chrono::Utc::now().timestamp();
    let good = sign(WEBHOOK_SECRET, id, now, body);
    let altered = body.replacen('e', "E", 1);
    assert_ne!(altered, body);
    let cases = [
        ("bad signature", id, now, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(), body),
        ("wrong secret", id, now, sign(OTHER_SECRET, id, now, body), body),
        ("stale timestamp", id, now - 301, sign(WEBHOOK_SECRET, id, now - 301, body), body),
        // A minute past the five-minute tolerance: the server reads its clock later than `now`
        // (a second boundary crossed in between made `now + 301` exactly 300 s ahead, accepted).
        ("future timestamp", id, now + 360, sign(WEBHOOK_SECRET, id, now + 360, body), body),
        ("body altered after signing", id, now, good.clone(), altered.as_str()),
        ("signature of another id", "msg_another", now, good.clone(), body),
        ("no v1 prefix", id, now, good.trim_start_matches("v1,").to_string(), body),
    ];
    for (case, id, timestamp, signature, body) in cases {
        let response = portal.webhook_raw(path, id, timestamp, &signature, body).await;
        assert_eq!(response.status(), 401, "{path}: {case}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{case}");
    }
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut request = portal
            .http
            .post(portal.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in [
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", good.clone()),
        ] {
            if name != missing {
                request = request.header(name, value);
            }
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{path}: missing {missing}");
    }
}

/// Waits until `leads` leads are synced with Soho CRM and no call is pending (whichever process
/// makes the calls).
pub async fn wait_for_crm(pool: &PgPool, leads: usize, seconds: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let (synced, pending): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM leads WHERE sync_state = 'synced'), \
                    (SELECT count(*) FROM crm_outbox WHERE state <> 'done')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if synced as usize == leads && pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{synced} of {leads} synced, {pending} calls pending after {seconds} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub fn sign(secret: &str, webhook_id: &str, timestamp: i64, body: &str) -> String {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(webhook_id, timestamp, body.as_bytes())
        .unwrap()
}

pub fn partner_webhook(soho_id: &str, email: &str, approved: bool) -> serde_json::Value {
    serde_json::json!({
        "event": "partner.updated",
        "occurredAt": chrono::Utc::now().to_rfc3339(),
        "partner": {
            "sohoPartnerId": soho_id,
            "name": format!("Partner {soho_id}"),
            "email": email,
            "approved": approved,
            "tier": "gold",
            "commissionRate": 12.5
        }
    })
}

pub const PASSWORD: &str = "correct horse battery staple";

/// A partner with a registered admin and a registered sub-account.
pub struct TestPartner {
    pub id: uuid::Uuid,
    pub admin: String,
    pub sub: String,
    pub sub_id: uuid::Uuid,
    pub admin_email: String,
    pub sub_email: String,
}

impl TestPortal {
    pub async fn partner_with_team(&self, smtp: &smtp::SmtpSink, name: &str) -> TestPartner {
        let admin_email = format!("admin-{name}@example.com");
        let sub_email = format!("sub-{name}@example.com");
        let id = self.approve_partner(&format!("soho-{name}"), &admin_email).await;
        let admin =
            self.register(&smtp.wait_for_mail_to(&admin_email, 20).await.token(), PASSWORD).await;
        let created = self
            .post(
                &format!("/partners/{id}/sub-accounts"),
                Some(&admin),
                &serde_json::json!({"email": sub_email, "name": "Sub"}),
            )
            .await;
        assert_eq!(created.status(), 201);
        let sub_id = created.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let sub =
            self.register(&smtp.wait_for_mail_to(&sub_email, 20).await.token(), PASSWORD).await;
        TestPartner { id, admin, sub, sub_id, admin_email, sub_email }
    }

    /// Another registered sub-account of `partner`; returns its token.
    pub async fn another_sub_account(
        &self,
        smtp: &smtp::SmtpSink,
        partner: &TestPartner,
        name: &str,
    ) -> String {
        let email = format!("{name}-{}@example.com", partner.id);
        let created = self
            .post(
                &format!("/partners/{}/sub-accounts", partner.id),
                Some(&partner.admin),
                &serde_json::json!({"email": email, "name": name}),
            )
            .await;
        assert_eq!(created.status(), 201);
        self.register(&smtp.wait_for_mail_to(&email, 20).await.token(), PASSWORD).await
    }

    /// An auditor, invited the way the command line does, registered; returns its token.
    pub async fn auditor(&self, email: &str) -> String {
        use soho_portal::onboarding::invitations::{invite, Invitee};
        let invitee = Invitee {
            user_id: soho_aggregates::UserId::new(),
            partner_id: None,
            email: email.to_string(),
            name: None,
            role: soho_aggregates::Role::Auditor,
        };
        let context = soho_portal::commands::CommandContext::new(soho_aggregates::Actor::system());
        let invitation = invite(self.portal(), invitee, &context).await.unwrap();
        self.register(&self.portal().keys.invitation_token(invitation.invitation_id), PASSWORD)
            .await
    }
}

/// Tokens that must all be refused: expired, signed with another key, and `alg: none`.
pub fn bad_tokens(user: uuid::Uuid) -> Vec<(&'static str, String)> {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = chrono::Utc::now().timestamp();
    let claims =
        |exp: i64| serde_json::json!({"sub": user, "role": "admin", "iat": now - 10, "exp": exp});
    let sign = |secret: &[u8], exp: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims(exp),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    vec![
        ("expired", sign(JWT_SECRET.as_bytes(), now - 5)),
        ("another key", sign(b"another-secret-0123456789abcdef0123456789", now + 600)),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
                b64(&claims(now + 600))
            ),
        ),
        ("garbage", "not-a-jwt".to_string()),
    ]
}

impl TestPortal {
    /// The base URL of the in-process Soho CRM simulator.
    pub fn simulator_url(&self) -> String {
        let (address, _) = self
            .running
            .as_ref()
            .expect("running")
            .simulator
            .as_ref()
            .expect("an in-process simulator");
        format!("http://{address}")
    }
}

/// A Soho CRM simulator in the test process (for portals pointed at it with SOHO_API_BASE).
pub async fn external_simulator(portal_url: &str) -> (String, tokio::task::JoinHandle<()>) {
    seeded_simulator(portal_url, rand::random()).await
}

/// Like `external_simulator`, with its fault dice seeded.
pub async fn seeded_simulator(
    portal_url: &str,
    seed: u64,
) -> (String, tokio::task::JoinHandle<()>) {
    let config = soho_crm_sim::SimConfig {
        portal_url: portal_url.to_string(),
        webhook_secret: WEBHOOK_SECRET.to_string(),
        token_ttl_seconds: 3600,
        retry_scale: 0.01,
        seed,
    };
    let (address, _, task) =
        soho_crm_sim::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (format!("http://{address}"), task)
}

/// The settings that point a portal at a simulator by OAuth.
pub fn crm_settings(sim_url: &str) -> Vec<(String, String)> {
    vec![
        ("SOHO_API_BASE".into(), format!("{sim_url}/crm/v8")),
        ("SOHO_ACCOUNTS_URL".into(), sim_url.to_string()),
        ("SOHO_CLIENT_ID".into(), "portal-test".into()),
        ("SOHO_CLIENT_SECRET".into(), "secret".into()),
        ("SOHO_REFRESH_TOKEN".into(), "refresh".into()),
    ]
}

/// The environment of a portal process (`PortalProcess`) on `database_url`, mailing `smtp_url`,
/// calling the simulator at `sim_url`, with the tests' secrets, no rate limits, and `extra`.
pub fn process_settings(
    database_url: &str,
    smtp_url: &str,
    sim_url: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut envs = crm_settings(sim_url);
    for (k, v) in [
        ("DB_URL", database_url),
        ("SMTP_URL", smtp_url),
        ("JWT_SECRET", JWT_SECRET),
        ("SOHO_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .chain(NO_LIMITS)
    .chain(extra)
    {
        envs.push((k.to_string(), v.to_string()));
    }
    envs
}

pub async fn sim_state(sim_url: &str) -> serde_json::Value {
    client().get(format!("{sim_url}/sim/state")).send().await.unwrap().json().await.unwrap()
}

/// The simulator's call log, one entry per record a call carried: the call's `method`, `path`,
/// `status` and `fault`, the record's `portalLeadId`, `leadStatus` and answer `code`, and `call`,
/// the call's place in the log.
pub fn sim_records(state: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    for (n, call) in state["calls"].as_array().unwrap().iter().enumerate() {
        for record in call["records"].as_array().unwrap() {
            let mut entry = record.clone();
            for field in ["method", "path", "status", "fault"] {
                entry[field] = call[field].clone();
            }
            entry["call"] = n.into();
            records.push(entry);
        }
    }
    records
}

pub async fn sim_post(sim_url: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    client()
        .post(format!("{sim_url}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The fields a problem+json body names, in order.
pub fn problem_fields(problem: &serde_json::Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors.iter().filter_map(|e| e["field"].as_str().map(str::to_string)).collect()
        })
        .unwrap_or_default()
}

impl TestPortal {
    /// Runs the portal's command line against this portal's database; panics unless it
    /// succeeds, and returns what it printed.
    pub async fn cli(&self, args: &[&str]) -> String {
        self.cli_with(&[], args).await
    }

    /// Runs the portal's command line; returns whether it succeeded and what it printed.
    pub async fn cli_outcome(&self, args: &[&str]) -> (bool, String) {
        let output = portal_command(args)
            .env("DB_URL", &self.db_url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("SOHO_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("PUBLIC_BASE_URL", "https://partners.example.com")
            .output()
            .await
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `cli` with settings of its own (the ones the servers run with, such as their limits).
    pub async fn cli_with(&self, envs: &[(&str, &str)], args: &[&str]) -> String {
        let output = portal_command(args)
            .envs(envs.iter().copied())
            .env("DB_URL", &self.db_url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("SOHO_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("PUBLIC_BASE_URL", "https://partners.example.com")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}
