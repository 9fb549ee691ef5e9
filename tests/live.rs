//! Live updates over real WebSockets (tokio-tungstenite): scoping, fan-out across servers,
//! resume without gap or repeat, slow clients, and authorisation.

mod common;

use std::time::Duration;

use common::smtp::SmtpSink;
use common::{bad_tokens, TestPortal};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(portal: &TestPortal, token: Option<&str>) -> Socket {
    let base = portal.base_url.replace("http://", "ws://");
    let url = match token {
        Some(token) => format!("{base}/ws?access_token={token}"),
        None => format!("{base}/ws"),
    };
    tokio_tungstenite::connect_async(url).await.expect("connect").0
}

/// The next JSON message, or None if none comes within `millis`.
async fn next(socket: &mut Socket, millis: u64) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_millis(millis), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// The close code the server ends with (waiting up to `seconds`).
async fn close_code(socket: &mut Socket, seconds: u64) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => return Some(frame.code.into()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn crm_change(portal: &TestPortal, lead: &str, crm_status: &str, n: usize) {
    let body = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now().to_rfc3339(),
        "lead": {"portalLeadId": lead, "status": crm_status}});
    let response =
        portal.webhook("/webhooks/soho/lead-status", &format!("msg_live_{n}_{lead}"), &body).await;
    assert_eq!(response.status(), 200);
}

async fn lead_of(portal: &TestPortal, token: &str, email: &str) -> String {
    let lead: Value = portal
        .post("/leads", Some(token), &json!({"lastName": "Live", "email": email}))
        .await
        .json()
        .await
        .unwrap();
    lead["id"].as_str().unwrap().to_string()
}

/// Reads messages until one of `kind` about `lead` arrives.
async fn until(socket: &mut Socket, kind: &str, lead: &str) -> Option<Value> {
    while let Some(message) = next(socket, 5000).await {
        let about = message["leadId"].as_str().or(message["lead"]["id"].as_str());
        if message["type"] == kind && about == Some(lead) {
            return Some(message);
        }
    }
    None
}

/// Proves `socket` is subscribed and alive: `token` submits a lead the socket may see, and its
/// `lead.created` must arrive. Returns the messages that came before it.
async fn sentinel(
    portal: &TestPortal,
    socket: &mut Socket,
    token: &str,
    email: &str,
) -> Vec<Value> {
    let lead = lead_of(portal, token, email).await;
    let mut before = vec![];
    while let Some(message) = next(socket, 5000).await {
        if message["type"] == "lead.created" && message["lead"]["id"] == lead.as_str() {
            return before;
        }
        before.push(message);
    }
    panic!("the sentinel lead {email} never reached the socket");
}

