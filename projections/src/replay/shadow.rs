//! Shadow tables for a rebuild that never stops the portal: the read models are rebuilt into a
//! schema of their own (same table names, so the projections' SQL finds them through the
//! connection's `search_path`), then swapped for the live tables in one short transaction.
//!
//! The shadow tables get their primary keys and unique constraints up front (the projections'
//! upserts name them), or after the load for a table loaded in bulk, and their other indexes
//! after the load (one sorted build each instead of an index insertion per row). Triggers are
//! copied at the swap, so the load wakes nobody. A table the replay keeps (the live feed) gets a
//! bare scratch shadow that is never swapped in, only dropped with the schema.

use sqlx::PgConnection;

/// Where the rebuild is loaded.
pub const SHADOW: &str = "replay_shadow";
/// Where the swap puts the live tables it replaces, dropped right after.
pub const RETIRED: &str = "replay_retired";

/// Locks out a second replay for as long as `conn` holds it (session-level).
pub async fn claim(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('soho-replay'), 0)")
        .fetch_one(conn)
        .await
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates an empty shadow of each table (dropping what a replay that died left behind): its
/// columns, defaults, identity, CHECK constraints and storage options under the live name, and,
/// unless the table is `bare` (it will be loaded in bulk, [`add_keys`] after), its primary key,
/// unique constraints and unique indexes.
pub async fn create(
    conn: &mut PgConnection,
    tables: &[&str],
    bare: &[&str],
) -> Result<(), sqlx::Error> {
    for schema in [SHADOW, RETIRED] {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut *conn).await?;
    }
    sqlx::query(&format!("CREATE SCHEMA {SHADOW}")).execute(&mut *conn).await?;
    for table in tables {
        let t = quoted(table);
        sqlx::query(&format!(
            "CREATE TABLE {SHADOW}.{t} (LIKE public.{t} INCLUDING DEFAULTS INCLUDING IDENTITY \
             INCLUDING GENERATED INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)"
        ))
        .execute(&mut *conn)
        .await?;
        let options: Option<Vec<String>> = sqlx::query_scalar(
            "SELECT reloptions FROM pg_class WHERE oid = format('public.%I', $1::text)::regclass",
        )
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            sqlx::query(&format!("ALTER TABLE {SHADOW}.{t} SET ({})", options.join(", ")))
                .execute(&mut *conn)
                .await?;
        }
        if !bare.contains(table) {
            add_keys(conn, &[table]).await?;
        }
    }
    Ok(())
}

