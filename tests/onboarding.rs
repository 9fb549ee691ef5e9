//! Partner onboarding against a running portal, real PostgreSQL and a real SMTP server:
//! signed webhooks, invitations, registration, login, suspension, sub-accounts.

mod common;

use common::smtp::SmtpSink;
use common::{partner_webhook, sign, TestPortal, WEBHOOK_SECRET};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn approval_webhook_to_email_to_registration_to_an_authorised_call() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;

    let response = portal
        .webhook(
            "/webhooks/soho/partner",
            "msg_approve",
            &partner_webhook("5725767000000524157", "owner@acme.example", true),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "approved");
    let partner_id = answer["partnerId"].as_str().unwrap().to_string();

    let mail = smtp.wait_for(1, 20).await.remove(0);
    assert_eq!(mail.to, vec!["owner@acme.example"]);
    assert!(
        mail.data.contains("Partner 5725767000000524157"),
        "the partner's name is in the email"
    );
    assert!(mail.data.contains("Soho Partner Portal"));
    assert!(mail.data.contains("text/html") && mail.data.contains("text/plain"));
    assert!(mail
        .link()
        .starts_with(&format!("{}/register?token=", portal.portal().settings.public_base_url)));
    assert!(mail.data.contains("expires"));

    let token = portal.register(&mail.token(), PASSWORD).await;
    let profile = portal.get(&format!("/partners/{partner_id}"), Some(&token)).await;
    assert_eq!(profile.status(), 200);
    let profile: Value = profile.json().await.unwrap();
    assert_eq!(profile["name"], "Partner 5725767000000524157");
    assert_eq!(profile["sohoPartnerId"], "5725767000000524157", "the admin sees private fields");

    let login = portal.login("OWNER@acme.example", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let session: Value = login.json().await.unwrap();
    assert_eq!(session["tokenType"], "Bearer");
    assert_eq!(session["user"]["role"], "admin");
    assert_eq!(session["user"]["partnerId"], partner_id.as_str());
    assert!(session["expiresIn"].as_u64().unwrap() > 0);

    // The invitation was recorded as sent, once.
    assert_eq!(
        portal.count("SELECT count(*) FROM events WHERE event_type = 'InvitationSent'").await,
        1
    );
    portal.stop().await;
}

#[tokio::test]
async fn a_webhook_that_fails_its_signature_is_refused_and_records_nothing() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let body = partner_webhook("1", "a@example.com", true).to_string();
    let now = chrono::Utc::now().timestamp();
    let path = "/webhooks/soho/partner";
    common::refuses_bad_signatures(&portal, path, "msg_1", &body).await;
    // Key rotation: any one valid signature among several is enough.
    let good = sign(WEBHOOK_SECRET, "msg_1", now, &body);
    let rotated = format!("{} {}", sign(common::OTHER_SECRET, "msg_1", now, &body), good);
    assert_eq!(portal.webhook_raw(path, "msg_1", now, &rotated, &body).await.status(), 200);
    assert_eq!(
        portal.count("SELECT count(*) FROM webhook_receipts").await,
        1,
        "only the valid one was recorded"
    );
    assert_eq!(
        portal.count("SELECT count(*) FROM events WHERE aggregate_type = 'Partner'").await,
        2
    );
    portal.stop().await;
}

#[tokio::test]
async fn a_retried_webhook_has_one_effect_and_the_same_answer() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let body = partner_webhook("77", "dup@example.com", true);
    let first: Value =
        portal.webhook("/webhooks/soho/partner", "msg_same", &body).await.json().await.unwrap();
    let (second, third) = tokio::join!(
        portal.webhook("/webhooks/soho/partner", "msg_same", &body),
        portal.webhook("/webhooks/soho/partner", "msg_same", &body)
    );
    assert_eq!(second.status(), 200);
    assert_eq!(third.status(), 200);
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(third.json::<Value>().await.unwrap(), first);
    smtp.wait_for(1, 20).await;
    portal.settled("invitation_emails").await;
    assert_eq!(smtp.received().len(), 1, "one email");
    assert_eq!(portal.count("SELECT count(*) FROM partners").await, 1, "one partner");
    portal.stop().await;
}

