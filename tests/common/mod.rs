//! Shared test harness: one real PostgreSQL for the whole run, a fresh database per test.
//!
//! The cluster is the portal's own embedded one, under `target/test-pg`, started by whichever
//! test binary gets there first (a file lock keeps two from starting it at once) and left running
//! for the others; the test command stops it at the end. `TEST_DATABASE_URL` points the tests at
//! another server instead (a URL of a database whose user may create databases).
#![allow(dead_code)]

use std::path::PathBuf;
use std::str::FromStr;

use soho_portal::db::embedded::{EmbeddedPostgres, Leftover};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::OnceCell;

/// The cluster's admin connection, and its URL with `{db}` where the database name goes.
static ADMIN: OnceCell<(PgConnectOptions, String)> = OnceCell::const_new();

pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn admin_options() -> (PgConnectOptions, String) {
    ADMIN
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
                let options =
                    PgConnectOptions::from_str(&url).expect("TEST_DATABASE_URL is a postgres URL");
                let (before, after) = url.split_once('?').map_or((url.as_str(), ""), |(b, a)| (b, a));
                let base = before.rsplit_once('/').map_or(before, |(b, _)| b);
                let query = if after.is_empty() { String::new() } else { format!("?{after}") };
                return (options, format!("{base}/{{db}}{query}"));
            }
            let dir = workspace_dir().join("target/test-pg");
            std::fs::create_dir_all(&dir).expect("create target/test-pg");
            let lock = std::fs::File::create(dir.join("start.lock")).expect("create the start lock");
            lock.lock().expect("take the start lock");
            let cluster = EmbeddedPostgres::start(&dir, Leftover::Share)
                .await
                .expect("start the test PostgreSQL");
            let options = cluster.connect_options("postgres");
            let url = cluster.url("{db}");
            cluster.detach();
            drop(lock);
            (options, url)
        })
        .await
        .clone()
}

/// A new, migrated, empty database for one test.
pub async fn fresh_database() -> PgPool {
    let (options, _) = fresh_database_options().await;
    let pool = PgPoolOptions::new().max_connections(16).connect_with(options).await.expect("connect");
    soho_portal::db::migrate(&pool).await.expect("migrate");
    pool
}

/// A new empty database (not migrated), as connection options and a URL for child processes.
pub async fn fresh_database_options() -> (PgConnectOptions, String) {
    let (admin, url) = admin_options().await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin.connect().await.expect("connect to the test cluster");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
    (admin.database(&name), url.replace("{db}", &name))
}
