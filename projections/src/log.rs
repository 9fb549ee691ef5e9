//! Reading the event log in the order that never skips a late commit (DESIGN.md 2).
//!
//! Positions are handed out at insert, not at commit, so "everything after the last position I
//! saw" can miss an event whose transaction commits late. Readers therefore order by
//! `(tx_id, global_position)` and only read transactions older than the oldest one still running
//! (`pg_snapshot_xmin`): all of those have finished, so nothing can appear behind the reader.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::PgConnection;

use crate::ProjectionError;

/// A place in the log: the writing transaction's id and the event's global position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash, serde::Serialize)]
pub struct LogPosition {
    pub tx_id: i64,
    pub global_position: i64,
}

impl LogPosition {
    pub const START: LogPosition = LogPosition { tx_id: 0, global_position: 0 };
}

/// One event as stored, with its place in the log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub global_position: i64,
    pub tx_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn position(&self) -> LogPosition {
        LogPosition { tx_id: self.tx_id, global_position: self.global_position }
    }

    /// The aggregate id as a UUID (every aggregate of the portal has one).
    pub fn aggregate_uuid(&self) -> Result<uuid::Uuid, ProjectionError> {
        self.aggregate_id.parse().map_err(|_| ProjectionError::BadId {
            position: self.global_position,
            id: self.aggregate_id.clone(),
        })
    }

    /// The payload as the aggregate's event type.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, ProjectionError> {
        E::deserialize(&self.payload).map_err(|source| ProjectionError::Decode {
            position: self.global_position,
            event_type: self.event_type.clone(),
            source,
        })
    }
}

/// A [`StoredEvent`]'s columns.
const EVENT_COLUMNS: &str = "global_position, tx_id::text::bigint AS tx_id, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// The next events after `after`, among transactions that have all finished, at most `limit`.
/// `up_to` bounds the read (inclusive), for replaying exactly to a checkpoint.
pub async fn read_after(
    conn: &mut PgConnection,
    after: LogPosition,
    up_to: Option<LogPosition>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let up_to = up_to.unwrap_or(LogPosition { tx_id: i64::MAX, global_position: i64::MAX });
    sqlx::query_as::<_, StoredEvent>(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
           AND (tx_id, global_position) <= ($3::text::xid8, $4) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.tx_id, events.global_position LIMIT $5"
    ))
    .bind(after.tx_id)
    .bind(after.global_position)
    .bind(up_to.tx_id)
    .bind(up_to.global_position)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One event as stored, its payload left as the JSON text PostgreSQL sent, for a reader that
/// decodes it once, straight into its type (a replay's bulk load: building a JSON tree first,
/// then the event from the tree, was most of what it spent).
#[derive(Debug, sqlx::FromRow)]
pub struct RawEvent {
    pub global_position: i64,
    pub tx_id: TxId,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: JsonText,
    pub recorded_at: DateTime<Utc>,
}

/// A `jsonb` value as the text PostgreSQL sent, checked to be UTF-8 and nothing more: the event
/// type's own decoding is the one parse it gets (sqlx's `Json<RawValue>` parsed every payload a
/// second time, on the reading task, only to keep it as text).
#[derive(Debug)]
pub struct JsonText(String);

impl JsonText {
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl sqlx::Type<sqlx::Postgres> for JsonText {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <sqlx::types::Json<()> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for JsonText {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        if value.format() == sqlx::postgres::PgValueFormat::Text {
            return Ok(Self(value.as_str()?.to_string()));
        }
        // jsonb's binary form: a version byte (1), then the text.
        match value.as_bytes()? {
            [1, text @ ..] => Ok(Self(std::str::from_utf8(text)?.to_string())),
            _ => Err("jsonb in a binary format version other than 1".into()),
        }
    }
}

/// A transaction id (`xid8`) read as the number it is: its 8 bytes as sent, with no trip
/// through text (`tx_id::text::bigint`, the other readers' way, was the database's largest
/// cost in reading the whole log).
#[derive(Debug, Clone, Copy)]
pub struct TxId(pub i64);

impl sqlx::Type<sqlx::Postgres> for TxId {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        /// `xid8`'s fixed OID (pg_type.dat).
        const XID8: u32 = 5069;
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(XID8))
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for TxId {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let format = value.format();
        if format == sqlx::postgres::PgValueFormat::Binary {
            let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
            Ok(Self(i64::try_from(u64::from_be_bytes(bytes))?))
        } else {
            Ok(Self(value.as_str()?.parse()?))
        }
    }
}

impl RawEvent {
    pub fn position(&self) -> LogPosition {
        LogPosition { tx_id: self.tx_id.0, global_position: self.global_position }
    }

    /// The aggregate id as a UUID (every aggregate of the portal has one).
    pub fn aggregate_uuid(&self) -> Result<uuid::Uuid, ProjectionError> {
        self.aggregate_id.parse().map_err(|_| ProjectionError::BadId {
            position: self.global_position,
            id: self.aggregate_id.clone(),
        })
    }

    /// The payload as the aggregate's event type.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, ProjectionError> {
        serde_json::from_str(self.payload.get()).map_err(|source| ProjectionError::Decode {
            position: self.global_position,
            event_type: self.event_type.clone(),
            source,
        })
    }

    /// As a [`StoredEvent`], for a projection that applies events batch by batch (its metadata,
    /// which no read model reads, left out as JSON `null`).
    pub fn to_stored(&self) -> Result<StoredEvent, ProjectionError> {
        Ok(StoredEvent {
            global_position: self.global_position,
            tx_id: self.tx_id.0,
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            event_type: self.event_type.clone(),
            event_version: self.event_version.clone(),
            payload: self.decode()?,
            metadata: serde_json::Value::Null,
            recorded_at: self.recorded_at,
        })
    }
}

