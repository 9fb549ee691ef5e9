//! How each answer may be cached (contract 3, "Caching and headers"): a page and an API answer
//! share URLs such as `/leads`, so a browser that kept one would serve it for the other (the
//! reload bug: JSON parsed as HTML).

mod common;

use common::smtp::SmtpSink;
use common::TestPortal;
use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, VARY};

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn pages_and_api_answers_on_one_url_are_cached_apart_and_never_sniffed() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::create_dir(web.path().join("assets")).unwrap();
    std::fs::write(web.path().join("assets/app-1a2b3c.js"), "console.log(1)").unwrap();
    // What `web/scripts/compress.mjs` writes beside it (the content does not matter here).
    std::fs::write(web.path().join("assets/app-1a2b3c.js.br"), "brotli bytes").unwrap();
    let smtp = SmtpSink::start().await;
    let web_dir = web.path().display().to_string();
    let portal = TestPortal::start(&smtp, &[("WEB_DIR", web_dir.as_str())]).await;
    let a = portal.partner_with_team(&smtp, "cache").await;
    let http = common::client();

    // The page at /leads: HTML, revalidated each time, varying by Accept.
    let page = http.get(portal.url("/leads")).header(ACCEPT, "text/html").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html");
    assert_eq!(header(&page, CACHE_CONTROL.as_str()), "no-cache");
    assert!(header(&page, VARY.as_str()).contains("accept"), "{:?}", page.headers());
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let policy = header(&page, "content-security-policy");
    for directive in
        ["default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'self'"]
    {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }

    // The data at the same URL: never stored, varying by Accept.
    let data = http
        .get(portal.url("/leads"))
        .header(ACCEPT, "application/json")
        .header(AUTHORIZATION, format!("Bearer {}", a.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), 200);
    assert!(header(&data, "content-type").starts_with("application/json"));
    assert_eq!(header(&data, CACHE_CONTROL.as_str()), "no-store");
    assert!(header(&data, VARY.as_str()).contains("accept"));
    assert_eq!(header(&data, "x-content-type-options"), "nosniff");

    // Errors too: a problem is not kept either.
    let refused = http.get(portal.url("/leads")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(header(&refused, CACHE_CONTROL.as_str()), "no-store");
    assert_eq!(header(&refused, "x-content-type-options"), "nosniff");

    // Vite's hashed assets never change; API-only paths do not vary by Accept.
    let asset = http.get(portal.url("/assets/app-1a2b3c.js")).send().await.unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(header(&asset, CACHE_CONTROL.as_str()), "public, max-age=31536000, immutable");
    assert_eq!(header(&asset, "x-content-type-options"), "nosniff");
    assert_eq!(header(&asset, "content-encoding"), "", "asked for nothing compressed");
    let compressed = http
        .get(portal.url("/assets/app-1a2b3c.js"))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&compressed, "content-encoding"), "br");
    assert_eq!(compressed.bytes().await.unwrap().as_ref(), b"brotli bytes");
    // A method the path does not take: a problem like any other, with what it does take.
    let wrong = http.delete(portal.url("/leads")).send().await.unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(header(&wrong, "content-type"), "application/problem+json");
    assert!(header(&wrong, "allow").contains("post"), "{:?}", wrong.headers());
    let problem: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(problem["status"], 405);
    let health = http.get(portal.url("/healthz")).send().await.unwrap();
    assert_eq!(header(&health, CACHE_CONTROL.as_str()), "no-store");
    assert_eq!(header(&health, VARY.as_str()), "");
    assert_eq!(header(&health, "x-content-type-options"), "nosniff");
    portal.stop().await;
}
