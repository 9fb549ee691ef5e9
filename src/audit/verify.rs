//! Checking the chain: the whole log against its sealed hashes (`audit verify`, `GET
//! /audit/verify`), or an exported lead offline, without the database (`audit verify --file`).

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use serde_json::value::RawValue;

use super::chain::{ChainHash, SealedContent, StoredContent, STORED_COLUMNS};
use super::AuditError;

/// The outcome of a check, as `GET /audit/verify` answers it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Events checked against their hashes.
    pub events: u64,
    /// The hash of the last one: write it down, and a later check proves nothing before it
    /// changed.
    pub head: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<Broken>,
    /// Events committed but not sealed yet (the sealer runs a moment behind the writers); they
    /// are neither vouched for nor broken.
    pub unsealed: u64,
}

/// Where the chain first fails, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Broken {
    /// The event's global position (`position` in the audit events and exports).
    pub position: i64,
    pub reason: String,
}

impl Verdict {
    fn new(events: u64, head: ChainHash, first_broken: Option<Broken>, unsealed: u64) -> Verdict {
        Verdict { events, head: head.to_hex(), ok: first_broken.is_none(), first_broken, unsealed }
    }
}

#[derive(sqlx::FromRow)]
struct Link {
    chain_position: i64,
    tx_id: i64,
    global_position: i64,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

struct Event {
    tx_id: i64,
    global_position: i64,
    content: StoredContent,
}

/// An events row by column position (a named lookup per column per row shows in profiles).
type EventRow = (
    soho_projections::log::TxId,
    i64,
    String,
    String,
    i64,
    String,
    String,
    chrono::DateTime<chrono::Utc>,
    String,
    String,
);

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        let (tx_id, global_position, aggregate_type, aggregate_id, sequence, event_type) =
            (row.0 .0, row.1, row.2, row.3, row.4, row.5);
        Event {
            tx_id,
            global_position,
            content: StoredContent {
                aggregate_type,
                aggregate_id,
                sequence,
                event_type,
                event_version: row.6,
                recorded_at: row.7,
                payload_text: row.8,
                metadata_text: row.9,
            },
        }
    }
}

impl Event {
    fn place(&self) -> (i64, i64) {
        (self.tx_id, self.global_position)
    }
}

fn broken(position: i64, reason: &str) -> Option<Broken> {
    Some(Broken { position, reason: reason.to_string() })
}

/// Checks every stored event against the chain, in commit order, and names the first place it
/// fails. `progress` is told how many events have been checked, now and then.
///
/// The chain and the log are read as two ordered streams over two connections sharing one
/// snapshot (exported by the first), each by a task of its own that hands its rows over in
/// chunks (so the database keeps sending while the rows before are merged), merged here.
pub async fn verify_log(
    pool: &PgPool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verdict, AuditError> {
    let mut links_conn = pool.acquire().await?;
    let mut events_conn = pool.acquire().await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *links_conn)
        .await?;
    let (snapshot,): (String,) =
        sqlx::query_as("SELECT pg_export_snapshot()").fetch_one(&mut *links_conn).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *events_conn)
        .await?;
    sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{}'", snapshot.replace('\'', "")))
        .execute(&mut *events_conn)
        .await?;
    let links = Ahead::<Link>::read(
        links_conn,
        "SELECT chain_position, tx_id, global_position, prev_hash, hash FROM audit_chain \
         ORDER BY chain_position"
            .to_string(),
    );
    // The transaction id as its 8 bytes (a text cast per row was a good part of the
    // database's share of reading the whole log).
    let events = Ahead::<EventRow>::read(
        events_conn,
        format!(
            "SELECT e.tx_id, e.global_position, {STORED_COLUMNS} \
             FROM events e ORDER BY e.tx_id, e.global_position"
        ),
    );
    merge(links, events, progress).await
}

/// Rows read ahead by a task of their own, taken one by one.
struct Ahead<T> {
    chunks: tokio::sync::mpsc::Receiver<Result<Vec<T>, sqlx::Error>>,
    chunk: std::vec::IntoIter<T>,
}

