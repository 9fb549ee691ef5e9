//! The Soho CRM sync against a real simulator: fields, round trips without echo, permanent
//! failures and `crm retry`, and two servers on one database.

mod common;

use std::time::Duration;

use common::smtp::SmtpSink;
use common::{crm_settings, external_simulator, sim_post, sim_state, TestPortal};
use serde_json::{json, Value};

async fn wait_for<F, Fut>(what: &str, seconds: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the lead until its sync state is `state`; returns it.
async fn lead_when(portal: &TestPortal, token: &str, id: &str, state: &str, seconds: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let lead: Value =
            portal.get(&format!("/leads/{id}"), Some(token)).await.json().await.unwrap();
        if lead["syncState"] == state {
            return lead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lead {id} not {state} within {seconds} s: {lead}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sim_lead<'a>(state: &'a Value, portal_id: &str) -> Vec<&'a Value> {
    state["leads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["fields"]["Portal_Lead_Id"] == portal_id)
        .collect()
}

#[tokio::test]
async fn a_lead_round_trips_through_soho_crm_without_an_echo() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let sim = portal.simulator_url();
    let a = portal.partner_with_team(&smtp, "crm").await;
    let body = json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000",
        "company": "Analytical Engines", "notes": "Wants a demo"});
    let lead: Value = portal.post("/leads", Some(&a.sub), &body).await.json().await.unwrap();
    let id = lead["id"].as_str().unwrap().to_string();

    let synced = lead_when(&portal, &a.admin, &id, "synced", 20).await;
    let state = sim_state(&sim).await;
    let records = sim_lead(&state, &id);
    assert_eq!(records.len(), 1, "once in the CRM");
    let record = records[0];
    assert_eq!(synced["sohoLeadId"], record["id"]);
    let fields = &record["fields"];
    for (field, value) in [
        ("Last_Name", json!("Lovelace")),
        ("First_Name", json!("Ada")),
        ("Email", json!("ada@example.com")),
        ("Phone", json!("+44 20 7946 0000")),
        ("Company", json!("Analytical Engines")),
        ("Description", json!("Wants a demo")),
        ("Lead_Source", json!("Partner Portal")),
        ("Lead_Status", json!("Not Contacted")),
        ("Partner_Id", json!("soho-crm")),
        ("Channel_Conflict", json!(false)),
    ] {
        assert_eq!(fields[field], value, "{field}");
    }
    let soho_id = record["id"].as_str().unwrap().to_string();

    // Portal → CRM, and no webhook comes back for it: the simulator, like Zoho, sends one for
    // any change made without `"trigger": []`, before it answers the call.
    let webhooks_before = state["webhooksSent"].as_u64().unwrap();
    let changed = portal
        .patch(&format!("/leads/{id}/status"), Some(&a.sub), &json!({"status": "contacted"}))
        .await;
    assert_eq!(changed.status(), 200);
    portal.settled("crm_outbox").await;
    portal.crm_drained().await;
    let state = sim_state(&sim).await;
    let record = sim_lead(&state, &id)[0].clone();
    assert_eq!(record["leadStatus"], "Contacted", "the CRM has the portal's status");
    assert_eq!(state["webhooksSent"].as_u64().unwrap(), webhooks_before, "no echo");

    // CRM → portal by a signed webhook from the simulator.
    let answer =
        sim_post(&sim, &format!("/sim/leads/{soho_id}/status"), json!({"status": "Qualified"}))
            .await;
    assert_eq!(answer["portalStatus"], 200, "{answer}");
    let lead: Value = portal.get(&format!("/leads/{id}"), Some(&a.sub)).await.json().await.unwrap();
    assert_eq!(lead["status"], "qualified");
    let state = sim_state(&sim).await;
    assert_eq!(
        state["webhooksSent"].as_u64().unwrap(),
        webhooks_before + 1,
        "only the operator's change sent a webhook"
    );
    let records: Vec<Value> = common::sim_records(&state)
        .into_iter()
        .filter(|r| r["portalLeadId"] == id.as_str())
        .collect();
    let calls: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [("/Leads/upsert", "SUCCESS"), ("/Leads", "SUCCESS")],
        "one upsert and one status update, and no echo"
    );
    let history: Value =
        portal.get(&format!("/leads/{id}/history"), Some(&a.admin)).await.json().await.unwrap();
    let sources: Vec<&str> =
        history.as_array().unwrap().iter().map(|h| h["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["portal", "crm"]);
    portal.stop().await;
}

#[tokio::test]
async fn a_lead_the_crm_refuses_is_failed_with_its_message_and_crm_retry_syncs_it() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let sim = portal.simulator_url();
    let a = portal.partner_with_team(&smtp, "refused").await;
    sim_post(&sim, "/sim/faults", json!({"rejectLastName": "Refused"})).await;
    let lead: Value = portal
        .post("/leads", Some(&a.admin), &json!({"lastName": "Refused", "email": "r@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let id = lead["id"].as_str().unwrap().to_string();
    let failed = lead_when(&portal, &a.admin, &id, "failed", 20).await;
    assert!(failed["syncError"].as_str().unwrap().contains("INVALID_DATA"), "{failed}");
    let status = portal.cli(&["crm", "status"]).await;
    assert!(status.contains("failed calls:         1"), "{status}");
    assert!(status.contains("INVALID_DATA"), "{status}");

    // Fixed in the CRM; the operator retries.
    sim_post(&sim, "/sim/faults", json!({})).await;
    let retried = portal.cli(&["crm", "retry", &id]).await;
    assert!(retried.contains("1 failed call(s)"), "{retried}");
    lead_when(&portal, &a.admin, &id, "synced", 20).await;
    let status = portal.cli(&["crm", "status"]).await;
    assert!(
        status.contains("pending calls:        0") && status.contains("failed calls:         0"),
        "{status}"
    );
    let metrics = portal.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("soho_crm_failures_total 1"), "{metrics}");
    assert!(metrics.contains("soho_crm_pending 0"), "{metrics}");
    // Readiness is public: it says ready, and nothing of the CRM (its address, its errors).
    let ready: Value = portal.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready, json!({"status": "ready"}));
    portal.stop().await;
}

#[tokio::test]
async fn two_servers_on_one_database_never_make_a_call_twice() {
    let smtp = SmtpSink::start().await;
    let (sim, _sim_task) = external_simulator("http://127.0.0.1:9").await;
    let settings = crm_settings(&sim);
    let settings: Vec<(&str, &str)> =
        settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let one = TestPortal::start(&smtp, &settings).await;
    let two = TestPortal::start_on(one.pool.clone(), one.db_url.clone(), &smtp, &settings).await;
    let a = one.partner_with_team(&smtp, "two").await;
    let submissions = (0..150).map(|n| {
        let server = if n % 2 == 0 { &one } else { &two };
        let token = a.admin.clone();
        async move {
            let response = server
                .post(
                    "/leads",
                    Some(&token),
                    &json!({"lastName": format!("Two{n}"), "email": format!("two{n}@example.com")}),
                )
                .await;
            assert_eq!(response.status(), 201);
        }
    });
    futures::future::join_all(submissions).await;
    wait_for("every lead to be synced", 60, || {
        let one = &one;
        async move { one.count("SELECT count(*) FROM leads WHERE sync_state = 'synced'").await == 150 }
    })
    .await;
    let state = sim_state(&sim).await;
    let upserts = common::sim_records(&state)
        .into_iter()
        .filter(|r| r["path"] == "/Leads/upsert" && r["code"] == "SUCCESS")
        .count();
    assert_eq!(upserts, 150, "one upsert per lead, across both servers");
    assert!(state["leads"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["inserts"] == 1 && l["updates"] == 0));
    one.stop().await;
    two.stop().await;
}

/// The fault run's "refreshes overlapped" check counts refreshes the simulator is answering: two
/// made at once overlap, but one whose caller went away (a portal killed mid-refresh) ends there.
#[tokio::test]
async fn the_simulator_counts_overlapping_refreshes_and_forgets_abandoned_ones() {
    let (sim, _task) = common::seeded_simulator("http://127.0.0.1:9", 1).await;
    sim_post(&sim, "/sim/faults", json!({"latencyMs": 800})).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "r"),
        ("client_id", "c"),
        ("client_secret", "s"),
    ];
    let refresh = |timeout_ms: u64| {
        let sim = sim.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{sim}/oauth/v2/token"))
                .form(&form)
                .timeout(Duration::from_millis(timeout_ms))
                .send()
                .await
                .is_ok()
        }
    };
    // Abandoned after 100 ms, then a full one: never two at once.
    assert!(!refresh(100).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(refresh(5_000).await);
    assert_eq!(sim_state(&sim).await["mostTokenRefreshesInFlight"], 1);
    // Two at once: counted.
    let (a, b) = tokio::join!(refresh(5_000), refresh(5_000));
    assert!(a && b);
    assert_eq!(sim_state(&sim).await["mostTokenRefreshesInFlight"], 2);
}
