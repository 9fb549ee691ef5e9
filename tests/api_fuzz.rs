//! A property-based test of the API driven by its own OpenAPI document, as Schemathesis does:
//! every operation is called with generated requests (ids that exist, that do not, and garbage;
//! query parameters and bodies generated from their schemas, valid and broken) as a partner's
//! admin, a sub-account, an auditor, an API key, a forged token and nobody. Every answer must be below 500
//! and one the document declares for that operation. `FUZZ_SEED=N` repeats a run; the seed is
//! printed.

mod common;

use common::smtp::SmtpSink;
use common::TestPortal;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

/// Requests per operation.
const CASES: usize = 30;

const TEXTS: &[&str] = &[
    "",
    " ",
    "a",
    "new",
    "converted",
    "public",
    "ada@example.com",
    "+44 20 7946 0000",
    "é😀 ünïcödé",
    "' OR 1=1 --",
    "%",
    "_",
    "\\",
    "<script>alert(1)</script>",
    "a\u{0}b",
    "line\nbreak",
    "2026-12-05T10:00:00Z",
    "00000000-0000-0000-0000-000000000000",
];

struct Fuzzer {
    rng: StdRng,
    document: Value,
    /// Ids that exist, by what they are: path ids are drawn from them and from garbage.
    known: Vec<String>,
}

impl Fuzzer {
    fn text(&mut self) -> String {
        match self.rng.random_range(0..10) {
            0 => "x".repeat(self.rng.random_range(100..6000)),
            1 => uuid::Uuid::new_v4().to_string(),
            2 => self.known.choose(&mut self.rng).cloned().unwrap_or_default(),
            _ => TEXTS.choose(&mut self.rng).map(|t| t.to_string()).unwrap_or_default(),
        }
    }

    fn number(&mut self) -> Value {
        let choices =
            [json!(-1), json!(0), json!(1), json!(50), json!(201), json!(1_i64 << 40), json!(2.5)];
        choices.choose(&mut self.rng).cloned().unwrap_or(json!(0))
    }

    /// A value for `schema`: usually of its type, sometimes of another.
    fn value(&mut self, schema: &Value, depth: usize) -> Value {
        let schema = self.resolve(schema);
        if self.rng.random_bool(0.1) || depth > 3 {
            return [json!(null), json!(true), json!(7), json!("x"), json!([]), json!({})]
                .choose(&mut self.rng)
                .cloned()
                .unwrap_or(Value::Null);
        }
        let kind = match &schema["type"] {
            Value::Array(kinds) => {
                kinds.iter().find(|k| *k != "null").cloned().unwrap_or(Value::Null)
            }
            kind => kind.clone(),
        };
        match kind.as_str() {
            Some("string") => match schema["format"].as_str() {
                Some("uuid") => {
                    json!(self.known.choose(&mut self.rng).cloned().unwrap_or_default())
                }
                Some("date-time") => json!("2026-12-05T10:00:00Z"),
                _ => json!(self.text()),
            },
            Some("integer") | Some("number") => self.number(),
            Some("boolean") => json!(self.rng.random_bool(0.5)),
            Some("array") => {
                let item = schema["items"].clone();
                (0..self.rng.random_range(0..3)).map(|_| self.value(&item, depth + 1)).collect()
            }
            _ => self.object(&schema, depth),
        }
    }

