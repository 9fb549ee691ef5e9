//! Leads end to end through HTTP: submission rules, duplicates, status from both sides, history,
//! pagination, stats, export, audit, replay, and bad input.

mod common;

use std::collections::HashSet;

use common::smtp::SmtpSink;
use common::{TestPartner, TestPortal};
use serde_json::{json, Value};

fn lead(last: &str, email: &str) -> Value {
    json!({"firstName": "Ada", "lastName": last, "email": email,
           "company": "Analytical Engines", "notes": "Wants a demo", "metadata": {"campaign": "spring"}})
}

async fn submit(portal: &TestPortal, token: Option<&str>, body: &Value) -> (u16, Value) {
    let response = portal.post("/leads", token, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the lead is synced with Soho CRM; returns its CRM id.
async fn synced(portal: &TestPortal, token: &str, id: &str) -> String {
    for _ in 0..200 {
        let lead: Value =
            portal.get(&format!("/leads/{id}"), Some(token)).await.json().await.unwrap();
        if lead["syncState"] == "synced" {
            return lead["sohoLeadId"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("lead {id} was not synced within 10 s");
}

async fn setup() -> (SmtpSink, TestPortal, TestPartner, TestPartner) {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[("PUBLIC_FORM_RATE_LIMIT_PER_ADDRESS", "1000")]).await;
    let a = portal.partner_with_team(&smtp, "a").await;
    let b = portal.partner_with_team(&smtp, "b").await;
    (smtp, portal, a, b)
}

async fn crm_status_webhook(
    portal: &TestPortal,
    id: &str,
    lead: &str,
    crm_status: &str,
    minutes_ago: i64,
) -> reqwest::Response {
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    let body = json!({"event": "lead.status_changed", "occurredAt": at.to_rfc3339(),
        "lead": {"portalLeadId": lead, "status": crm_status, "previousStatus": "Not Contacted"}});
    portal.webhook("/webhooks/soho/lead-status", id, &body).await
}

#[tokio::test]
async fn leads_are_submitted_by_users_and_the_public_form() {
    let (_smtp, portal, a, _b) = setup().await;
    let (status, body) =
        submit(&portal, Some(&a.admin), &lead("Lovelace", "ada@example.com")).await;
    assert_eq!(status, 201, "{body}");
    for field in [
        "id",
        "partnerId",
        "submittedBy",
        "firstName",
        "lastName",
        "email",
        "phone",
        "company",
        "notes",
        "metadata",
        "status",
        "crmStatus",
        "sohoLeadId",
        "syncState",
        "channelConflict",
        "createdAt",
        "updatedAt",
    ] {
        assert!(body.get(field).is_some(), "lead has {field}: {body}");
    }
    assert_eq!(body["status"], "new");
    assert_eq!(body["crmStatus"], "Not Contacted");
    // The CRM sync runs at once beside the request, so it may have finished already.
    match body["syncState"].as_str() {
        Some("pending") => assert_eq!(body["sohoLeadId"], Value::Null),
        Some("synced") => assert!(body["sohoLeadId"].is_string()),
        other => panic!("syncState {other:?}"),
    }
    assert_eq!(body["partnerId"], a.id.to_string());
    assert_eq!(body["submittedBy"]["type"], "user");
    assert_eq!(body["metadata"]["campaign"], "spring");

    // Public form: no token, the partner's id; text is trimmed.
    let public =
        json!({"lastName": "  Babbage ", "email": "charles@example.com", "partnerId": a.id});
    let (status, body) = submit(&portal, None, &public).await;
    assert_eq!(status, 202, "{body}");
    let received = json!({"status": "received", "partnerName": "Partner soho-a"});
    assert_eq!(body, received, "the public form learns nothing of what is stored");
    let listed: Value =
        portal.get("/leads?submittedBy=public", Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["items"][0]["submittedBy"], json!({"type": "public"}));
    assert_eq!(listed["items"][0]["lastName"], "Babbage");
    // The same person again, and a person the partner's own user submitted: the very same answer,
    // and no second lead.
    let (status, again) = submit(&portal, None, &public).await;
    assert_eq!((status, &again), (202, &received));
    let known = json!({"lastName": "Lovelace", "email": "ada@example.com", "partnerId": a.id});
    let (status, known) = submit(&portal, None, &known).await;
    assert_eq!((status, &known), (202, &received), "nothing of the stored lead is shown");
    let listed: Value =
        portal.get("/leads?submittedBy=public", Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");

    // Unknown partner 404; suspended 409.
    let (status, _) = submit(
        &portal,
        None,
        &json!({"lastName": "X", "email": "x@example.com", "partnerId": uuid::Uuid::new_v4()}),
    )
    .await;
    assert_eq!(status, 404);
    let suspend = common::partner_webhook("soho-a", &a.admin_email, false);
    assert_eq!(
        portal.webhook("/webhooks/soho/partner", "msg_suspend_a", &suspend).await.status(),
        200
    );
    let (status, _) = submit(
        &portal,
        None,
        &json!({"lastName": "X", "email": "y@example.com", "partnerId": a.id}),
    )
    .await;
    assert_eq!(status, 409);

    // The honeypot: answered as any submission, kept nowhere.
    let (_, _, b, _) = (0, 0, portal.partner_with_team(&_smtp, "c").await, 0);
    let before = portal.count("SELECT count(*) FROM leads").await;
    let bot = json!({"lastName": "Bot", "email": "bot@example.com", "partnerId": b.id, "website": "http://spam.example"});
    let (status, body) = submit(&portal, None, &bot).await;
    assert_eq!(status, 202);
    assert_eq!(body, json!({"status": "received", "partnerName": "Partner soho-c"}));
    assert_eq!(portal.count("SELECT count(*) FROM leads").await, before);
    assert_eq!(
        portal.count("SELECT count(*) FROM events WHERE event_type = 'LeadSubmitted'").await,
        before
    );
    portal.stop().await;
}

#[tokio::test]
async fn the_public_form_is_rate_limited_per_address() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[("PUBLIC_FORM_RATE_LIMIT_PER_ADDRESS", "2")]).await;
    let a = portal.partner_with_team(&smtp, "rl").await;
    for n in 0..2 {
        let (status, _) = submit(
            &portal,
            None,
            &json!({"lastName": "P", "email": format!("p{n}@example.com"), "partnerId": a.id}),
        )
        .await;
        assert_eq!(status, 202);
    }
    let response = portal
        .post(
            "/leads",
            None,
            &json!({"lastName": "P", "email": "p9@example.com", "partnerId": a.id}),
        )
        .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    // Logged-in users are not limited by the public form's budget.
    assert_eq!(submit(&portal, Some(&a.admin), &lead("Q", "q@example.com")).await.0, 201);
    portal.stop().await;
}

#[tokio::test]
async fn duplicates_return_the_existing_lead_or_flag_a_channel_conflict() {
    let (smtp, portal, a, b) = setup().await;
    let mut ada = lead("Lovelace", "ada@example.com");
    ada["phone"] = json!("+44 20 7946 0000");
    let (_, first) = submit(&portal, Some(&a.admin), &ada).await;
    // The same person by email (any case) within 24 h: the existing lead, 200.
    let (status, again) = submit(
        &portal,
        Some(&a.admin),
        &json!({"lastName": "Lovelace", "email": "ADA@example.com"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], first["id"]);
    // By phone, written differently.
    let (status, again) =
        submit(&portal, Some(&a.admin), &json!({"lastName": "L", "phone": "+44 (20) 7946-0000"}))
            .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], first["id"]);
    // Another partner: accepted, flagged, and the other partner is never named.
    let (status, other) =
        submit(&portal, Some(&b.admin), &lead("Lovelace", "ada@example.com")).await;
    assert_eq!(status, 201);
    assert_eq!(other["channelConflict"], true);
    assert!(!other.to_string().contains(&a.id.to_string()));
    assert_eq!(first["channelConflict"], false);
    // A second sub-account of A may not see the first's lead: told it exists, shown nothing.
    let (status, _) = submit(&portal, Some(&a.sub), &lead("Hopper", "grace@example.com")).await;
    assert_eq!(status, 201);
    let second_sub = portal.another_sub_account(&smtp, &a, "second").await;
    let (status, body) =
        submit(&portal, Some(&second_sub), &lead("Hopper", "grace@example.com")).await;
    assert_eq!(status, 409, "{body}");
    assert!(!body.to_string().contains("Hopper"));
    // Racing submissions of one new person make one lead.
    let turing = lead("Turing", "alan@example.com");
    let racers: Vec<_> = (0..6).map(|_| submit(&portal, Some(&a.admin), &turing)).collect();
    let results = futures::future::join_all(racers).await;
    let ids: HashSet<String> =
        results.iter().map(|(_, body)| body["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|(status, _)| *status == 201).count(), 1);
    portal.stop().await;
}

/// The writer carries a batch's values written into the text of its queries (quoted as
/// PostgreSQL's array literals), not bound: every character a client may send must come back as
/// sent, and match as sent in the duplicate rules.
#[tokio::test]
async fn every_character_a_client_may_send_is_stored_and_read_back_as_sent() {
    let (_smtp, portal, a, _b) = setup().await;
    let hostile = json!({
        "firstName": r#"a'b"c\d{e}f,g NULL"#,
        "lastName": r"O'Brien\'; DROP TABLE leads; --",
        "email": "o'brien@example.com",
        "company": r#""{}" \\ ''"#,
        "notes": "line\nbreak \t tab é😀 $1 $$ %s",
        "metadata": {r#"k'"\{"#: r#"v{,}"\'"#, "NULL": "NULL"}
    });
    let (status, created) = submit(&portal, Some(&a.admin), &hostile).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let stored: Value =
        portal.get(&format!("/leads/{id}"), Some(&a.admin)).await.json().await.unwrap();
    for field in ["firstName", "lastName", "email", "company", "notes", "metadata"] {
        assert_eq!(stored[field], hostile[field], "{field}: {stored}");
    }
    let (status, again) = submit(
        &portal,
        Some(&a.admin),
        &json!({"lastName": "Again", "email": "O'BRIEN@example.com"}),
    )
    .await;
    assert_eq!((status, &again["id"]), (200, &created["id"]), "{again}");
    portal.stop().await;
}

#[tokio::test]
async fn status_changes_round_trip_with_history_and_never_go_back_in_time() {
    let (_smtp, portal, a, _b) = setup().await;
    let (_, created) = submit(&portal, Some(&a.sub), &lead("Lovelace", "ada@example.com")).await;
    let id = created["id"].as_str().unwrap();

    // From the portal.
    let changed = portal
        .patch(
            &format!("/leads/{id}/status"),
            Some(&a.sub),
            &json!({"status": "contacted", "note": "called"}),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["status"], "contacted");
    assert_eq!(changed["crmStatus"], "Contacted");

    // From Soho CRM.
    let response = crm_status_webhook(&portal, "msg_q", id, "Qualified", 0).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "qualified");
    assert_eq!(body["crmStatus"], "Qualified");

    // Late and out of order: acknowledged, kept in the log, status unchanged.
    let late = crm_status_webhook(&portal, "msg_late", id, "Attempted to Contact", 30).await;
    assert_eq!(late.status(), 200);
    assert_eq!(late.json::<Value>().await.unwrap()["status"], "qualified");
    // The same status again: nothing recorded.
    let status_events = "SELECT count(*) FROM events WHERE event_type LIKE 'LeadStatusChange%'";
    let events_before = portal.count(status_events).await;
    assert_eq!(crm_status_webhook(&portal, "msg_same", id, "Qualified", 0).await.status(), 200);
    assert_eq!(portal.count(status_events).await, events_before);
    // Unknown lead, unmapped value.
    assert_eq!(
        crm_status_webhook(
            &portal,
            "msg_unknown",
            &uuid::Uuid::new_v4().to_string(),
            "Qualified",
            0
        )
        .await
        .status(),
        404
    );
    let unmapped = crm_status_webhook(&portal, "msg_unmapped", id, "Sleeping", 0).await;
    assert_eq!(unmapped.status(), 422);
    let problem: Value = unmapped.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "lead.status");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("Sleeping"));

    let history: Value =
        portal.get(&format!("/leads/{id}/history"), Some(&a.admin)).await.json().await.unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["oldStatus"], "new");
    assert_eq!(history[0]["newStatus"], "contacted");
    assert_eq!(history[0]["source"], "portal");
    assert_eq!(history[0]["actor"], json!({"type": "user", "id": a.sub_id}));
    assert_eq!(history[1]["source"], "crm");
    assert_eq!(history[1]["crmStatus"], "Qualified");
    assert_eq!(history[1]["actor"], json!({"type": "crm", "id": "msg_q"}));

    // Found by the CRM's id once synced (the in-process simulator gives it).
    let soho_id = synced(&portal, &a.admin, id).await;
    let body = json!({"event": "lead.status_changed", "occurredAt": chrono::Utc::now().to_rfc3339(),
        "lead": {"sohoLeadId": soho_id, "status": "Converted"}});
    let response = portal.webhook("/webhooks/soho/lead-status", "msg_by_soho_id", &body).await;
    assert_eq!(response.status(), 200);
    let lead: Value = response.json().await.unwrap();
    assert_eq!(lead["status"], "converted");
    assert_eq!(lead["syncState"], "synced");
    portal.stop().await;
}

#[tokio::test]
async fn dashboard_stats_count_by_status_for_the_partner_or_the_user() {
    let (_smtp, portal, a, _b) = setup().await;
    let mut ids = vec![];
    for (n, token) in [&a.admin, &a.sub, &a.sub, &a.admin].iter().enumerate() {
        let (_, body) = submit(
            &portal,
            Some(token),
            &json!({"lastName": "S", "email": format!("s{n}@example.com")}),
        )
        .await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // `converted` is the vendor's to set (it drives commission): asked of the portal, 422.
    for token in [&a.sub, &a.admin] {
        let refused = portal
            .patch(
                &format!("/leads/{}/status", ids[1]),
                Some(token),
                &json!({"status": "converted"}),
            )
            .await;
        assert_eq!(refused.status(), 422);
        assert_eq!(common::problem_fields(&refused.json().await.unwrap()), vec!["status"]);
    }
    let converted = crm_status_webhook(&portal, "msg_converted", &ids[1], "Converted", 0).await;
    assert_eq!(converted.json::<Value>().await.unwrap()["status"], "converted");
    let changed = portal
        .patch(&format!("/leads/{}/status", ids[0]), Some(&a.admin), &json!({"status": "lost"}))
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.json::<Value>().await.unwrap()["status"], "lost");
    let partner: Value = portal.get("/dashboard/stats", Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(partner["scope"], "partner");
    assert_eq!(partner["totalLeads"], 4);
    assert_eq!(
        partner["byStatus"],
        json!({"new": 2, "contacted": 0, "qualified": 0, "converted": 1, "lost": 1})
    );
    assert_eq!(partner["conversionRate"], 0.25);
    let user: Value = portal.get("/dashboard/stats", Some(&a.sub)).await.json().await.unwrap();
    assert_eq!(user["scope"], "user");
    assert_eq!(user["totalLeads"], 2);
    assert_eq!(user["conversionRate"], 0.5);
    let empty: Value = portal.get("/dashboard/stats", Some(&_b.admin)).await.json().await.unwrap();
    assert_eq!(empty["totalLeads"], 0);
    assert_eq!(empty["conversionRate"], 0.0);

    // The weekly series, counted over every lead: this week holds them all.
    let this_week = |series: &Value| series.as_array().unwrap().last().unwrap().clone();
    let partner: Value =
        portal.get("/dashboard/weekly", Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(partner.as_array().unwrap().len(), 12);
    let monday = chrono::Utc::now().date_naive().week(chrono::Weekday::Mon).first_day();
    assert_eq!(
        this_week(&partner),
        json!({"week": monday.to_string(), "submitted": 4, "converted": 1})
    );
    assert!(partner.as_array().unwrap()[..11].iter().all(|w| w["submitted"] == 0));
    let user: Value =
        portal.get("/dashboard/weekly?weeks=2", Some(&a.sub)).await.json().await.unwrap();
    assert_eq!(user.as_array().unwrap().len(), 2);
    assert_eq!(this_week(&user)["submitted"], 2);
    assert_eq!(this_week(&user)["converted"], 1);
    let other: Value = portal.get("/dashboard/weekly", Some(&_b.admin)).await.json().await.unwrap();
    assert!(other.as_array().unwrap().iter().all(|w| w["submitted"] == 0), "{other}");
    for weeks in ["0", "105", "x"] {
        let refused = portal.get(&format!("/dashboard/weekly?weeks={weeks}"), Some(&a.admin)).await;
        assert_eq!(refused.status(), 422, "{weeks}");
    }
    portal.stop().await;
}

#[tokio::test]
async fn partners_convert_only_where_the_operator_lets_them() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[("PARTNERS_MAY_CONVERT", "true")]).await;
    let a = portal.partner_with_team(&smtp, "convert").await;
    let (_, lead) =
        submit(&portal, Some(&a.sub), &json!({"lastName": "C", "email": "c@example.com"})).await;
    let id = lead["id"].as_str().unwrap();
    let changed = portal
        .patch(&format!("/leads/{id}/status"), Some(&a.sub), &json!({"status": "converted"}))
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.json::<Value>().await.unwrap()["status"], "converted");
    portal.crm_synced().await;
    let records = common::sim_records(&common::sim_state(&portal.simulator_url()).await);
    let sent: Vec<&Value> = records.iter().filter(|r| r["portalLeadId"] == id).collect();
    assert!(
        sent.iter().any(|r| r["leadStatus"] == "Converted"),
        "Soho CRM is told the lead converted: {sent:?}"
    );
    portal.stop().await;
}

