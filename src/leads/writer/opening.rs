//! A batch's opening: one simple query (several statements, one round trip) that begins the
//! transaction, takes the batch's locks and reads everything its rules need. The batch then
//! decides in memory and ends with one more round trip: the order lock, its one writing
//! statement and its COMMIT (see [`super::batch`]). Two round trips for any batch, where it
//! took five or six (BEGIN with the locks, each lookup, the order lock, the write, the commit),
//! each paid by every request of the batch.
//!
//! Statements of a simple query run one after the other, each seeing what was committed before
//! it began: the lookups see every batch that held the same people's, leads' or webhooks' locks
//! before this one.

use std::collections::HashMap;

use futures::TryStreamExt;
use soho_projections::params::{Binder, Literals, NulByte};
use sqlx::postgres::PgRow;
use sqlx::{Executor, PgConnection, Row};
use uuid::Uuid;

use super::people::People;
use super::receipts::Receipts;
use super::soho_ids::SohoIds;
use super::streams::{Recent, Stream};
use super::{locks, Request};

/// What a batch's rules read, as of its locks.
pub(super) struct Read {
    pub(super) people: People,
    pub(super) leads: HashMap<Uuid, Stream>,
    pub(super) soho_ids: SohoIds,
    pub(super) receipts: Receipts,
}

/// The opening query's text, and the kept leads its event read continues.
pub(super) struct Opening {
    sql: String,
    kept: HashMap<Uuid, Stream>,
}

impl Opening {
    pub(super) fn new(recent: &Recent, requests: &[Request]) -> Result<Self, NulByte> {
        let (kept, streams) = recent.kept_for(requests)?;
        let mut sql = locks::begin_statement(requests);
        let reads = [
            People::statement(requests)?,
            streams,
            SohoIds::statement(requests)?,
            Receipts::statement(requests)?,
        ];
        for statement in reads.into_iter().flatten() {
            sql.push_str("; ");
            sql.push_str(&statement);
        }
        Ok(Self { sql, kept })
    }

    pub(super) fn sql(&self) -> &str {
        &self.sql
    }

    /// What the rules read, from the opening query's rows.
    pub(super) fn read(self, rows: &[PgRow], requests: &[Request]) -> anyhow::Result<Read> {
        let mut leads = self.kept;
        Recent::catch_up(&mut leads, rows)?;
        Ok(Read {
            people: People::from_rows(rows, requests)?,
            leads,
            soho_ids: SohoIds::from_rows(rows)?,
            receipts: Receipts::from_rows(rows)?,
        })
    }
}

/// The batch's statements, prepared on the writer's connection when it opens.
pub(super) fn prepare_all() -> String {
    [
        locks::prepare(),
        super::batch::prepare(),
        People::prepare(),
        super::streams::prepare(),
        SohoIds::READ.prepare(),
        Receipts::READ.prepare(),
    ]
    .join("; ")
}

/// Runs the opening query `sql` on `conn`; every row any of its statements returned.
pub(super) async fn run(conn: &mut PgConnection, sql: &str) -> Result<Vec<PgRow>, sqlx::Error> {
    conn.fetch_many(sql).try_filter_map(|step| async move { Ok(step.right()) }).try_collect().await
}

/// A read of one row per key from a table keyed by text (a webhook's receipt, a Soho CRM id's
/// holder), prepared on the writer's connection and run in the opening query.
pub(super) struct KeyedRead {
    /// The prepared statement's name.
    pub(super) name: &'static str,
    /// What its rows' `lookup` column holds.
    pub(super) tag: &'static str,
    pub(super) table: &'static str,
    pub(super) key: &'static str,
    pub(super) value: &'static str,
}

impl KeyedRead {
    pub(super) fn prepare(&self) -> String {
        let Self { name, tag, table, key, value } = self;
        format!(
            "PREPARE {name} (text[]) AS SELECT '{tag}' AS lookup, r.{key} AS key, \
               r.{value} AS value FROM unnest($1) AS w(id) \
             CROSS JOIN LATERAL (SELECT {key}, {value} FROM {table} WHERE {key} = w.id LIMIT 1) r"
        )
    }

    /// The statement that reads `keys`, or none if there are none.
    pub(super) fn statement<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<String>, NulByte> {
        let keys: Vec<&str> = keys.into_iter().collect();
        if keys.is_empty() {
            return Ok(None);
        }
        Literals::default().value(keys).execute(self.name).map(Some)
    }

    /// Each key found, and its value, among the opening query's rows.
    pub(super) fn found<V>(&self, rows: &[PgRow]) -> anyhow::Result<HashMap<String, V>>
    where
        V: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        tagged(rows, self.tag).map(|row| Ok((row.try_get("key")?, row.try_get("value")?))).collect()
    }
}

/// The rows of one read, told from the others' (and from the locks' rows) by their `lookup`.
pub(super) fn tagged<'a>(rows: &'a [PgRow], tag: &'a str) -> impl Iterator<Item = &'a PgRow> {
    rows.iter().filter(move |row| row.try_get::<&str, _>("lookup").is_ok_and(|t| t == tag))
}
