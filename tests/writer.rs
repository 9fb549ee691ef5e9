//! The lead writer (DESIGN.md "Write path"): group commit with refusals that fail alone, one
//! lead per person across servers, exact counters with two servers, nothing half-written when
//! the server is killed mid-batch, and standing checked on every server at once.

mod common;

use std::collections::HashSet;

use common::smtp::SmtpSink;
use common::TestPortal;
use serde_json::{json, Value};
use soho_aggregates::lead::{LeadCommand, LeadDetails, StatusChange, StatusSource, Submitter};
use soho_aggregates::{Actor, LeadId, LeadStatus};
use soho_portal::commands::CommandContext;
use soho_portal::leads::writer::{Submission, WriteError, Written};

fn details(last_name: &str, email: &str) -> LeadDetails {
    let email = Some(email.into());
    LeadDetails::new(None, last_name.into(), email, None, None, None, Default::default()).unwrap()
}

#[tokio::test]
async fn a_refused_command_fails_alone_and_its_batch_commits() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "batch").await;
    let writer = &portal.portal().writer;
    let context = CommandContext::new(Actor::system());
    let submit = |last: &'static str, email: &'static str| {
        let submission = Submission {
            partner: soho_aggregates::PartnerId(a.id),
            submitter: Submitter::User { id: soho_aggregates::UserId(a.sub_id) },
            details: details(last, email),
        };
        writer.submit(submission, &context)
    };
    let change = LeadCommand::ChangeStatus {
        change: StatusChange {
            status: LeadStatus::Contacted,
            crm_status: "Contacted".into(),
            source: StatusSource::Portal,
            actor: Actor::system(),
            note: None,
            occurred_at: chrono::Utc::now(),
        },
        at: chrono::Utc::now(),
    };
    // Queued together before the writer runs (this test's runtime has one thread): one batch.
    // (A submission itself cannot be refused: its details are complete by their type.)
    let (first, unknown, second, again, third) = tokio::join!(
        submit("First", "first@example.com"),
        writer.execute(LeadId::new(), change, &context),
        submit("Second", "second@example.com"),
        submit("First again", "FIRST@example.com"),
        submit("Third", "third@example.com"),
    );
    let Ok(Written::Created(third)) = third else { panic!("third: {third:?}") };
    let Ok(Written::Created(first)) = first else { panic!("first: {first:?}") };
    assert!(matches!(unknown, Err(WriteError::Refused(soho_aggregates::LeadError::NotFound))));
    let Ok(Written::Created(second)) = second else { panic!("second: {second:?}") };
    let Ok(Written::Existing(again)) = again else { panic!("again: {again:?}") };
    assert_eq!(again.id, first.id, "the same person within the batch is the same lead");
    assert_ne!(second.id, first.id);
    let transactions = portal
        .count("SELECT count(DISTINCT tx_id) FROM events WHERE event_type = 'LeadSubmitted'")
        .await;
    assert_eq!(transactions, 1, "one commit for the batch");
    assert_eq!(third.last_name, "Third");
    assert_eq!(portal.count("SELECT count(*) FROM leads").await, 3);
    let stats: Value = portal.get("/dashboard/stats", Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(stats["totalLeads"], 3);
    portal.stop().await;
}

