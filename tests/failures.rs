//! Failure paths: the database going away and coming back, migrations at start, a mail server
//! that refuses or hangs, Soho CRM refusing for good, out of API budget or refusing tokens, and
//! an export that breaks off. Each ends with nothing acknowledged lost and nothing doubled.

mod common;

use std::time::{Duration, Instant};

use common::smtp::{Reply, SmtpSink};
use common::TestPortal;
use futures::StreamExt;
use serde_json::{json, Value};
use soho_embedded_postgres::{EmbeddedPostgres, Leftover};

/// Words that would show a client our internals.
const INTERNALS: [&str; 6] = ["sql", "postgres", "connection", "pool", "relation", "database"];

async fn assert_internal_error(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 500, "{what}");
    assert_eq!(response.headers()["content-type"], "application/problem+json", "{what}");
    let body = response.text().await.unwrap().to_lowercase();
    for word in INTERNALS {
        assert!(!body.contains(word), "{what}: {word:?} in {body}");
    }
}

async fn wait_until(what: &str, seconds: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {seconds} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_and_coming_back_loses_nothing_acknowledged() {
    // A cluster of this test's own, to stop and start.
    let dir = tempfile::tempdir().unwrap();
    let cluster = EmbeddedPostgres::start(dir.path(), Leftover::TakeOver).await.unwrap();
    let url = cluster.url(soho_embedded_postgres::DATABASE);
    let pool = soho_portal::db::pool(cluster.connect_options(soho_embedded_postgres::DATABASE))
        .await
        .unwrap();
    soho_portal::db::migrate(&pool).await.unwrap();
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start_on(pool, url, &smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "outage").await;
    let before: Value = portal
        .post("/leads", Some(&a.admin), &json!({"lastName": "Before", "email": "b@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    portal.crm_synced().await;
    let synced: Value = portal
        .get(&format!("/leads/{}", before["id"].as_str().unwrap()), Some(&a.admin))
        .await
        .json()
        .await
        .unwrap();
    let soho_id = synced["sohoLeadId"].as_str().unwrap().to_string();
    let (socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/ws?access_token={}",
        portal.base_url.replace("http://", "ws://"),
        a.admin
    ))
    .await
    .unwrap();
    // Read all along, as a browser does (it answers the server's pings meanwhile).
    let (received, mut messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut socket = socket;
        while let Some(Ok(message)) = socket.next().await {
            if received.send(message.to_text().unwrap_or("").to_string()).is_err() {
                break;
            }
        }
    });

    cluster.stop().await;
    assert_eq!(portal.get("/healthz", None).await.status(), 200, "alive");
    let ready = portal.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    let change = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now().to_rfc3339(),
        "lead": {"sohoLeadId": soho_id, "status": "Qualified"}});
    let during = json!({"lastName": "During", "email": "d@example.com"});
    let (list, submit, webhook) = tokio::join!(
        portal.get("/leads", Some(&a.admin)),
        portal.post("/leads", Some(&a.admin), &during),
        portal.webhook("/webhooks/soho/lead-status", "msg_outage", &change),
    );
    assert_internal_error(list, "GET /leads").await;
    assert_internal_error(submit, "POST /leads").await;
    assert!(webhook.status().is_server_error(), "a webhook is refused so the CRM retries it");

    // The database comes back: everything resumes by itself.
    let cluster = EmbeddedPostgres::start(dir.path(), Leftover::TakeOver).await.unwrap();
    wait_until("ready again", 60, async || portal.get("/readyz", None).await.status() == 200).await;
    let retried = portal.webhook("/webhooks/soho/lead-status", "msg_outage", &change).await;
    assert_eq!(retried.status(), 200, "the CRM's retry is taken");
    // The live hub listens again: the change reaches the socket opened before the outage.
    let pushed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = messages.recv().await {
            if message.contains("\"newStatus\":\"qualified\"") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(pushed, Ok(true), "the live socket got the change made after the outage");
    // The readers and the CRM worker resume: a new lead is stored, projected and synced.
    let after = portal
        .post("/leads", Some(&a.admin), &json!({"lastName": "After", "email": "a@example.com"}))
        .await;
    assert_eq!(after.status(), 201);
    portal.crm_synced().await;
    let leads: Value = portal.get("/leads", Some(&a.admin)).await.json().await.unwrap();
    let names: Vec<&str> = leads["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lastName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["After", "Before"], "what was acknowledged, and only that");
    let states: Vec<&str> = leads["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["syncState"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["synced", "synced"]);
    assert_eq!(leads["items"][1]["status"], "qualified");
    portal.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn the_server_applies_pending_migrations_at_start_and_refuses_a_database_ahead_of_it() {
    let database = common::fresh_database_options().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("portal.log");
    let envs = [
        ("DB_URL", database.url.as_str()),
        ("DEV_MODE", "true"),
        ("JWT_SECRET", common::JWT_SECRET),
        ("SOHO_WEBHOOK_SECRET", common::WEBHOOK_SECRET),
    ];
    // An empty database: every migration is pending, and the server applies them.
    let mut portal = common::PortalProcess::start(&envs, &log).await;
    let ready = common::client().get(format!("{}/readyz", portal.base_url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    portal.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(portal.wait().await.success());
    let pool = sqlx::PgPool::connect_with(database.options.clone()).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, soho_portal::db::MIGRATOR.migrations.len());

    // A newer build migrated this database further: this one refuses to start, and says why.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99991231000000, 'from a newer build', true, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let output = common::portal_command(&["serve"])
        .envs(envs)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("99991231000000"), "{stderr}");
}

#[tokio::test]
async fn a_mail_server_that_refuses_for_good_or_hangs_loses_no_invitation() {
    // 550: the address is refused for good. The invitation is not retried forever, the others
    // go on, and a re-sent invitation is delivered once the cause is fixed.
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[("SMTP_TIMEOUT_SECONDS", "1")]).await;
    let a = portal.partner_with_team(&smtp, "mail").await;
    smtp.reply(Reply::Refuse(550));
    let invited = portal.post("/invite", Some(&a.admin), &json!({"email": "x@example.com"})).await;
    assert_eq!(invited.status(), 201);
    portal.settled("invitation_emails").await;
    let attempts = smtp.attempts();
    assert_eq!(portal.count("SELECT count(*) FROM users WHERE invitation_sent_at IS NULL AND email = 'x@example.com'").await, 1);
    smtp.reply(Reply::Accept);
    let resent = portal.post("/invite", Some(&a.admin), &json!({"email": "x@example.com"})).await;
    assert_eq!(resent.status(), 200);
    let mail = smtp.wait_for_mail_to("x@example.com", 20).await;
    assert!(mail.link().contains("/register?token="));
    portal.settled("invitation_emails").await;
    assert_eq!(smtp.attempts(), attempts + 1, "the refused one was not tried again");

    // A server that takes the message and never answers: timed out, retried, delivered once.
    smtp.reply(Reply::Hang);
    let before = smtp.received().len();
    let invited = portal.post("/invite", Some(&a.admin), &json!({"email": "y@example.com"})).await;
    assert_eq!(invited.status(), 201);
    smtp.wait_for_attempts(attempts + 2, 20).await;
    smtp.reply(Reply::Accept);
    smtp.wait_for(before + 1, 30).await;
    portal.settled("invitation_emails").await;
    let to_y = smtp.received().iter().filter(|m| m.to == vec!["y@example.com".to_string()]).count();
    assert_eq!(to_y, 1, "delivered once");
    portal.stop().await;
}

async fn lead_state(portal: &TestPortal, token: &str, id: &str) -> Value {
    portal.get(&format!("/leads/{id}"), Some(token)).await.json().await.unwrap()
}

#[tokio::test]
async fn soho_crm_refusing_a_status_running_out_of_budget_or_refusing_tokens() {
    let smtp = SmtpSink::start().await;
    let (sim, _task) = common::external_simulator("http://127.0.0.1:9").await;
    let settings = common::crm_settings(&sim);
    let settings: Vec<(&str, &str)> =
        settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let portal = TestPortal::start(&smtp, &settings).await;
    let a = portal.partner_with_team(&smtp, "crm-fail").await;
    let submit = |email: &'static str| {
        let (portal, admin) = (&portal, a.admin.clone());
        async move {
            let body = json!({"lastName": "Crm", "email": email});
            let lead: Value =
                portal.post("/leads", Some(&admin), &body).await.json().await.unwrap();
            lead["id"].as_str().unwrap().to_string()
        }
    };

    // A status the CRM refuses for good: the lead is failed with the CRM's reason; `crm retry`
    // sends it once the cause is fixed.
    let first = submit("one@example.com").await;
    portal.crm_synced().await;
    common::sim_post(&sim, "/sim/faults", json!({"rejectStatus": "Contacted"})).await;
    let changed = portal
        .patch(&format!("/leads/{first}/status"), Some(&a.admin), &json!({"status": "contacted"}))
        .await;
    assert_eq!(changed.status(), 200);
    portal.crm_synced().await;
    let failed = lead_state(&portal, &a.admin, &first).await;
    assert_eq!(failed["syncState"], "failed");
    assert!(failed["syncError"].as_str().unwrap().contains("INVALID_DATA"), "{failed}");
    common::sim_post(&sim, "/sim/faults", json!({})).await;
    portal.cli(&["crm", "retry", "--all-failed"]).await;
    portal.crm_synced().await;
    assert_eq!(lead_state(&portal, &a.admin, &first).await["syncState"], "synced");
    let state = common::sim_state(&sim).await;
    let record = state["leads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["fields"]["Portal_Lead_Id"] == first.as_str())
        .unwrap()
        .clone();
    assert_eq!(record["leadStatus"], "Contacted");

    // Out of API budget (LIMIT_REACHED): the lead waits, visibly, and syncs when credits return.
    common::sim_post(&sim, "/sim/faults", json!({"limitReached": true})).await;
    let second = submit("two@example.com").await;
    wait_until("LIMIT_REACHED recorded", 20, async || {
        portal.cli(&["crm", "status"]).await.contains("LIMIT_REACHED")
    })
    .await;
    assert_eq!(lead_state(&portal, &a.admin, &second).await["syncState"], "pending");
    common::sim_post(&sim, "/sim/faults", json!({})).await;
    wait_until("synced once the budget is back", 60, async || {
        lead_state(&portal, &a.admin, &second).await["syncState"] == "synced"
    })
    .await;

    // The token endpoint refuses the portal's client: calls wait, visibly, and go out once fixed.
    common::sim_post(&sim, "/sim/faults", json!({"refuseTokens": true, "expireTokens": true}))
        .await;
    let third = submit("three@example.com").await;
    wait_until("the refusal recorded", 20, async || {
        portal.cli(&["crm", "status"]).await.contains("token refresh refused")
    })
    .await;
    assert_eq!(lead_state(&portal, &a.admin, &third).await["syncState"], "pending");
    common::sim_post(&sim, "/sim/faults", json!({})).await;
    wait_until("synced once tokens are issued again", 60, async || {
        lead_state(&portal, &a.admin, &third).await["syncState"] == "synced"
    })
    .await;
    let state = common::sim_state(&sim).await;
    for id in [&first, &second, &third] {
        let inserts: Vec<&Value> = state["leads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["fields"]["Portal_Lead_Id"] == id.as_str())
            .collect();
        assert_eq!(inserts.len(), 1, "{id} once in the CRM");
    }
    portal.stop().await;
}

#[tokio::test]
async fn an_export_that_breaks_off_ends_in_an_error_not_a_short_file() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "export").await;
    for n in 0..3 {
        let body = json!({"lastName": format!("Row{n}"), "email": format!("row{n}@example.com")});
        assert_eq!(portal.post("/leads", Some(&a.admin), &body).await.status(), 201);
    }
    // Nothing else reads leads meanwhile (the CRM sync records its outcomes through them).
    portal.crm_synced().await;
    // Hold the leads table, so the export's read waits; then cut that read off.
    let mut holder = portal.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE").execute(&mut *holder).await.unwrap();
    let export = portal.get("/leads/export.csv", Some(&a.admin));
    let cut = async {
        wait_until("the export waiting on the lock", 20, async || {
            portal
                .count(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                          AND wait_event_type = 'Lock' AND query LIKE '%FROM leads%'",
                )
                .await
                > 0
        })
        .await;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND query LIKE '%FROM leads%'")
            .execute(&portal.pool)
            .await
            .unwrap();
    };
    let (response, ()) = tokio::join!(export, cut);
    holder.rollback().await.unwrap();
    // The answer had begun (200 and the header line), so the failure shows as a broken body.
    assert_eq!(response.status(), 200);
    assert!(response.text().await.is_err(), "a cut export must not read as a complete file");
    // The next export is whole.
    let text = portal.get("/leads/export.csv", Some(&a.admin)).await.text().await.unwrap();
    assert_eq!(text.lines().count(), 4);
    portal.stop().await;
}