    fn object(&mut self, schema: &Value, depth: usize) -> Value {
        let mut object = Map::new();
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                if self.rng.random_bool(0.8) {
                    let value = self.value(property, depth + 1);
                    object.insert(name.clone(), value);
                }
            }
        } else if schema.get("additionalProperties").is_some() {
            for n in 0..self.rng.random_range(0..25) {
                object.insert(format!("key{n}"), json!(self.text()));
            }
        }
        if self.rng.random_bool(0.05) {
            object.insert("unexpected".into(), json!(1));
        }
        Value::Object(object)
    }

    fn resolve(&self, schema: &Value) -> Value {
        match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => self.document["components"]["schemas"][name].clone(),
            None => schema.clone(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_below_500_and_only_as_documented() {
    let smtp = SmtpSink::start().await;
    let portal = TestPortal::start(&smtp, &[]).await;
    let a = portal.partner_with_team(&smtp, "fuzz").await;
    let auditor = portal.auditor("fuzz-auditor@example.com").await;
    let lead: Value = portal
        .post("/leads", Some(&a.admin), &json!({"lastName": "Fuzz", "email": "fuzz@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let key: Value = portal
        .post(&format!("/partners/{}/api-keys", a.id), Some(&a.admin), &json!({"name": "fuzz"}))
        .await
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let document: Value = portal.get("/openapi.json", None).await.json().await.unwrap();
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    println!("FUZZ_SEED={seed}");
    let known =
        vec![a.id.to_string(), a.sub_id.to_string(), lead["id"].as_str().unwrap().to_string()];
    let mut fuzzer = Fuzzer { rng: StdRng::seed_from_u64(seed), document: document.clone(), known };
    let tokens = [
        Some(a.admin.clone()),
        Some(a.sub.clone()),
        Some(auditor),
        Some(key),
        None,
        Some("forged.token.value".to_string()),
    ];

    let mut failures = Vec::new();
    let mut calls = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if path == "/ws" {
                continue; // a WebSocket upgrade: tests/live.rs
            }
            let declared: Vec<&String> =
                operation["responses"].as_object().unwrap().keys().collect();
            for _ in 0..CASES {
                let mut url = path.clone();
                let mut query = Vec::new();
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let name = parameter["name"].as_str().unwrap();
                    match parameter["in"].as_str() {
                        Some("path") => {
                            let value = if fuzzer.rng.random_bool(0.7) {
                                fuzzer.known.choose(&mut fuzzer.rng).cloned().unwrap_or_default()
                            } else {
                                fuzzer.text()
                            };
                            // A path parameter is never empty (the URL would name another route).
                            let value = if value.is_empty() { "x".to_string() } else { value };
                            let encoded: String =
                                form_urlencoded::byte_serialize(value.as_bytes()).collect();
                            url = url.replace(&format!("{{{name}}}"), &encoded);
                        }
                        Some("query") if fuzzer.rng.random_bool(0.6) => {
                            let value = fuzzer.value(&parameter["schema"], 1);
                            let value = match value {
                                Value::String(text) => text,
                                other => other.to_string(),
                            };
                            query.push((name.to_string(), value));
                        }
                        _ => {}
                    }
                }
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut target = portal.url(&url);
                if !query.is_empty() {
                    let mut pairs = form_urlencoded::Serializer::new(String::new());
                    for (name, value) in &query {
                        pairs.append_pair(name, value);
                    }
                    target = format!("{target}?{}", pairs.finish());
                }
                let mut request = portal.http.request(method.clone(), target);
                if let Some(token) = tokens.choose(&mut fuzzer.rng).unwrap() {
                    request = request.bearer_auth(token);
                }
                if let Some(body) = operation.get("requestBody") {
                    let schema = &body["content"]["application/json"]["schema"];
                    request = match fuzzer.rng.random_range(0..20) {
                        0 => request.header("content-type", "application/json").body("{"),
                        1 => request.header("content-type", "text/plain").body("hello"),
                        2 => request.json(&json!([])),
                        _ => request.json(&fuzzer.value(schema, 0)),
                    };
                }
                let response = request.send().await.unwrap();
                calls += 1;
                let status = response.status().as_u16();
                let documented =
                    declared.iter().any(|d| *d == &status.to_string() || *d == "default");
                if status >= 500 || !documented {
                    let body = response.text().await.unwrap_or_default();
                    failures.push(format!(
                        "{method} {url}?{query:?} → {status}: {}",
                        body.chars().take(300).collect::<String>()
                    ));
                }
            }
        }
    }
    println!("{calls} calls");
    assert!(calls > 500, "the document lists the routes ({calls} calls)");
    failures.sort();
    failures.dedup();
    assert!(
        failures.is_empty(),
        "FUZZ_SEED={seed}: {} answers were 5xx or undocumented:\n{}",
        failures.len(),
        failures.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    portal.stop().await;
}