#[tokio::test]
async fn two_servers_make_one_lead_of_one_person_and_keep_counters_exact() {
    let smtp = SmtpSink::start().await;
    let one = TestPortal::start(&smtp, &[]).await;
    let two = TestPortal::start_on(one.pool.clone(), one.db_url.clone(), &smtp, &[]).await;
    let a = one.partner_with_team(&smtp, "servers").await;
    // Six racing submissions of one person, three through each server.
    let person = json!({"lastName": "Race", "email": "race@example.com"});
    let racers = (0..6).map(|n| {
        let (server, token, body) = (if n % 2 == 0 { &one } else { &two }, &a.admin, &person);
        async move {
            let response = server.post("/leads", Some(token), body).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string())
        }
    });
    let results = futures::future::join_all(racers).await;
    let ids: HashSet<&String> = results.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|(status, _)| *status == 201).count(), 1, "{results:?}");

    // Many leads of one partner through both servers at once: no deadlock, exact counters.
    let leads = (0..80).map(|n| {
        let server = if n % 2 == 0 { &one } else { &two };
        let token = if n % 3 == 0 { &a.sub } else { &a.admin };
        let body = json!({"lastName": format!("Many{n}"), "email": format!("many{n}@example.com")});
        async move { server.post("/leads", Some(token), &body).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(leads).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    for server in [&one, &two] {
        let stats: Value =
            server.get("/dashboard/stats", Some(&a.admin)).await.json().await.unwrap();
        assert_eq!(stats["totalLeads"], 81);
        assert_eq!(stats["byStatus"]["new"], 81);
        let mine: Value = server.get("/dashboard/stats", Some(&a.sub)).await.json().await.unwrap();
        assert_eq!(mine["totalLeads"], 27);
    }
    assert_eq!(one.count("SELECT count(*) FROM leads").await, 81);
    two.stop().await;
    one.stop().await;
}

/// Each writer keeps the leads it wrote last and reads only what the log has after them: a lead
/// changed on one server, then on another, then on the first again, is decided each time with
/// every change before it (a writer that missed one would reuse its sequence and fail).
#[tokio::test]
async fn a_lead_changed_on_two_servers_in_turn_is_decided_with_every_change_before() {
    let smtp = SmtpSink::start().await;
    let one = TestPortal::start(&smtp, &[]).await;
    let two = TestPortal::start_on(one.pool.clone(), one.db_url.clone(), &smtp, &[]).await;
    let a = one.partner_with_team(&smtp, "turns").await;
    let person = json!({"lastName": "Turns", "email": "turns@example.com"});
    let created: Value = one.post("/leads", Some(&a.admin), &person).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let path = format!("/leads/{id}/status");
    let turns = [
        (&one, "contacted"),
        (&two, "qualified"),
        (&one, "lost"),
        (&two, "new"),
        (&one, "contacted"),
    ];
    for (n, (server, status)) in turns.iter().enumerate() {
        let changed = server.patch(&path, Some(&a.admin), &json!({"status": status})).await;
        assert_eq!(changed.status(), 200, "change {n} to {status}");
        assert_eq!(changed.json::<Value>().await.unwrap()["status"], *status, "change {n}");
    }
    let history: Value =
        two.get(&format!("/leads/{id}/history"), Some(&a.admin)).await.json().await.unwrap();
    let applied: Vec<&str> =
        history.as_array().unwrap().iter().map(|h| h["newStatus"].as_str().unwrap()).collect();
    assert_eq!(applied, ["contacted", "qualified", "lost", "new", "contacted"]);
    let sequences = one
        .count(&format!(
            "SELECT count(DISTINCT sequence) - max(sequence) FROM events WHERE aggregate_id = '{id}'"
        ))
        .await;
    assert_eq!(sequences, 0, "the stream's sequences run without a gap or a repeat");
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn a_user_disabled_on_one_server_is_refused_on_another_at_once() {
    let smtp = SmtpSink::start().await;
    let one = TestPortal::start(&smtp, &[]).await;
    let two = TestPortal::start_on(one.pool.clone(), one.db_url.clone(), &smtp, &[]).await;
    let a = one.partner_with_team(&smtp, "standing").await;
    assert_eq!(two.get("/leads", Some(&a.sub)).await.status(), 200);
    let path = format!("/partners/{}/sub-accounts/{}", a.id, a.sub_id);
    assert_eq!(one.get("/leads", Some(&a.sub)).await.status(), 200, "standing cached on one");
    let disabled = one.patch(&path, Some(&a.admin), &json!({"disabled": true})).await;
    assert_eq!(disabled.status(), 200);
    assert_eq!(one.get("/leads", Some(&a.sub)).await.status(), 401, "at once where it was made");
    let started = std::time::Instant::now();
    loop {
        if two.get("/leads", Some(&a.sub)).await.status() == 401 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "still accepted after 1 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn a_server_killed_mid_batch_leaves_no_lead_half_written() {
    use nix::sys::signal::Signal;
    let smtp = SmtpSink::start().await;
    let (sim, _task) = common::external_simulator("http://127.0.0.1:9").await;
    let database = common::fresh_database_options().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("portal.log");
    let smtp_url = smtp.url();
    let envs = common::process_settings(&database.url, &smtp_url, &sim, &[]);
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut portal = common::PortalProcess::start(&envs, &log).await;
    let http = common::client();
    let admin = portal.partner_admin(&smtp, "soho-kill", "kill@example.com").await;

    // Submissions keep coming while the server is killed.
    let base = portal.base_url.clone();
    let load = tokio::spawn({
        let (http, admin) = (http.clone(), admin.clone());
        async move {
            let mut answered = Vec::new();
            let streams = (0..8).map(|client| {
                let (http, admin, base) = (http.clone(), admin.clone(), base.clone());
                async move {
                    let mut ids = Vec::new();
                    for n in 0..400 {
                        let body = json!({"lastName": "Kill", "email": format!("k{client}-{n}@example.com")});
                        let Ok(response) = http.post(format!("{base}/leads")).bearer_auth(&admin).json(&body).send().await else { break };
                        if response.status() != 201 {
                            break;
                        }
                        let Ok(lead) = response.json::<Value>().await else { break };
                        ids.push(lead["id"].as_str().unwrap().to_string());
                    }
                    ids
                }
            });
            for ids in futures::future::join_all(streams).await {
                answered.extend(ids);
            }
            answered
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    portal.signal(Signal::SIGKILL);
    portal.wait().await;
    let answered = load.await.unwrap();
    assert!(!answered.is_empty(), "some submissions were answered before the kill");

    let pool = sqlx::PgPool::connect_with(database.options.clone()).await.unwrap();
    let in_log: HashSet<String> =
        sqlx::query_scalar("SELECT aggregate_id FROM events WHERE event_type = 'LeadSubmitted'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let in_read_model: HashSet<String> =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT lead_id FROM leads")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.to_string())
            .collect();
    assert_eq!(in_log, in_read_model, "every lead in the log is in the read model, and only those");
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM crm_outbox WHERE kind = 'upsert'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tasks as usize, in_log.len(), "one CRM task per lead");
    for id in &answered {
        assert!(in_log.contains(id), "lead {id} was answered 201 and must be kept");
    }

    // After a restart, every kept lead reaches Soho CRM once.
    let mut portal = common::PortalProcess::start(&envs, &log).await;
    common::wait_for_crm(&pool, in_log.len(), 120).await;
    let state = common::sim_state(&sim).await;
    let in_crm: Vec<&str> = state["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["fields"]["Portal_Lead_Id"].as_str().unwrap())
        .collect();
    assert_eq!(in_crm.len(), in_log.len(), "each once");
    assert_eq!(in_crm.iter().copied().collect::<HashSet<_>>().len(), in_crm.len());
    println!(
        "killed mid-load: {} answered, {} kept, all in the CRM once",
        answered.len(),
        in_log.len()
    );
    portal.signal(Signal::SIGTERM);
    portal.wait().await;
}

/// The checkpoint news wakes what waits on a subscriber on every server: the writer's (that the
/// CRM outbox has new tasks, sent with its batch) and a reader's (sent as it saves its
/// checkpoint) both name their subscriber and a position of the log, as readers parse it. A
/// garbled notice would go unnoticed elsewhere: waiters fall back to polling, only slower.
#[tokio::test]
async fn checkpoint_news_names_the_subscriber_and_a_position_of_the_log() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let pool = portal.portal().pool.clone();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen("checkpoint_advanced").await.unwrap();
    let partner = portal.partner_with_team(&smtp, "news").await;
    let body = json!({"lastName": "News", "email": "news@example.com"});
    let response = portal.post("/leads", Some(&partner.admin), &body).await;
    assert_eq!(response.status(), 201);

    let mut named = HashSet::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(named.contains(soho_portal::crm::outbox::NAME) && named.len() > 1) {
        let notice = tokio::time::timeout_at(deadline, listener.recv())
            .await
            .expect("checkpoint news from the writer and from a reader within 10 s")
            .unwrap();
        let (name, position) = soho_projections::reader::parse_checkpoint(notice.payload())
            .unwrap_or_else(|| panic!("unreadable checkpoint news: {:?}", notice.payload()));
        let in_log: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE tx_id = $1::text::xid8 AND global_position = $2",
        )
        .bind(position.tx_id.to_string())
        .bind(position.global_position)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(in_log, 1, "{name}'s news points at an event of the log: {position:?}");
        named.insert(name.to_string());
    }
}
