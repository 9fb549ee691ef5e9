//! Tenant isolation and roles: every onboarding route × every kind of caller, each answer checked.

mod common;

use common::smtp::SmtpSink;
use common::{bad_tokens, TestPortal};
use reqwest::Method;
use serde_json::{json, Value};

struct Route {
    method: Method,
    path: String,
    /// A body; `{n}` in it is replaced by a counter so each call's email is new.
    body: Option<Value>,
}

fn route(method: Method, path: String, body: Option<Value>) -> Route {
    Route { method, path, body }
}

/// Calls `route` as `token`; returns the status and the body.
async fn call(portal: &TestPortal, route: &Route, token: Option<&str>, n: usize) -> (u16, String) {
    let mut request = portal.http.request(route.method.clone(), portal.url(&route.path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &route.body {
        let body = body.to_string().replace("{n}", &n.to_string());
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status >= 400 {
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{} {}",
            route.method,
            route.path
        );
    }
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn every_onboarding_route_answers_each_caller_as_its_role_allows() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "a").await;
    let b = portal.partner_with_team(&smtp, "b").await;
    let auditor = portal.auditor("auditor@example.com").await;

    let routes = [
        route(Method::GET, format!("/partners/{}", a.id), None),
        route(Method::GET, format!("/partners/{}/sub-accounts", a.id), None),
        route(
            Method::POST,
            format!("/partners/{}/sub-accounts", a.id),
            Some(json!({"email": "new{n}@example.com", "name": "N"})),
        ),
        route(
            Method::PATCH,
            format!("/partners/{}/sub-accounts/{}", a.id, a.sub_id),
            Some(json!({"disabled": false})),
        ),
        route(Method::POST, "/invite".to_string(), Some(json!({"email": "inv{n}@example.com"}))),
        route(Method::GET, format!("/partners/{}/api-keys", a.id), None),
        route(Method::POST, format!("/partners/{}/api-keys", a.id), Some(json!({"name": "k{n}"}))),
        route(
            Method::DELETE,
            format!("/partners/{}/api-keys/{}", a.id, uuid::Uuid::new_v4()),
            None,
        ),
        route(Method::GET, format!("/partners/{}/webhooks", a.id), None),
        route(
            Method::POST,
            format!("/partners/{}/webhooks", a.id),
            Some(json!({"url": "http://127.0.0.1:1/hook{n}", "events": ["lead.created"]})),
        ),
        route(
            Method::GET,
            format!("/partners/{}/webhooks/{}/deliveries", a.id, uuid::Uuid::new_v4()),
            None,
        ),
    ];
    // Expected status per route, for: admin A, sub A, admin B, sub B, auditor, no token.
    let expected: [[u16; 6]; 11] = [
        [200, 200, 404, 404, 403, 401],
        [200, 403, 404, 403, 403, 401],
        [201, 403, 404, 403, 403, 401],
        [200, 403, 404, 403, 403, 401],
        [201, 403, 201, 403, 403, 401],
        [200, 403, 404, 403, 403, 401],
        [201, 403, 404, 403, 403, 401],
        [404, 403, 404, 403, 403, 401],
        [200, 403, 404, 403, 403, 401],
        [201, 403, 404, 403, 403, 401],
        [404, 403, 404, 403, 403, 401],
    ];
    let callers: [(&str, Option<&str>); 6] = [
        ("admin A", Some(&a.admin)),
        ("sub A", Some(&a.sub)),
        ("admin B", Some(&b.admin)),
        ("sub B", Some(&b.sub)),
        ("auditor", Some(&auditor)),
        ("no token", None),
    ];
    let mut n = 0;
    for (route, expected) in routes.iter().zip(expected) {
        for ((caller, token), want) in callers.iter().zip(expected) {
            n += 1;
            let (got, _) = call(&portal, route, *token, n).await;
            assert_eq!(got, want, "{} {} as {caller}", route.method, route.path);
        }
        for (kind, token) in bad_tokens(a.sub_id) {
            n += 1;
            assert_eq!(
                call(&portal, route, Some(&token), n).await.0,
                401,
                "{} {} with a token: {kind}",
                route.method,
                route.path
            );
        }
    }
    // An id that does not exist is as invisible as another partner's.
    let nobody = uuid::Uuid::new_v4();
    assert_eq!(portal.get(&format!("/partners/{nobody}"), Some(&a.admin)).await.status(), 404);
    let foreign_sub = format!("/partners/{}/sub-accounts/{}", a.id, b.sub_id);
    assert_eq!(
        portal.patch(&foreign_sub, Some(&a.admin), &json!({"disabled": true})).await.status(),
        404,
        "B's sub-account through A's path"
    );
    // A foreign admin's attempt to disable A's sub-account is refused and changes nothing.
    let own_sub = format!("/partners/{}/sub-accounts/{}", a.id, a.sub_id);
    assert_eq!(
        portal.patch(&own_sub, Some(&b.admin), &json!({"disabled": true})).await.status(),
        404
    );
    for (token, who) in [(&a.sub, "A's sub-account"), (&b.sub, "B's sub-account")] {
        let still = portal.get("/dashboard/stats", Some(token)).await;
        assert_eq!(still.status(), 200, "{who} still works");
    }
    portal.stop().await;
}

/// A bad request: its path, its body, the caller's token (None: nobody), what is wrong with it,
/// the status it must get, and the field the problem must name.
type BadInput<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, u16, Option<&'a str>);

#[tokio::test]
async fn bad_input_is_answered_with_a_problem_naming_the_field_never_a_500() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "input").await;
    let sub_accounts = format!("/partners/{}/sub-accounts", a.id);
    let cases: Vec<BadInput> = vec![
        ("/auth/login", "not json", None, "malformed", 400, None),
        (
            "/auth/login",
            r#"{"email": "x@example.com"}"#,
            None,
            "missing field",
            422,
            Some("password"),
        ),
        ("/auth/login", r#"{"email": 5, "password": "x"}"#, None, "wrong type", 422, Some("email")),
        (
            "/auth/login",
            r#"{"email": "x@example.com", "password": "x", "extra": 1}"#,
            None,
            "unknown field",
            422,
            Some("extra"),
        ),
        (
            "/auth/register",
            r#"{"password": "long enough password"}"#,
            None,
            "missing token",
            422,
            Some("token"),
        ),
        (
            "/auth/register",
            r#"{"token": "t", "password": "long enough password", "name": "NAME_TOO_LONG"}"#,
            None,
            "over-long name",
            422,
            Some("name"),
        ),
        (
            sub_accounts.as_str(),
            r#"{"email": "not-an-email", "name": "x"}"#,
            Some(&a.admin),
            "bad email",
            422,
            Some("email"),
        ),
        (
            sub_accounts.as_str(),
            r#"{"email": "OVERLONG", "name": "x"}"#,
            Some(&a.admin),
            "over-long email",
            422,
            Some("email"),
        ),
        (
            sub_accounts.as_str(),
            r#"{"name": "x"}"#,
            Some(&a.admin),
            "missing email",
            422,
            Some("email"),
        ),
        (
            "/invite",
            r#"{"email": ["a"]}"#,
            Some(&a.admin),
            "array for a string",
            422,
            Some("email"),
        ),
        (
            "/invite",
            r#"{"email": "a@example.com", "name": "NAME_TOO_LONG"}"#,
            Some(&a.admin),
            "over-long name",
            422,
            Some("name"),
        ),
    ];
    let long_name = "n".repeat(101);
    let long_email = format!("{}@example.com", "e".repeat(250));
    for (path, body, token, case, status, field) in cases {
        let body = body.replace("NAME_TOO_LONG", &long_name).replace("OVERLONG", &long_email);
        let mut request = portal
            .http
            .post(portal.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}: {case}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], status);
        if let Some(field) = field {
            let fields = common::problem_fields(&problem);
            assert!(fields.iter().any(|f| f == field), "{path}: {case}: {problem}");
        }
    }
    // A body without a JSON content type, and a PATCH with the wrong type.
    let plain = portal.http.post(portal.url("/auth/login")).body("{}").send().await.unwrap();
    assert_eq!(plain.status(), 400);
    let wrong = portal
        .patch(&format!("{sub_accounts}/{}", a.sub_id), Some(&a.admin), &json!({"disabled": "yes"}))
        .await;
    assert_eq!(wrong.status(), 422);
    // Webhook bodies are checked after the signature, field by field.
    let bad_partner = json!({"event": "partner.updated", "occurredAt": chrono::Utc::now(), "partner": {
        "sohoPartnerId": "", "name": "x", "email": "nope", "approved": true, "commissionRate": 300.0}});
    let response = portal.webhook("/webhooks/soho/partner", "msg_bad", &bad_partner).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    let fields = common::problem_fields(&problem);
    assert_eq!(fields, ["partner.sohoPartnerId", "partner.email", "partner.commissionRate"]);
    assert_eq!(
        portal.count("SELECT count(*) FROM webhook_receipts WHERE webhook_id = 'msg_bad'").await,
        0
    );
    portal.stop().await;
}

