//! Lead notifications by email, against a real SMTP server: who hears of what, once, and how
//! to stop them.

mod common;

use common::smtp::{ReceivedMail, Reply, SmtpSink};
use common::TestPortal;
use serde_json::{json, Value};

/// A mail's body with quoted-printable soft breaks and `=3D` undone.
fn body(mail: &ReceivedMail) -> String {
    mail.data.replace("=\r\n", "").replace("=3D", "=")
}

async fn crm_change(portal: &TestPortal, webhook_id: &str, lead: &str, status: &str) -> u16 {
    let body = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now().to_rfc3339(),
        "lead": {"portalLeadId": lead, "status": status}});
    portal.webhook("/webhooks/soho/lead-status", webhook_id, &body).await.status().as_u16()
}

/// Waits a moment and says how many emails arrived in all (for "nothing more was sent").
async fn settled(smtp: &SmtpSink) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    smtp.received().len()
}

#[tokio::test]
async fn lead_notifications_reach_the_right_people_once_and_stop_when_asked() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "n").await;
    let b = portal.partner_with_team(&smtp, "other").await;
    let start = settled(&smtp).await;

    let lead: Value = portal
        .post(
            "/leads",
            Some(&a.sub),
            &json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = lead["id"].as_str().unwrap().to_string();
    // The sub-account's own change: nobody is told.
    let own = portal
        .patch(&format!("/leads/{id}/status"), Some(&a.sub), &json!({"status": "contacted"}))
        .await;
    assert_eq!(own.status(), 200);
    assert_eq!(settled(&smtp).await, start, "no email for one's own change");

    // The CRM's change: the submitter hears, once, even if the webhook comes twice.
    assert_eq!(crm_change(&portal, "msg_n1", &id, "Pre-Qualified").await, 200);
    assert_eq!(crm_change(&portal, "msg_n1", &id, "Pre-Qualified").await, 200);
    let mail = smtp.wait_for(start + 1, 20).await.remove(start);
    assert_eq!(mail.to, vec!["sub-n@example.com".to_string()]);
    let text = body(&mail);
    assert!(text.contains("Ada Lovelace") && text.contains("qualified"), "{text}");
    assert!(text.contains(&format!("/leads/{id}")), "{text}");
    assert_eq!(settled(&smtp).await, start + 1, "one email for one change");

    // The admin's change of the sub's lead: the sub hears.
    let by_admin = portal
        .patch(&format!("/leads/{id}/status"), Some(&a.admin), &json!({"status": "lost"}))
        .await;
    assert_eq!(by_admin.status(), 200);
    let mail = smtp.wait_for(start + 2, 20).await.remove(start + 1);
    assert_eq!(mail.to, vec!["sub-n@example.com".to_string()]);

    // A public-form lead: the partner's admin hears; the other partner's people do not.
    let public = portal
        .post(
            "/leads",
            None,
            &json!({"lastName": "Babbage", "email": "charles@example.com", "partnerId": a.id}),
        )
        .await;
    assert_eq!(public.status(), 202);
    let mail = smtp.wait_for(start + 3, 20).await.remove(start + 2);
    assert_eq!(mail.to, vec!["admin-n@example.com".to_string()]);
    assert!(body(&mail).contains("public form"));
    assert_eq!(settled(&smtp).await, start + 3);
    let _ = b;

    // The unsubscribe link in the sub's email turns its notifications off, and only its own.
    let text = body(&smtp.received()[start]);
    let link = text.split("unsubscribe?").nth(1).unwrap().split_whitespace().next().unwrap();
    let link = link.split(['"', '<']).next().unwrap().replace("&amp;", "&");
    let params: std::collections::HashMap<String, String> = link
        .split('&')
        .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let (user, token) = (&params["user"], &params["token"]);
    let forged = portal
        .post("/notifications/unsubscribe", None, &json!({"user": a.id, "token": token}))
        .await;
    assert_eq!(forged.status(), 422, "a token is good for its own user only");
    let done = portal
        .post("/notifications/unsubscribe", None, &json!({"user": user, "token": token}))
        .await;
    assert_eq!(done.status(), 204);
    let account: Value = portal.get("/me", Some(&a.sub)).await.json().await.unwrap();
    assert_eq!(account["notifications"], "off");
    assert_eq!(crm_change(&portal, "msg_n2", &id, "Converted").await, 200);
    assert_eq!(settled(&smtp).await, start + 3, "no email after unsubscribing");

    // The admin turns its own off from the Profile (PATCH /me), its name untouched.
    let named = portal.patch("/me", Some(&a.admin), &json!({"name": "Olive Owner"})).await;
    assert_eq!(named.status(), 200);
    let off: Value = portal
        .patch("/me", Some(&a.admin), &json!({"notifications": "off"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(off["notifications"], "off");
    assert_eq!(off["name"], "Olive Owner", "the name stays: {off}");
    let public = portal
        .post(
            "/leads",
            None,
            &json!({"lastName": "Hopper", "email": "grace@example.com", "partnerId": a.id}),
        )
        .await;
    assert_eq!(public.status(), 202);
    assert_eq!(settled(&smtp).await, start + 3, "no email once off");
    portal.stop().await;
}

/// A user who chose the daily digest gets one email for the day's notices, not one each, and
/// nothing is sent twice (the interval is 2 s here instead of a day).
/// A channel conflict: the admins hear when someone else of theirs registered the person,
/// never of their own submission (the answer already said so).
#[tokio::test]
async fn a_channel_conflict_is_told_to_the_admins_but_not_to_the_admin_who_submitted_it() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "first").await;
    let b = portal.partner_with_team(&smtp, "second").await;
    for email in ["ada@example.com", "grace@example.com"] {
        let first =
            portal.post("/leads", Some(&a.admin), &json!({"lastName": "X", "email": email})).await;
        assert_eq!(first.status(), 201);
    }
    let start = settled(&smtp).await;
    // B's admin registers a person A has: flagged, and nobody is emailed about it.
    let own: Value = portal
        .post(
            "/leads",
            Some(&b.admin),
            &json!({"lastName": "Lovelace", "email": "ada@example.com"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["channelConflict"], true, "{own}");
    // B's sub-account registers another: B's admin hears of that one.
    let by_sub: Value = portal
        .post("/leads", Some(&b.sub), &json!({"lastName": "Hopper", "email": "grace@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_sub["channelConflict"], true, "{by_sub}");
    let mail = smtp.wait_for(start + 1, 20).await.remove(start);
    assert_eq!(mail.to, vec!["admin-second@example.com".to_string()]);
    let text = body(&mail);
    assert!(text.contains("Hopper") && !text.contains("Lovelace"), "{text}");
    assert_eq!(settled(&smtp).await, start + 1, "nothing about the admin's own submission");
    portal.stop().await;
}

#[tokio::test]
async fn the_daily_digest_gathers_the_notices_into_one_email() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[("DIGEST_INTERVAL_SECONDS", "2")]).await;
    let a = portal.partner_with_team(&smtp, "d").await;
    let daily = portal.patch("/me", Some(&a.sub), &json!({"notifications": "daily"})).await;
    assert_eq!(daily.json::<Value>().await.unwrap()["notifications"], "daily");
    let start = settled(&smtp).await;

    let mut ids = Vec::new();
    for name in ["Lovelace", "Hopper"] {
        let lead: Value = portal
            .post(
                "/leads",
                Some(&a.sub),
                &json!({"lastName": name, "email": format!("{name}@example.com")}),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(lead["id"].as_str().unwrap().to_string());
    }
    assert_eq!(crm_change(&portal, "msg_d1", &ids[0], "Contacted").await, 200);
    assert_eq!(crm_change(&portal, "msg_d2", &ids[1], "Pre-Qualified").await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(smtp.received().len(), start, "nothing before the digest is due");

    let digest = smtp.wait_for(start + 1, 20).await.remove(start);
    assert_eq!(digest.to, vec!["sub-d@example.com".to_string()]);
    let text = body(&digest);
    assert!(
        text.contains("Lovelace: new =E2=86=92 contacted")
            || text.contains("Lovelace: new → contacted"),
        "{text}"
    );
    assert!(text.contains("Hopper"), "{text}");
    assert!(text.contains("2 things happened"), "{text}");
    assert!(text.contains(&format!("/leads/{}", ids[1])), "{text}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(smtp.received().len(), start + 1, "one digest, sent once");
    let kept = portal.count("SELECT count(*) FROM notification_digest_items").await;
    assert_eq!(kept, 0, "the sent notices are gone");
    portal.stop().await;
}

/// A notification due while the mail server is down is sent when it is back, once, and the
/// notices around it are neither lost nor repeated.
#[tokio::test]
async fn notifications_wait_out_an_smtp_outage_and_arrive_once() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "o").await;
    let start = settled(&smtp).await;
    let mut ids = Vec::new();
    for name in ["Lovelace", "Hopper", "Babbage"] {
        let lead: Value = portal
            .post(
                "/leads",
                Some(&a.sub),
                &json!({"lastName": name, "email": format!("{name}@example.com")}),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(lead["id"].as_str().unwrap().to_string());
    }
    // The first goes out; then the server refuses (421: try later) while two more are due.
    assert_eq!(crm_change(&portal, "msg_o1", &ids[0], "Contacted").await, 200);
    smtp.wait_for(start + 1, 20).await;
    smtp.reply(Reply::Refuse(421));
    let attempts = smtp.attempts();
    assert_eq!(crm_change(&portal, "msg_o2", &ids[1], "Contacted").await, 200);
    assert_eq!(crm_change(&portal, "msg_o3", &ids[2], "Contacted").await, 200);
    smtp.wait_for_attempts(attempts + 2, 30).await;
    assert_eq!(smtp.received().len(), start + 1, "nothing kept while the server refuses");

    smtp.reply(Reply::Accept);
    let mails = smtp.wait_for(start + 3, 60).await;
    let texts: Vec<String> = mails[start..].iter().map(body).collect();
    for name in ["Lovelace", "Hopper", "Babbage"] {
        let count = texts.iter().filter(|t| t.contains(name)).count();
        assert_eq!(count, 1, "{name}: one email, not lost, not repeated: {texts:?}");
    }
    assert_eq!(settled(&smtp).await, start + 3, "nothing more after the outage");
    portal.stop().await;
}
