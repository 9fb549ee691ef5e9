//! The hash chain over the event log (CONTRACT 7): each event's hash covers what an auditor reads
//! back of it (stream, sequence, type, payload, metadata, recorded instant) and the hash of the
//! event before it in commit order, so altering, removing or reordering any sealed event breaks
//! every hash from there on.
//!
//! The hashed bytes are a canonical JSON array (object keys sorted, no spaces), so an export can
//! be checked offline by anyone with a JSON parser and SHA-256, whatever order its keys came in.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A SHA-256 hash of the chain.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prevHash` of the first event: 64 zeros.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// From stored bytes; `None` unless exactly 32 of them.
    pub fn from_bytes(bytes: &[u8]) -> Option<ChainHash> {
        bytes.try_into().ok().map(ChainHash)
    }

    pub fn from_hex(text: &str) -> Option<ChainHash> {
        hex::decode(text).ok().and_then(|bytes| ChainHash::from_bytes(&bytes))
    }
}

impl std::fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What of an event the hash covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedContent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: Value,
    pub metadata: Value,
}

impl SealedContent {
    pub fn of(event: &soho_projections::StoredEvent) -> SealedContent {
        SealedContent {
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            version: event.event_version.clone(),
            recorded_at: event.recorded_at,
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
        }
    }

    /// The event's hash when `prev` is the hash of the event before it.
    pub fn hash(&self, prev: ChainHash) -> ChainHash {
        let mut text = String::with_capacity(512);
        text.push_str("[\"soho-audit/1\",\"");
        text.push_str(&prev.to_hex());
        text.push_str("\",");
        for field in [&self.aggregate_type, &self.aggregate_id] {
            write_string(&mut text, field);
            text.push(',');
        }
        let _ = write!(text, "{},", self.sequence);
        for field in [&self.event_type, &self.version] {
            write_string(&mut text, field);
            text.push(',');
        }
        write_string(&mut text, &self.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true));
        text.push(',');
        write_canonical(&mut text, &self.payload);
        text.push(',');
        write_canonical(&mut text, &self.metadata);
        text.push(']');
        ChainHash(Sha256::digest(text.as_bytes()).into())
    }
}

/// `value` as canonical JSON: object keys in byte order, no whitespace.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_canonical(out, value);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::String(text) => write_string(out, text),
        // Numbers, booleans and null have one serde_json rendering each.
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(out: &mut String, text: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> SealedContent {
        SealedContent {
            aggregate_type: "Lead".into(),
            aggregate_id: "7f1c0f9e-3b7a-4a57-9d43-0c3f2b9e1a11".into(),
            sequence: 1,
            event_type: "LeadSubmitted".into(),
            version: "1.0".into(),
            recorded_at: "2026-12-06T10:00:00.123456Z".parse().unwrap(),
            payload: serde_json::json!({"b": 1, "a": {"y": [1, "x"], "x": null}}),
            metadata: serde_json::json!({"actorType": "user"}),
        }
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let mut reordered = content();
        reordered.payload =
            serde_json::from_str(r#"{"a": {"x": null, "y": [1, "x"]}, "b": 1}"#).unwrap();
        assert_eq!(content().hash(ChainHash::GENESIS), reordered.hash(ChainHash::GENESIS));
    }

    #[test]
    fn every_covered_field_and_the_previous_hash_change_it() {
        let base = content().hash(ChainHash::GENESIS);
        assert_ne!(content().hash(ChainHash([1; 32])), base);
        let edits: Vec<fn(&mut SealedContent)> = vec![
            |c| c.aggregate_type = "Partner".into(),
            |c| c.aggregate_id.push('0'),
            |c| c.sequence = 2,
            |c| c.event_type = "LeadStatusChanged".into(),
            |c| c.version = "1.1".into(),
            |c| c.recorded_at += chrono::Duration::microseconds(1),
            |c| c.payload["b"] = 2.into(),
            |c| c.metadata["actorType"] = "crm".into(),
        ];
        for edit in edits {
            let mut edited = content();
            edit(&mut edited);
            assert_ne!(edited.hash(ChainHash::GENESIS), base, "{edited:?}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_escapes_strings() {
        let mut out = String::new();
        write_canonical(&mut out, &serde_json::json!({"é": "\"<", "a": [true, 1.5]}));
        assert_eq!(out, r#"{"a":[true,1.5],"é":"\"<"}"#);
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = content().hash(ChainHash::GENESIS);
        assert_eq!(ChainHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(ChainHash::GENESIS.to_hex(), "0".repeat(64));
        assert_eq!(ChainHash::from_hex("abc"), None);
    }
}
