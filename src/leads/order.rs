//! The orders the lead list offers, and the cursors that continue them.
//!
//! By submission (newest or oldest first) an index that starts with the caller's scope serves
//! every page at the same cost, at any size. By name, status or last update no index does (each
//! would need its own per scope, paid by every write), so those orders sort the matching leads
//! and are offered while at most [`SORTED_AT_MOST`] match: a partner's list, or a filtered part
//! of a large one. Every order ends on the lead id, so it is total and a cursor (the last lead
//! of a page) says exactly where the next page starts.

use base64::Engine;
use chrono::{DateTime, Utc};
use soho_aggregates::LeadStatus;
use sqlx::{Postgres, QueryBuilder};

/// The most leads a list sorts by name, status or last update.
pub const SORTED_AT_MOST: i64 = 10_000;

/// The order of `GET /leads` (`sort`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LeadOrder {
    /// By submission, newest first.
    #[default]
    Newest,
    Oldest,
    /// By last name, then first name, A to Z.
    Name,
    /// Along the pipeline: new, contacted, qualified, converted, lost; newest first within each.
    Status,
    /// Most recently changed first.
    Updated,
}

impl LeadOrder {
    pub const ALL: [LeadOrder; 5] =
        [Self::Newest, Self::Oldest, Self::Name, Self::Status, Self::Updated];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Newest => "newest",
            Self::Oldest => "oldest",
            Self::Name => "name",
            Self::Status => "status",
            Self::Updated => "updated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|order| order.as_str() == text)
    }

    /// Whether an index serves it (a page costs the same at any size); the others sort what
    /// matches, at most [`SORTED_AT_MOST`] leads.
    pub fn indexed(self) -> bool {
        matches!(self, Self::Newest | Self::Oldest)
    }

    /// The `ORDER BY` of the list.
    fn order_by(self) -> String {
        match self {
            Self::Newest => " ORDER BY created_at DESC, lead_id DESC".into(),
            Self::Oldest => " ORDER BY created_at ASC, lead_id ASC".into(),
            Self::Name => format!(" ORDER BY {NAME_KEY}, lead_id"),
            Self::Status => format!(" ORDER BY {}, created_at DESC, lead_id DESC", rank_sql()),
            Self::Updated => " ORDER BY updated_at DESC, lead_id DESC".into(),
        }
    }
}

/// Names sort without regard to case; a missing first name before any other.
const NAME_KEY: &str = "lower(last_name), lower(coalesce(first_name, ''))";

/// A status's place along the pipeline (`LeadStatus::ALL` is in that order).
fn rank(status: LeadStatus) -> i32 {
    LeadStatus::ALL.iter().position(|s| *s == status).map_or(0, |at| at as i32)
}

/// The same, in SQL, over the `status` column.
fn rank_sql() -> String {
    let cases: String = LeadStatus::ALL
        .iter()
        .map(|status| format!(" WHEN '{}' THEN {}", status.as_str(), rank(*status)))
        .collect();
    format!("(CASE status{cases} END)")
}

/// The last lead of a page, as much of it as its order needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Cursor {
    /// Newest or oldest first.
    Submitted {
        created_at: DateTime<Utc>,
        id: uuid::Uuid,
    },
    Name {
        last: String,
        first: String,
        id: uuid::Uuid,
    },
    Status {
        status: LeadStatus,
        created_at: DateTime<Utc>,
        id: uuid::Uuid,
    },
    Updated {
        updated_at: DateTime<Utc>,
        id: uuid::Uuid,
    },
}

impl Cursor {
    /// Whether this cursor continues `order` (a cursor of one order means nothing in another).
    pub fn continues(&self, order: LeadOrder) -> bool {
        matches!(
            (self, order),
            (Self::Submitted { .. }, LeadOrder::Newest | LeadOrder::Oldest)
                | (Self::Name { .. }, LeadOrder::Name)
                | (Self::Status { .. }, LeadOrder::Status)
                | (Self::Updated { .. }, LeadOrder::Updated)
        )
    }

