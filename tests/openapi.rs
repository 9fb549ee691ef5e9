//! The published OpenAPI document covers the contract's routes, and the browser portal's typed
//! client was generated from this very document (so the two cannot drift apart silently).

mod common;

use common::smtp::SmtpSink;
use common::TestPortal;
use serde_json::Value;

#[tokio::test]
async fn the_openapi_document_covers_the_contract_and_matches_the_web_clients_copy() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let document: Value = portal.get("/openapi.json", None).await.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    // What partners' endpoints receive (contract 8), one message per event type.
    for event in ["lead.created", "lead.status_changed", "lead.synced", "lead.sync_failed"] {
        let message = &document["webhooks"][event]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        assert_eq!(message["properties"]["type"]["const"], event, "{event}");
    }
    let routes = [
        ("post", "/auth/register"),
        ("post", "/auth/login"),
        ("post", "/invite"),
        ("get", "/dashboard/stats"),
        ("post", "/leads"),
        ("get", "/leads"),
        ("get", "/leads/{id}"),
        ("get", "/leads/export.csv"),
        ("patch", "/leads/{id}/status"),
        ("get", "/leads/{id}/history"),
        ("get", "/partners/{id}"),
        ("get", "/partners/{id}/sub-accounts"),
        ("post", "/partners/{id}/sub-accounts"),
        ("patch", "/partners/{id}/sub-accounts/{user_id}"),
        ("get", "/audit/leads/{id}/events"),
        ("get", "/audit/leads/{id}/state"),
        ("get", "/audit/leads/{id}/export"),
        ("get", "/audit/verify"),
        ("get", "/audit/partners/{id}/stats"),
        ("get", "/leads/{id}/receipt"),
        ("get", "/ws"),
        ("get", "/leads/changes"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("post", "/webhooks/soho/partner"),
        ("post", "/webhooks/soho/lead-status"),
    ];
    for (method, path) in routes {
        assert!(document["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    // Generated clients name their functions after operation ids: each must be unique.
    let mut ids = std::collections::HashSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().unwrap_or_default().to_string();
            assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        }
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(common::workspace_dir().join("web/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        document, committed,
        "web/openapi.json is stale: run `target/debug/soho-portal openapi > web/openapi.json && (cd web && npm run api)`"
    );
    portal.stop().await;
}