/// [`read_after`] for [`RawEvent`]s.
pub async fn read_raw_after(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<RawEvent>, sqlx::Error> {
    sqlx::query_as::<_, RawEvent>(
        "SELECT global_position, tx_id, aggregate_type, aggregate_id, \
           sequence, event_type, event_version, payload, recorded_at FROM events \
         WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.tx_id, events.global_position LIMIT $3",
    )
    .bind(after.tx_id)
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The next events after `after` for a live reader, at most `limit`, and whether more are held
/// back: events committed by transactions newer than one still running, which must wait until
/// it ends (it may yet append events before them). One query serves both. Only events of
/// `types` carry their payload and metadata (JSON `null` for the others): a reader passes over
/// the others only to move its checkpoint, and most of the log is leads' events.
pub async fn read_settled(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
    types: &[&str],
) -> Result<(Vec<StoredEvent>, bool), sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        event: StoredEvent,
        settled: bool,
    }
    let rows = sqlx::query_as::<_, Row>(
        "SELECT global_position, tx_id::text::bigint AS tx_id, aggregate_type, aggregate_id, \
           sequence, event_type, event_version, \
           CASE WHEN aggregate_type = ANY($4) THEN payload ELSE 'null' END AS payload, \
           CASE WHEN aggregate_type = ANY($4) THEN metadata ELSE 'null' END AS metadata, \
           recorded_at, tx_id < pg_snapshot_xmin(pg_current_snapshot()) AS settled \
         FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
         ORDER BY events.tx_id, events.global_position LIMIT $3",
    )
    .bind(after.tx_id)
    .bind(after.global_position)
    .bind(limit)
    .bind(types)
    .fetch_all(conn)
    .await?;
    let settled = rows.iter().take_while(|r| r.settled).count();
    let held = settled < rows.len();
    Ok((rows.into_iter().take(settled).map(|r| r.event).collect(), held))
}

/// All events of one aggregate, in sequence order (for audits and the live hub).
pub async fn read_stream(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as::<_, StoredEvent>(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(conn)
    .await
}

/// All events of several aggregates of one type, each stream in sequence order.
pub async fn read_streams(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_ids: &[String],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    read_streams_after(conn, aggregate_type, aggregate_ids, &vec![0; aggregate_ids.len()]).await
}

/// The events of several aggregates of one type after a sequence each (`after[n]` for
/// `aggregate_ids[n]`; 0 for the whole stream), each stream in sequence order.
pub async fn read_streams_after(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_ids: &[String],
    after: &[i64],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as::<_, StoredEvent>(&streams_after_sql("", "$1", "$2::text[]", "$3::bigint[]"))
        .bind(aggregate_type)
        .bind(aggregate_ids)
        .bind(after)
        .fetch_all(conn)
        .await
}

/// [`read_streams_after`] as SQL text, for a statement the caller prepares and runs among others
/// in one simple query: the arguments are SQL already (parameters or literals the caller made),
/// `tag` a constant, and each row starts with a `lookup` column holding it, which tells its rows
/// from the other statements'.
pub fn streams_after_statement(tag: &str, aggregate_type: &str, ids: &str, after: &str) -> String {
    streams_after_sql(&format!("'{tag}' AS lookup, "), aggregate_type, ids, after)
}

fn streams_after_sql(tag: &str, aggregate_type: &str, ids: &str, after: &str) -> String {
    format!(
        "SELECT {tag}e.* FROM unnest({ids}, {after}) AS w(id, after) CROSS JOIN LATERAL ( \
           SELECT {EVENT_COLUMNS} FROM events \
           WHERE aggregate_type = {aggregate_type} AND aggregate_id = w.id AND sequence > w.after \
           OFFSET 0) e \
         ORDER BY e.aggregate_id, e.sequence"
    )
}

/// An event to append: what postgres-es stores for it (its statements read the same columns).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// The INSERT of [`append`] for a statement of its own or a CTE of another, its seven
/// parameters numbered from `first`; it returns the events' `global_position` and `tx_id`.
pub fn append_sql(first: usize) -> String {
    let p: Vec<String> = (first..first + 7).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT * FROM unnest({}::text[], {}::text[], {}::bigint[], {}::text[], {}::text[], {}::jsonb[], {}::jsonb[]) \
         RETURNING global_position, tx_id",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    )
}

/// Binds `events` to [`append_sql`]'s parameters.
pub fn bind_append<'q, B: crate::params::Binder<'q>>(query: B, events: &[NewEvent]) -> B {
    let column = |f: fn(&NewEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
    query
        .value(column(|e| e.aggregate_type.to_string()))
        .value(column(|e| e.aggregate_id.clone()))
        .value(events.iter().map(|e| e.sequence).collect::<Vec<_>>())
        .value(column(|e| e.event_type.clone()))
        .value(column(|e| e.event_version.clone()))
        .value(events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
        .value(events.iter().map(|e| e.metadata.clone()).collect::<Vec<_>>())
}

/// Appends `events` in one statement ([`append_sql`]). A stream's next sequence taken meanwhile
/// by another writer fails the whole statement (the primary key).
pub async fn append(conn: &mut PgConnection, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    let sql = append_sql(1);
    bind_append(sqlx::query(&sql), events).execute(conn).await?;
    Ok(())
}

/// Where the latest event of one aggregate stands in the log: what a command's caller waits for
/// the projections to pass before it reads (read your writes, DESIGN.md 4).
pub async fn stream_head(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<LogPosition>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(tx_id, global_position)| LogPosition { tx_id, global_position }))
}