/// Gives shadow tables the live tables' primary keys, unique constraints and unique indexes.
pub async fn add_keys(conn: &mut PgConnection, tables: &[&str]) -> Result<(), sqlx::Error> {
    for table in tables {
        let (builds, adoptions) = key_statements(conn, table).await?;
        for statement in builds.into_iter().chain(adoptions) {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// The statements that give a shadow table the live table's primary key, unique constraints
/// and unique indexes: the unique indexes to build (as `CREATE UNIQUE INDEX`, which shares the
/// table with other index builds), and the `ALTER TABLE`s by which the constraints adopt them
/// (quick, but each takes the table's exclusive lock).
async fn key_statements(
    conn: &mut PgConnection,
    table: &str,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let t = quoted(table);
    let keys: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT conname, contype::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = format('public.%I', $1::text)::regclass AND contype IN ('p', 'u', 'x') \
         ORDER BY conname",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    let mut builds = index_definitions(conn, table, true).await?;
    let mut adoptions = Vec::new();
    for (name, kind, definition) in keys {
        let (c, prefix) = (quoted(&name), format!("ALTER TABLE {SHADOW}.{t} ADD CONSTRAINT"));
        let Some(columns) = definition.strip_prefix(match kind.as_str() {
            "p" => "PRIMARY KEY ",
            "u" => "UNIQUE ",
            _ => "",
        }) else {
            adoptions.push(format!("{prefix} {c} {definition}"));
            continue;
        };
        // What `USING INDEX` cannot take (exclusion, deferrable, covering, partial) is built by
        // the constraint itself.
        if kind == "x" || [" INCLUDE ", " WHERE ", "DEFERRABLE"].iter().any(|w| columns.contains(w))
        {
            adoptions.push(format!("{prefix} {c} {definition}"));
            continue;
        }
        let adopt = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
        builds.push(format!("CREATE UNIQUE INDEX {c} ON {SHADOW}.{t} {columns}"));
        adoptions.push(format!("{prefix} {c} {adopt} USING INDEX {c}"));
    }
    Ok((builds, adoptions))
}

/// Builds the keys of the `bare` tables and every other index of `tables`, once they hold the
/// bulk of their rows: each a sort of the whole table, `at_once` at a time on connections of
/// their own, the largest kind (GIN) first so they finish together; then the constraints adopt
/// their unique indexes.
pub async fn build_keys_and_indexes(
    pool: &sqlx::PgPool,
    bare: &[&str],
    tables: &[&str],
    at_once: usize,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let (mut builds, mut adoptions) = (Vec::new(), Vec::new());
    for table in bare {
        let (b, a) = key_statements(&mut conn, table).await?;
        builds.extend(b);
        adoptions.extend(a);
    }
    for table in tables {
        builds.extend(index_definitions(&mut conn, table, false).await?);
    }
    builds.sort_by_key(|d| !d.contains(" USING gin "));
    run_at_once(pool, builds.into_iter().map(|d| vec![d]).collect(), at_once).await?;
    for statement in adoptions {
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs each group of statements in order on one connection, `at_once` groups at once.
async fn run_at_once(
    pool: &sqlx::PgPool,
    groups: Vec<Vec<String>>,
    at_once: usize,
) -> Result<(), sqlx::Error> {
    let queue = std::sync::Arc::new(std::sync::Mutex::new(groups.into_iter()));
    let workers: Vec<_> = (0..at_once)
        .map(|_| {
            let (pool, queue) = (pool.clone(), std::sync::Arc::clone(&queue));
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                // Sorts in memory rather than in temporary files (the default is 64 MB).
                sqlx::query("SET maintenance_work_mem = '256MB'").execute(&mut *conn).await?;
                loop {
                    let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
                    let Some(group) = next else { break };
                    for statement in group {
                        let started = std::time::Instant::now();
                        sqlx::query(&statement).execute(&mut *conn).await?;
                        let seconds = started.elapsed().as_secs_f64();
                        tracing::debug!(statement, seconds, "replay: index built");
                    }
                }
                sqlx::query("RESET maintenance_work_mem").execute(&mut *conn).await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("an index build stopped: {e}")))??;
    }
    Ok(())
}

/// The live table's indexes that back no constraint, unique ones or the others, as statements
/// that create them on the shadow table.
async fn index_definitions(
    conn: &mut PgConnection,
    table: &str,
    unique: bool,
) -> Result<Vec<String>, sqlx::Error> {
    let definitions: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
         WHERE i.indrelid = format('public.%I', $1::text)::regclass AND i.indisunique = $2 \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
         ORDER BY i.indexrelid",
    )
    .bind(table)
    .bind(unique)
    .fetch_all(&mut *conn)
    .await?;
    let live = format!(" ON public.{} ", quoted(table));
    let live_bare = format!(" ON public.{table} ");
    let shadow = format!(" ON {SHADOW}.{} ", quoted(table));
    Ok(definitions
        .into_iter()
        .map(|d| d.replacen(&live, &shadow, 1).replacen(&live_bare, &shadow, 1))
        .collect())
}

/// Inside the caller's transaction: copies the live tables' triggers to the shadow tables, moves
/// the live tables aside and the shadow tables in under their names. Each table is locked only
/// for the rest of that transaction.
pub async fn swap(conn: &mut PgConnection, tables: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("CREATE SCHEMA {RETIRED}")).execute(&mut *conn).await?;
    for table in tables {
        let t = quoted(table);
        let triggers: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger \
             WHERE tgrelid = format('public.%I', $1::text)::regclass AND NOT tgisinternal",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        for definition in triggers {
            let definition = definition
                .replacen(&format!(" ON public.{t} "), &format!(" ON {SHADOW}.{t} "), 1)
                .replacen(&format!(" ON public.{table} "), &format!(" ON {SHADOW}.{t} "), 1);
            sqlx::query(&definition).execute(&mut *conn).await?;
        }
        sqlx::query(&format!("ALTER TABLE public.{t} SET SCHEMA {RETIRED}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("ALTER TABLE {SHADOW}.{t} SET SCHEMA public"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Drops the replaced tables and the empty shadow schema (after the swap has committed).
pub async fn clean_up(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for schema in [RETIRED, SHADOW] {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut *conn).await?;
    }
    Ok(())
}