impl<T> Ahead<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin + 'static,
{
    /// Runs `sql` in `conn`'s open transaction, rolled back once every row was taken or the
    /// reader went away.
    fn read(mut conn: sqlx::pool::PoolConnection<sqlx::Postgres>, sql: String) -> Self {
        let (send, chunks) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            {
                let mut rows = sqlx::query_as::<_, T>(&sql).fetch(&mut *conn);
                let mut chunk = Vec::with_capacity(CHUNK);
                loop {
                    match rows.try_next().await {
                        Ok(Some(row)) => chunk.push(row),
                        Ok(None) => break,
                        Err(error) => {
                            let _ = send.send(Err(error)).await;
                            chunk.clear();
                            break;
                        }
                    }
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if send.send(Ok(full)).await.is_err() {
                            break;
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = send.send(Ok(chunk)).await;
                }
            }
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        });
        Self { chunks, chunk: Vec::new().into_iter() }
    }

    async fn next(&mut self) -> Result<Option<T>, sqlx::Error> {
        loop {
            if let Some(row) = self.chunk.next() {
                return Ok(Some(row));
            }
            match self.chunks.recv().await {
                Some(chunk) => self.chunk = chunk?.into_iter(),
                None => return Ok(None),
            }
        }
    }
}

/// Events hashed per blocking task, and tasks in flight at once.
const CHUNK: usize = 4_096;
const IN_FLIGHT: usize = 4;

/// One sealed event to check: its content against its stored hash, given its stored `prevHash`.
struct Sealed {
    event: Event,
    prev: ChainHash,
    hash: ChainHash,
}

/// Where a chunk first fails: the event's index in the chain (0-based) and its position.
type ChunkFailure = (u64, i64, ChainHash);

fn check_chunk(first_index: u64, chunk: Vec<Sealed>) -> Option<ChunkFailure> {
    chunk.into_iter().enumerate().find_map(|(i, sealed)| {
        let position = sealed.event.global_position;
        let matches = sealed.event.content.hash(sealed.prev) == sealed.hash;
        (!matches).then_some((first_index + i as u64, position, sealed.prev))
    })
}

/// Merges the chain and the log. The links' order and prevHashes are checked here, in order;
/// each event's content against its hash (the costly part: SHA-256 over all of it) in
/// chunks on the blocking pool, since with every `prevHash` already tied to the previous link's
/// hash the chunks no longer depend on each other.
async fn merge(
    mut links: Ahead<Link>,
    mut events: Ahead<EventRow>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verdict, AuditError> {
    let mut next = async || events.next().await.map(|row| row.map(Event::from));

    let mut checked = 0u64;
    let mut prev = ChainHash::GENESIS;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut pending = std::collections::VecDeque::new();
    let mut structural = None;
    let mut next_event = next().await?;
    while let Some(link) = links.next().await? {
        let position = link.global_position;
        let place = (link.tx_id, link.global_position);
        let failure = if link.chain_position != checked as i64 + 1 {
            Some((position, "a link of the chain is missing"))
        } else if ChainHash::from_bytes(&link.prev_hash) != Some(prev) {
            Some((position, "its prevHash is not the previous event's hash"))
        } else {
            match &next_event {
                None => Some((position, "the event is missing from the log")),
                Some(e) if e.place() < place => Some((
                    e.global_position,
                    "the event was never sealed but sits among sealed events (inserted afterwards)",
                )),
                Some(e) if e.place() > place => {
                    Some((position, "the event is missing from the log"))
                }
                Some(_) => None,
            }
        };
        if let Some((position, reason)) = failure {
            structural = Some(Verdict::new(checked, prev, broken(position, reason), 0));
            break;
        }
        let hash = ChainHash::from_bytes(&link.hash).unwrap_or_default();
        if let Some(event) = next_event.take() {
            chunk.push(Sealed { event, prev, hash });
        }
        prev = hash;
        checked += 1;
        if chunk.len() == CHUNK {
            let first = checked - CHUNK as u64;
            let work = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            pending.push_back(tokio::task::spawn_blocking(move || check_chunk(first, work)));
            if pending.len() > IN_FLIGHT {
                if let Some(verdict) = settle(pending.pop_front()).await? {
                    return Ok(verdict);
                }
                progress(checked);
            }
        }
        next_event = next().await?;
    }
    let first = checked - chunk.len() as u64;
    pending.push_back(tokio::task::spawn_blocking(move || check_chunk(first, chunk)));
    while let Some(task) = pending.pop_front() {
        if let Some(verdict) = settle(Some(task)).await? {
            return Ok(verdict);
        }
    }
    if let Some(verdict) = structural {
        return Ok(verdict);
    }
    let mut unsealed = u64::from(next_event.is_some());
    while next().await?.is_some() {
        unsealed += 1;
    }
    progress(checked);
    Ok(Verdict::new(checked, prev, None, unsealed))
}

/// A chunk's outcome as the verdict it forces, if it found an event not matching its hash.
async fn settle(
    task: Option<tokio::task::JoinHandle<Option<ChunkFailure>>>,
) -> Result<Option<Verdict>, AuditError> {
    let Some(task) = task else { return Ok(None) };
    let failure = task.await.map_err(|e| AuditError::Replay(e.into()))?;
    Ok(failure.map(|(index, position, head)| {
        Verdict::new(
            index,
            head,
            broken(position, "the event's content does not match its hash"),
            0,
        )
    }))
}

/// One line of an export: an event as sealed, with its place and hashes. Its payload and
/// metadata are the database's bytes, verbatim (they are what the hash covers).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedEvent {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub payload: Box<RawValue>,
    pub metadata: Box<RawValue>,
    pub prev_hash: String,
    pub hash: String,
}

