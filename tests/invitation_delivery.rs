//! Invitations survive an SMTP outage and a crash: each arrives, exactly once.

mod common;

use common::smtp::{Reply, SmtpSink};
use common::{partner_webhook, PortalProcess, TestPortal, JWT_SECRET, WEBHOOK_SECRET};
use nix::sys::signal::Signal;

/// A port nothing listens on (yet).
async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_invitation_sent_while_smtp_is_down_arrives_once_when_it_is_back() {
    // The mail server answers 421 (not available, try later), as one going down does.
    let smtp = SmtpSink::start().await;
    smtp.reply(Reply::Refuse(421));
    let portal = TestPortal::start(&smtp, &[]).await;
    portal.approve_partner("1001", "outage@example.com").await;
    // Tried, refused, tried again: and nothing recorded as sent.
    smtp.wait_for_attempts(2, 30).await;
    assert_eq!(
        portal.count("SELECT count(*) FROM events WHERE event_type = 'InvitationSent'").await,
        0
    );

    smtp.reply(Reply::Accept);
    let mail = smtp.wait_for(1, 60).await;
    assert_eq!(mail[0].to, vec!["outage@example.com"]);
    portal.settled("invitation_emails").await;
    assert_eq!(smtp.received().len(), 1, "exactly once");
    assert_eq!(
        portal.count("SELECT count(*) FROM events WHERE event_type = 'InvitationSent'").await,
        1
    );
    portal.stop().await;
}

#[tokio::test]
async fn an_invitation_pending_when_the_server_is_killed_arrives_once_after_a_restart() {
    let database = common::fresh_database_options().await;
    let db_url = database.url.clone();
    let port = free_port().await;
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("portal.log");
    let envs = [
        ("DB_URL", db_url.as_str()),
        ("SMTP_URL", smtp_url.as_str()),
        ("JWT_SECRET", JWT_SECRET),
        ("SOHO_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("DEV_MODE", "true"),
    ];
    let mut portal = PortalProcess::start(&envs, &log).await;
    let approval = partner_webhook("2002", "crash@example.com", true);
    let response = portal.webhook("/webhooks/soho/partner", "msg_crash", &approval).await;
    assert_eq!(response.status(), 200);
    // Killed with the invitation accepted but not yet sent (the SMTP server is down).
    portal.signal(Signal::SIGKILL);
    portal.wait().await;

    let smtp = SmtpSink::start_on(port).await;
    let mut portal = PortalProcess::start(&envs, &log).await;
    let mail = smtp.wait_for(1, 60).await;
    assert_eq!(mail[0].to, vec!["crash@example.com"]);
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    common::settled(&pool, "invitation_emails").await;
    assert_eq!(smtp.received().len(), 1, "exactly once");
    portal.signal(Signal::SIGTERM);
    assert!(portal.wait().await.success());
}
