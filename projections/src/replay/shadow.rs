//! Shadow tables for a rebuild that never stops the portal: the read models are rebuilt into a
//! schema of their own (same table names, so the projections' SQL finds them through the
//! connection's `search_path`), then swapped for the live tables in one short transaction.
//!
//! The shadow tables get their primary keys and unique constraints up front (the projections'
//! upserts name them) and their other indexes after the load (one sorted build each instead of
//! an index insertion per row). Triggers (the live feed's NOTIFY) are copied at the swap, so
//! the load wakes nobody.

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
/// columns, defaults, identity, CHECK constraints, storage options, primary key and unique
/// constraints and unique indexes, under the live names.
pub async fn create(conn: &mut PgConnection, tables: &[&str]) -> Result<(), sqlx::Error> {
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
        let keys: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = format('public.%I', $1::text)::regclass AND contype IN ('p', 'u', 'x') \
             ORDER BY conname",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        for (name, definition) in keys {
            sqlx::query(&format!(
                "ALTER TABLE {SHADOW}.{t} ADD CONSTRAINT {} {definition}",
                quoted(&name)
            ))
            .execute(&mut *conn)
            .await?;
        }
        for definition in index_definitions(conn, table, true).await? {
            sqlx::query(&definition).execute(&mut *conn).await?;
        }
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

/// Builds the shadow tables' other indexes, once they hold the bulk of the rows.
pub async fn build_indexes(conn: &mut PgConnection, tables: &[&str]) -> Result<(), sqlx::Error> {
    for table in tables {
        for definition in index_definitions(conn, table, false).await? {
            sqlx::query(&definition).execute(&mut *conn).await?;
        }
    }
    Ok(())
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
