//! `Idempotency-Key` on `POST /leads` (contract 8), as Stripe does it: the same caller, key
//! and body within 24 hours get the first answer again and record nothing; the same key with
//! another body is a 422. Two requests with one key at once: the second waits for the first's
//! answer. Only successful answers are kept; after a refusal or a failure the key is free again,
//! so the caller can correct and retry. A server that died while answering frees its keys after
//! a minute.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::problem::ApiError;

pub const HEADER: &str = "idempotency-key";
const WAIT: Duration = Duration::from_secs(20);

/// What claiming a key came to.
pub enum Claim {
    /// No answer yet: answer it, then `Pending::keep` or `Pending::release`.
    Fresh(Pending),
    /// The first answer, again.
    Replay(Response),
}

/// A key this request is answering.
pub struct Pending {
    pool: PgPool,
    caller: String,
    key: String,
}

/// The key a request carries, checked: at most 255 visible ASCII characters.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).filter(|k| {
        !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    });
    key.map(|k| Some(k.to_string())).ok_or_else(|| {
        ApiError::invalid("Idempotency-Key", "must be 1 to 255 visible ASCII characters")
    })
}

/// Claims `key` for `caller`'s request whose body is `body`.
#[tracing::instrument(skip(pool, body), err)]
pub async fn claim(
    pool: &PgPool,
    caller: &str,
    key: &str,
    body: &Value,
) -> Result<Claim, ApiError> {
    // serde_json's maps are sorted: one body, one hash, whatever the order of its fields.
    let hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        sqlx::query(
            "DELETE FROM idempotent_requests WHERE caller = $1 AND idempotency_key = $2 \
               AND (created_at < now() - interval '24 hours' \
                    OR (status IS NULL AND created_at < now() - interval '1 minute'))",
        )
        .bind(caller)
        .bind(key)
        .execute(pool)
        .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotent_requests (caller, idempotency_key, request_hash) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(caller)
        .bind(key)
        .bind(&hash)
        .execute(pool)
        .await?;
        if claimed.rows_affected() == 1 {
            let pending = Pending { pool: pool.clone(), caller: caller.into(), key: key.into() };
            return Ok(Claim::Fresh(pending));
        }
        let first: Option<(String, Option<i16>, Option<Value>)> = sqlx::query_as(
            "SELECT request_hash, status, answer FROM idempotent_requests \
             WHERE caller = $1 AND idempotency_key = $2",
        )
        .bind(caller)
        .bind(key)
        .fetch_optional(pool)
        .await?;
        match first {
            Some((first_hash, _, _)) if first_hash != hash => {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "was used with another body in the last 24 hours",
                ))
            }
            Some((_, Some(status), Some(answer))) => {
                return Ok(Claim::Replay(replay(status, answer)))
            }
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(ApiError::Conflict(
                    "a request with this Idempotency-Key is still being answered; retry shortly"
                        .into(),
                ))
            }
            // Being answered (or just freed): look again in a moment.
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn replay(status: i16, answer: Value) -> Response {
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut response = (status, axum::Json(answer)).into_response();
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

impl Pending {
    /// Keeps a successful answer for the requests that repeat this one.
    pub async fn keep(self, status: StatusCode, answer: &Value) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE idempotent_requests SET status = $3, answer = $4 \
             WHERE caller = $1 AND idempotency_key = $2",
        )
        .bind(&self.caller)
        .bind(&self.key)
        .bind(status.as_u16() as i16)
        .bind(answer)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Frees the key after an answer that is not kept (a refusal, a failure).
    pub async fn release(self) {
        let freed = sqlx::query(
            "DELETE FROM idempotent_requests WHERE caller = $1 AND idempotency_key = $2 AND status IS NULL",
        )
        .bind(&self.caller)
        .bind(&self.key)
        .execute(&self.pool)
        .await;
        if let Err(error) = freed {
            tracing::warn!(error = %error, "freeing an idempotency key failed; it frees itself in a minute");
        }
    }
}
