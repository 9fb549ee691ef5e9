//! Tamper evidence (CONTRACT 7): the hash chain over the log, checked whole (`GET /audit/verify`,
//! `audit verify`), per lead offline (`audit export` / `audit verify --file`), and registration
//! receipts checked against the log. Each tampering is done in the database the way an insider
//! with write access would, then undone, and the check must name the position each time.

mod common;

use common::smtp::SmtpSink;
use common::{TestPartner, TestPortal};
use serde_json::{json, Value};

struct Setup {
    _smtp: SmtpSink,
    portal: TestPortal,
    a: TestPartner,
    b: TestPartner,
    auditor: String,
    lead: String,
}

/// Two partners, an auditor, and a lead with a few status changes, all sealed.
async fn setup() -> Setup {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "a").await;
    let b = portal.partner_with_team(&smtp, "b").await;
    let auditor = portal.auditor("audit@example.com").await;
    let body = json!({"firstName": "Ada", "lastName": "Lovelace", "email": "Ada@Example.com"});
    let created: Value = portal.post("/leads", Some(&a.admin), &body).await.json().await.unwrap();
    let lead = created["id"].as_str().unwrap().to_string();
    for status in ["contacted", "qualified"] {
        let changed = portal
            .patch(&format!("/leads/{lead}/status"), Some(&a.admin), &json!({"status": status}))
            .await;
        assert_eq!(changed.status(), 200);
    }
    let other = json!({"lastName": "Hopper", "phone": "+1 555 0100"});
    assert_eq!(portal.post("/leads", Some(&b.sub), &other).await.status(), 201);
    portal.crm_synced().await;
    let setup = Setup { _smtp: smtp, portal, a, b, auditor, lead };
    setup.sealed().await;
    setup
}

