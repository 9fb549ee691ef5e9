//! Sessions that outlive their 15-minute access token: the refresh credential (contract 3,
//! `POST /auth/refresh` and `/auth/logout`), rotating, single-use, revocable.

mod common;

use common::smtp::SmtpSink;
use common::{TestPortal, PASSWORD};
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{json, Value};

/// The `soho_refresh` cookie an answer sets, with its attributes.
fn set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("soho_refresh="))
        .unwrap_or_default()
        .to_string()
}

async fn refresh_with_cookie(portal: &TestPortal, token: &str) -> reqwest::Response {
    portal
        .http
        .post(portal.url("/auth/refresh"))
        .header(COOKIE, format!("theme=dark; soho_refresh={token}"))
        .send()
        .await
        .unwrap()
}

async fn refresh_with_body(portal: &TestPortal, token: &str) -> reqwest::Response {
    portal.post("/auth/refresh", None, &json!({"refreshToken": token})).await
}

#[tokio::test]
async fn a_refresh_credential_rotates_is_single_use_and_a_copy_kills_its_family() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "rt").await;
    let login = portal.login(&a.admin_email, PASSWORD).await;
    assert_eq!(login.status(), 200);
    let cookie = set_cookie(&login);
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/auth"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let session: Value = login.json().await.unwrap();
    let first = session["refreshToken"].as_str().unwrap().to_string();
    assert!(cookie.starts_with(&format!("soho_refresh={first};")), "{cookie}");
    let plain = format!("SELECT count(*) FROM refresh_tokens WHERE token_hash = '{first}'");
    assert_eq!(portal.count(&plain).await, 0, "only a hash is kept");
    let hashed = format!(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = encode(sha256(convert_to('{first}', 'UTF8')), 'hex')"
    );
    assert_eq!(portal.count(&hashed).await, 1, "its SHA-256 is");

    // The browser's way: the cookie. A new access token that works, and the next credential.
    let refreshed = refresh_with_cookie(&portal, &first).await;
    assert_eq!(refreshed.status(), 200);
    let next_cookie = set_cookie(&refreshed);
    let body: Value = refreshed.json().await.unwrap();
    let second = body["refreshToken"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert!(next_cookie.starts_with(&format!("soho_refresh={second};")));
    assert_eq!(body["user"]["email"], a.admin_email.as_str());
    let access = body["accessToken"].as_str().unwrap();
    assert_eq!(portal.get("/dashboard/stats", Some(access)).await.status(), 200);

    // Used up: the same credential again is refused (a racing tab: its family lives on).
    assert_eq!(refresh_with_cookie(&portal, &first).await.status(), 401);
    let third: Value = refresh_with_body(&portal, &second).await.json().await.unwrap();
    let third = third["refreshToken"].as_str().unwrap().to_string();

    // Used again long after its use: it was copied, so the whole family ends, the newest too.
    sqlx::query(
        "UPDATE refresh_tokens SET used_at = now() - interval '1 minute' WHERE used_at IS NOT NULL",
    )
    .execute(&portal.pool)
    .await
    .unwrap();
    assert_eq!(refresh_with_body(&portal, &first).await.status(), 401);
    assert_eq!(refresh_with_body(&portal, &third).await.status(), 401, "the family is revoked");

    // Another login is another family, untouched.
    let other: Value = portal.login(&a.admin_email, PASSWORD).await.json().await.unwrap();
    let other = other["refreshToken"].as_str().unwrap();
    assert_eq!(refresh_with_body(&portal, other).await.status(), 200);
    portal.stop().await;
}

#[tokio::test]
async fn logout_disabling_and_suspending_end_the_session_and_nonsense_is_refused() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "end").await;
    let token = |session: Value| session["refreshToken"].as_str().unwrap().to_string();

    // Logout revokes (and clears the cookie); logging out twice is fine.
    let session = token(portal.login(&a.admin_email, PASSWORD).await.json().await.unwrap());
    let out = portal.post("/auth/logout", None, &json!({"refreshToken": session})).await;
    assert_eq!(out.status(), 204);
    assert!(set_cookie(&out).contains("Max-Age=0"));
    assert_eq!(refresh_with_cookie(&portal, &session).await.status(), 401);
    let again = portal.post("/auth/logout", None, &json!({"refreshToken": session})).await;
    assert_eq!(again.status(), 204);

    // A disabled sub-account's credential stops at once, and stays dead once enabled again.
    let sub = token(portal.login(&a.sub_email, PASSWORD).await.json().await.unwrap());
    let path = format!("/partners/{}/sub-accounts/{}", a.id, a.sub_id);
    let disable = portal.patch(&path, Some(&a.admin), &json!({"disabled": true})).await;
    assert_eq!(disable.status(), 200);
    let refused = refresh_with_body(&portal, &sub).await;
    assert_eq!(refused.status(), 401);
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("disabled"), "{problem}");
    let enable = portal.patch(&path, Some(&a.admin), &json!({"disabled": false})).await;
    assert_eq!(enable.status(), 200);
    assert_eq!(refresh_with_body(&portal, &sub).await.status(), 401);

    // A suspended partner's admin likewise.
    let admin = token(portal.login(&a.admin_email, PASSWORD).await.json().await.unwrap());
    let suspend = common::partner_webhook("soho-end", &a.admin_email, false);
    let suspended = portal.webhook("/webhooks/soho/partner", "msg_suspend_end", &suspend).await;
    assert_eq!(suspended.status(), 200);
    assert_eq!(refresh_with_body(&portal, &admin).await.status(), 401);

    // No credential, a made-up one, another shape of body.
    let none = portal.http.post(portal.url("/auth/refresh")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(refresh_with_cookie(&portal, "rt_madeup").await.status(), 401);
    assert_eq!(refresh_with_body(&portal, "' OR 1=1 --").await.status(), 401);
    let wrong = portal.post("/auth/refresh", None, &json!({"token": "x"})).await;
    assert_eq!(wrong.status(), 422);
    portal.stop().await;
}