#[tokio::test]
async fn the_partner_life_cycle_controls_access() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let hook = |approved: bool, n: u32| {
        let portal = &portal;
        async move {
            let response = portal
                .webhook(
                    "/webhooks/soho/partner",
                    &format!("msg_life_{n}"),
                    &partner_webhook("42", "life@example.com", approved),
                )
                .await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["status"].as_str().unwrap().to_string()
        }
    };
    // Not approved: pending, no user, no email.
    assert_eq!(hook(false, 1).await, "pending");
    assert_eq!(portal.count("SELECT count(*) FROM users").await, 0);
    // Approved twice: one invitation.
    assert_eq!(hook(true, 2).await, "approved");
    assert_eq!(hook(true, 3).await, "approved");
    let mail = smtp.wait_for(1, 20).await.remove(0);
    let token = portal.register(&mail.token(), PASSWORD).await;
    let malformed = portal.get("/partners/x", Some(&token)).await;
    assert_eq!(malformed.status(), 404, "a malformed id names nothing");
    assert_eq!(malformed.headers()["content-type"], "application/problem+json");

    // Suspended: login refused, live token refused.
    assert_eq!(hook(false, 4).await, "suspended");
    assert_eq!(portal.login("life@example.com", PASSWORD).await.status(), 403);
    let partner: String = sqlx::query_scalar("SELECT partner_id::text FROM partners")
        .fetch_one(&portal.pool)
        .await
        .unwrap();
    assert_eq!(portal.get(&format!("/partners/{partner}"), Some(&token)).await.status(), 401);

    // Reinstated: works again, and no new invitation for a registered admin.
    assert_eq!(hook(true, 5).await, "approved");
    assert_eq!(portal.login("life@example.com", PASSWORD).await.status(), 200);
    assert_eq!(portal.get(&format!("/partners/{partner}"), Some(&token)).await.status(), 200);
    portal.settled("invitation_emails").await;
    assert_eq!(smtp.received().len(), 1);
    portal.stop().await;
}

#[tokio::test]
async fn invitation_links_are_single_use_expire_and_are_retired_by_a_resend() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let partner = portal.approve_partner("900", "admin900@example.com").await;
    let admin_token = smtp.wait_for(1, 20).await[0].token();
    // The registration page learns what the link is for before anything is set.
    let lookup = |token: String| {
        let portal = &portal;
        async move { portal.post("/auth/invitation", None, &json!({"token": token})).await }
    };
    let described: Value = lookup(admin_token.clone()).await.json().await.unwrap();
    assert_eq!(described["email"], "admin900@example.com");
    assert_eq!(described["role"], "admin");
    assert!(described["partnerName"].as_str().is_some_and(|n| !n.is_empty()), "{described}");
    assert!(described["invitedBy"].is_null(), "Soho CRM's approval sent it: {described}");
    let admin = portal.register(&admin_token, PASSWORD).await;
    assert_eq!(lookup(admin_token).await.status(), 409, "used");

    // Invite a sub-account, then re-send: the first link stops working.
    let invited = portal
        .post("/invite", Some(&admin), &json!({"email": "sub900@example.com", "name": "Sub"}))
        .await;
    assert_eq!(invited.status(), 201);
    let first = smtp.wait_for(2, 20).await[1].token();
    let resent =
        portal.post("/invite", Some(&admin), &json!({"email": "SUB900@example.com"})).await;
    assert_eq!(resent.status(), 200);
    let second = smtp.wait_for(3, 20).await[2].token();
    assert_ne!(first, second);
    let described: Value = lookup(second.clone()).await.json().await.unwrap();
    assert_eq!(described["email"], "sub900@example.com");
    assert_eq!(described["role"], "sub");
    assert_eq!(described["name"], "Sub");
    assert!(described["invitedBy"].as_str().is_some_and(|n| !n.is_empty()), "{described}");
    assert_eq!(lookup(first.clone()).await.status(), 422, "retired by the resend");
    assert_eq!(lookup("x\u{0}y".into()).await.status(), 422);
    let old =
        portal.post("/auth/register", None, &json!({"token": first, "password": PASSWORD})).await;
    assert_eq!(old.status(), 422);
    let problem: Value = old.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "token");

    // Altered token.
    let altered = format!("{}x", &second[..second.len() - 1]);
    assert_eq!(
        portal
            .post("/auth/register", None, &json!({"token": altered, "password": PASSWORD}))
            .await
            .status(),
        422
    );
    // A password that breaks the rules.
    let weak =
        portal.post("/auth/register", None, &json!({"token": second, "password": "short"})).await;
    assert_eq!(weak.status(), 422);
    assert_eq!(weak.json::<Value>().await.unwrap()["errors"][0]["field"], "password");
    // The current link works once.
    portal.register(&second, PASSWORD).await;
    let reused =
        portal.post("/auth/register", None, &json!({"token": second, "password": PASSWORD})).await;
    assert_eq!(reused.status(), 409);

    // An expired invitation: re-issued with a lifetime already over.
    let (user_id, _): (uuid::Uuid, i32) =
        sqlx::query_as("SELECT user_id, 0 FROM users WHERE email = 'admin900@example.com'")
            .fetch_one(&portal.pool)
            .await
            .unwrap();
    let _ = user_id;
    let invited = portal
        .post(
            &format!("/partners/{partner}/sub-accounts"),
            Some(&admin),
            &json!({"email": "late@example.com", "name": "Late"}),
        )
        .await;
    assert_eq!(invited.status(), 201);
    let late: Value = invited.json().await.unwrap();
    let late_id: uuid::Uuid = late["id"].as_str().unwrap().parse().unwrap();
    let expired = soho_aggregates::user::Invitation {
        invitation_id: soho_aggregates::InvitationId::new(),
        token_hash: soho_portal::auth::keys::token_hash(
            &portal.portal().keys.invitation_token(soho_aggregates::InvitationId::default()),
        ),
        expires_at: chrono::Utc::now() - chrono::Duration::hours(1),
    };
    let expired_token =
        portal.portal().keys.invitation_token(soho_aggregates::InvitationId::default());
    let commands = &portal.portal().commands;
    commands
        .execute(
            &commands.users,
            soho_aggregates::UserId(late_id),
            soho_aggregates::UserCommand::ReissueInvitation {
                invitation: expired,
                at: chrono::Utc::now(),
            },
            &soho_portal::commands::CommandContext::new(soho_aggregates::Actor::system()),
        )
        .await
        .unwrap();
    let gone = portal
        .post("/auth/register", None, &json!({"token": expired_token, "password": PASSWORD}))
        .await;
    assert_eq!(gone.status(), 410);
    assert!(gone.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("expired"));
    portal.stop().await;
}

