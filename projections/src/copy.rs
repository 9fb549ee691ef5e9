//! Rows in `COPY … FROM STDIN (FORMAT binary)`, for a replay's bulk load: one COPY streams rows
//! into a table at several times the rate of any INSERT, and in the binary format the database
//! parses nothing (no uuid, timestamp or number text: those were most of its share of a
//! replay's load) and nothing needs escaping.
//!
//! Each value is written as PostgreSQL would store the value an INSERT binds, so a bulk-loaded
//! table equals one written row by row (`replay --check` compares them): timestamps in
//! particular are cut to microseconds, as sqlx does when it binds one, not rounded. The column
//! types are the tables' own: `int` writes a `bigint`, `time` a `timestamptz`, `json` a `jsonb`.

use chrono::{DateTime, Timelike, Utc};
use uuid::Uuid;

/// The binary format's file header: signature, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a row of -1 fields.
const TRAILER: [u8; 2] = (-1i16).to_be_bytes();
/// 2000-01-01 00:00:00 UTC, PostgreSQL's epoch for timestamps and dates, in Unix seconds.
const POSTGRES_EPOCH: i64 = 946_684_800;

/// A buffer of rows being written.
#[derive(Default)]
pub struct CopyRows {
    bytes: Vec<u8>,
    /// Where the current row's field count goes, and the count so far.
    row: Option<(usize, i16)>,
}

impl CopyRows {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The rows written so far, leaving the buffer empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// A field of `len` bytes (-1: NULL) follows.
    fn field(&mut self, len: i32) {
        match &mut self.row {
            Some((_, count)) => *count += 1,
            None => {
                self.row = Some((self.bytes.len(), 1));
                self.bytes.extend_from_slice(&[0, 0]);
            }
        }
        self.bytes.extend_from_slice(&len.to_be_bytes());
    }

    fn bytes_field(&mut self, value: &[u8]) -> &mut Self {
        // Values are far below 2 GiB (PostgreSQL's own limit is 1 GiB).
        self.field(i32::try_from(value.len()).unwrap_or(i32::MAX));
        self.bytes.extend_from_slice(value);
        self
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        if let Some((at, count)) = self.row.take() {
            self.bytes[at..at + 2].copy_from_slice(&count.to_be_bytes());
        }
    }

    pub fn null(&mut self) -> &mut Self {
        self.field(-1);
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.bytes_field(value.as_bytes())
    }

    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    pub fn uuid(&mut self, value: Uuid) -> &mut Self {
        self.bytes_field(value.as_bytes())
    }

    pub fn opt_uuid(&mut self, value: Option<Uuid>) -> &mut Self {
        match value {
            Some(value) => self.uuid(value),
            None => self.null(),
        }
    }

    /// A `bigint`.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.bytes_field(&value.to_be_bytes())
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.bytes_field(&[u8::from(value)])
    }

    /// A `timestamptz`: microseconds since 2000-01-01, cut (not rounded).
    pub fn time(&mut self, value: DateTime<Utc>) -> &mut Self {
        // (A leap second's nanoseconds run past 10⁹: still within its second.)
        let micros = i64::from((value.nanosecond() / 1_000).min(999_999));
        let since = (value.timestamp() - POSTGRES_EPOCH) * 1_000_000 + micros;
        self.bytes_field(&since.to_be_bytes())
    }

    /// A `date`: days since 2000-01-01.
    pub fn date(&mut self, value: chrono::NaiveDate) -> &mut Self {
        let midnight = value.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
        // Within chrono's dates (±262,000 years) the count fits.
        let days = i32::try_from((midnight - POSTGRES_EPOCH) / 86_400).unwrap_or(i32::MAX);
        self.bytes_field(&days.to_be_bytes())
    }

    /// A `jsonb` value: its format version (1), then its text.
    pub fn json(&mut self, value: &impl serde::Serialize) -> &mut Self {
        // Written in place, its length filled in after (no buffer of its own per value).
        self.field(0);
        let at = self.bytes.len() - 4;
        self.bytes.push(1);
        // Writing into memory fails only for a map with keys that are not strings: none here.
        let _ = serde_json::to_writer(&mut self.bytes, value);
        let len = i32::try_from(self.bytes.len() - at - 4).unwrap_or(i32::MAX);
        self.bytes[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self
    }
}

/// Rows are sent in chunks of about this many bytes.
pub const CHUNK: usize = 1 << 20;

/// A COPY into one table, running on a connection of its own while its rows are being made:
/// the database loads one chunk while the caller makes the next.
pub struct CopyStream {
    chunks: tokio::sync::mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<Result<u64, sqlx::Error>>,
}

impl CopyStream {
    /// Starts `COPY {table} ({columns}) FROM STDIN (FORMAT binary)` on a connection taken from `pool` (and
    /// closed after: one left in a failed COPY never goes back to the pool).
    pub async fn open(
        pool: &sqlx::PgPool,
        table: &str,
        columns: &str,
    ) -> Result<Self, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        let statement = format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary)");
        let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let task = tokio::spawn(async move {
            let mut copy = conn.copy_in_raw(&statement).await?;
            copy.send(HEADER).await?;
            while let Some(chunk) = received.recv().await {
                copy.send(chunk).await?;
            }
            copy.send(TRAILER.as_slice()).await?;
            let rows = copy.finish().await?;
            let _ = sqlx::Connection::close(conn).await;
            Ok(rows)
        });
        Ok(Self { chunks, task })
    }

    /// Sends what `rows` holds once it fills a chunk (everything, if `all`).
    pub async fn send(&self, rows: &mut CopyRows, all: bool) -> Result<(), crate::ProjectionError> {
        if rows.is_empty() || (!all && rows.len() < CHUNK) {
            return Ok(());
        }
        if self.chunks.send(rows.take()).await.is_err() {
            // The COPY has ended early: its error says why.
            return Err(crate::ProjectionError::Effect("a bulk COPY stopped".into()));
        }
        Ok(())
    }

    /// Sends the last rows and waits for the COPY to finish; the rows it loaded.
    pub async fn finish(self, rows: &mut CopyRows) -> Result<u64, crate::ProjectionError> {
        let sent = self.send(rows, true).await;
        drop(self.chunks);
        let loaded = self
            .task
            .await
            .map_err(|e| crate::ProjectionError::Effect(format!("a bulk COPY failed: {e}")))??;
        sent.map(|()| loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_their_field_count_and_each_field_its_length() {
        let mut rows = CopyRows::default();
        rows.text("a\tb").null().int(-5).bool(true);
        rows.end_row();
        rows.opt_uuid(None).json(&serde_json::json!({"k": "v"}));
        rows.end_row();
        let mut expected =
            vec![0, 4, 0, 0, 0, 3, b'a', b'\t', b'b', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 8];
        expected.extend_from_slice(&(-5i64).to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, 1]);
        expected.extend_from_slice(&[0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 10, 1]);
        expected.extend_from_slice(br#"{"k":"v"}"#);
        assert_eq!(rows.take(), expected);
        assert!(rows.is_empty());
    }

    #[test]
    fn timestamps_are_cut_to_microseconds_and_dates_count_from_2000() {
        let at: DateTime<Utc> = "2000-01-02T00:00:01.123456999Z".parse().unwrap();
        let mut rows = CopyRows::default();
        rows.time(at).date(chrono::NaiveDate::from_ymd_opt(1999, 12, 31).unwrap());
        rows.end_row();
        let mut expected = vec![0, 2, 0, 0, 0, 8];
        expected.extend_from_slice(&(86_401_123_456i64).to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 4]);
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(rows.take(), expected);
    }
}