#[tokio::test]
async fn an_auditor_is_created_from_the_command_line_with_a_one_time_link() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let stdout = portal.cli(&["user", "create-auditor", "--email", "Audit@Example.com"]).await;
    let link = stdout
        .lines()
        .find(|l| l.starts_with("https://partners.example.com/register?token="))
        .expect("a link");
    let token = link.split("token=").nth(1).unwrap();
    let session = portal
        .post("/auth/register", None, &json!({"token": token, "password": common::PASSWORD}))
        .await;
    assert_eq!(session.status(), 200);
    let session: Value = session.json().await.unwrap();
    assert_eq!(session["user"]["role"], "auditor");
    assert_eq!(session["user"]["partnerId"], Value::Null);
    // The link is one-time.
    assert_eq!(
        portal
            .post("/auth/register", None, &json!({"token": token, "password": common::PASSWORD}))
            .await
            .status(),
        409
    );
    assert!(smtp.received().is_empty(), "auditors get their link from the operator, not by email");
    portal.stop().await;
}

/// Every leads route × every kind of caller, including a second sub-account of the same partner
/// that did not submit the lead. `Some(true/false)`: the body must (not) mention the lead.
#[tokio::test]
async fn every_lead_route_keeps_tenants_and_sub_accounts_apart() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "la").await;
    let b = portal.partner_with_team(&smtp, "lb").await;
    let auditor = portal.auditor("lead-auditor@example.com").await;
    let sub2 = portal.another_sub_account(&smtp, &a, "second").await;
    let lead: Value = portal
        .post("/leads", Some(&a.sub), &json!({"lastName": "Secret", "email": "secret@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let l = lead["id"].as_str().unwrap().to_string();
    let now = chrono::Utc::now().to_rfc3339().replace('+', "%2B");

    let callers: [(&str, Option<&str>); 7] = [
        ("admin A", Some(&a.admin)),
        ("sub A (submitter)", Some(&a.sub)),
        ("sub A2", Some(&sub2)),
        ("admin B", Some(&b.admin)),
        ("sub B", Some(&b.sub)),
        ("auditor", Some(&auditor)),
        ("no token", None),
    ];
    type Expect = (u16, Option<bool>);
    let routes: Vec<(Route, [Expect; 7])> = vec![
        (
            route(
                Method::POST,
                "/leads".into(),
                Some(json!({"lastName": "N", "email": "n{n}@example.com"})),
            ),
            [
                (201, None),
                (201, None),
                (201, None),
                (201, None),
                (201, None),
                (403, None),
                (422, None),
            ],
        ),
        (
            route(Method::GET, "/leads".into(), None),
            [
                (200, Some(true)),
                (200, Some(true)),
                (200, Some(false)),
                (200, Some(false)),
                (200, Some(false)),
                (403, None),
                (401, None),
            ],
        ),
        (
            route(Method::GET, format!("/leads/{l}"), None),
            [
                (200, Some(true)),
                (200, Some(true)),
                (404, None),
                (404, None),
                (404, None),
                (403, None),
                (401, None),
            ],
        ),
        (
            route(
                Method::PATCH,
                format!("/leads/{l}/status"),
                Some(json!({"status": "contacted"})),
            ),
            [
                (200, None),
                (200, None),
                (404, None),
                (404, None),
                (404, None),
                (403, None),
                (401, None),
            ],
        ),
        (
            route(Method::GET, format!("/leads/{l}/history"), None),
            [
                (200, None),
                (200, None),
                (404, None),
                (404, None),
                (404, None),
                (200, None),
                (401, None),
            ],
        ),
        (
            route(Method::GET, "/leads/export.csv".into(), None),
            [
                (200, Some(true)),
                (200, Some(true)),
                (200, Some(false)),
                (200, Some(false)),
                (200, Some(false)),
                (403, None),
                (401, None),
            ],
        ),
        (
            route(Method::GET, "/dashboard/stats".into(), None),
            [
                (200, None),
                (200, None),
                (200, None),
                (200, None),
                (200, None),
                (403, None),
                (401, None),
            ],
        ),
        (
            route(Method::GET, "/dashboard/weekly".into(), None),
            [
                (200, Some(false)),
                (200, Some(false)),
                (200, Some(false)),
                (200, Some(false)),
                (200, Some(false)),
                (403, None),
                (401, None),
            ],
        ),
        (
            route(Method::GET, format!("/audit/leads/{l}/events"), None),
            [
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (200, Some(true)),
                (401, None),
            ],
        ),
        (
            route(Method::GET, format!("/leads/{l}/receipt"), None),
            [
                (200, Some(true)),
                (403, None),
                (403, None),
                (404, None),
                (403, None),
                (200, Some(true)),
                (401, None),
            ],
        ),
        (
            route(Method::GET, format!("/audit/leads/{l}/export"), None),
            [
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (200, Some(true)),
                (401, None),
            ],
        ),
        (
            route(Method::GET, format!("/audit/partners/{}/stats?at={now}", a.id), None),
            [
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (200, Some(false)),
                (401, None),
            ],
        ),
        (
            route(Method::GET, format!("/audit/leads?id={l}"), None),
            [
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (200, Some(true)),
                (401, None),
            ],
        ),
        (
            route(Method::GET, "/audit/partners".into(), None),
            [
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (200, Some(false)),
                (401, None),
            ],
        ),
        (
            route(Method::GET, "/audit/verify".into(), None),
            [
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (200, Some(false)),
                (401, None),
            ],
        ),
        (
            route(Method::GET, format!("/audit/leads/{l}/state?at={now}"), None),
            [
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (403, None),
                (200, Some(true)),
                (401, None),
            ],
        ),
    ];
    let mut n = 0;
    for (route, expected) in &routes {
        for ((caller, token), (status, mentions)) in callers.iter().zip(expected) {
            n += 1;
            let (got, text) = call(&portal, route, *token, n).await;
            assert_eq!(got, *status, "{} {} as {caller}", route.method, route.path);
            if let Some(mentions) = mentions {
                assert_eq!(
                    text.contains(&l),
                    *mentions,
                    "{} {} as {caller}: {text}",
                    route.method,
                    route.path
                );
            }
        }
        for (kind, token) in bad_tokens(a.sub_id) {
            n += 1;
            let (got, _) = call(&portal, route, Some(&token), n).await;
            assert_eq!(got, 401, "{} {} with a token: {kind}", route.method, route.path);
        }
    }
    portal.stop().await;
}