#[tokio::test]
async fn sub_accounts_can_be_listed_disabled_and_enabled() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let partner = portal.approve_partner("300", "admin300@example.com").await;
    let admin = portal.register(&smtp.wait_for(1, 20).await[0].token(), PASSWORD).await;
    let created = portal
        .post(
            &format!("/partners/{partner}/sub-accounts"),
            Some(&admin),
            &json!({"email": "s300@example.com", "name": "Sam"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["status"], "invited");
    assert_eq!(created["leadCount"], 0);
    // The admin sees when the link stops working, and that nobody has signed in yet.
    let expires: chrono::DateTime<chrono::Utc> =
        created["invitationExpiresAt"].as_str().unwrap().parse().unwrap();
    let hours = (expires - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((71.0..=72.0).contains(&hours), "{hours}");
    assert!(created["lastSignInAt"].is_null());
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let sub = portal.register(&smtp.wait_for(2, 20).await[1].token(), PASSWORD).await;

    let list: Value = portal
        .get(&format!("/partners/{partner}/sub-accounts"), Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["email"], "s300@example.com");
    assert!(list[0]["invitationExpiresAt"].is_null(), "registered: no invitation left");
    let signed_in: chrono::DateTime<chrono::Utc> =
        list[0]["lastSignInAt"].as_str().expect("a sign-in at registration").parse().unwrap();
    assert!(signed_in >= before, "{signed_in}");

    // The sub-account sees the partner's basic info only.
    let basic: Value =
        portal.get(&format!("/partners/{partner}"), Some(&sub)).await.json().await.unwrap();
    assert_eq!(basic.as_object().unwrap().keys().collect::<Vec<_>>(), ["id", "name"]);

    let path = format!("/partners/{partner}/sub-accounts/{}", created["id"].as_str().unwrap());
    let disabled = portal.patch(&path, Some(&admin), &json!({"disabled": true})).await;
    assert_eq!(disabled.json::<Value>().await.unwrap()["status"], "disabled");
    assert_eq!(
        portal.get(&format!("/partners/{partner}"), Some(&sub)).await.status(),
        401,
        "live token refused"
    );
    assert_eq!(portal.login("s300@example.com", PASSWORD).await.status(), 403);
    let enabled = portal.patch(&path, Some(&admin), &json!({"disabled": false})).await;
    assert_eq!(enabled.json::<Value>().await.unwrap()["status"], "active");
    assert_eq!(portal.get(&format!("/partners/{partner}"), Some(&sub)).await.status(), 200);

    // An email already used anywhere in the portal is refused, whatever its case.
    let taken = portal
        .post(
            &format!("/partners/{partner}/sub-accounts"),
            Some(&admin),
            &json!({"email": "ADMIN300@example.com", "name": "X"}),
        )
        .await;
    assert_eq!(taken.status(), 409);
    portal.stop().await;
}

#[tokio::test]
async fn wrong_passwords_and_unknown_emails_get_the_same_answer_and_failures_are_limited() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(
        &smtp,
        &[("AUTH_RATE_LIMIT_PER_EMAIL", "3"), ("AUTH_FAILURE_LIMIT_PER_EMAIL", "6")],
    )
    .await;
    portal.approve_partner("5", "five@example.com").await;
    portal.register(&smtp.wait_for(1, 20).await[0].token(), PASSWORD).await;
    let wrong = portal.login("five@example.com", "not the password at all").await;
    let unknown = portal.login("nobody@example.com", "not the password at all").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert_eq!(wrong.json::<Value>().await.unwrap(), unknown.json::<Value>().await.unwrap());
    // Successful logins are not failures: however many, they are never limited.
    for email in ["five@example.com", "FIVE@example.com", "Five@example.com", "five@example.com"] {
        assert_eq!(portal.login(email, PASSWORD).await.status(), 200, "{email}");
    }

    // An attacker on another address guesses until refused, then even the right password is.
    let login_from = |address: [u8; 4], password: &'static str| {
        let url = portal.url("/auth/login");
        async move {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from(address))
                .build()
                .unwrap()
                .post(url)
                .json(&json!({"email": "five@example.com", "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(login_from([127, 0, 0, 2], "a wrong guess here").await.status(), 401);
    }
    let limited = login_from([127, 0, 0, 2], PASSWORD).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // The victim, from its own address, logs in all the same.
    assert_eq!(portal.login("five@example.com", PASSWORD).await.status(), 200);

    // Failures from many addresses together reach the per-email limit (3 + 1 so far, and the
    // victim's success cleared none of the attacker's).
    assert_eq!(login_from([127, 0, 0, 3], "a wrong guess here").await.status(), 401);
    assert_eq!(login_from([127, 0, 0, 4], "a wrong guess here").await.status(), 401);
    assert_eq!(login_from([127, 0, 0, 5], PASSWORD).await.status(), 429);
    portal.stop().await;
}

#[tokio::test]
async fn a_suspended_partners_sub_accounts_stop_and_inviting_a_registered_person_is_409() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "pause").await;
    let hook = |approved: bool, n: usize| {
        let body = common::partner_webhook("soho-pause", &a.admin_email, approved);
        let portal = &portal;
        async move { portal.webhook("/webhooks/soho/partner", &format!("msg_pause_{n}"), &body).await }
    };
    assert_eq!(hook(false, 1).await.status(), 200);
    assert_eq!(portal.login(&a.sub_email, PASSWORD).await.status(), 403, "no login");
    assert_eq!(portal.get("/leads", Some(&a.sub)).await.status(), 401, "its token stops");
    assert_eq!(hook(true, 2).await.status(), 200);
    assert_eq!(portal.login(&a.sub_email, PASSWORD).await.status(), 200, "reinstated");

    // Inviting someone of this partner who has registered: 409, and nothing sent.
    let sent = smtp.received().len();
    for email in [&a.sub_email, &a.admin_email] {
        let invited = portal.post("/invite", Some(&a.admin), &json!({"email": email})).await;
        assert_eq!(invited.status(), 409, "{email}");
        assert_eq!(invited.headers()["content-type"], "application/problem+json");
    }
    portal.settled("invitation_emails").await;
    assert_eq!(smtp.received().len(), sent);
    portal.stop().await;
}

#[tokio::test]
async fn a_disabled_invitee_is_refused_before_anything_changes_and_told_why() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "dis").await;
    let email = "late@example.com";
    let created = portal
        .post(
            &format!("/partners/{}/sub-accounts", a.id),
            Some(&a.admin),
            &json!({"email": email, "name": "Late"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let user: Value = created.json().await.unwrap();
    let token = smtp.wait_for_mail_to(email, 20).await.token();
    let path = format!("/partners/{}/sub-accounts/{}", a.id, user["id"].as_str().unwrap());
    let disabled = portal.patch(&path, Some(&a.admin), &json!({"disabled": true})).await;
    assert_eq!(disabled.status(), 200);
    let events_before = portal.count("SELECT count(*) FROM events").await;

    let body = json!({"token": token, "password": common::PASSWORD});
    let refused = portal.post("/auth/register", None, &body).await;
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("disabled"), "{problem}");
    assert_eq!(portal.count("SELECT count(*) FROM events").await, events_before, "nothing written");

    // Enabled again, the same link still works: it was not used up.
    let enabled = portal.patch(&path, Some(&a.admin), &json!({"disabled": false})).await;
    assert_eq!(enabled.status(), 200);
    let registered = portal.post("/auth/register", None, &body).await;
    assert_eq!(registered.status(), 200);
    portal.stop().await;
}

/// "Forgot your password?": the same quick 202 for anyone; a link by email for a registered,
/// enabled user only; the link works once, within its hour, and ends the other sessions.
#[tokio::test]
async fn a_forgotten_password_is_reset_by_an_emailed_link_once() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let partner = portal.approve_partner("910", "admin910@example.com").await;
    let admin = portal.register(&smtp.wait_for(1, 20).await[0].token(), PASSWORD).await;
    let login = portal.login("admin910@example.com", PASSWORD).await;
    let old_session: Value = login.json().await.unwrap();
    // An invited sub-account that never registered gets no link.
    let invited = portal
        .post("/invite", Some(&admin), &json!({"email": "sub910@example.com", "name": "Sub"}))
        .await;
    assert_eq!(invited.status(), 201);
    smtp.wait_for(2, 20).await;

    for email in ["nobody@example.com", "sub910@example.com", "ADMIN910@example.com"] {
        let asked = portal.post("/auth/password-reset", None, &json!({"email": email})).await;
        assert_eq!(asked.status(), 202, "{email}");
        assert_eq!(asked.text().await.unwrap(), "", "the answer says nothing about {email}");
    }
    let mail = smtp.wait_for(3, 20).await.remove(2);
    assert_eq!(mail.to, vec!["admin910@example.com".to_string()]);
    assert!(mail.link().contains("/reset-password?token="), "{}", mail.link());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(smtp.received().len(), 3, "only the registered user got a link");
    let token = mail.token();

    // Bad input, an altered link.
    let weak = portal
        .post("/auth/password-reset/confirm", None, &json!({"token": token, "password": "short"}))
        .await;
    assert_eq!(weak.status(), 422);
    assert_eq!(weak.json::<Value>().await.unwrap()["errors"][0]["field"], "password");
    let altered = format!("{}x", &token[..token.len() - 1]);
    let wrong = portal
        .post(
            "/auth/password-reset/confirm",
            None,
            &json!({"token": altered, "password": "a new password 910"}),
        )
        .await;
    assert_eq!(wrong.status(), 422);
    assert_eq!(wrong.json::<Value>().await.unwrap()["errors"][0]["field"], "token");
    let not_email = portal.post("/auth/password-reset", None, &json!({"email": "x\u{0}y"})).await;
    assert_eq!(not_email.status(), 422);

    // The link works once: the new password logs in, the old one no longer does, and the
    // session made with the old one cannot be refreshed.
    let reset = portal
        .post(
            "/auth/password-reset/confirm",
            None,
            &json!({"token": token, "password": "a new password 910"}),
        )
        .await;
    assert_eq!(reset.status(), 204);
    assert_eq!(portal.login("admin910@example.com", "a new password 910").await.status(), 200);
    assert_eq!(portal.login("admin910@example.com", PASSWORD).await.status(), 401);
    let refreshed = portal
        .post("/auth/refresh", None, &json!({"refreshToken": old_session["refreshToken"]}))
        .await;
    assert_eq!(refreshed.status(), 401, "the old session ended");
    let again = portal
        .post(
            "/auth/password-reset/confirm",
            None,
            &json!({"token": token, "password": "another password 910"}),
        )
        .await;
    assert_eq!(again.status(), 422);

    // An expired link: asked for, then made old.
    let asked =
        portal.post("/auth/password-reset", None, &json!({"email": "admin910@example.com"})).await;
    assert_eq!(asked.status(), 202);
    let late = smtp.wait_for(4, 20).await[3].token();
    sqlx::query("UPDATE users SET password_reset_expires_at = now() - interval '1 minute' WHERE lower(email) = 'admin910@example.com'")
        .execute(&portal.pool)
        .await
        .unwrap();
    let gone = portal
        .post(
            "/auth/password-reset/confirm",
            None,
            &json!({"token": late, "password": "another password 910"}),
        )
        .await;
    assert_eq!(gone.status(), 410);

    // A disabled account's link stops working.
    let asked =
        portal.post("/auth/password-reset", None, &json!({"email": "admin910@example.com"})).await;
    assert_eq!(asked.status(), 202);
    let fresh = smtp.wait_for(5, 20).await[4].token();
    let admin_id: uuid::Uuid =
        sqlx::query_scalar("SELECT user_id FROM users WHERE email = 'admin910@example.com'")
            .fetch_one(&portal.pool)
            .await
            .unwrap();
    let context = soho_portal::commands::CommandContext::new(soho_aggregates::Actor::system());
    soho_portal::onboarding::invitations::set_disabled(
        portal.portal(),
        soho_aggregates::UserId(admin_id),
        true,
        &context,
    )
    .await
    .unwrap();
    let refused = portal
        .post(
            "/auth/password-reset/confirm",
            None,
            &json!({"token": fresh, "password": "another password 910"}),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let _ = partner;

    // Asking again and again for one email is limited.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let asked =
            portal.post("/auth/password-reset", None, &json!({"email": "flood@example.com"})).await;
        statuses.push(asked.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 202, 202, 202, 429]);
    portal.stop().await;
}