impl Setup {
    /// Waits until every event in the log is sealed; returns the verdict then.
    async fn sealed(&self) -> Value {
        let events = self.portal.count("SELECT count(*) FROM events").await;
        for _ in 0..200 {
            let verdict = self.verify().await;
            if verdict["events"] == events && verdict["unsealed"] == 0 {
                return verdict;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the log was not sealed within 5 s");
    }

    async fn verify(&self) -> Value {
        let response = self.portal.get("/audit/verify", Some(&self.auditor)).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn sql(&self, statement: &str) {
        sqlx::query(statement).execute(&self.portal.portal().pool).await.unwrap();
    }

    /// The global position of the lead's event at `sequence`.
    async fn position(&self, sequence: i64) -> i64 {
        self.portal
            .count(&format!(
                "SELECT global_position FROM events WHERE aggregate_id = '{}' AND sequence = {sequence}",
                self.lead
            ))
            .await
    }

    /// Swaps two of the lead's events in its stream (through a free sequence number: the key
    /// is checked row by row).
    async fn swap_sequences(&self, a: i64, b: i64) {
        for (from, to) in [(a, 1000), (b, a), (1000, b)] {
            self.sql(&format!(
                "UPDATE events SET sequence = {to} WHERE aggregate_id = '{}' AND sequence = {from}",
                self.lead
            ))
            .await;
        }
    }

    /// Asserts the check names `position`, over HTTP and on the command line.
    async fn broken_at(&self, position: i64, reason: &str) {
        let verdict = self.verify().await;
        assert_eq!(verdict["ok"], false, "{verdict}");
        assert_eq!(verdict["firstBroken"]["position"], position, "{verdict}");
        let said = verdict["firstBroken"]["reason"].as_str().unwrap();
        assert!(said.contains(reason), "{said}");
        let (succeeded, stdout) = self.portal.cli_outcome(&["audit", "verify"]).await;
        assert!(!succeeded, "audit verify must fail: {stdout}");
        assert!(stdout.contains(&format!("BROKEN at position {position}")), "{stdout}");
    }

    async fn intact(&self) {
        let verdict = self.verify().await;
        assert_eq!(verdict["ok"], true, "{verdict}");
        let stdout = self.portal.cli(&["audit", "verify"]).await;
        assert!(stdout.contains(&format!("{} events verified", verdict["events"])), "{stdout}");
        assert!(stdout.contains(verdict["head"].as_str().unwrap()), "{stdout}");
    }
}

#[tokio::test]
async fn the_log_verifies_untouched_and_any_edit_deletion_or_swap_is_named() {
    let s = setup().await;
    let verdict = s.sealed().await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert!(verdict.get("firstBroken").is_none());
    s.intact().await;

    // Every event shows its hash and the one before it in commit order: they chain.
    let events: Value = s
        .portal
        .get(&format!("/audit/leads/{}/events", s.lead), Some(&s.auditor))
        .await
        .json()
        .await
        .unwrap();
    let events = events.as_array().unwrap();
    assert!(events.len() >= 3);
    for event in events {
        assert_eq!(event["hash"].as_str().unwrap().len(), 64, "{event}");
        assert_eq!(event["prevHash"].as_str().unwrap().len(), 64, "{event}");
        assert_ne!(event["hash"], event["prevHash"]);
    }
    let genesis: Vec<u8> =
        sqlx::query_scalar("SELECT prev_hash FROM audit_chain WHERE chain_position = 1")
            .fetch_one(&s.portal.portal().pool)
            .await
            .unwrap();
    assert_eq!(genesis, vec![0u8; 32], "the first event's prevHash is 64 zeros");

    // One byte of one payload.
    let submitted = s.position(1).await;
    s.sql(&format!(
        "UPDATE events SET payload = jsonb_set(payload, '{{LeadSubmitted,details,lastName}}', '\"Lovelacf\"') \
         WHERE global_position = {submitted}"
    ))
    .await;
    s.broken_at(submitted, "content").await;
    s.sql(&format!(
        "UPDATE events SET payload = jsonb_set(payload, '{{LeadSubmitted,details,lastName}}', '\"Lovelace\"') \
         WHERE global_position = {submitted}"
    ))
    .await;
    s.intact().await;

    // One event deleted (kept aside, then put back as it was).
    let changed = s.position(2).await;
    s.sql(&format!("CREATE TABLE kept AS SELECT * FROM events WHERE global_position = {changed}"))
        .await;
    s.sql(&format!("DELETE FROM events WHERE global_position = {changed}")).await;
    s.broken_at(changed, "missing").await;
    s.sql("INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM kept").await;
    s.intact().await;

    // Two events of the lead swapped in its stream.
    let (second, third) = (s.position(2).await, s.position(3).await);
    s.swap_sequences(2, 3).await;
    s.broken_at(second.min(third), "content").await;
    s.swap_sequences(2, 3).await;
    s.intact().await;

    // An event slipped in among sealed ones, pretending to be from the past.
    let lead = &s.lead;
    s.sql(&format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, tx_id) \
         SELECT aggregate_type, aggregate_id, 99, event_type, event_version, payload, metadata, '1'::xid8 \
         FROM events WHERE global_position = {changed}"
    ))
    .await;
    let slipped = s
        .portal
        .count(&format!(
            "SELECT global_position FROM events WHERE aggregate_id = '{lead}' AND sequence = 99"
        ))
        .await;
    s.broken_at(slipped, "inserted afterwards").await;
    s.portal.stop().await;
}

#[tokio::test]
async fn an_exported_lead_verifies_offline_and_an_edited_export_does_not() {
    let s = setup().await;
    let response = s.portal.get(&format!("/audit/leads/{}/export", s.lead), Some(&s.auditor)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/jsonl");
    let export = response.text().await.unwrap();
    assert_eq!(
        export.lines().count(),
        s.portal
            .count(&format!("SELECT count(*) FROM events WHERE aggregate_id = '{}'", s.lead))
            .await as usize
    );
    // The command line writes the same lines.
    assert_eq!(s.portal.cli(&["audit", "export", "--lead", &s.lead]).await, export);

    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    // Offline: no database at all.
    let offline = |file: String| async move {
        let output = common::portal_command(&["audit", "verify", "--file", &file])
            .env("DB_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .await
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (ok, stdout) = offline(check("intact.jsonl", export.clone())).await;
    assert!(ok && stdout.contains("ok: "), "{stdout}");

    // A line's members in another order (as another tool might write them) still verify: the
    // hash covers each member, the payload and metadata byte for byte as the database prints them.
    let reordered: String = export
        .lines()
        .map(|line| {
            let members: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(line).unwrap();
            let body: Vec<String> = members
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v.get()))
                .collect();
            format!("{{{}}}\n", body.join(","))
        })
        .collect();
    assert_ne!(reordered, export);
    let (ok, stdout) = offline(check("reordered.jsonl", reordered)).await;
    assert!(ok, "{stdout}");
    // Re-serialised JSON is other bytes: it does not pass for the original.
    let compacted: String = export
        .lines()
        .map(|line| format!("{}\n", serde_json::from_str::<Value>(line).unwrap()))
        .collect();
    let (ok, _) = offline(check("compacted.jsonl", compacted)).await;
    assert!(!ok, "a payload re-serialised is not the payload that was hashed");

    let edited = export.replacen("Lovelace", "Lovelacf", 1);
    assert_ne!(edited, export);
    let (ok, stdout) = offline(check("edited.jsonl", edited)).await;
    assert!(!ok && stdout.contains("BROKEN") && stdout.contains("content"), "{stdout}");

    let without_second: String = export
        .lines()
        .enumerate()
        .filter(|(n, _)| *n != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let (ok, stdout) = offline(check("cut.jsonl", without_second)).await;
    assert!(!ok && stdout.contains("missing"), "{stdout}");

    // Only auditors export; an unknown lead is 404.
    let path = format!("/audit/leads/{}/export", s.lead);
    assert_eq!(s.portal.get(&path, Some(&s.a.admin)).await.status(), 403);
    let unknown = format!("/audit/leads/{}/export", uuid::Uuid::new_v4());
    assert_eq!(s.portal.get(&unknown, Some(&s.auditor)).await.status(), 404);
    s.portal.stop().await;
}

#[tokio::test]
async fn a_receipt_holds_against_the_log_and_fails_once_the_log_is_altered() {
    let s = setup().await;
    let path = format!("/leads/{}/receipt", s.lead);
    let response = s.portal.get(&path, Some(&s.a.admin)).await;
    assert_eq!(response.status(), 200);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["leadId"], s.lead.as_str());
    assert_eq!(receipt["partnerId"], s.a.id.to_string());
    assert!(receipt["recordedAt"].is_string());
    assert_eq!(receipt["personKeyHash"].as_str().unwrap().len(), 64);
    assert!(!receipt.to_string().to_lowercase().contains("ada@example.com"), "{receipt}");
    let events: Value = s
        .portal
        .get(&format!("/audit/leads/{}/events", s.lead), Some(&s.auditor))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["eventHash"], events[0]["hash"]);
    // The auditor sees the same receipt; the sub-account and the other partner do not.
    let seen: Value = s.portal.get(&path, Some(&s.auditor)).await.json().await.unwrap();
    assert_eq!(seen, receipt);
    assert_eq!(s.portal.get(&path, Some(&s.a.sub)).await.status(), 403);
    assert_eq!(s.portal.get(&path, Some(&s.b.admin)).await.status(), 404);
    assert_eq!(s.portal.get(&path, None).await.status(), 401);

    let check = |receipt: Value| {
        let portal = &s.portal;
        let auditor = s.auditor.clone();
        async move {
            let response = portal.post("/audit/receipts/check", Some(&auditor), &receipt).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(check(receipt.clone()).await, json!({"ok": true}));
    // A receipt edited to claim another partner, or another person, does not hold.
    let mut claimed = receipt.clone();
    claimed["partnerId"] = s.b.id.to_string().into();
    assert_eq!(check(claimed).await["ok"], false);
    let mut other_person = receipt.clone();
    other_person["personKeyHash"] = "0".repeat(64).into();
    assert_eq!(check(other_person).await["ok"], false);
    // Only auditors check receipts; a malformed one is a 422 naming the field.
    let forbidden = s.portal.post("/audit/receipts/check", Some(&s.a.admin), &receipt).await;
    assert_eq!(forbidden.status(), 403);
    let mut malformed = receipt.clone();
    malformed["leadId"] = "not-a-uuid".into();
    let refused = s.portal.post("/audit/receipts/check", Some(&s.auditor), &malformed).await;
    assert_eq!(refused.status(), 422);

    // Someone rewrites history: the lead now belongs to the other partner.
    s.sql(&format!(
        "UPDATE events SET payload = jsonb_set(payload, '{{LeadSubmitted,partnerId}}', '\"{}\"') \
         WHERE aggregate_id = '{}' AND sequence = 1",
        s.b.id, s.lead
    ))
    .await;
    let verdict = check(receipt).await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert!(verdict["reason"].as_str().unwrap().contains("hash"), "{verdict}");
    s.portal.stop().await;
}

#[tokio::test]
async fn an_auditor_sees_a_partners_figures_as_they_stood_at_any_instant() {
    let s = setup().await;
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(60));
    let instant = || chrono::Utc::now().to_rfc3339().replace('+', "%2B");
    let stats_at = |partner: uuid::Uuid, at: String| {
        let portal = &s.portal;
        let auditor = s.auditor.clone();
        async move {
            let path = format!("/audit/partners/{partner}/stats?at={at}");
            let response = portal.get(&path, Some(&auditor)).await;
            assert_eq!(response.status(), 200, "{path}");
            response.json::<Value>().await.unwrap()
        }
    };
    let before_all =
        (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339().replace('+', "%2B");
    pause().await;
    let after_setup = instant();
    pause().await;
    let second: Value = s
        .portal
        .post("/leads", Some(&s.a.sub), &json!({"lastName": "Babbage", "email": "cb@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let second = second["id"].as_str().unwrap();
    pause().await;
    let after_second = instant();
    pause().await;
    let lost = s
        .portal
        .patch(&format!("/leads/{second}/status"), Some(&s.a.admin), &json!({"status": "lost"}))
        .await;
    assert_eq!(lost.status(), 200);

    let then = stats_at(s.a.id, before_all).await;
    assert_eq!(then["totalLeads"], 0, "{then}");
    let then = stats_at(s.a.id, after_setup).await;
    assert_eq!(
        (then["totalLeads"].clone(), then["byStatus"]["qualified"].clone()),
        (json!(1), json!(1)),
        "{then}"
    );
    let then = stats_at(s.a.id, after_second.clone()).await;
    assert_eq!(then["totalLeads"], 2, "{then}");
    assert_eq!(then["byStatus"]["new"], 1, "the second lead was new then: {then}");
    assert_eq!(then["byStatus"]["lost"], 0, "{then}");
    let now = stats_at(s.a.id, instant()).await;
    assert_eq!(now["byStatus"]["lost"], 1, "{now}");
    // The figures now equal the live dashboard's.
    let live: Value =
        s.portal.get("/dashboard/stats", Some(&s.a.admin)).await.json().await.unwrap();
    assert_eq!(now["byStatus"], live["byStatus"]);
    assert_eq!(now["totalLeads"], live["totalLeads"]);
    // The other partner's figures are its own.
    let other = stats_at(s.b.id, after_second.clone()).await;
    assert_eq!(other["totalLeads"], 1, "{other}");

    let path = |partner: uuid::Uuid, query: &str| format!("/audit/partners/{partner}/stats{query}");
    let unknown = path(uuid::Uuid::new_v4(), &format!("?at={after_second}"));
    assert_eq!(s.portal.get(&unknown, Some(&s.auditor)).await.status(), 404);
    let missing = s.portal.get(&path(s.a.id, ""), Some(&s.auditor)).await;
    assert_eq!(missing.status(), 422);
    assert_eq!(common::problem_fields(&missing.json().await.unwrap()), vec!["at"]);
    let own = path(s.a.id, &format!("?at={after_second}"));
    assert_eq!(s.portal.get(&own, Some(&s.a.admin)).await.status(), 403);
    s.portal.stop().await;
}

#[tokio::test]
async fn an_auditor_finds_a_lead_by_id_by_soho_id_and_by_partner() {
    let s = setup().await;
    let find = |query: String| {
        let portal = &s.portal;
        let auditor = s.auditor.clone();
        async move {
            let response = portal.get(&format!("/audit/leads?{query}"), Some(&auditor)).await;
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, by_id) = find(format!("id={}", s.lead)).await;
    assert_eq!(status, 200);
    assert_eq!(by_id.as_array().unwrap().len(), 1);
    assert_eq!(by_id[0]["partnerId"], s.a.id.to_string());
    assert_eq!(by_id[0]["partnerName"].as_str().map(str::is_empty), Some(false), "{by_id}");
    let soho = by_id[0]["sohoLeadId"].as_str().expect("synced by now").to_string();
    let (_, by_soho) = find(format!("sohoLeadId={soho}")).await;
    assert_eq!(by_soho[0]["id"], s.lead.as_str());
    let (_, by_partner) = find(format!("partnerId={}", s.b.id)).await;
    let ids: Vec<&Value> = by_partner.as_array().unwrap().iter().map(|l| &l["id"]).collect();
    assert_eq!(ids.len(), 1, "partner B has one lead: {by_partner}");
    assert_ne!(ids[0], s.lead.as_str());
    let (_, nothing) = find("sohoLeadId=no-such-record".into()).await;
    assert_eq!(nothing, json!([]));
    for bad in ["", "id=nope", "id=1&partnerId=2", "partnerId=x"] {
        assert_eq!(find(bad.into()).await.0, 422, "{bad}");
    }
    let partners: Value =
        s.portal.get("/audit/partners", Some(&s.auditor)).await.json().await.unwrap();
    assert_eq!(partners.as_array().unwrap().len(), 2, "{partners}");
    assert_eq!(s.portal.get("/audit/partners", Some(&s.a.admin)).await.status(), 403);
    let path = format!("/audit/leads?id={}", s.lead);
    assert_eq!(s.portal.get(&path, Some(&s.a.admin)).await.status(), 403);
    s.portal.stop().await;
}

/// Long enough that the contents are checked in many chunks at once: the first break is still
/// the one named, wherever the later ones are.
#[tokio::test]
async fn a_long_log_is_checked_in_parallel_and_still_names_the_first_break() {
    let s = setup().await;
    s.sql(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'Lead', gen_random_uuid()::text, 1, 'LeadSyncedToCrm', '1', \
                jsonb_build_object('LeadSyncedToCrm', jsonb_build_object('sohoLeadId', n::text, 'at', now())), \
                '{\"actorType\": \"system\"}' \
         FROM generate_series(1, 30000) AS n",
    )
    .await;
    let verdict = s.sealed().await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    let nth = |n: i64| {
        let portal = &s.portal;
        async move {
            portal
                .count(&format!("SELECT global_position FROM events ORDER BY tx_id, global_position OFFSET {n} LIMIT 1"))
                .await
        }
    };
    let (early, late) = (nth(20_000).await, nth(28_000).await);
    for position in [late, early] {
        s.sql(&format!("UPDATE events SET metadata = '{{\"actorType\": \"user\"}}' WHERE global_position = {position}")).await;
    }
    let verdict = s.verify().await;
    assert_eq!(verdict["firstBroken"]["position"], early, "{verdict}");
    assert_eq!(verdict["events"], 20_000, "{verdict}");
    for position in [late, early] {
        s.sql(&format!("UPDATE events SET metadata = '{{\"actorType\": \"system\"}}' WHERE global_position = {position}")).await;
    }
    s.intact().await;
    let missing = nth(12_345).await;
    s.sql(&format!("DELETE FROM events WHERE global_position = {missing}")).await;
    let verdict = s.verify().await;
    assert_eq!(verdict["firstBroken"]["position"], missing, "{verdict}");
    assert!(verdict["firstBroken"]["reason"].as_str().unwrap().contains("missing"), "{verdict}");
    s.portal.stop().await;
}
