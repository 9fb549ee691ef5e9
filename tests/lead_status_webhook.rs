//! `POST /webhooks/soho/lead-status` against the contract: signatures, `webhook-id`
//! idempotency, a failed delivery and its retry, and leads the portal does not know.

mod common;

use common::smtp::SmtpSink;
use common::TestPortal;
use serde_json::{json, Value};

const PATH: &str = "/webhooks/soho/lead-status";

fn change(soho_lead_id: &str, status: &str) -> Value {
    json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now().to_rfc3339(),
           "lead": {"sohoLeadId": soho_lead_id, "status": status}})
}

async fn history_len(portal: &TestPortal, token: &str, lead: &str) -> usize {
    let history: Value =
        portal.get(&format!("/leads/{lead}/history"), Some(token)).await.json().await.unwrap();
    history.as_array().unwrap().len()
}

#[tokio::test]
async fn every_bad_signature_is_refused_and_a_retried_id_has_one_effect() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "sig").await;
    let lead: Value = portal
        .post("/leads", Some(&a.admin), &json!({"lastName": "Signed", "email": "s@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let id = lead["id"].as_str().unwrap().to_string();
    portal.crm_synced().await;
    let synced: Value =
        portal.get(&format!("/leads/{id}"), Some(&a.admin)).await.json().await.unwrap();
    let soho_id = synced["sohoLeadId"].as_str().unwrap().to_string();

    let body = change(&soho_id, "Contacted").to_string();
    common::refuses_bad_signatures(&portal, PATH, "msg_sig", &body).await;
    assert_eq!(history_len(&portal, &a.admin, &id).await, 0, "nothing was recorded");
    assert_eq!(
        portal
            .count("SELECT count(*) FROM webhook_receipts WHERE endpoint LIKE '%lead-status%'")
            .await,
        0
    );

    // Delivered three times with one id (twice at once): one change, the same answer each time.
    let body = change(&soho_id, "Contacted");
    let first: Value = portal.webhook(PATH, "msg_once", &body).await.json().await.unwrap();
    assert_eq!(first["status"], "contacted");
    let (second, third) = tokio::join!(
        portal.webhook(PATH, "msg_once", &body),
        portal.webhook(PATH, "msg_once", &body)
    );
    assert_eq!((second.status().as_u16(), third.status().as_u16()), (200, 200));
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(third.json::<Value>().await.unwrap(), first);
    assert_eq!(history_len(&portal, &a.admin, &id).await, 1, "one change");

    // A new id delivered three times at once (likely in one batch of the writer): one change.
    let body = change(&soho_id, "Qualified");
    let (a1, a2, a3) = tokio::join!(
        portal.webhook(PATH, "msg_race", &body),
        portal.webhook(PATH, "msg_race", &body),
        portal.webhook(PATH, "msg_race", &body)
    );
    let answers: Vec<Value> =
        vec![a1.json().await.unwrap(), a2.json().await.unwrap(), a3.json().await.unwrap()];
    assert_eq!(answers[0]["status"], "qualified", "{answers:?}");
    assert!(answers.iter().all(|a| *a == answers[0]), "the same answer each time: {answers:?}");
    assert_eq!(history_len(&portal, &a.admin, &id).await, 2, "one more change");
    assert_eq!(
        portal.count("SELECT count(*) FROM webhook_receipts WHERE webhook_id = 'msg_race'").await,
        1
    );
    portal.stop().await;
}

#[tokio::test]
async fn a_delivery_for_an_unknown_lead_fails_and_its_retry_succeeds_once_the_lead_is_known() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "retry").await;
    // Soho CRM is down: the lead is not synced yet, so its CRM id is unknown to the portal.
    let sim = portal.simulator_url();
    common::sim_post(&sim, "/sim/faults", json!({"outageSeconds": 600})).await;
    let lead: Value = portal
        .post("/leads", Some(&a.admin), &json!({"lastName": "Early", "email": "e@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let id = lead["id"].as_str().unwrap().to_string();
    // The simulator's first record will have this id (its ids count up from a fixed start).
    let soho_id = "5725767000000611002";
    let body = change(soho_id, "Qualified");
    let unknown = portal.webhook(PATH, "msg_early", &body).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
    assert_eq!(
        portal
            .count("SELECT count(*) FROM webhook_receipts WHERE endpoint LIKE '%lead-status%'")
            .await,
        0
    );
    let nobody = portal.webhook(PATH, "msg_nobody", &change("999", "Qualified")).await;
    assert_eq!(nobody.status(), 404, "an unknown sohoLeadId");
    let stranger = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now(),
        "lead": {"portalLeadId": uuid::Uuid::new_v4(), "status": "Qualified"}});
    let stranger = portal.webhook(PATH, "msg_stranger", &stranger).await;
    assert_eq!(stranger.status(), 404, "an unknown portalLeadId");
    assert_eq!(
        portal
            .count("SELECT count(*) FROM webhook_receipts WHERE webhook_id = 'msg_stranger'")
            .await,
        0,
        "a refused delivery leaves no receipt: its retry is decided afresh"
    );

    // The CRM is back, the lead syncs; the CRM retries the same delivery, which now applies.
    common::sim_post(&sim, "/sim/faults", json!({})).await;
    portal.crm_synced().await;
    let synced: Value =
        portal.get(&format!("/leads/{id}"), Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(synced["sohoLeadId"], soho_id);
    let retried = portal.webhook(PATH, "msg_early", &body).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(retried.json::<Value>().await.unwrap()["status"], "qualified");
    let again = portal.webhook(PATH, "msg_early", &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(history_len(&portal, &a.admin, &id).await, 1, "applied once");
    portal.stop().await;
}

/// The writer's opening query carries the values its rules read (people's keys, webhook ids)
/// as SQL literals: quotes and backslashes in them are values, never SQL.
#[tokio::test]
async fn quotes_and_backslashes_reach_the_writer_as_values() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "quotes").await;
    let person = json!({"lastName": "O'Brien", "email": "o'brien'--@example.com"});
    let first = portal.post("/leads", Some(&a.admin), &person).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = portal.post("/leads", Some(&a.admin), &person).await;
    assert_eq!(again.status(), 200, "the same person, found by the quoted email");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);

    let id = first["id"].as_str().unwrap();
    let body = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now(),
        "lead": {"portalLeadId": id, "status": "Contacted"}});
    let webhook_id = r"msg_'\'); DELETE FROM webhook_receipts; --";
    let once: Value = portal.webhook(PATH, webhook_id, &body).await.json().await.unwrap();
    assert_eq!(once["status"], "contacted");
    let twice = portal.webhook(PATH, webhook_id, &body).await;
    assert_eq!(twice.json::<Value>().await.unwrap(), once, "the repeat found its receipt");
    assert_eq!(history_len(&portal, &a.admin, id).await, 1, "one change");
    let receipts: Vec<String> = sqlx::query_scalar("SELECT webhook_id FROM webhook_receipts")
        .fetch_all(&portal.pool)
        .await
        .unwrap();
    assert!(receipts.iter().any(|r| r == webhook_id), "{receipts:?}");
    portal.stop().await;
}