/// Everyone's own account: its name and password, changed by itself only (an API key acting for
/// the admin cannot), the current password checked like a login, other sessions ended.
#[tokio::test]
async fn a_user_changes_its_own_name_and_password_and_nobody_elses() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "me").await;
    let b = portal.partner_with_team(&smtp, "other").await;

    assert_eq!(portal.patch("/me", None, &json!({"name": "X"})).await.status(), 401);
    let renamed = portal.patch("/me", Some(&a.sub), &json!({"name": "Samuel Sub"})).await;
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["name"], "Samuel Sub");
    assert_eq!(renamed["email"], "sub-me@example.com");
    let team: Value = portal
        .get(&format!("/partners/{}/sub-accounts", a.id), Some(&a.admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(team[0]["name"], "Samuel Sub", "the admin sees the new name");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(name, '') FROM users WHERE email LIKE '%other@example.com' ORDER BY email",
    )
    .fetch_all(&portal.pool)
    .await
    .unwrap();
    assert!(!names.contains(&"Samuel Sub".to_string()), "only the caller changed: {names:?}");
    let bad = portal.patch("/me", Some(&a.sub), &json!({"name": "two\nlines"})).await;
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.json::<Value>().await.unwrap()["errors"][0]["field"], "name");

    // A password: the current one is checked, the new one must qualify.
    let sub_login: Value = portal.login("sub-me@example.com", PASSWORD).await.json().await.unwrap();
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    let wrong = portal
        .post("/me/password", Some(&a.sub), &change("not it at all!", "a new password here"))
        .await;
    assert_eq!(wrong.status(), 422);
    assert_eq!(wrong.json::<Value>().await.unwrap()["errors"][0]["field"], "currentPassword");
    let weak = portal.post("/me/password", Some(&a.sub), &change(PASSWORD, "short")).await;
    assert_eq!(weak.json::<Value>().await.unwrap()["errors"][0]["field"], "newPassword");
    let changed =
        portal.post("/me/password", Some(&a.sub), &change(PASSWORD, "a new password here")).await;
    assert_eq!(changed.status(), 200);
    let session: Value = changed.json().await.unwrap();
    assert!(session["accessToken"].is_string(), "a new session for the caller");
    assert_eq!(portal.login("sub-me@example.com", PASSWORD).await.status(), 401);
    assert_eq!(portal.login("sub-me@example.com", "a new password here").await.status(), 200);
    let old = portal
        .post("/auth/refresh", None, &json!({"refreshToken": sub_login["refreshToken"]}))
        .await;
    assert_eq!(old.status(), 401, "the sessions made with the old password ended");
    // The other partner's people are untouched.
    assert_eq!(portal.login("sub-other@example.com", PASSWORD).await.status(), 200);
    let _ = b;

    // An API key acts for the admin, but is not the admin.
    let key: Value = portal
        .post(&format!("/partners/{}/api-keys", a.id), Some(&a.admin), &json!({"name": "CRM"}))
        .await
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap();
    assert_eq!(portal.patch("/me", Some(key), &json!({"name": "Mallory"})).await.status(), 403);
    assert_eq!(
        portal
            .post("/me/password", Some(key), &change(PASSWORD, "owned by a key!!"))
            .await
            .status(),
        403
    );
    assert_eq!(portal.login("admin-me@example.com", PASSWORD).await.status(), 200);
    portal.stop().await;
}
