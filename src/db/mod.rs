//! The database: connecting (to `DB_URL`, or to the embedded cluster), and migrations.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::Settings;
use soho_embedded_postgres::{self as embedded, EmbeddedError, EmbeddedPostgres, Leftover};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("DB_URL is not a PostgreSQL URL: {0}")]
    BadUrl(sqlx::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(sqlx::Error),
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The pool, and the embedded cluster behind it when there is one (stopped with `close`).
pub struct Database {
    pub pool: PgPool,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects to `DB_URL`, or starts the embedded cluster when none is set.
    pub async fn open(settings: &Settings, leftover: Leftover) -> Result<Self, DbError> {
        let (options, embedded) = match &settings.database_url {
            Some(url) => {
                let options =
                    PgConnectOptions::from_str(url.expose_secret()).map_err(DbError::BadUrl)?;
                (options, None)
            }
            None => {
                let cluster = EmbeddedPostgres::start(&settings.data_dir, leftover).await?;
                (cluster.connect_options(embedded::DATABASE), Some(cluster))
            }
        };
        let pool = pool(options).await?;
        Ok(Self { pool, embedded })
    }

    /// Closes the pool, then stops the embedded cluster (in that order, so it can stop fast).
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.embedded {
            cluster.stop().await;
        }
    }
}

pub async fn pool(options: PgConnectOptions) -> Result<PgPool, DbError> {
    PgPoolOptions::new()
        .max_connections(48)
        // A request waits at most this for a connection: when the database is away, it is told
        // so (500, and 503 on /readyz) in seconds, not left to hang.
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)
}

/// Applies every pending migration (idempotent; safe from several servers at once, as sqlx
/// takes an advisory lock).
#[tracing::instrument(skip_all, err)]
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Whether every migration this build knows has been applied (for `/readyz`).
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(applied as usize >= MIGRATOR.migrations.len())
}
