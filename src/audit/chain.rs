//! The hash chain over the event log (CONTRACT 7): each event's hash covers what an auditor reads
//! back of it (stream, sequence, type, payload, metadata, recorded instant) and the hash of the
//! event before it in commit order, so altering, removing or reordering any sealed event breaks
//! every hash from there on.
//!
//! The hashed bytes are a JSON array of the event's fields, its payload and metadata exactly as
//! PostgreSQL prints them (`jsonb` output: the bytes an auditor reads back, deterministic for a
//! stored value). Checking an event then hashes what the database sends, without parsing it, and
//! an export carries the same bytes verbatim, so it can be checked offline by anyone with SHA-256.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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
    /// As PostgreSQL prints the stored `jsonb` (`payload::text`), byte for byte.
    pub payload: Box<RawValue>,
    pub metadata: Box<RawValue>,
}

/// An event's columns as the database sends them for hashing.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredContent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    /// `payload::text`, `metadata::text`.
    pub payload_text: String,
    pub metadata_text: String,
}

/// The columns of [`StoredContent`], for a query over `events e`.
pub const STORED_COLUMNS: &str = "e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
     e.event_version, e.recorded_at, e.payload::text AS payload_text, \
     e.metadata::text AS metadata_text";

impl StoredContent {
    /// The event's hash when `prev` is the hash of the event before it.
    pub fn hash(&self, prev: ChainHash) -> ChainHash {
        hash_of(
            prev,
            [&self.aggregate_type, &self.aggregate_id],
            self.sequence,
            [&self.event_type, &self.event_version],
            self.recorded_at,
            [&self.payload_text, &self.metadata_text],
        )
    }

    /// As an export carries it; `None` if the database's JSON does not parse (it always does).
    pub fn into_sealed(self) -> Option<SealedContent> {
        Some(SealedContent {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            version: self.event_version,
            recorded_at: self.recorded_at,
            payload: RawValue::from_string(self.payload_text).ok()?,
            metadata: RawValue::from_string(self.metadata_text).ok()?,
        })
    }
}

impl SealedContent {
    /// The event's hash when `prev` is the hash of the event before it.
    pub fn hash(&self, prev: ChainHash) -> ChainHash {
        hash_of(
            prev,
            [&self.aggregate_type, &self.aggregate_id],
            self.sequence,
            [&self.event_type, &self.version],
            self.recorded_at,
            [self.payload.get(), self.metadata.get()],
        )
    }
}

/// SHA-256 of `["soho-audit/1", prevHash, type, id, sequence, eventType, version, recordedAt,
/// payload, metadata]`: strings JSON-escaped, payload and metadata verbatim. Fed to the hasher
/// piece by piece: `audit verify` runs this for every event of the log.
fn hash_of(
    prev: ChainHash,
    stream: [&str; 2],
    sequence: i64,
    kind: [&str; 2],
    recorded_at: DateTime<Utc>,
    json: [&str; 2],
) -> ChainHash {
    let mut hasher = Sha256::new();
    let mut hex = [0u8; 64];
    // Writing 32 bytes into 64 hex digits cannot fail.
    let _ = hex::encode_to_slice(prev.0, &mut hex);
    hasher.update(b"[\"soho-audit/1\",\"");
    hasher.update(hex);
    hasher.update(b"\",");
    for field in stream {
        update_string(&mut hasher, field);
        hasher.update(b",");
    }
    let mut number = String::with_capacity(24);
    let _ = write!(number, "{sequence},");
    hasher.update(number.as_bytes());
    for field in kind {
        update_string(&mut hasher, field);
        hasher.update(b",");
    }
    update_string(&mut hasher, &recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true));
    hasher.update(b",");
    hasher.update(json[0].as_bytes());
    hasher.update(b",");
    hasher.update(json[1].as_bytes());
    hasher.update(b"]");
    ChainHash(hasher.finalize().into())
}

/// `text` as a JSON string: as is between quotes when nothing in it needs escaping (ids, type
/// names, instants), else as serde_json escapes it.
fn update_string(hasher: &mut Sha256, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        hasher.update(b"\"");
        hasher.update(text.as_bytes());
        hasher.update(b"\"");
    } else {
        // Serialising a &str cannot fail.
        hasher.update(serde_json::to_string(text).unwrap_or_default().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> SealedContent {
        let raw = |text: &str| RawValue::from_string(text.to_string()).unwrap();
        SealedContent {
            aggregate_type: "Lead".into(),
            aggregate_id: "7f1c0f9e-3b7a-4a57-9d43-0c3f2b9e1a11".into(),
            sequence: 1,
            event_type: "LeadSubmitted".into(),
            version: "1.0".into(),
            recorded_at: "2026-12-06T10:00:00.123456Z".parse().unwrap(),
            payload: raw(r#"{"b": 1, "a": {"x": null, "y": [1, "x"]}}"#),
            metadata: raw(r#"{"actorType": "user"}"#),
        }
    }

    #[test]
    fn the_stored_and_the_exported_forms_hash_alike() {
        let c = content();
        let stored = StoredContent {
            aggregate_type: c.aggregate_type.clone(),
            aggregate_id: c.aggregate_id.clone(),
            sequence: c.sequence,
            event_type: c.event_type.clone(),
            event_version: c.version.clone(),
            recorded_at: c.recorded_at,
            payload_text: c.payload.get().to_string(),
            metadata_text: c.metadata.get().to_string(),
        };
        assert_eq!(stored.hash(ChainHash([7; 32])), c.hash(ChainHash([7; 32])));
        // An export line carries the JSON verbatim, whatever else is around it.
        let line = serde_json::to_string(&c).unwrap();
        let back: SealedContent = serde_json::from_str(&line).unwrap();
        assert_eq!(back.payload.get(), c.payload.get());
        assert_eq!(back.hash(ChainHash::GENESIS), c.hash(ChainHash::GENESIS));
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
            |c| {
                c.payload =
                    RawValue::from_string(r#"{"b": 2, "a": {"x": null, "y": [1, "x"]}}"#.into())
                        .unwrap()
            },
            |c| c.metadata = RawValue::from_string(r#"{"actorType": "crm"}"#.into()).unwrap(),
        ];
        for edit in edits {
            let mut edited = content();
            edit(&mut edited);
            assert_ne!(edited.hash(ChainHash::GENESIS), base, "{edited:?}");
        }
    }

    #[test]
    fn strings_are_hashed_as_serde_json_writes_them() {
        for text in ["plain", "with \"quotes\"", "back\\slash", "tab\there", "é ünï"] {
            let mut fast = Sha256::new();
            update_string(&mut fast, text);
            let slow = Sha256::digest(serde_json::to_string(text).unwrap().as_bytes());
            assert_eq!(fast.finalize(), slow, "{text}");
        }
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = content().hash(ChainHash::GENESIS);
        assert_eq!(ChainHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(ChainHash::GENESIS.to_hex(), "0".repeat(64));
        assert_eq!(ChainHash::from_hex("abc"), None);
    }
}
