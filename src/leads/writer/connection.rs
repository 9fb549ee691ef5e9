//! The writer's own database connection, and its transaction in as few round trips as it takes.
//!
//! Every batch used to borrow a pooled connection (which the pool pings before lending it),
//! then send BEGIN, the leads lock, …, the NOTIFY and COMMIT one round trip each. The writer
//! is the one place every lead command of a server passes through, so each round trip there is
//! paid by every request: here BEGIN, the locks and the reads go together, as do the order lock,
//! the write (with its NOTIFY) and the COMMIT, on a connection kept open between batches.

use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};

/// The writer's connection: opened when first needed, and again after it failed.
pub(super) struct WriterConnection {
    options: PgConnectOptions,
    /// Run on each new connection (the opening's prepared reads).
    setup: String,
    open: Option<PgConnection>,
}

impl WriterConnection {
    pub(super) fn new(pool: &PgPool, setup: String) -> Self {
        // Its prepared plans live as long as the connection: keyed ones, whatever the statistics,
        // and planned once (by default PostgreSQL plans each execution afresh for its values
        // until it trusts the generic plan, and it kept planning the batch's statement: a tenth
        // of the writer's database time; generic, 3,181 → 3,653–4,104 leads/s in quick runs).
        // Its opening queries carry values as literals, read as standard strings (backslashes
        // plain), whatever the server's default.
        let options =
            (*pool.connect_options()).clone().options(soho_projections::KEYED_PLANS).options([
                ("standard_conforming_strings", "on"),
                ("plan_cache_mode", "force_generic_plan"),
            ]);
        Self { options, setup, open: None }
    }

    /// Begins a transaction with `opening` (BEGIN, the batch's locks and reads, see
    /// [`super::opening`]); the rows it read. A kept connection that fails here (the database
    /// restarted since the last batch) is replaced once: nothing was written on it, so trying
    /// again on a new one is safe.
    pub(super) async fn begin(&mut self, opening: &str) -> Result<Vec<PgRow>, sqlx::Error> {
        let kept = self.open.is_some();
        match self.try_begin(opening).await {
            Err(error) if kept && lost(&error) => {
                tracing::info!(error = %error, "the lead writer's connection was lost; opening another");
                self.open = None;
                self.try_begin(opening).await
            }
            result => result,
        }
    }

    /// The connection whose transaction [`Self::begin`] began.
    pub(super) fn transaction(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        self.open.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    async fn try_begin(&mut self, opening: &str) -> Result<Vec<PgRow>, sqlx::Error> {
        if self.open.is_none() {
            let mut conn = self.options.connect().await?;
            conn.execute(self.setup.as_str()).await?;
            self.open = Some(conn);
        }
        let conn = self.open.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        let begun = super::opening::run(conn, opening).await;
        if begun.is_err() {
            self.forget().await;
        }
        begun
    }

    /// Ends the transaction with `finishing`: one simple query that ends in COMMIT (see
    /// [`super::batch`]). One of its statements that failed in the server leaves the
    /// transaction failed: it is rolled back. A connection that failed, or whose answer was lost
    /// (the COMMIT in doubt), is not used again.
    pub(super) async fn finish(&mut self, finishing: &str) -> Result<(), sqlx::Error> {
        let conn = self.open.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        let finished = conn.execute(finishing).await;
        match &finished {
            Ok(_) => {}
            Err(sqlx::Error::Database(_)) => self.roll_back().await,
            Err(_) => self.forget().await,
        }
        finished.map(|_| ())
    }

    /// Rolls back after a failed batch; a connection that cannot is dropped.
    pub(super) async fn roll_back(&mut self) {
        if let Some(conn) = self.open.as_mut() {
            if conn.execute("ROLLBACK").await.is_err() {
                self.forget().await;
            }
        }
    }

    async fn forget(&mut self) {
        if let Some(conn) = self.open.take() {
            // Closing says goodbye to the server; a broken connection just goes.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn.close()).await;
        }
    }
}

/// The connection itself failed (not a statement on it).
fn lost(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
        || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}
