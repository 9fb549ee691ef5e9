//! Rows in `COPY … FROM STDIN` text format, for a replay's bulk load: one COPY streams rows
//! into a table at several times the rate of any INSERT, and the text format needs nothing but
//! this escaping (PostgreSQL's own rules: backslash, tab, newline and carriage return escaped;
//! `\N` is NULL).
//!
//! Each value is written as PostgreSQL would read the value an INSERT binds, so a bulk-loaded
//! table equals one written row by row (`replay --check` compares them): timestamps in
//! particular are cut to microseconds, as sqlx does when it binds one, not rounded.

use chrono::{DateTime, Datelike, Timelike, Utc};
use std::fmt::Write;
use uuid::Uuid;

/// A buffer of rows being written.
#[derive(Default)]
pub struct CopyText {
    text: String,
    /// Whether the current row has a field yet (the next one is preceded by a tab).
    in_row: bool,
}

impl CopyText {
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The rows written so far, leaving the buffer empty.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.text)
    }

    fn separate(&mut self) {
        if self.in_row {
            self.text.push('\t');
        }
        self.in_row = true;
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.text.push('\n');
        self.in_row = false;
    }

    pub fn null(&mut self) -> &mut Self {
        self.separate();
        self.text.push_str("\\N");
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.separate();
        if !value.bytes().any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
            self.text.push_str(value);
            return self;
        }
        for c in value.chars() {
            match c {
                '\\' => self.text.push_str("\\\\"),
                '\t' => self.text.push_str("\\t"),
                '\n' => self.text.push_str("\\n"),
                '\r' => self.text.push_str("\\r"),
                c => self.text.push(c),
            }
        }
        self
    }

    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    pub fn uuid(&mut self, value: Uuid) -> &mut Self {
        self.separate();
        self.text.push_str(value.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        self
    }

    pub fn opt_uuid(&mut self, value: Option<Uuid>) -> &mut Self {
        match value {
            Some(value) => self.uuid(value),
            None => self.null(),
        }
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.separate();
        let _ = write!(self.text, "{value}");
        self
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.separate();
        self.text.push(if value { 't' } else { 'f' });
        self
    }

    /// A `timestamptz`, cut to microseconds.
    pub fn time(&mut self, value: DateTime<Utc>) -> &mut Self {
        self.separate();
        let (day, time) = (value.date_naive(), value.time());
        // (A leap second's nanoseconds run past 10⁹: still within its second.)
        let micros = (time.nanosecond() / 1_000).min(999_999);
        let _ = write!(
            self.text,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{micros:06}+00",
            day.year(),
            day.month(),
            day.day(),
            time.hour(),
            time.minute(),
            time.second()
        );
        self
    }

    pub fn date(&mut self, value: chrono::NaiveDate) -> &mut Self {
        self.separate();
        let _ = write!(self.text, "{}", value.format("%Y-%m-%d"));
        self
    }

    /// A `jsonb` value.
    pub fn json(&mut self, value: &serde_json::Value) -> &mut Self {
        self.text(&value.to_string())
    }
}

/// Rows are sent in chunks of about this many bytes.
pub const CHUNK: usize = 1 << 20;

/// A COPY into one table, running on a connection of its own while its rows are being made:
/// the database loads one chunk while the caller makes the next.
pub struct CopyStream {
    chunks: tokio::sync::mpsc::Sender<String>,
    task: tokio::task::JoinHandle<Result<u64, sqlx::Error>>,
}

impl CopyStream {
    /// Starts `COPY {table} ({columns}) FROM STDIN` on a connection taken from `pool` (and
    /// closed after: one left in a failed COPY never goes back to the pool).
    pub async fn open(
        pool: &sqlx::PgPool,
        table: &str,
        columns: &str,
    ) -> Result<Self, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        let statement = format!("COPY {table} ({columns}) FROM STDIN");
        let (chunks, mut received) = tokio::sync::mpsc::channel::<String>(4);
        let task = tokio::spawn(async move {
            let mut copy = conn.copy_in_raw(&statement).await?;
            while let Some(chunk) = received.recv().await {
                copy.send(chunk.into_bytes()).await?;
            }
            let rows = copy.finish().await?;
            let _ = sqlx::Connection::close(conn).await;
            Ok(rows)
        });
        Ok(Self { chunks, task })
    }

    /// Sends what `rows` holds once it fills a chunk (everything, if `all`).
    pub async fn send(&self, rows: &mut CopyText, all: bool) -> Result<(), crate::ProjectionError> {
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
    pub async fn finish(self, rows: &mut CopyText) -> Result<u64, crate::ProjectionError> {
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
    fn values_are_escaped_and_separated() {
        let mut rows = CopyText::default();
        rows.text("a\tb\\c\nd\re").null().int(-5).bool(true);
        rows.end_row();
        rows.opt_uuid(None).json(&serde_json::json!({"k": "v\n"}));
        rows.end_row();
        assert_eq!(rows.take(), "a\\tb\\\\c\\nd\\re\t\\N\t-5\tt\n\\N\t{\"k\":\"v\\\\n\"}\n");
        assert!(rows.is_empty());
    }

    #[test]
    fn timestamps_are_cut_to_microseconds() {
        let at: DateTime<Utc> = "2026-12-06T10:20:30.123456999Z".parse().unwrap();
        let mut rows = CopyText::default();
        rows.time(at);
        assert_eq!(rows.take(), "2026-12-06 10:20:30.123456+00");
    }
}
