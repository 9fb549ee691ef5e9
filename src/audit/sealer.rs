//! The subscriber that seals the log: it follows every event in commit order and writes its hash,
//! chained onto the one before, in the same transaction as its checkpoint. Whichever server holds
//! the subscriber's lock seals; the others wait, so the chain has one order everywhere.

use soho_aggregates::aggregate_type;
use std::sync::Arc;

use soho_projections::{CatchUpReader, Checkpoints, Projection, ProjectionError, StoredEvent};
use sqlx::PgConnection;

use super::chain::{ChainHash, StoredContent, STORED_COLUMNS};

/// The subscriber's name (its checkpoint says how far the log is sealed).
pub const NAME: &str = "audit_chain";

pub struct Sealer;

/// The last sealed link: its place in the chain and its hash (0 and 64 zeros before the first).
pub async fn head(conn: &mut PgConnection) -> Result<(i64, ChainHash), sqlx::Error> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT chain_position, hash FROM audit_chain ORDER BY chain_position DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        // The column's CHECK keeps every hash 32 bytes long.
        Some((position, hash)) => (position, ChainHash::from_bytes(&hash).unwrap_or_default()),
        None => (0, ChainHash::GENESIS),
    })
}

#[async_trait::async_trait]
impl Projection for Sealer {
    fn name(&self) -> &'static str {
        NAME
    }

    /// None: the chain is never emptied or rebuilt (it would then vouch for whatever the log
    /// holds now), so `replay` does not know it.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn reads(&self) -> &'static [&'static str] {
        &[aggregate_type::PARTNER, aggregate_type::USER, aggregate_type::LEAD]
    }

    /// A quarter of a second: auditors' reads wait that long at most for the newest events, and
    /// under load a batch seals hundreds of events for a handful of statements.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::from_millis(250)
    }

    /// It hashes the JSON as PostgreSQL prints it, which it reads itself (see `apply`).
    fn wants_payloads(&self) -> bool {
        false
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(()) };
        // The batch's events in the same order, with their JSON as text. All of the range's
        // transactions had ended when the batch was read, so it holds exactly the batch. (The
        // LIMIT lets the index scan stop there: its upper bound alone does not.)
        let stored: Vec<(i64, StoredContent)> = sqlx::query_as::<_, Sealing>(&format!(
            "SELECT e.global_position, {STORED_COLUMNS} FROM events e \
             WHERE (e.tx_id, e.global_position) >= ($1::text::xid8, $2) \
               AND (e.tx_id, e.global_position) <= ($3::text::xid8, $4) \
             ORDER BY e.tx_id, e.global_position LIMIT $5"
        ))
        .bind(first.tx_id)
        .bind(first.global_position)
        .bind(last.tx_id)
        .bind(last.global_position)
        .bind(events.len() as i64)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.global_position, row.content))
        .collect();
        let same = stored.len() == events.len()
            && stored.iter().zip(events).all(|((p, _), e)| *p == e.global_position);
        if !same {
            return Err(ProjectionError::Effect("the log changed under the sealer".into()));
        }
        let (mut position, mut prev) = head(tx).await?;
        let mut chain_positions = Vec::with_capacity(events.len());
        let mut tx_ids = Vec::with_capacity(events.len());
        let mut global_positions = Vec::with_capacity(events.len());
        let mut prev_hashes = Vec::with_capacity(events.len());
        let mut hashes = Vec::with_capacity(events.len());
        for (event, (_, content)) in events.iter().zip(&stored) {
            let hash = content.hash(prev);
            position += 1;
            chain_positions.push(position);
            tx_ids.push(event.tx_id);
            global_positions.push(event.global_position);
            prev_hashes.push(prev.0.to_vec());
            hashes.push(hash.0.to_vec());
            prev = hash;
        }
        sqlx::query(
            "INSERT INTO audit_chain (chain_position, tx_id, global_position, prev_hash, hash) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[])",
        )
        .bind(&chain_positions)
        .bind(&tx_ids)
        .bind(&global_positions)
        .bind(&prev_hashes)
        .bind(&hashes)
        .execute(tx)
        .await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct Sealing {
    global_position: i64,
    #[sqlx(flatten)]
    content: StoredContent,
}

/// Seals whatever the log holds that is not sealed yet, in large batches (a running portal seals
/// continuously; this serves a log no portal has run on since it grew, and `migrate`). Returns
/// the chain's length.
pub async fn seal_all(pool: &sqlx::PgPool) -> Result<i64, ProjectionError> {
    let reader = CatchUpReader::new(
        pool.clone(),
        vec![Arc::new(Sealer) as Arc<dyn Projection>],
        Checkpoints::default(),
    )
    .with_batch_size(10_000);
    reader.register().await?;
    reader.catch_up().await?;
    let mut conn = pool.acquire().await?;
    Ok(head(&mut conn).await?.0)
}
