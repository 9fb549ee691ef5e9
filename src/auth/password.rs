//! Passwords: the rules people are shown, and Argon2id hashing kept off the async runtime's
//! threads (a hash takes tens of milliseconds of CPU, which would stall every request sharing
//! the thread).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

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

/// An Argon2id PHC string, made on a blocking thread.
pub async fn hash(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await?
}

/// Whether `candidate` matches `phc`. With no stored hash (unknown email) a dummy hash is checked
/// all the same, so the answer takes as long and reveals nothing.
pub async fn verify(candidate: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let stored = phc.as_deref().unwrap_or(DUMMY_HASH);
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        let matches = Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok();
        matches && phc.is_some()
    })
    .await
    .unwrap_or(false)
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
        assert!(verify("correct horse battery".into(), Some(phc.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(phc)).await);
        assert!(!verify("anything at all".into(), None).await);
    }
}