#[tokio::test]
async fn a_status_change_reaches_exactly_the_sockets_that_may_see_the_lead() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "wa").await;
    let b = portal.partner_with_team(&smtp, "wb").await;
    let sub2 = portal.another_sub_account(&smtp, &a, "second").await;

    let mut admin = connect(&portal, Some(&a.admin)).await;
    let mut submitter = connect(&portal, Some(&a.sub)).await;
    let mut other_sub = connect(&portal, Some(&sub2)).await;
    let mut other_partner = connect(&portal, Some(&b.admin)).await;
    // Authentication by first message works as well as by query.
    let mut by_message = connect(&portal, None).await;
    by_message
        .send(Message::Text(json!({"type": "auth", "token": a.admin}).to_string().into()))
        .await
        .unwrap();
    // Every socket is subscribed before the watched lead is made.
    for socket in [&mut admin, &mut submitter, &mut by_message] {
        sentinel(&portal, socket, &a.sub, &format!("ready-{}@example.com", uuid::Uuid::new_v4()))
            .await;
    }
    sentinel(&portal, &mut other_sub, &sub2, "ready-sub2@example.com").await;
    sentinel(&portal, &mut other_partner, &b.admin, "ready-b@example.com").await;

    let lead = lead_of(&portal, &a.sub, "watched@example.com").await;
    let created =
        until(&mut admin, "lead.created", &lead).await.expect("the admin sees the new lead");
    assert_eq!(created["lead"]["lastName"], "Live");
    assert!(created["position"].as_i64().unwrap() > 0);
    crm_change(&portal, &lead, "Contacted", 1).await;
    for (who, socket) in [
        ("admin", &mut admin),
        ("submitter", &mut submitter),
        ("first-message auth", &mut by_message),
    ] {
        let message = until(socket, "lead.status_changed", &lead)
            .await
            .unwrap_or_else(|| panic!("{who} gets the change"));
        assert_eq!(message["oldStatus"], "new");
        assert_eq!(message["newStatus"], "contacted");
        assert_eq!(message["source"], "crm");
        assert!(message["at"].is_string());
        // Read on push: the read model already has it.
        let now: Value =
            portal.get(&format!("/leads/{lead}"), Some(&a.admin)).await.json().await.unwrap();
        assert_eq!(now["status"], "contacted");
    }
    // Those that may not see it get nothing of it before a later lead they may see: so the
    // check cannot pass on a socket that is simply dead.
    for (who, socket, token) in [
        ("another sub-account", &mut other_sub, &sub2),
        ("another partner", &mut other_partner, &b.admin),
    ] {
        let email = format!("after-{}@example.com", uuid::Uuid::new_v4());
        for message in sentinel(&portal, socket, token, &email).await {
            assert!(!message.to_string().contains(&lead), "{who} must not see {message}");
        }
    }
    portal.stop().await;
}

