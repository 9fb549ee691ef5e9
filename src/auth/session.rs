//! Access tokens: short-lived HS256 JWTs naming the user and its role. They carry no rights of
//! their own that outlive the user's state: every request re-reads the user and its partner, so
//! a disabled user or a suspended partner is refused at once (DESIGN.md 10).

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use soho_aggregates::UserId;

use super::keys::Keys;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: uuid::Uuid,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

pub fn issue(keys: &Keys, user: UserId, role: &str, ttl_seconds: u64) -> anyhow::Result<String> {
    let now = Utc::now().timestamp();
    let claims = Claims {
        sub: user.as_uuid(),
        role: role.to_string(),
        iat: now,
        exp: now + ttl_seconds as i64,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(keys.jwt()),
    )?)
}

/// The claims of a token signed with our key, HS256 only (so `alg: none` and other algorithms
/// are refused), and not expired.
pub fn verify(keys: &Keys, token: &str) -> Option<Claims> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(keys.jwt()), &validation)
        .ok()
        .map(|data| data.claims)
}
