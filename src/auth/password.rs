//! Passwords: the rules people are shown, and Argon2id hashing kept off the async runtime's
//! threads (a hash takes tens of milliseconds of CPU, which would stall every request sharing
//! the thread).
//!
//! A hash also takes 19 MiB of memory while it runs, so hashes are bounded: as many at once as
//! the machine has cores, and a short queue behind them; past that a caller is told `Busy` at
//! once (503 with `Retry-After`) instead of piling up threads and memory.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use soho_aggregates::UserId;

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 256;

/// A password that meets the rules; the only way to get one is `parse`.
pub struct Password(String);

impl Password {
    /// Checks the rules, in characters (not bytes), as people count them.
    pub fn parse(raw: String) -> Result<Self, &'static str> {
        let length = raw.chars().count();
        if length < MIN_LENGTH {
            Err("must be at least 12 characters long")
        } else if length > MAX_LENGTH {
            Err("must be at most 256 characters long")
        } else {
            Ok(Self(raw))
        }
    }
}

/// Every hashing slot is taken and the queue behind them is full: try again shortly.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many password checks at once")]
pub struct Busy;

struct Hashing {
    /// Hashes running: one per core.
    running: tokio::sync::Semaphore,
    /// Hashes running or waiting.
    admitted: tokio::sync::Semaphore,
}

static HASHING: std::sync::LazyLock<Hashing> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Hashing {
        running: tokio::sync::Semaphore::new(cores),
        admitted: tokio::sync::Semaphore::new(cores * 8),
    }
});

/// Runs `work` (an Argon2 computation) on a blocking thread within the bounds above.
async fn bounded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
    let _admitted = HASHING.admitted.try_acquire().map_err(|_| Busy)?;
    let _running = HASHING.running.acquire().await.map_err(|_| Busy)?;
    tokio::task::spawn_blocking(work).await.map_err(|_| Busy)
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// An Argon2id PHC string, made on a blocking thread.
pub async fn hash(password: Password) -> Result<String, HashError> {
    let made = bounded(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await?;
    Ok(made?)
}

/// The user an email belongs to (any case) and its password hash (none while invited): what a
/// login is checked against. No user is `(None, None)`; `verify` then does the same work.
pub async fn stored(
    pool: &sqlx::PgPool,
    email: &str,
) -> Result<(Option<UserId>, Option<String>), sqlx::Error> {
    let found: Option<(uuid::Uuid, Option<String>)> =
        sqlx::query_as("SELECT user_id, password_hash FROM users WHERE lower(email) = lower($1)")
            .bind(email)
            .fetch_optional(pool)
            .await?;
    Ok(found.map_or((None, None), |(id, hash)| (Some(UserId(id)), hash)))
}

/// Whether `candidate` matches `phc`. With no stored hash (unknown email) a dummy hash is checked
/// all the same, so the answer takes as long and reveals nothing.
pub async fn verify(candidate: String, phc: Option<String>) -> Result<bool, Busy> {
    bounded(move || {
        let stored = phc.as_deref().unwrap_or(DUMMY_HASH);
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        let matches = Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok();
        matches && phc.is_some()
    })
    .await
}

/// Argon2id of a random string nobody knows, with the default parameters.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0/3yT7ko2QRuOsC6D0Rv2Z8hG2WcdJ5tL1uQ1z3NbO8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_count_characters() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("é".repeat(12)).is_ok());
        assert!(Password::parse("x".repeat(257)).is_err());
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let phc = hash(Password::parse("correct horse battery".into()).unwrap()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(phc.clone())).await.unwrap());
        assert!(!verify("wrong horse battery".into(), Some(phc)).await.unwrap());
        assert!(!verify("anything at all".into(), None).await.unwrap());
    }
}