/// Name, status and last update sort what matches (no index serves them), while at most 10,000
/// leads do; a cursor of one order is refused in another.
#[tokio::test]
async fn leads_sort_by_name_status_and_last_update_while_few_enough_match() {
    let (_smtp, portal, a, b) = setup().await;
    let mut ids = std::collections::HashMap::new();
    for (first, last) in [("Zoe", "bravo"), ("Ann", "Alpha"), ("Bea", "alpha"), ("Cy", "Charlie")] {
        let email = format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase());
        let (status, body) = submit(
            &portal,
            Some(&a.admin),
            &json!({"firstName": first, "lastName": last, "email": email}),
        )
        .await;
        assert_eq!(status, 201);
        ids.insert(first, body["id"].as_str().unwrap().to_string());
    }
    // Their syncs with Soho CRM change them too: done before the changes the order is about.
    portal.crm_synced().await;
    for (first, status) in [("Zoe", "lost"), ("Cy", "qualified"), ("Ann", "contacted")] {
        let path = format!("/leads/{}/status", ids[first]);
        let changed = portal.patch(&path, Some(&a.admin), &json!({"status": status})).await;
        assert_eq!(changed.status(), 200, "{first}");
    }
    portal.crm_synced().await;
    let firsts = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["firstName"].as_str().unwrap().into())
            .collect()
    };
    let sorted = |sort: &str| {
        let (portal, token) = (&portal, a.admin.clone());
        let path = format!("/leads?limit=200&sort={sort}");
        async move { portal.get(&path, Some(&token)).await.json::<Value>().await.unwrap() }
    };
    // Case does not count; the first name settles a tie.
    assert_eq!(firsts(&sorted("name").await), ["Ann", "Bea", "Zoe", "Cy"]);
    assert_eq!(firsts(&sorted("status").await), ["Bea", "Ann", "Cy", "Zoe"]);
    assert_eq!(firsts(&sorted("updated").await), ["Ann", "Cy", "Zoe", "Bea"]);
    // Pages of one continue in order.
    let first_page: Value =
        portal.get("/leads?limit=3&sort=name", Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(firsts(&first_page), ["Ann", "Bea", "Zoe"]);
    let cursor = first_page["nextCursor"].as_str().unwrap();
    let second: Value = portal
        .get(&format!("/leads?limit=3&sort=name&cursor={cursor}"), Some(&a.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(firsts(&second), ["Cy"]);
    assert_eq!(second["nextCursor"], Value::Null);
    let mixed = portal.get(&format!("/leads?sort=updated&cursor={cursor}"), Some(&a.admin)).await;
    assert_eq!(mixed.status(), 422);
    assert_eq!(mixed.json::<Value>().await.unwrap()["errors"][0]["field"], "cursor");
    // Another partner's leads never join the sort.
    let theirs: Value = portal.get("/leads?sort=name", Some(&b.admin)).await.json().await.unwrap();
    assert_eq!(theirs["items"], json!([]));
    // Past 10,000 matching leads only the indexed orders are offered, unless filters narrow it.
    sqlx::query(
        "INSERT INTO leads (lead_id, partner_id, last_name, email, status, crm_status, sync_state, \
           channel_conflict, created_at, updated_at) \
         SELECT gen_random_uuid(), $1, 'Bulk ' || n, 'bulk' || n || '@example.com', 'new', \
           'Not Contacted', 'pending', false, now(), now() \
         FROM generate_series(1, 10000) n",
    )
    .bind(a.id)
    .execute(&portal.pool)
    .await
    .unwrap();
    let refused = portal.get("/leads?sort=name", Some(&a.admin)).await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "sort");
    let csv = portal.get("/leads/export.csv?sort=status", Some(&a.admin)).await;
    assert_eq!(csv.status(), 422);
    let narrowed = portal.get("/leads?sort=name&status=contacted", Some(&a.admin)).await;
    assert_eq!(firsts(&narrowed.json::<Value>().await.unwrap()), ["Ann"]);
    let newest = portal.get("/leads?limit=1", Some(&a.admin)).await;
    assert_eq!(newest.status(), 200);
    portal.stop().await;
}

#[tokio::test]
async fn walking_every_page_returns_each_lead_once_even_while_leads_arrive() {
    let (_smtp, portal, a, _b) = setup().await;
    let mut expected = HashSet::new();
    for n in 0..60 {
        let token = if n % 3 == 0 { &a.sub } else { &a.admin };
        let (_, body) = submit(&portal, Some(token), &json!({"lastName": format!("Page{n}"), "email": format!("page{n}@example.com"), "company": if n % 2 == 0 { "Even Co" } else { "Odd Co" }})).await;
        expected.insert((body["id"].as_str().unwrap().to_string(), n % 2 == 0));
    }
    let all = expected.len();
    for (filter, want) in [
        ("", all),
        ("&q=even", 30),
        ("&sort=oldest", all),
        ("&sort=name", all),
        ("&sort=status", all),
        ("&sort=updated", all),
    ] {
        let searching = filter.contains("q=");
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut extra = 0;
        loop {
            let path = format!(
                "/leads?limit=7{filter}{}",
                cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default()
            );
            let page: Value = portal.get(&path, Some(&a.admin)).await.json().await.unwrap();
            // New leads keep arriving while we walk.
            submit(&portal, Some(&a.admin), &json!({"lastName": "Late", "email": format!("late{extra}{filter}@example.com"), "company": "Even Co"})).await;
            extra += 1;
            for item in page["items"].as_array().unwrap() {
                seen.push(item["id"].as_str().unwrap().to_string());
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no lead twice ({filter})");
        let wanted: HashSet<String> = expected
            .iter()
            .filter(|(_, even)| !searching || *even)
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(wanted.len(), want);
        assert!(wanted.is_subset(&unique), "every lead present at the start is walked ({filter})");
        // And nothing that does not match: the odd companies are left out when searching.
        let unwanted: HashSet<String> = expected
            .iter()
            .filter(|(_, even)| searching && !*even)
            .map(|(id, _)| id.clone())
            .collect();
        assert!(unique.is_disjoint(&unwanted), "no lead outside the search ({filter})");
    }
    // Oldest first is newest first the other way round.
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect()
    };
    let newest: Value = portal.get("/leads?limit=200", Some(&a.admin)).await.json().await.unwrap();
    let oldest: Value =
        portal.get("/leads?limit=200&sort=oldest", Some(&a.admin)).await.json().await.unwrap();
    let mut reversed = ids(&newest);
    reversed.reverse();
    assert!(reversed.len() > 60 && reversed.len() < 200, "{}", reversed.len());
    assert_eq!(ids(&oldest), reversed);
    // A sub-account walks only its own.
    let own: Value = portal.get("/leads?limit=200", Some(&a.sub)).await.json().await.unwrap();
    assert_eq!(own["items"].as_array().unwrap().len(), 20);
    assert!(own["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["submittedBy"]["id"] == a.sub_id.to_string()));
    // Filters by status, submitter and dates.
    let by_sub: Value = portal
        .get(&format!("/leads?limit=200&submittedBy={}", a.sub_id), Some(&a.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_sub["items"].as_array().unwrap().len(), 20);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    let none: Value = portal
        .get(&format!("/leads?createdAfter={future}"), Some(&a.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], json!([]));
    assert_eq!(none["nextCursor"], Value::Null);
    let contacted: Value =
        portal.get("/leads?status=contacted", Some(&a.admin)).await.json().await.unwrap();
    assert_eq!(contacted["items"], json!([]));
    portal.stop().await;
}

#[tokio::test]
async fn each_list_filter_keeps_what_matches_and_drops_the_rest_newest_first() {
    let (_smtp, portal, a, _b) = setup().await;
    let public = json!({"partnerId": a.id, "lastName": "Public", "email": "l3@example.com",
                        "company": "Initech"});
    let submissions = [
        (Some(&a.admin), json!({"lastName": "Zero", "email": "l0@example.com", "company": "Acme"})),
        (Some(&a.sub), json!({"lastName": "One", "email": "l1@example.com", "company": "Globex"})),
        (
            Some(&a.admin),
            json!({"lastName": "Two", "email": "l2@example.com", "company": "Acme Two"}),
        ),
        (None, public),
        (
            Some(&a.admin),
            json!({"lastName": "Four", "email": "l4@example.com", "company": "Hooli"}),
        ),
    ];
    let mut leads = vec![];
    for (token, body) in submissions {
        let (status, lead) = submit(&portal, token.map(String::as_str), &body).await;
        assert!(status == 201 || status == 202, "{status} {lead}");
        // The public answer's id is taken from the admin's list below.
        leads.push(lead["id"].as_str().unwrap_or_default().to_string());
    }
    // The public submission's id, from the admin's list (its answer does not carry it).
    let all: Value = portal.get("/leads", Some(&a.admin)).await.json().await.unwrap();
    let public_id =
        all["items"].as_array().unwrap().iter().find(|l| l["lastName"] == "Public").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    leads[3] = public_id;
    for (n, token, status) in [(1, &a.sub, "contacted"), (2, &a.admin, "lost")] {
        let path = format!("/leads/{}/status", leads[n]);
        let changed = portal.patch(&path, Some(token), &json!({"status": status})).await;
        assert_eq!(changed.status(), 200);
    }
    let created: Vec<String> = {
        let all: Value = portal.get("/leads", Some(&a.admin)).await.json().await.unwrap();
        leads
            .iter()
            .map(|id| {
                let lead = all["items"].as_array().unwrap().iter().find(|l| l["id"] == *id);
                lead.unwrap()["createdAt"].as_str().unwrap().replace('+', "%2B")
            })
            .collect()
    };
    let ids = |picks: &[usize]| picks.iter().map(|n| leads[*n].clone()).collect::<Vec<_>>();
    let listed = |query: String| {
        let portal = &portal;
        let token = a.admin.clone();
        async move {
            let page = portal.get(&format!("/leads?{query}"), Some(&token)).await;
            assert_eq!(page.status(), 200, "{query}");
            let page: Value = page.json().await.unwrap();
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let cases: Vec<(String, Vec<usize>)> = vec![
        // Newest first.
        (String::new(), vec![4, 3, 2, 1, 0]),
        ("status=new".into(), vec![4, 3, 0]),
        ("status=contacted".into(), vec![1]),
        ("status=lost".into(), vec![2]),
        ("status=converted".into(), vec![]),
        ("q=acme".into(), vec![2, 0]),
        ("q=GLOBEX".into(), vec![1]),
        ("q=l4%40example".into(), vec![4]),
        ("q=nobody".into(), vec![]),
        (format!("submittedBy={}", a.sub_id), vec![1]),
        ("submittedBy=public".into(), vec![3]),
        // createdAfter includes its instant, createdBefore does not.
        (format!("createdAfter={}", created[2]), vec![4, 3, 2]),
        (format!("createdBefore={}", created[2]), vec![1, 0]),
        (format!("createdAfter={}&createdBefore={}", created[1], created[4]), vec![3, 2, 1]),
        (format!("createdAfter={}", created[0]), vec![4, 3, 2, 1, 0]),
        (format!("createdBefore={}", created[0]), vec![]),
        (format!("status=new&q=acme&createdAfter={}", created[0]), vec![0]),
    ];
    for (query, want) in cases {
        assert_eq!(listed(query.clone()).await, ids(&want), "{query}");
    }
    portal.stop().await;
}

#[tokio::test]
async fn the_csv_export_has_the_callers_leads_with_the_filters() {
    let (_smtp, portal, a, _b) = setup().await;
    submit(
        &portal,
        Some(&a.admin),
        &json!({"lastName": "Admin, Lead", "email": "admin-lead@example.com", "notes": "=cmd()"}),
    )
    .await;
    submit(
        &portal,
        Some(&a.sub),
        &json!({"lastName": "Sub Lead", "email": "sub-lead@example.com"}),
    )
    .await;
    let response = portal.get("/leads/export.csv", Some(&a.admin)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert!(text.contains("\"Admin, Lead\""));
    assert!(text.contains("'=cmd()"), "formula cells are defused");
    let sub = portal.get("/leads/export.csv", Some(&a.sub)).await.text().await.unwrap();
    assert!(sub.contains("Sub Lead") && !sub.contains("Admin, Lead"));
    let filtered =
        portal.get("/leads/export.csv?q=sub", Some(&a.admin)).await.text().await.unwrap();
    assert_eq!(filtered.lines().count(), 2);
    portal.stop().await;
}

#[tokio::test]
async fn every_formula_prefix_is_defused_and_a_long_export_is_streamed_whole() {
    let (_smtp, portal, a, _b) = setup().await;
    // (A leading tab or carriage return never reaches the export: text is trimmed, names are one
    // line; the export defuses them all the same, see the unit test of `csv_row`.)
    let hostile = json!({"firstName": "@SUM(A1)", "lastName": "+cmd", "company": "-2+3",
        "email": "formula@example.com", "phone": "+44 20 7946 0000", "notes": "=1+1"});
    assert_eq!(submit(&portal, Some(&a.admin), &hostile).await.0, 201);
    let cr = json!({"lastName": "CR", "email": "cr@example.com", "notes": "\r\t-cmd"});
    assert_eq!(submit(&portal, Some(&a.admin), &cr).await.0, 201);
    let text = portal.get("/leads/export.csv", Some(&a.admin)).await.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let cells: Vec<String> = reader
        .records()
        .flat_map(|r| r.unwrap().iter().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for value in ["@SUM(A1)", "+cmd", "-2+3", "+44 20 7946 0000", "=1+1", "-cmd"] {
        assert!(cells.contains(&format!("'{value}")), "{value:?} defused in {cells:?}");
        assert!(!cells.contains(&value.to_string()), "{value:?} left as it was");
    }

    // More than one page of the export's 500: every lead, once.
    let bodies: Vec<Value> = (0..520)
        .map(|n| json!({"lastName": format!("Bulk{n}"), "email": format!("bulk{n}@example.com")}))
        .collect();
    let (server, admin) = (&portal, &a.admin);
    let statuses = futures::future::join_all(bodies.chunks(65).map(|chunk| async move {
        let mut statuses = vec![];
        for body in chunk {
            statuses.push(submit(server, Some(admin), body).await.0);
        }
        statuses
    }))
    .await;
    assert!(statuses.iter().flatten().all(|s| *s == 201));
    let text = portal.get("/leads/export.csv", Some(&a.admin)).await.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_string()).collect();
    assert_eq!(ids.len(), 522);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 522, "no lead twice");
    portal.stop().await;
}

#[tokio::test]
async fn duplicates_hold_for_24_hours_and_conflicts_for_90_days_by_email_or_phone() {
    let (_smtp, portal, a, b) = setup().await;
    let back_date = |id: String, age: &'static str| {
        let pool = portal.pool.clone();
        async move {
            sqlx::query(&format!(
                "UPDATE leads SET created_at = now() - interval '{age}' WHERE lead_id = $1"
            ))
            .bind(id.parse::<uuid::Uuid>().unwrap())
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let ada = json!({"lastName": "Lovelace", "email": "ada@example.com"});
    let (_, first) = submit(&portal, Some(&a.admin), &ada).await;
    let first = first["id"].as_str().unwrap().to_string();
    back_date(first.clone(), "23 hours 59 minutes").await;
    let (status, again) = submit(&portal, Some(&a.admin), &ada).await;
    assert_eq!((status, again["id"].as_str().unwrap()), (200, first.as_str()), "within 24 h");
    back_date(first.clone(), "24 hours 1 minute").await;
    let (status, later) = submit(&portal, Some(&a.admin), &ada).await;
    assert_eq!(status, 201, "past 24 h: a new lead");
    assert_ne!(later["id"], first.as_str());

    // Another partner had the person by phone 89 days ago: a conflict, found by the phone.
    let grace = json!({"lastName": "Hopper", "email": "grace@b.example", "phone": "+1 555 0100"});
    let (_, theirs) = submit(&portal, Some(&b.admin), &grace).await;
    back_date(theirs["id"].as_str().unwrap().to_string(), "89 days").await;
    let by_phone =
        json!({"lastName": "Hopper", "email": "grace@a.example", "phone": "+1-555-01-00"});
    let (status, ours) = submit(&portal, Some(&a.admin), &by_phone).await;
    assert_eq!((status, ours["channelConflict"].clone()), (201, json!(true)));
    // 90 days and a minute ago: no longer a conflict.
    let alan = json!({"lastName": "Turing", "email": "alan@example.com"});
    let (_, theirs) = submit(&portal, Some(&b.admin), &alan).await;
    back_date(theirs["id"].as_str().unwrap().to_string(), "90 days 1 minute").await;
    let (status, fresh) = submit(&portal, Some(&a.admin), &alan).await;
    assert_eq!((status, fresh["channelConflict"].clone()), (201, json!(false)));

    // The flag reaches Soho CRM with the lead.
    portal.crm_synced().await;
    let state = common::sim_state(&portal.simulator_url()).await;
    let fields_of = |id: &Value| {
        state["leads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["fields"]["Portal_Lead_Id"] == *id)
            .map(|l| l["fields"].clone())
            .unwrap()
    };
    assert_eq!(fields_of(&ours["id"])["Channel_Conflict"], true);
    assert_eq!(fields_of(&fresh["id"])["Channel_Conflict"], false);
    portal.stop().await;
}

#[tokio::test]
async fn auditors_replay_a_lead_and_see_its_state_at_any_instant() {
    let (_smtp, portal, a, _b) = setup().await;
    let auditor = portal.auditor("audit@example.com").await;
    let (_, created) = submit(&portal, Some(&a.admin), &lead("Lovelace", "ada@example.com")).await;
    let id = created["id"].as_str().unwrap();
    let contacted = portal
        .patch(&format!("/leads/{id}/status"), Some(&a.admin), &json!({"status": "contacted"}))
        .await;
    assert_eq!(contacted.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let converted = crm_status_webhook(&portal, "msg_audit", id, "Converted", 0).await;
    assert_eq!(converted.status(), 200);
    assert_eq!(converted.json::<Value>().await.unwrap()["status"], "converted");

    let events: Value = portal
        .get(&format!("/audit/leads/{id}/events"), Some(&auditor))
        .await
        .json()
        .await
        .unwrap();
    // The CRM sync records its own events in between; these are the people's.
    let events: Vec<&Value> =
        events.as_array().unwrap().iter().filter(|e| e["type"] != "LeadSyncedToCrm").collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["LeadSubmitted", "LeadStatusChanged", "LeadStatusChanged"]);
    assert_eq!(events[0]["metadata"]["actorType"], "user");
    assert_eq!(events[2]["metadata"]["actorType"], "crm");
    assert_eq!(events[2]["metadata"]["webhookId"], "msg_audit");
    assert!(events[2]["metadata"]["correlationId"].is_string());

    let at = between.to_rfc3339().replace('+', "%2B");
    let state: Value = portal
        .get(&format!("/audit/leads/{id}/state?at={at}"), Some(&auditor))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(state["status"], "contacted", "the earlier status, between the two changes");
    let now = chrono::Utc::now().to_rfc3339().replace('+', "%2B");
    let state: Value = portal
        .get(&format!("/audit/leads/{id}/state?at={now}"), Some(&auditor))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(state["status"], "converted");
    let before = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339().replace('+', "%2B");
    assert_eq!(
        portal.get(&format!("/audit/leads/{id}/state?at={before}"), Some(&auditor)).await.status(),
        404
    );
    assert_eq!(
        portal.get(&format!("/audit/leads/{id}/state?at=yesterday"), Some(&auditor)).await.status(),
        422
    );
    let missing = portal.get(&format!("/audit/leads/{id}/state"), Some(&auditor)).await;
    assert_eq!(missing.status(), 422);
    assert_eq!(common::problem_fields(&missing.json().await.unwrap()), vec!["at"]);
    let unknown = uuid::Uuid::new_v4();
    for path in
        [format!("/audit/leads/{unknown}/state?at={now}"), format!("/audit/leads/{unknown}/events")]
    {
        assert_eq!(portal.get(&path, Some(&auditor)).await.status(), 404, "{path}");
    }
    // The auditor reads history too, but nothing else of the partners'.
    assert_eq!(portal.get(&format!("/leads/{id}/history"), Some(&auditor)).await.status(), 200);
    assert_eq!(portal.get("/leads", Some(&auditor)).await.status(), 403);

    // The command line prints the same history.
    let stdout = portal.cli(&["audit", "lead", id, "--at", &between.to_rfc3339()]).await;
    assert!(stdout.contains("LeadSubmitted") && stdout.contains("webhook msg_audit"), "{stdout}");
    assert!(stdout.contains("\"status\": \"contacted\""), "{stdout}");
    portal.stop().await;
}

#[tokio::test]
async fn the_lead_read_models_rebuilt_from_the_log_equal_the_live_ones() {
    let (_smtp, portal, a, b) = setup().await;
    for n in 0..12 {
        let token = [&a.admin, &a.sub, &b.admin, &b.sub][n % 4];
        let (status, body) = submit(&portal, Some(token), &json!({"lastName": format!("R{n}"), "email": format!("r{}@example.com", n % 6), "phone": format!("+1 555 01{n:02}")})).await;
        assert!(status == 201 || status == 200, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        if n % 2 == 0 {
            let path = format!("/leads/{id}/status");
            let changed = portal.patch(&path, Some(token), &json!({"status": "qualified"})).await;
            assert_eq!(changed.status(), 200);
        }
        if n % 3 == 0 {
            let converted =
                crm_status_webhook(&portal, &format!("msg_r{n}"), &id, "Converted", 0).await;
            assert_eq!(converted.status(), 200);
            // Older than the conversion: kept in the log, not applied.
            let late =
                crm_status_webhook(&portal, &format!("msg_r{n}_late"), &id, "Contacted", 60).await;
            assert_eq!(late.status(), 200);
            assert_eq!(late.json::<Value>().await.unwrap()["status"], "converted");
        }
    }
    // A batch rolled back after taking live-feed positions (a deadlock, a lost connection)
    // leaves a gap: the messages after it keep their numbers through a check and a replay.
    sqlx::query("SELECT nextval(pg_get_serial_sequence('live_feed', 'position')) FROM generate_series(1, 5)")
        .execute(&portal.pool)
        .await
        .unwrap();
    for n in 0..3 {
        // The public form: no submitter, counted for the partner only.
        let body = json!({"lastName": format!("P{n}"), "email": format!("p{n}@example.com"), "partnerId": a.id});
        let (status, body) = submit(&portal, None, &body).await;
        assert_eq!(status, 202, "{body}");
    }
    // Nothing more arrives from here on (the CRM sync appends events).
    portal.crm_synced().await;
    let check = || async {
        for projection in soho_projections::all() {
            let differences =
                soho_projections::replay::check(&portal.pool, projection.as_ref(), &|_| {})
                    .await
                    .unwrap();
            assert_eq!(differences, vec![], "{}", projection.name());
        }
    };
    check().await;
    assert!(portal.count("SELECT count(*) FROM lead_status_history WHERE NOT applied").await > 0);
    // A replay loads the lead read models in bulk (folded in memory, written with COPY); the
    // check rebuilds them batch by batch: the two ways make the same rows.
    let snapshot = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM \
        (SELECT 'l' || leads::text AS t FROM leads UNION ALL SELECT 'c' || lead_counts::text FROM lead_counts \
         UNION ALL SELECT 'w' || lead_weeks::text FROM lead_weeks \
         UNION ALL SELECT 'h' || lead_status_history::text FROM lead_status_history \
         UNION ALL SELECT 'f' || live_feed::text FROM live_feed) AS rows";
    let before: String = sqlx::query_scalar(snapshot).fetch_one(&portal.pool).await.unwrap();
    let projections = soho_projections::all();
    let projections: Vec<&dyn soho_projections::Projection> =
        projections.iter().map(|p| p.as_ref()).collect();
    soho_projections::replay::rebuild_all(&portal.pool, &projections, &|_| {}).await.unwrap();
    let after: String = sqlx::query_scalar(snapshot).fetch_one(&portal.pool).await.unwrap();
    assert_eq!(
        after, before,
        "the bulk-loaded read models equal the live ones, the feed untouched"
    );
    check().await;
    // The check compares the feed all the same: a message changed after it was sent shows.
    let edit = "UPDATE live_feed SET data = data || '{\"edited\": true}' \
                WHERE position = (SELECT max(position) FROM live_feed)";
    sqlx::query(edit).execute(&portal.pool).await.unwrap();
    let leads = soho_projections::leads::LeadsProjection;
    let differences = soho_projections::replay::check(&portal.pool, &leads, &|_| {}).await.unwrap();
    assert_eq!(
        differences.iter().map(|d| (d.table, d.rows)).collect::<Vec<_>>(),
        [("live_feed", 2)]
    );
    let keys = portal
        .count("SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid = ANY(ARRAY['leads', 'lead_counts', 'lead_weeks', 'lead_status_history', 'live_feed']::regclass[])")
        .await;
    assert_eq!(keys, 5, "every bulk-loaded table has its primary key back");
    portal.stop().await;
}

#[tokio::test]
async fn bad_lead_input_is_named_field_by_field() {
    let (_smtp, portal, a, _b) = setup().await;
    let long = |n: usize| "x".repeat(n);
    let big_metadata: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (json!({"email": "a@example.com"}), "lastName"),
        (json!({"lastName": "L"}), "email"),
        (json!({"lastName": long(101), "email": "a@example.com"}), "lastName"),
        (json!({"lastName": "L", "firstName": long(101), "email": "a@example.com"}), "firstName"),
        (json!({"lastName": "L", "email": "not-an-email"}), "email"),
        (json!({"lastName": "L", "phone": "call me"}), "phone"),
        (json!({"lastName": "L", "email": "a@example.com", "company": long(201)}), "company"),
        (json!({"lastName": "L", "email": "a@example.com", "notes": long(2001)}), "notes"),
        (json!({"lastName": "L", "email": "a@example.com", "metadata": big_metadata}), "metadata"),
        (
            json!({"lastName": "L", "email": "a@example.com", "metadata": {"k": long(5000)}}),
            "metadata",
        ),
        (json!({"lastName": "L", "email": "a@example.com", "metadata": {"k": 1}}), "metadata.k"),
        (json!({"lastName": 5, "email": "a@example.com"}), "lastName"),
        (json!({"lastName": "L", "email": "a@example.com", "colour": "red"}), "colour"),
        (
            json!({"lastName": "L", "email": "a@example.com", "partnerId": uuid::Uuid::new_v4()}),
            "partnerId",
        ),
    ];
    for (body, field) in cases {
        let response = portal.post("/leads", Some(&a.admin), &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let problem: Value = response.json().await.unwrap();
        let fields = common::problem_fields(&problem);
        assert!(fields.iter().any(|f| f == field), "{field}: {problem}");
    }
    let public =
        portal.post("/leads", None, &json!({"lastName": "L", "email": "a@example.com"})).await;
    assert_eq!(public.status(), 422, "the public form needs partnerId");
    let raw = portal
        .http
        .post(portal.url("/leads"))
        .bearer_auth(&a.admin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    // Status and list parameters.
    let (_, created) = submit(&portal, Some(&a.admin), &lead("V", "v@example.com")).await;
    let id = created["id"].as_str().unwrap();
    let bad_status = portal
        .patch(&format!("/leads/{id}/status"), Some(&a.admin), &json!({"status": "won"}))
        .await;
    assert_eq!(bad_status.status(), 422);
    for (query, field) in [
        ("status=won", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("cursor=bogus", "cursor"),
        ("createdAfter=today", "createdAfter"),
        ("submittedBy=me", "submittedBy"),
        ("sort=alphabetical", "sort"),
        ("sort=name&cursor=FORGED", "cursor"),
    ] {
        // A cursor forged to carry a NUL byte, which the database cannot hold.
        let query = query.replace("FORGED", &forged_name_cursor());
        let response = portal.get(&format!("/leads?{query}"), Some(&a.admin)).await;
        assert_eq!(response.status(), 422, "{query}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    portal.stop().await;
}

/// A rebuild goes into shadow tables and swaps them in: the portal keeps taking leads and
/// serving lists meanwhile, nothing appended during the rebuild is lost, and the swapped-in read
/// models equal a fresh rebuild.
#[tokio::test]
async fn a_replay_while_leads_keep_coming_fails_no_request_and_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (_smtp, portal, a, b) = setup().await;
    for n in 0..120 {
        let token = if n % 2 == 0 { &a.admin } else { &b.admin };
        let (status, body) = submit(
            &portal,
            Some(token),
            &lead(&format!("Seed{n}"), &format!("seed{n}@example.com")),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let replaying = Arc::new(AtomicBool::new(false));
    let (client, leads_url, token) = (common::client(), portal.url("/leads"), a.admin.clone());
    let traffic = {
        let (stop, replaying) = (Arc::clone(&stop), Arc::clone(&replaying));
        tokio::spawn(async move {
            let (mut answers, mut during) = (Vec::new(), 0);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let body = json!({"lastName": format!("During{n}"), "email": format!("during{n}@example.com")});
                let posted =
                    client.post(&leads_url).bearer_auth(&token).json(&body).send().await.unwrap();
                let listed = client.get(&leads_url).bearer_auth(&token).send().await.unwrap();
                answers.push((posted.status().as_u16(), listed.status().as_u16()));
                during += usize::from(replaying.load(Ordering::SeqCst));
            }
            (answers, during)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    replaying.store(true, Ordering::SeqCst);
    let stdout = portal.cli(&["replay"]).await;
    replaying.store(false, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let (answers, during) = traffic.await.unwrap();
    assert!(stdout.contains("rebuilt from"), "{stdout}");
    // A replay that held the tables would let at most one request through while it ran (the
    // one it blocked, answered at its commit); here they go on as usual (~100 in 0.9 s).
    assert!(during >= 5, "only {during} requests were answered while the replay ran: {stdout}");
    assert!(answers.iter().all(|a| *a == (201, 200)), "every request succeeded: {answers:?}");

    // Every lead submitted, before, during and after, is in the swapped-in list.
    portal.crm_synced().await;
    let submitted =
        portal.count("SELECT count(*) FROM events WHERE event_type = 'LeadSubmitted'").await;
    assert_eq!(portal.count("SELECT count(*) FROM leads").await, submitted);
    assert_eq!(submitted, 120 + answers.len() as i64);
    let stdout = portal.cli(&["replay", "--check"]).await;
    assert!(!stdout.contains("differ"), "{stdout}");
    assert!(stdout.contains("leads: the rebuild equals the live tables"), "{stdout}");
    // The swapped-in tables keep their indexes, constraints and the live feed's trigger.
    let indexes = portal.count("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname = 'leads_by_partner'").await;
    assert_eq!(indexes, 1);
    let triggers =
        portal.count("SELECT count(*) FROM pg_trigger WHERE tgname = 'live_feed_written'").await;
    assert_eq!(triggers, 1);
    assert_eq!(
        portal.count("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'replay_%'").await,
        0
    );
    // And the portal goes on writing to them.
    let (status, _) = submit(&portal, Some(&b.admin), &lead("After", "after@example.com")).await;
    assert_eq!(status, 201);
    portal.stop().await;
}

/// A `sort=name` cursor as the API encodes one, with a NUL byte in its last name.
fn forged_name_cursor() -> String {
    use base64::Engine;
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    b64(&format!("name|{}|{}|{}", b64("a\0b"), b64(""), uuid::Uuid::new_v4()))
}
