//! Soho CRM at a real org's limits (issue 14): calls of up to 100 records answered record by
//! record, the org's cap on calls at once across servers, and its daily credit budget.

mod common;

use std::time::Duration;

use common::smtp::SmtpSink;
use common::{crm_settings, external_simulator, sim_post, sim_records, sim_state, TestPortal};
use serde_json::{json, Value};

/// Submits `count` leads at once (16 at a time) as `token`; `last_name(n)` names each.
async fn submit(
    portals: &[&TestPortal],
    token: &str,
    count: usize,
    last_name: impl Fn(usize) -> String,
) -> Vec<String> {
    let requests = (0..count).map(|n| {
        let portal = portals[n % portals.len()];
        let body = json!({"firstName": format!("First{n}"), "lastName": last_name(n),
            "email": format!("batch{n}@example.com"), "phone": format!("+44 20 7946 {n:04}"),
            "company": format!("Company {n}"), "notes": format!("Note {n}")});
        async move {
            let response = portal.post("/leads", Some(token), &body).await;
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    });
    futures::StreamExt::collect(futures::StreamExt::buffered(futures::stream::iter(requests), 16))
        .await
}

fn settings(sim: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut settings = crm_settings(sim);
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    settings
}

fn borrowed(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The calls of the log to `path` that were answered (no fault), with their records.
fn answered<'a>(state: &'a Value, path: &str) -> Vec<&'a Vec<Value>> {
    state["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["path"] == path && c["fault"].is_null())
        .map(|c| c["records"].as_array().unwrap())
        .collect()
}

#[tokio::test]
async fn leads_and_status_changes_go_to_the_crm_in_batches_in_per_lead_order() {
    let smtp = SmtpSink::start().await;
    let (sim, _task) = external_simulator("http://127.0.0.1:9").await;
    // One call at a time, each taking a second: what is submitted meanwhile waits for the next.
    sim_post(&sim, "/sim/faults", json!({"latencyMs": 1000})).await;
    let settings = settings(&sim, &[("SOHO_CONCURRENCY", "1")]);
    let portal = TestPortal::start(&smtp, &borrowed(&settings)).await;
    let a = portal.partner_with_team(&smtp, "batches").await;
    let ids = submit(&[&portal], &a.admin, 250, |n| format!("Batch{n}")).await;
    portal.crm_synced().await;
    common::wait_for_crm(&portal.pool, 250, 60).await;

    let state = sim_state(&sim).await;
    let upserts = answered(&state, "/Leads/upsert");
    let carried: Vec<usize> = upserts.iter().map(|r| r.len()).collect();
    assert_eq!(carried.iter().sum::<usize>(), 250, "every lead upserted once: {carried:?}");
    assert!(carried.iter().all(|n| *n <= 100), "{carried:?}");
    assert!(upserts.len() <= 8, "a handful of calls, not one a lead: {carried:?}");
    assert!(carried.contains(&100), "full batches: {carried:?}");
    // Every field mapped, for every lead.
    let leads = state["leads"].as_array().unwrap();
    assert_eq!(leads.len(), 250);
    for (n, id) in ids.iter().enumerate() {
        let lead = leads.iter().find(|l| l["fields"]["Portal_Lead_Id"] == id.as_str()).unwrap();
        let expected = json!({"Last_Name": format!("Batch{n}"), "First_Name": format!("First{n}"),
            "Email": format!("batch{n}@example.com"), "Phone": format!("+44 20 7946 {n:04}"),
            "Company": format!("Company {n}"), "Description": format!("Note {n}"),
            "Lead_Source": "Partner Portal", "Lead_Status": "Not Contacted", "Portal_Lead_Id": id,
            "Partner_Id": "soho-batches", "Channel_Conflict": false});
        assert_eq!(Value::Object(lead["fields"].as_object().unwrap().clone()), expected);
    }

    // Two status changes on each, submitted as fast as the portal takes them: batched `PUT`s,
    // each lead's in order.
    for status in ["contacted", "qualified"] {
        let changes = ids.iter().map(|id| {
            let (portal, token) = (&portal, &a.admin);
            async move {
                let path = format!("/leads/{id}/status");
                let response = portal.patch(&path, Some(token), &json!({"status": status})).await;
                assert_eq!(response.status(), 200);
            }
        });
        futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(
            futures::stream::iter(changes),
            16,
        ))
        .await;
    }
    portal.crm_synced().await;
    common::wait_for_crm(&portal.pool, 250, 60).await;
    let state = sim_state(&sim).await;
    let updates = answered(&state, "/Leads");
    let carried: Vec<usize> = updates.iter().map(|r| r.len()).collect();
    assert_eq!(carried.iter().sum::<usize>(), 500, "{carried:?}");
    assert!(carried.iter().all(|n| *n <= 100), "{carried:?}");
    assert!(updates.len() <= 20, "batched: {carried:?}");
    let records = sim_records(&state);
    for id in &ids {
        let sequence: Vec<&str> = records
            .iter()
            .filter(|r| r["path"] == "/Leads" && r["portalLeadId"] == id.as_str())
            .map(|r| r["leadStatus"].as_str().unwrap())
            .collect();
        assert_eq!(sequence, ["Contacted", "Pre-Qualified"], "{id}");
        let lead = state["leads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["fields"]["Portal_Lead_Id"] == id.as_str())
            .unwrap();
        assert_eq!(lead["leadStatus"], "Pre-Qualified");
    }
    portal.stop().await;
}

#[tokio::test]
async fn refused_records_fail_only_their_leads_and_crm_retry_syncs_them_once_fixed() {
    let smtp = SmtpSink::start().await;
    let (sim, _task) = external_simulator("http://127.0.0.1:9").await;
    sim_post(&sim, "/sim/faults", json!({"latencyMs": 1000, "rejectLastName": "Refused"})).await;
    let settings = settings(&sim, &[("SOHO_CONCURRENCY", "1")]);
    let portal = TestPortal::start(&smtp, &borrowed(&settings)).await;
    let a = portal.partner_with_team(&smtp, "refusals").await;
    let refused_at = [40, 70, 99];
    let ids = submit(&[&portal], &a.admin, 100, |n| {
        if refused_at.contains(&n) {
            format!("Refused{n}")
        } else {
            format!("Fine{n}")
        }
    })
    .await;
    portal.crm_synced().await;

    let state = sim_state(&sim).await;
    let mixed = answered(&state, "/Leads/upsert").into_iter().any(|records| {
        let codes: Vec<&Value> = records.iter().map(|r| &r["code"]).collect();
        codes.contains(&&json!("INVALID_DATA")) && codes.contains(&&json!("SUCCESS"))
    });
    assert!(mixed, "a call carried refused and accepted records");
    for (n, id) in ids.iter().enumerate() {
        let lead: Value =
            portal.get(&format!("/leads/{id}"), Some(&a.admin)).await.json().await.unwrap();
        if refused_at.contains(&n) {
            assert_eq!(lead["syncState"], "failed", "{lead}");
            let error = lead["syncError"].as_str().unwrap();
            assert!(error.contains("INVALID_DATA") && error.contains("Last_Name"), "{lead}");
        } else {
            assert_eq!(lead["syncState"], "synced", "{lead}");
        }
    }
    let status = portal.cli(&["crm", "status"]).await;
    assert!(status.contains("failed calls:         3"), "{status}");

    // A status change waits for its lead's upsert: the refused lead's is held back while a
    // synced lead's, changed at the same moment, goes (the same kind, so it would share a call).
    let (held, fine) = (&ids[refused_at[0]], &ids[0]);
    for id in [held, fine] {
        let path = format!("/leads/{id}/status");
        let response = portal.patch(&path, Some(&a.admin), &json!({"status": "contacted"})).await;
        assert_eq!(response.status(), 200);
    }
    let sent = "SELECT count(*) FROM crm_outbox WHERE kind = 'status' AND state <> 'pending'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while portal.count(sent).await == 0 {
        assert!(std::time::Instant::now() < deadline, "the synced lead's change was not sent");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let updated = |state: &Value, id: &str| {
        sim_records(state)
            .iter()
            .filter(|r| r["path"] == "/Leads" && r["portalLeadId"] == id)
            .count()
    };
    let state = sim_state(&sim).await;
    assert_eq!(updated(&state, fine), 1, "the synced lead's change went");
    assert_eq!(updated(&state, held), 0, "no change of a lead the CRM has not taken");
    assert_eq!(portal.count(sent).await, 1, "the held lead's change waits");
    let tried = format!(
        "SELECT count(*) FROM crm_outbox WHERE kind = 'status' AND lead_id = '{held}' \
         AND (attempts > 0 OR last_error IS NOT NULL)"
    );
    assert_eq!(
        portal.count(&tried).await,
        0,
        "untouched: not taken while its upsert is unfinished"
    );

    // The cause fixed in the CRM, the operator retries: the three sync, once each, and the
    // held change follows its lead's upsert.
    sim_post(&sim, "/sim/faults", json!({})).await;
    let retried = portal.cli(&["crm", "retry", "--all-failed"]).await;
    assert!(retried.contains("3 failed call(s)"), "{retried}");
    common::wait_for_crm(&portal.pool, 100, 30).await;
    portal.crm_drained().await;
    let state = sim_state(&sim).await;
    let leads = state["leads"].as_array().unwrap();
    assert_eq!(leads.len(), 100);
    assert!(leads.iter().all(|l| l["inserts"] == 1), "each inserted once");
    assert_eq!(updated(&state, held), 1, "the held change went once its lead was in the CRM");
    let lead = leads.iter().find(|l| l["fields"]["Portal_Lead_Id"] == held.as_str()).unwrap();
    assert_eq!(lead["leadStatus"], "Contacted");
    portal.stop().await;
}

#[tokio::test]
async fn three_servers_never_make_more_calls_at_once_than_the_orgs_cap() {
    let smtp = SmtpSink::start().await;
    let (sim, _task) = external_simulator("http://127.0.0.1:9").await;
    // The org's cap is 2: a third call at once would be refused (and show in the log).
    sim_post(&sim, "/sim/limits", json!({"concurrency": 2, "dailyCredits": 60000})).await;
    sim_post(&sim, "/sim/faults", json!({"latencyMs": 300})).await;
    let settings = settings(&sim, &[("SOHO_CONCURRENCY", "2")]);
    let settings = borrowed(&settings);
    let one = TestPortal::start(&smtp, &settings).await;
    let two = TestPortal::start_on(one.pool.clone(), one.db_url.clone(), &smtp, &settings).await;
    let three = TestPortal::start_on(one.pool.clone(), one.db_url.clone(), &smtp, &settings).await;
    let a = one.partner_with_team(&smtp, "capped").await;
    let ids = submit(&[&one, &two, &three], &a.admin, 300, |n| format!("Capped{n}")).await;
    for (n, id) in ids.iter().enumerate().take(60) {
        let server = [&one, &two, &three][n % 3];
        let path = format!("/leads/{id}/status");
        let response = server.patch(&path, Some(&a.admin), &json!({"status": "contacted"})).await;
        assert_eq!(response.status(), 200);
    }
    common::wait_for_crm(&one.pool, 300, 90).await;

    let state = sim_state(&sim).await;
    assert!(state["mostCallsInFlight"].as_u64().unwrap() <= 2, "{}", state["mostCallsInFlight"]);
    assert_eq!(state["mostCallsInFlight"], 2, "the cap was used, not undershot");
    let refused = state["calls"].as_array().unwrap().iter().filter(|c| c["fault"] == "concurrency");
    assert_eq!(refused.count(), 0, "no call was over the cap");
    let leads = state["leads"].as_array().unwrap();
    assert_eq!(leads.len(), 300);
    assert!(leads.iter().all(|l| l["inserts"] == 1));
    let contacted = leads.iter().filter(|l| l["leadStatus"] == "Contacted").count();
    assert_eq!(contacted, 60);
    for portal in [one, two, three] {
        portal.stop().await;
    }
}

#[tokio::test]
async fn sync_pauses_when_the_credit_budget_is_spent_and_resumes_when_it_is_raised() {
    let smtp = SmtpSink::start().await;
    let (sim, _task) = external_simulator("http://127.0.0.1:9").await;
    sim_post(&sim, "/sim/faults", json!({"latencyMs": 500})).await;
    let budget = [("SOHO_CONCURRENCY", "1"), ("SOHO_DAILY_CREDITS", "2")];
    let first = settings(&sim, &budget);
    let portal = TestPortal::start(&smtp, &borrowed(&first)).await;
    let a = portal.partner_with_team(&smtp, "budget").await;
    submit(&[&portal], &a.admin, 250, |n| format!("Budget{n}")).await;
    portal.settled("crm_outbox").await;

    // Two calls carry at most 200 leads: sync pauses with some still pending, and says why.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = portal.cli_with(&budget, &["crm", "status"]).await;
        if status.contains("paused until") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "never paused: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.contains("the daily credit budget is spent (2 of 2 in 24 h)"), "{status}");
    assert!(status.contains("credits used (24 h):  2 of 2"), "{status}");
    // The second call may still be in flight (its credit is spent before it is made).
    let mut state = sim_state(&sim).await;
    while state["callsInFlight"] != 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = sim_state(&sim).await;
    }
    let calls = state["calls"].as_array().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = sim_state(&sim).await;
    assert_eq!(state["calls"].as_array().unwrap().len(), calls, "no call while paused");
    assert_eq!(calls, 2);
    let pending = portal.count("SELECT count(*) FROM crm_outbox WHERE state = 'pending'").await;
    assert!(pending >= 50, "{pending} pending");
    let metrics = portal.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("soho_crm_sync_paused 1"), "{metrics}");
    assert!(metrics.contains("soho_crm_credits_used 2"), "{metrics}");

    // The budget raised (the server restarted with it): every lead syncs, exactly once. The
    // first server's handle keeps the test database until the end.
    let mut stopped = portal;
    stopped.running.take().expect("running").stop().await.expect("stop");
    let raised = settings(&sim, &[("SOHO_CONCURRENCY", "1"), ("SOHO_DAILY_CREDITS", "100")]);
    let (pool, db_url) = (stopped.pool.clone(), stopped.db_url.clone());
    let portal = TestPortal::start_on(pool, db_url, &smtp, &borrowed(&raised)).await;
    common::wait_for_crm(&portal.pool, 250, 60).await;
    let state = sim_state(&sim).await;
    let leads = state["leads"].as_array().unwrap();
    assert_eq!(leads.len(), 250);
    assert!(leads.iter().all(|l| l["inserts"] == 1), "each synced exactly once");
    let status = portal.cli_with(&[("SOHO_DAILY_CREDITS", "100")], &["crm", "status"]).await;
    assert!(status.contains("sync:                 running"), "{status}");
    portal.stop().await;
    stopped.stop().await;
}
