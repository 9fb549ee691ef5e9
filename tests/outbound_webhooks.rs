//! Outbound webhooks (contract 8) against a real HTTP receiver that checks every signature with
//! the `standardwebhooks` crate, as a partner's system would.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::smtp::SmtpSink;
use common::TestPortal;
use serde_json::{json, Value};

/// What the receiver got: (webhook-id, body), in order; and how it answers.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
    /// Never answer this many requests first (a receiver that hangs).
    hang_first: Arc<Mutex<usize>>,
    secret: Arc<Mutex<String>>,
}

impl Receiver {
    /// Listens on 127.0.0.1; returns the endpoint URL.
    async fn start(&self) -> String {
        let receiver = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let receiver = receiver.clone();
                async move {
                    let hang = {
                        let mut hang = receiver.hang_first.lock().unwrap();
                        let now = *hang > 0;
                        *hang = hang.saturating_sub(1);
                        now
                    };
                    if hang {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let secret = receiver.secret.lock().unwrap().clone();
                    let webhook = standardwebhooks::Webhook::new(&secret).unwrap();
                    if webhook.verify(&body, &headers).is_err() {
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    let id = headers["webhook-id"].to_str().unwrap().to_string();
                    receiver.got.lock().unwrap().push((id, serde_json::from_slice(&body).unwrap()));
                    let fail = {
                        let mut fail = receiver.fail_first.lock().unwrap();
                        let now = *fail > 0;
                        *fail = fail.saturating_sub(1);
                        now
                    };
                    if fail {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}/hook")
    }

    fn got(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize, seconds: u64) -> Vec<(String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        while self.got().len() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.got()
    }
}

async fn register(
    portal: &TestPortal,
    partner: uuid::Uuid,
    admin: &str,
    url: &str,
    events: Value,
) -> Value {
    let created = portal
        .post(
            &format!("/partners/{partner}/webhooks"),
            Some(admin),
            &json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(created.status(), 201);
    created.json().await.unwrap()
}

#[tokio::test]
async fn each_chosen_event_is_delivered_once_signed_and_a_failing_receiver_gets_it_again() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[("WEBHOOK_RETRY_SCHEDULE", "1,1,1")]).await;
    let a = portal.partner_with_team(&smtp, "hooks").await;
    let b = portal.partner_with_team(&smtp, "hooks-b").await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let endpoint =
        register(&portal, a.id, &a.admin, &url, json!(["lead.created", "lead.status_changed"]))
            .await;
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    *receiver.secret.lock().unwrap() = secret.clone();
    let hooks = format!("/partners/{}/webhooks", a.id);
    let listed: Value = portal.get(&hooks, Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(listed[0]["url"], url.as_str());
    assert!(!listed.to_string().contains(&secret), "the secret is shown once");
    // Only the partner's admin.
    assert_eq!(portal.get(&hooks, Some(&a.sub)).await.status(), 403);
    assert_eq!(portal.get(&hooks, Some(&b.admin)).await.status(), 404);

    // A lead, a status change; another partner's lead is not ours to be told of.
    let lead: Value = portal
        .post("/leads", Some(&a.sub), &json!({"lastName": "Hooked", "email": "h@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let id = lead["id"].as_str().unwrap();
    portal
        .post("/leads", Some(&b.admin), &json!({"lastName": "Other", "email": "o@example.com"}))
        .await;
    let status = json!({"status": "contacted"});
    assert_eq!(
        portal.patch(&format!("/leads/{id}/status"), Some(&a.admin), &status).await.status(),
        200
    );
    let got = receiver.wait_for(2, 20).await;
    portal.crm_synced().await; // lead.synced happens, and was not asked for
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got_all = receiver.got();
    assert_eq!(got_all.len(), 2, "each chosen event once, nothing else: {got_all:?}");
    assert_eq!(got[0].1["type"], "lead.created");
    assert_eq!(got[0].1["lead"]["id"], id);
    assert_eq!(got[0].1["lead"]["lastName"], "Hooked");
    assert!(got[0].1.get("position").is_none(), "no feed position in a webhook");
    assert_eq!(
        got[1].1,
        json!({"type": "lead.status_changed", "leadId": id, "oldStatus": "new",
        "newStatus": "contacted", "source": "portal", "at": got[1].1["at"]})
    );
    assert_ne!(got[0].0, got[1].0);

    // The receiver fails twice, then takes it: three attempts, one webhook-id, one delivery.
    *receiver.fail_first.lock().unwrap() = 2;
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let test =
        portal.post(&format!("{hooks}/{endpoint_id}/test"), Some(&a.admin), &json!({})).await;
    assert_eq!(test.status(), 202);
    let message_id = test.json::<Value>().await.unwrap()["messageId"].as_str().unwrap().to_string();
    let got = receiver.wait_for(5, 20).await;
    let tries: Vec<&(String, Value)> = got.iter().filter(|(m, _)| *m == message_id).collect();
    assert_eq!(tries.len(), 3, "{got:?}");
    assert_eq!(tries[0].1["type"], "webhook.test");
    let deliveries_path = format!("{hooks}/{endpoint_id}/deliveries");
    let mut log: Value = Value::Null;
    for _ in 0..100 {
        log = portal.get(&deliveries_path, Some(&a.admin)).await.json().await.unwrap();
        if log[0]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("deliveries: {}", serde_json::to_string_pretty(&log).unwrap());
    assert_eq!(log[0]["messageId"], message_id.as_str());
    assert_eq!(log[0]["state"], "delivered", "{log}");
    let statuses: Vec<&Value> =
        log[0]["attempts"].as_array().unwrap().iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(500), &json!(204)]);
    assert_eq!(log.as_array().unwrap().len(), 3, "the test and the two lead events");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.got().len(), 5, "delivered means no further attempt");

    // Disabled: nothing more is sent; deleted: gone.
    let disabled = portal
        .patch(&format!("{hooks}/{endpoint_id}"), Some(&a.admin), &json!({"enabled": false}))
        .await;
    assert_eq!(disabled.status(), 200);
    portal
        .post("/leads", Some(&a.admin), &json!({"lastName": "Quiet", "email": "q@example.com"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.got().len(), 5);
    let deleted = portal
        .http
        .delete(portal.url(&format!("{hooks}/{endpoint_id}")))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(portal.get(&hooks, Some(&a.admin)).await.json::<Value>().await.unwrap(), json!([]));
    portal.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_for_three_days_is_disabled_and_its_admins_are_emailed_once() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[("WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1")]).await;
    let a = portal.partner_with_team(&smtp, "failing").await;
    let receiver = Receiver::default();
    *receiver.fail_first.lock().unwrap() = usize::MAX;
    let url = receiver.start().await;
    let endpoint = register(&portal, a.id, &a.admin, &url, json!(["lead.created"])).await;
    *receiver.secret.lock().unwrap() = endpoint["secret"].as_str().unwrap().to_string();
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let hooks = format!("/partners/{}/webhooks", a.id);

    // A failure now does not disable it: it has not been failing for three days.
    portal.post(&format!("{hooks}/{endpoint_id}/test"), Some(&a.admin), &json!({})).await;
    receiver.wait_for(2, 20).await;
    let listed: Value = portal.get(&hooks, Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(listed[0]["enabled"], true, "{listed}");

    // Failing since four days ago: the next failure disables it, and says why.
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since = now() - interval '4 days' WHERE endpoint_id = $1::uuid",
    )
    .bind(endpoint_id)
    .execute(&portal.portal().pool)
    .await
    .unwrap();
    let tried = receiver.got().len();
    receiver.wait_for(tried + 1, 20).await;
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = portal.get(&hooks, Some(&a.admin)).await.json().await.unwrap();
        if listed[0]["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed[0]["enabled"], false, "{listed}");
    let reason = listed[0]["disabledReason"].as_str().unwrap();
    assert!(reason.contains("disabled by the portal"), "{reason}");

    // Its admin is told, once; the sub-account is not.
    let notices = || {
        smtp.received()
            .into_iter()
            .filter(|m| m.data.contains("a webhook endpoint was disabled"))
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while notices().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mail = notices().pop().expect("a notice within 20 s");
    assert!(mail.data.contains(&url), "the email names the endpoint: {}", mail.data);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let notices = notices();
    assert_eq!(notices.len(), 1, "one admin, one notice");
    assert!(notices[0].to.iter().all(|t| t.eq_ignore_ascii_case(&a.admin_email)));
    let tried = receiver.got().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.got().len(), tried, "a disabled endpoint is not tried again");
    portal.stop().await;
}

#[tokio::test]
async fn endpoints_cannot_point_inside_and_bad_registrations_are_named() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "ssrf").await;
    let hooks = format!("/partners/{}/webhooks", a.id);
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "https://192.168.0.1/hook",
        "http://[fd00::1]/hook",
        "file:///etc/passwd",
        "not a url",
    ] {
        let refused = portal
            .post(&hooks, Some(&a.admin), &json!({"url": url, "events": ["lead.created"]}))
            .await;
        assert_eq!(refused.status(), 422, "{url}");
        assert_eq!(common::problem_fields(&refused.json().await.unwrap()), vec!["url"], "{url}");
    }
    let unknown = portal
        .post(
            &hooks,
            Some(&a.admin),
            &json!({"url": "http://127.0.0.1:1/hook", "events": ["lead.deleted"]}),
        )
        .await;
    assert_eq!(unknown.status(), 422);
    assert_eq!(common::problem_fields(&unknown.json().await.unwrap()), vec!["events"]);
    // (Dev mode, as here, takes loopback; outside it only public https: `outbound::address` tests.)
    let local = portal
        .post(
            &hooks,
            Some(&a.admin),
            &json!({"url": "http://127.0.0.1:1/hook", "events": ["lead.synced"]}),
        )
        .await;
    assert_eq!(local.status(), 201);
    portal.stop().await;
}

#[tokio::test]
async fn a_delivery_in_flight_when_the_server_is_killed_still_happens() {
    use nix::sys::signal::Signal;
    let smtp = SmtpSink::start().await;
    let (sim, _task) = common::external_simulator("http://127.0.0.1:9").await;
    let database = common::fresh_database_options().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("portal.log");
    let smtp_url = smtp.url();
    let envs = common::process_settings(
        &database.url,
        &smtp_url,
        &sim,
        &[("DEV_MODE", "true"), ("WEBHOOK_TIMEOUT_SECONDS", "1")],
    );
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut portal = common::PortalProcess::start(&envs, &log).await;
    let http = common::client();
    let admin = portal.partner_admin(&smtp, "soho-hook-kill", "hook-kill@example.com").await;
    let partner: Value = http
        .get(format!("{}/dashboard/stats", portal.base_url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(partner["scope"], "partner");
    let partner_id: String = sqlx::query_scalar::<_, uuid::Uuid>("SELECT partner_id FROM partners")
        .fetch_one(&sqlx::PgPool::connect_with(database.options.clone()).await.unwrap())
        .await
        .unwrap()
        .to_string();

    let receiver = Receiver::default();
    *receiver.hang_first.lock().unwrap() = 1;
    let url = receiver.start().await;
    let created: Value = http
        .post(format!("{}/partners/{partner_id}/webhooks", portal.base_url))
        .bearer_auth(&admin)
        .json(&json!({"url": url, "events": ["lead.created"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    *receiver.secret.lock().unwrap() = created["secret"].as_str().unwrap().to_string();
    let lead: Value = http
        .post(format!("{}/leads", portal.base_url))
        .bearer_auth(&admin)
        .json(&json!({"lastName": "Survivor", "email": "s@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The first attempt is in flight (the receiver holds it): kill the server now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *receiver.hang_first.lock().unwrap() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*receiver.hang_first.lock().unwrap(), 0, "the first attempt reached the receiver");
    portal.signal(Signal::SIGKILL);
    portal.wait().await;

    let _portal = common::PortalProcess::start(&envs, &log).await;
    let got = receiver.wait_for(1, 30).await;
    assert_eq!(got.len(), 1, "delivered after the restart");
    assert_eq!(got[0].1["lead"]["id"], lead["id"]);
}
