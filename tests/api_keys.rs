//! Partners' own systems (contract 8): API keys and idempotent submissions.

mod common;

use common::smtp::SmtpSink;
use common::TestPortal;
use serde_json::{json, Value};

async fn send(
    portal: &TestPortal,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = portal.http.request(method, portal.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_key_acts_as_its_partner_on_the_lead_routes_only_and_dies_on_every_server_at_once() {
    let smtp = SmtpSink::start().await;
    let one = TestPortal::start(&smtp, &[]).await;
    let two = TestPortal::start_on(one.pool.clone(), one.db_url.clone(), &smtp, &[]).await;
    let a = one.partner_with_team(&smtp, "keys-a").await;
    let b = one.partner_with_team(&smtp, "keys-b").await;
    let auditor = one.auditor("keys-auditor@example.com").await;
    let keys = format!("/partners/{}/api-keys", a.id);

    // Created by the admin, shown once; listed by prefix only.
    let created = one.post(&keys, Some(&a.admin), &json!({"name": "Our CRM"})).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let key_id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk_live_") && key.len() > 40, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    let listed: Value = one.get(&keys, Some(&a.admin)).await.json().await.unwrap();
    println!("created: {created}\nlisted: {listed}");
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "Our CRM");
    assert!(!listed.to_string().contains(&key), "the key is never listed");
    assert_eq!(
        one.count(&format!("SELECT count(*) FROM api_keys WHERE key_hash = '{key}'")).await,
        0,
        "only a hash is kept"
    );
    // Only the partner's admin manages keys.
    assert_eq!(one.get(&keys, Some(&a.sub)).await.status(), 403);
    let others = format!("/partners/{}/api-keys", b.id);
    assert_eq!(one.get(&others, Some(&a.admin)).await.status(), 404);

    // The key submits and reads its partner's leads, recorded as the key's doing.
    let lead = json!({"lastName": "Keyed", "email": "keyed@example.com"});
    let submitted = one.post("/leads", Some(&key), &lead).await;
    assert_eq!(submitted.status(), 201);
    let submitted: Value = submitted.json().await.unwrap();
    let id = submitted["id"].as_str().unwrap();
    assert_eq!(submitted["partnerId"], a.id.to_string());
    let events = one.get(&format!("/audit/leads/{id}/events"), Some(&auditor)).await;
    let status = events.status();
    let events: Value = events.json().await.unwrap();
    // (The CRM sync's event may land meanwhile: the answer is the stream as it was asked for.)
    assert_eq!(status, 200, "{events}");
    let metadata = &events[0]["metadata"];
    assert_eq!(metadata["actorType"], "api_key", "{metadata}");
    assert_eq!(metadata["actorId"], key_id.as_str(), "{metadata}");
    let b_lead: Value = one
        .post("/leads", Some(&b.admin), &json!({"lastName": "B", "email": "b@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let b_lead = b_lead["id"].as_str().unwrap();
    let list: Value = one.get("/leads", Some(&key)).await.json().await.unwrap();
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|l| l["lastName"].as_str().unwrap()).collect();
    assert_eq!(names, ["Keyed"]);
    assert_eq!(one.get(&format!("/leads/{id}"), Some(&key)).await.status(), 200);
    assert_eq!(one.get(&format!("/leads/{b_lead}"), Some(&key)).await.status(), 404);
    assert_eq!(one.get(&format!("/leads/{id}/history"), Some(&key)).await.status(), 200);
    assert_eq!(one.get("/dashboard/stats", Some(&key)).await.status(), 200);
    let status = json!({"status": "contacted"});
    let changed = one.patch(&format!("/leads/{id}/status"), Some(&key), &status).await;
    assert_eq!(changed.status(), 200);

    // Nothing else: no team, no keys, no partner profile, no weekly chart, no live socket.
    for (method, path) in [
        (reqwest::Method::GET, format!("/partners/{}", a.id)),
        (reqwest::Method::GET, format!("/partners/{}/sub-accounts", a.id)),
        (reqwest::Method::GET, keys.clone()),
        (reqwest::Method::POST, keys.clone()),
        (reqwest::Method::DELETE, format!("{keys}/{key_id}")),
        (reqwest::Method::GET, "/dashboard/weekly".to_string()),
        (reqwest::Method::GET, "/leads/changes".to_string()),
        (reqwest::Method::GET, "/leads/export.csv".to_string()),
    ] {
        let refused = send(&one, method.clone(), &path, &key, Some(&json!({}))).await;
        assert_eq!(refused.status(), 403, "{method} {path}");
    }

    // Another partner's key finds nothing of this partner's.
    let b_key: Value = one.post(&others, Some(&b.admin), &json!({})).await.json().await.unwrap();
    let b_key = b_key["key"].as_str().unwrap();
    assert_eq!(one.get(&format!("/leads/{id}"), Some(b_key)).await.status(), 404);

    // Revoked on one server: refused on the other at once.
    assert_eq!(two.get("/leads", Some(&key)).await.status(), 200);
    let revoked =
        send(&one, reqwest::Method::DELETE, &format!("{keys}/{key_id}"), &a.admin, None).await;
    assert_eq!(revoked.status(), 204);
    let after = two.get("/leads", Some(&key)).await;
    println!("revoked: {} on server 1; the key on server 2: {}", revoked.status(), after.status());
    assert_eq!(after.status(), 401);
    assert_eq!(one.get("/leads", Some(&key)).await.status(), 401);
    let listed: Value = one.get(&keys, Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(listed, json!([]));
    let again =
        send(&one, reqwest::Method::DELETE, &format!("{keys}/{key_id}"), &a.admin, None).await;
    assert_eq!(again.status(), 404);
    assert_eq!(one.get("/leads", Some("sk_live_madeup")).await.status(), 401);
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn a_key_is_rate_limited() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[("API_KEY_RATE_LIMIT", "5")]).await;
    let a = portal.partner_with_team(&smtp, "keys-rl").await;
    let created: Value = portal
        .post(&format!("/partners/{}/api-keys", a.id), Some(&a.admin), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = portal.get("/dashboard/stats", Some(key)).await;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.starts_with(&[200, 200, 200, 200, 200]), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // The admin's own session is not limited by its key's budget.
    assert_eq!(portal.get("/dashboard/stats", Some(&a.admin)).await.status(), 200);
    portal.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_gives_one_lead_and_the_same_answer() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "idem").await;
    let created: Value = portal
        .post(&format!("/partners/{}/api-keys", a.id), Some(&a.admin), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let submit = |token: String, idempotency: &'static str, body: Value| {
        let portal = &portal;
        async move {
            let response = portal
                .http
                .post(portal.url("/leads"))
                .bearer_auth(token)
                .header("Idempotency-Key", idempotency)
                .json(&body)
                .send()
                .await
                .unwrap();
            let replayed = response.headers().contains_key("idempotent-replayed");
            (response.status().as_u16(), response.json::<Value>().await.unwrap(), replayed)
        }
    };
    let body = json!({"lastName": "Once", "email": "once@example.com", "company": "Acme"});
    // The same body with its fields in another order is the same body.
    let reordered = json!({"company": "Acme", "email": "once@example.com", "lastName": "Once"});
    let (first, second) = tokio::join!(
        submit(key.clone(), "order-1", body.clone()),
        submit(key.clone(), "order-1", reordered)
    );
    assert_eq!(first.0, 201, "{first:?}");
    assert_eq!((second.0, &second.1), (201, &first.1), "the same answer, concurrently");
    assert!(first.2 != second.2, "one of them is the replay");
    let third = submit(key.clone(), "order-1", body.clone()).await;
    assert_eq!((third.0, &third.1, third.2), (201, &first.1, true));
    assert_eq!(portal.count("SELECT count(*) FROM leads").await, 1);
    assert_eq!(
        portal.count("SELECT count(*) FROM events WHERE event_type = 'LeadSubmitted'").await,
        1
    );

    // The same key with another body is refused; another key is another request.
    let other = json!({"lastName": "Twice", "email": "twice@example.com"});
    let refused = submit(key.clone(), "order-1", other.clone()).await;
    assert_eq!(refused.0, 422);
    assert_eq!(common::problem_fields(&refused.1), vec!["Idempotency-Key"]);
    assert_eq!(submit(key.clone(), "order-2", other.clone()).await.0, 201);
    // Keys are per caller: the admin's session with the same key is its own request.
    let admin =
        submit(a.admin.clone(), "order-1", json!({"lastName": "Mine", "email": "m@example.com"}))
            .await;
    assert_eq!(admin.0, 201);
    // A refusal is not kept: corrected, the same key goes through.
    let invalid = submit(key.clone(), "order-3", json!({"lastName": ""})).await;
    assert_eq!(invalid.0, 422);
    let valid =
        submit(key.clone(), "order-3", json!({"lastName": "Fixed", "email": "f@example.com"}))
            .await;
    assert_eq!(valid.0, 201);
    let bad_key = submit(key.clone(), "", json!({"lastName": "X", "email": "x@example.com"})).await;
    assert_eq!(bad_key.0, 422);
    assert_eq!(portal.count("SELECT count(*) FROM leads").await, 4);
    portal.stop().await;
}