#[tokio::test]
async fn a_change_through_one_server_reaches_a_socket_on_another() {
    let smtp = SmtpSink::start().await;
    let one = TestPortal::start(&smtp, &[]).await;
    let two = TestPortal::start_on(one.pool.clone(), one.db_url.clone(), &smtp, &[]).await;
    let a = one.partner_with_team(&smtp, "fan").await;
    let mut on_two = connect(&two, Some(&a.admin)).await;
    let lead = lead_of(&one, &a.admin, "fanout@example.com").await;
    crm_change(&one, &lead, "Qualified", 1).await;
    let message = until(&mut on_two, "lead.status_changed", &lead)
        .await
        .expect("server two pushes server one's change");
    assert_eq!(message["newStatus"], "qualified");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed_then_continues_live() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "resume").await;
    let lead = lead_of(&portal, &a.admin, "resume@example.com").await;
    // Synced first: its `lead.synced` message cannot then come in the middle of what follows.
    portal.crm_synced().await;
    let mut socket = connect(&portal, Some(&a.admin)).await;
    crm_change(&portal, &lead, "Contacted", 1).await;
    let seen = until(&mut socket, "lead.status_changed", &lead).await.unwrap();
    let last = seen["position"].as_i64().unwrap();
    socket.close(None).await.ok();

    // Three changes while away.
    for (n, status) in ["Qualified", "Converted", "Lost Lead"].iter().enumerate() {
        crm_change(&portal, &lead, status, n + 2).await;
    }
    let mut socket = connect(&portal, Some(&a.admin)).await;
    socket
        .send(Message::Text(json!({"type": "resume", "after": last}).to_string().into()))
        .await
        .unwrap();
    // Only the status changes: the CRM sync's `lead.synced` may come in between, depending on
    // when the sync worker got to the lead.
    let mut missed = vec![];
    for _ in 0..3 {
        missed.push(
            until(&mut socket, "lead.status_changed", &lead).await.expect("a missed message"),
        );
    }
    let statuses: Vec<&str> = missed.iter().map(|m| m["newStatus"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["qualified", "converted", "lost"]);
    let positions: Vec<i64> = missed.iter().map(|m| m["position"].as_i64().unwrap()).collect();
    assert!(positions[0] > last && positions.windows(2).all(|w| w[0] < w[1]));
    // Then live, with nothing repeated at the seam.
    crm_change(&portal, &lead, "Contacted", 9).await;
    let live = until(&mut socket, "lead.status_changed", &lead).await.expect("a live message");
    assert_eq!(live["newStatus"], "contacted");
    assert!(live["position"].as_i64().unwrap() > positions[2]);
    assert!(next(&mut socket, 700).await.is_none(), "nothing more, nothing twice");

    // The same messages over plain HTTP.
    let changes: Value = portal
        .get(&format!("/leads/changes?after={last}"), Some(&a.admin))
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> =
        changes.as_array().unwrap().iter().map(|m| m["newStatus"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["qualified", "converted", "lost", "contacted"]);
    assert_eq!(changes[0], missed[0]);
    assert_eq!(portal.get("/leads/changes?after=-1", Some(&a.admin)).await.status(), 422);
    portal.stop().await;
}

/// The page's race: the list is read, a change lands, then the socket starts. Resuming from
/// the list's `livePosition` brings that change; the list itself showed the lead before it.
#[tokio::test]
async fn a_change_between_reading_the_list_and_opening_the_socket_is_not_lost() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "between").await;
    let lead = lead_of(&portal, &a.admin, "between@example.com").await;
    portal.crm_synced().await;
    let page: Value = portal.get("/leads", Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(page["items"][0]["status"], "new");
    let from = page["livePosition"].as_i64().expect("the list says where the feed stood");
    let before: Value = portal
        .get(&format!("/leads/changes?after={from}"), Some(&a.admin))
        .await
        .json()
        .await
        .unwrap();
    // (The hub may be a moment behind the feed: a `lead.synced` can follow, never a change.)
    assert!(
        before.as_array().unwrap().iter().all(|m| m["type"] != "lead.status_changed"),
        "no status change yet: {before}"
    );

    crm_change(&portal, &lead, "Contacted", 1).await;
    let mut socket = connect(&portal, Some(&a.admin)).await;
    socket
        .send(Message::Text(json!({"type": "resume", "after": from}).to_string().into()))
        .await
        .unwrap();
    let missed = until(&mut socket, "lead.status_changed", &lead).await.expect("the change");
    assert_eq!(missed["newStatus"], "contacted");
    assert!(missed["position"].as_i64().unwrap() > from);
    portal.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_and_the_others_keep_up() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "slow").await;
    let lead = lead_of(&portal, &a.admin, "slow@example.com").await;
    let mut reader = connect(&portal, Some(&a.admin)).await;
    let mut stalled = connect(&portal, Some(&a.admin)).await;
    // Both subscribed (the stalled one reads this one message, then never again).
    let ready = lead_of(&portal, &a.admin, "ready@example.com").await;
    for socket in [&mut reader, &mut stalled] {
        until(socket, "lead.created", &ready).await.expect("subscribed");
    }
    // Nothing else writes to the feed during the flood (the leads' sync messages are in): a
    // writer racing the flood's one big insert could take a position in its middle and commit
    // first, which only a second writer of the feed can do (the portal has one).
    portal.crm_synced().await;
    let start: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM live_feed")
        .fetch_one(&portal.pool)
        .await
        .unwrap();
    // A flood of large messages, as the leads projection would write them.
    const FLOOD: i64 = 12_000;
    sqlx::query(
        "INSERT INTO live_feed (kind, lead_id, partner_id, submitted_by_user, data) \
         SELECT 'lead.status_changed', $1, $2, NULL, jsonb_build_object('newStatus', 'contacted', 'padding', repeat('x', 8000)) \
         FROM generate_series(1, $3)",
    )
    .bind(lead.parse::<uuid::Uuid>().unwrap())
    .bind(a.id)
    .bind(FLOOD)
    .execute(&portal.pool)
    .await
    .unwrap();
    // The reading client gets every message, in order.
    let mut expected = start;
    let mut received = 0;
    while received < FLOOD {
        let message = next(&mut reader, 10_000).await.expect("the reader keeps receiving");
        let position = message["position"].as_i64().unwrap();
        if position <= start {
            continue;
        }
        assert_eq!(position, expected + 1, "no gap");
        expected = position;
        received += 1;
    }
    // The one that never read is closed with the code that says: resume.
    assert_eq!(close_code(&mut stalled, 30).await, Some(4410));
    portal.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_closed_with_4401_and_so_is_a_user_disabled_mid_connection() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "auth").await;
    for (kind, token) in bad_tokens(a.sub_id) {
        let mut socket = connect(&portal, Some(&token)).await;
        assert_eq!(close_code(&mut socket, 5).await, Some(4401), "{kind}");
    }
    let mut silent = connect(&portal, None).await;
    silent
        .send(Message::Text(json!({"type": "resume", "after": 0}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut silent, 5).await, Some(4401), "resume before auth");
    let auditor = portal.auditor("ws-auditor@example.com").await;
    let mut socket = connect(&portal, Some(&auditor)).await;
    assert_eq!(close_code(&mut socket, 5).await, Some(4403));

    let mut sub = connect(&portal, Some(&a.sub)).await;
    let disabled = portal
        .patch(
            &format!("/partners/{}/sub-accounts/{}", a.id, a.sub_id),
            Some(&a.admin),
            &json!({"disabled": true}),
        )
        .await;
    assert_eq!(disabled.status(), 200);
    assert_eq!(close_code(&mut sub, 10).await, Some(4401), "closed once disabled");
    portal.stop().await;
}