impl ExportedEvent {
    pub fn new(position: i64, content: SealedContent, prev_hash: String, hash: String) -> Self {
        ExportedEvent {
            position,
            aggregate_type: content.aggregate_type,
            aggregate_id: content.aggregate_id,
            sequence: content.sequence,
            event_type: content.event_type,
            version: content.version,
            recorded_at: content.recorded_at,
            payload: content.payload,
            metadata: content.metadata,
            prev_hash,
            hash,
        }
    }

    fn content(self) -> SealedContent {
        SealedContent {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            version: self.version,
            recorded_at: self.recorded_at,
            payload: self.payload,
            metadata: self.metadata,
        }
    }
}

/// Checks an export offline: every line's hash over its content and `prevHash`, positions
/// rising, and each stream's sequence starting at 1 without a gap (so a removed line shows).
/// An event's `prevHash` is the hash of the event before it in the whole log, which an export of
/// one lead does not carry: that link is checked by `audit verify` against the database.
pub fn verify_export(text: &str) -> Verdict {
    let mut checked = 0u64;
    let mut head = ChainHash::GENESIS;
    let mut last_position = i64::MIN;
    let mut sequences = std::collections::HashMap::<(String, String), i64>::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fail = |position, reason: String| {
            Verdict::new(checked, head, Some(Broken { position, reason }), 0)
        };
        let event: ExportedEvent = match serde_json::from_str(line) {
            Ok(event) => event,
            Err(error) => {
                return fail(0, format!("line {} is not an exported event: {error}", number + 1))
            }
        };
        let position = event.position;
        if position <= last_position {
            return fail(position, "positions do not rise: a line was moved".into());
        }
        let stream = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let expected = sequences.get(&stream).map_or(1, |s| s + 1);
        if event.sequence != expected {
            return fail(
                position,
                format!("sequence {} where {expected} was due: a line is missing", event.sequence),
            );
        }
        let (Some(prev), Some(hash)) =
            (ChainHash::from_hex(&event.prev_hash), ChainHash::from_hex(&event.hash))
        else {
            return fail(position, "prevHash and hash must be 64 hex digits".into());
        };
        if event.content().hash(prev) != hash {
            return fail(position, "the event's content does not match its hash".into());
        }
        sequences.insert(stream, expected);
        last_position = position;
        head = hash;
        checked += 1;
    }
    Verdict::new(checked, head, None, 0)
}