    /// Opaque to clients. A submission cursor keeps the format it always had (`micros|id`), so
    /// cursors given out before the other orders existed still work.
    pub fn encode(&self) -> String {
        let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let text = match self {
            Self::Submitted { created_at, id } => format!("{}|{id}", created_at.timestamp_micros()),
            Self::Name { last, first, id } => format!("name|{}|{}|{id}", b64(last), b64(first)),
            Self::Status { status, created_at, id } => {
                format!("status|{}|{}|{id}", status.as_str(), created_at.timestamp_micros())
            }
            Self::Updated { updated_at, id } => {
                format!("updated|{}|{id}", updated_at.timestamp_micros())
            }
        };
        b64(&text)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let text = String::from_utf8(engine.decode(text).ok()?).ok()?;
        let at = |micros: &str| DateTime::from_timestamp_micros(micros.parse().ok()?);
        // A name the table could hold: a forged cursor with a NUL byte would be the database's
        // error (a 500), not the client's.
        let name = |b64: &str| {
            String::from_utf8(engine.decode(b64).ok()?).ok().filter(|n| !n.contains('\0'))
        };
        let parts: Vec<&str> = text.split('|').collect();
        Some(match parts.as_slice() {
            ["name", last, first, id] => {
                Self::Name { last: name(last)?, first: name(first)?, id: id.parse().ok()? }
            }
            ["status", status, micros, id] => Self::Status {
                status: LeadStatus::parse(status)?,
                created_at: at(micros)?,
                id: id.parse().ok()?,
            },
            ["updated", micros, id] => {
                Self::Updated { updated_at: at(micros)?, id: id.parse().ok()? }
            }
            [micros, id] => Self::Submitted { created_at: at(micros)?, id: id.parse().ok()? },
            _ => return None,
        })
    }
}

/// Adds to `query` (its WHERE begun) where the page after `after` starts, and the order.
pub(super) fn push_order<'a>(
    query: &mut QueryBuilder<'a, Postgres>,
    order: LeadOrder,
    after: Option<Cursor>,
) {
    match (order, after) {
        (LeadOrder::Oldest, Some(Cursor::Submitted { created_at, id })) => {
            query.push(" AND (created_at, lead_id) > (").push_bind(created_at);
            query.push(", ").push_bind(id).push(")");
        }
        (_, Some(Cursor::Submitted { created_at, id })) => {
            query.push(" AND (created_at, lead_id) < (").push_bind(created_at);
            query.push(", ").push_bind(id).push(")");
        }
        (_, Some(Cursor::Name { last, first, id })) => {
            query.push(format!(" AND ({NAME_KEY}, lead_id) > (lower(")).push_bind(last);
            query.push("), lower(").push_bind(first).push("), ").push_bind(id).push(")");
        }
        (_, Some(Cursor::Status { status, created_at, id })) => {
            let rank_sql = rank_sql();
            query.push(format!(" AND ({rank_sql} > ")).push_bind(rank(status));
            query.push(format!(" OR ({rank_sql} = ")).push_bind(rank(status));
            query.push(" AND (created_at, lead_id) < (").push_bind(created_at);
            query.push(", ").push_bind(id).push(")))");
        }
        (_, Some(Cursor::Updated { updated_at, id })) => {
            query.push(" AND (updated_at, lead_id) < (").push_bind(updated_at);
            query.push(", ").push_bind(id).push(")");
        }
        (_, None) => {}
    }
    query.push(order.order_by());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_keep_their_order() {
        let id = uuid::Uuid::from_u128(7);
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let cursors = [
            Cursor::Submitted { created_at: at, id },
            Cursor::Name { last: "O'Brien|Smith".into(), first: "Ada".into(), id },
            Cursor::Status { status: LeadStatus::Qualified, created_at: at, id },
            Cursor::Updated { updated_at: at, id },
        ];
        for cursor in cursors {
            assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor.clone()));
        }
        // A cursor given out before the other orders existed still reads.
        let legacy = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}|{id}", at.timestamp_micros()));
        assert_eq!(Cursor::decode(&legacy), Some(Cursor::Submitted { created_at: at, id }));
        assert!(
            Cursor::Name { last: "A".into(), first: String::new(), id }.continues(LeadOrder::Name)
        );
        assert!(!Cursor::Name { last: "A".into(), first: String::new(), id }
            .continues(LeadOrder::Newest));
        assert_eq!(Cursor::decode("not a cursor"), None);
        let forged = Cursor::Name { last: "a\0b".into(), first: String::new(), id };
        assert_eq!(Cursor::decode(&forged.encode()), None, "a NUL the database cannot hold");
    }

    #[test]
    fn statuses_rank_along_the_pipeline() {
        let ranks: Vec<i32> = LeadStatus::ALL.iter().map(|s| rank(*s)).collect();
        assert_eq!(ranks, vec![0, 1, 2, 3, 4]);
        assert_eq!(rank(LeadStatus::New), 0);
        assert_eq!(rank(LeadStatus::Lost), 4);
    }
}