#[tokio::test]
async fn changes_and_resume_keep_to_the_callers_scope() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "scope-a").await;
    let b = portal.partner_with_team(&smtp, "scope-b").await;
    let by_admin = lead_of(&portal, &a.admin, "by-admin@example.com").await;
    let by_sub = lead_of(&portal, &a.sub, "by-sub@example.com").await;
    let by_other = lead_of(&portal, &b.admin, "by-other@example.com").await;
    for (n, lead) in [&by_admin, &by_sub, &by_other].into_iter().enumerate() {
        crm_change(&portal, lead, "Contacted", n).await;
    }
    let leads_in = |messages: &Value| -> std::collections::BTreeSet<String> {
        messages
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["leadId"].as_str().or(m["lead"]["id"].as_str()).unwrap().to_string())
            .collect()
    };
    for (who, token, visible) in [
        ("the admin", &a.admin, vec![&by_admin, &by_sub]),
        ("the sub-account", &a.sub, vec![&by_sub]),
        ("another partner", &b.admin, vec![&by_other]),
    ] {
        let changes = portal.get("/leads/changes?after=0", Some(token)).await;
        assert_eq!(changes.status(), 200);
        let changes: Value = changes.json().await.unwrap();
        let want: std::collections::BTreeSet<String> =
            visible.iter().map(|id| id.to_string()).collect();
        assert_eq!(leads_in(&changes), want, "{who}: /leads/changes");
        // Resuming from the start on a socket replays the same, and nothing else.
        let mut socket = connect(&portal, Some(token)).await;
        socket
            .send(Message::Text(json!({"type": "resume", "after": 0}).to_string().into()))
            .await
            .unwrap();
        let email = format!("resume-{}@example.com", uuid::Uuid::new_v4());
        let replayed = Value::Array(sentinel(&portal, &mut socket, token, &email).await);
        assert_eq!(leads_in(&replayed), want, "{who}: resume");
    }
    portal.stop().await;
}

#[tokio::test]
async fn a_partner_suspended_while_connected_is_closed_with_4401() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "suspended").await;
    let mut admin = connect(&portal, Some(&a.admin)).await;
    let mut sub = connect(&portal, Some(&a.sub)).await;
    sentinel(&portal, &mut admin, &a.sub, "alive-1@example.com").await;
    sentinel(&portal, &mut sub, &a.sub, "alive-2@example.com").await;
    let suspended = portal
        .webhook(
            "/webhooks/soho/partner",
            "msg_suspend_live",
            &common::partner_webhook("soho-suspended", &a.admin_email, false),
        )
        .await;
    assert_eq!(suspended.status(), 200);
    assert_eq!(close_code(&mut admin, 10).await, Some(4401), "the admin's socket");
    assert_eq!(close_code(&mut sub, 10).await, Some(4401), "the sub-account's socket");
    portal.stop().await;
}
