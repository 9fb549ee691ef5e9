//! The OpenAPI document as served: what the handlers' `#[utoipa::path]` attributes declare,
//! completed with what every route of a kind can answer, so that a generated client and a
//! fuzzer (`tests/api_fuzz.rs`) can use every route from the document alone.
//!
//! The answers added are the ones the layers produce, not the handlers: a path's ids (and the
//! 404 for one not found, or outside the caller's scope), the bearer guard's 401 and 403, the JSON
//! extractor's 400, 413 and 422. Declared by hand they were missing on most routes.

use serde_json::{json, Value};
use utoipa::OpenApi;

use super::ApiDoc;

/// The document `/openapi.json` serves and `soho-portal openapi` prints.
pub fn document() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for operation in item.values_mut().filter_map(Value::as_object_mut) {
                complete(path, operation);
            }
        }
    }
    add_webhooks(&mut document);
    document
}

/// The messages partners' endpoints receive (OpenAPI 3.1 `webhooks`): the live socket's, without
/// `position`, each signed with Standard Webhooks headers.
fn add_webhooks(document: &mut Value) {
    let lead_id = json!({"type": "string", "format": "uuid"});
    let at = json!({"type": "string", "format": "date-time"});
    let messages = [
        (
            "lead.created",
            "A lead was submitted.",
            json!({"type": "object", "required": ["type", "lead"],
            "properties": {"type": {"const": "lead.created"}, "lead": {"$ref": "#/components/schemas/LeadView"}}}),
        ),
        (
            "lead.status_changed",
            "A lead's status changed (in the portal or in Soho CRM).",
            json!({"type": "object",
            "required": ["type", "leadId", "oldStatus", "newStatus", "source", "at"],
            "properties": {"type": {"const": "lead.status_changed"}, "leadId": lead_id, "oldStatus": {"type": "string"},
                "newStatus": {"type": "string"}, "source": {"enum": ["portal", "crm"]}, "at": at}}),
        ),
        (
            "lead.synced",
            "A lead reached Soho CRM.",
            json!({"type": "object", "required": ["type", "leadId", "sohoLeadId"],
            "properties": {"type": {"const": "lead.synced"}, "leadId": lead_id, "sohoLeadId": {"type": "string"}}}),
        ),
        (
            "lead.sync_failed",
            "Soho CRM refused a lead.",
            json!({"type": "object", "required": ["type", "leadId", "syncError"],
            "properties": {"type": {"const": "lead.sync_failed"}, "leadId": lead_id, "syncError": {"type": "string"}}}),
        ),
        (
            "webhook.test",
            "The endpoint's test button.",
            json!({"type": "object", "required": ["type", "at"],
            "properties": {"type": {"const": "webhook.test"}, "at": at}}),
        ),
    ];
    let headers = json!([
        {"name": "webhook-id", "in": "header", "required": true, "schema": {"type": "string"},
         "description": "the message's id, the same on every attempt: drop repeats by it"},
        {"name": "webhook-timestamp", "in": "header", "required": true, "schema": {"type": "integer"}},
        {"name": "webhook-signature", "in": "header", "required": true, "schema": {"type": "string"},
         "description": "`v1,<base64 HMAC-SHA256>` of `id.timestamp.body` with the endpoint's whsec_ secret"},
    ]);
    let webhooks: serde_json::Map<String, Value> = messages
        .into_iter()
        .map(|(name, summary, schema)| {
            let operation = json!({"post": {"summary": summary, "parameters": headers,
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema}}},
                "responses": {"2XX": {"description": "delivered; anything else is retried"}}}});
            (name.to_string(), operation)
        })
        .collect();
    document["webhooks"] = Value::Object(webhooks);
}

fn complete(path: &str, operation: &mut serde_json::Map<String, Value>) {
    let names: Vec<&str> = path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect();
    let parameters = operation.entry("parameters").or_insert_with(|| json!([]));
    if let Some(parameters) = parameters.as_array_mut() {
        for name in &names {
            let declared =
                parameters.iter().any(|p| p["in"] == "path" && p["name"].as_str() == Some(*name));
            if !declared {
                parameters.push(json!({
                    "name": name, "in": "path", "required": true,
                    "description": if *name == "user_id" { "a user's id" } else { "the resource's id" },
                    "schema": {"type": "string", "format": "uuid"},
                }));
            }
        }
    }
    let has_parameters = operation["parameters"].as_array().is_some_and(|p| !p.is_empty());
    if !has_parameters {
        operation.remove("parameters");
    }
    let secured = operation.get("security").is_some();
    let has_body = operation.get("requestBody").is_some();
    let mut answers: Vec<(&str, &str)> = Vec::new();
    if secured {
        answers.push((
            "401",
            "no bearer token, or one that is invalid or expired, or whose user may no longer act",
        ));
        answers.push(("403", "the caller's role may not use this route"));
    }
    if !names.is_empty() {
        answers
            .push(("404", "no such resource, or not one the caller may see (a malformed id too)"));
    }
    if has_body {
        answers.push(("400", "the body is not JSON"));
        answers.push(("413", "the body is too large"));
    }
    if has_body || has_parameters {
        answers.push(("422", "a field or parameter is invalid; `errors` names each"));
    }
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    if let Some(responses) = responses.as_object_mut() {
        for (status, description) in answers {
            responses.entry(status).or_insert_with(|| problem(description));
        }
    }
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}
