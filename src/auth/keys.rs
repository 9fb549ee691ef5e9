//! The portal's keys: for access tokens (JWT, HS256), for invitation links, and for checking
//! Soho CRM's webhook signatures.
//!
//! Invitation tokens are derived, not stored: token = HMAC(key, invitation id). The event log
//! keeps only the token's SHA-256, and the email sender re-derives the token when it sends, so
//! no readable token ever sits in the database, and a retried send carries the same link.
//!
//! In dev mode, missing secrets are generated once and kept in `DATA_DIR/secrets.json`, so that
//! sessions survive a restart and the in-process simulator signs with the key the portal checks.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use soho_aggregates::{InvitationId, UserId};

use crate::config::Settings;

#[derive(Clone)]
pub struct Keys {
    jwt: Vec<u8>,
    invitation: Vec<u8>,
    /// The `whsec_...` webhook secret, if webhooks are configured.
    webhook_secret: Option<SecretString>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DevSecrets {
    jwt_secret: String,
    webhook_secret: String,
}

impl Keys {
    pub fn load(settings: &Settings) -> anyhow::Result<Self> {
        let (jwt, webhook) = match (&settings.jwt_secret, &settings.soho_webhook_secret) {
            (Some(jwt), webhook) if !settings.dev_mode || webhook.is_some() => (
                jwt.expose_secret().to_string(),
                webhook.as_ref().map(|w| w.expose_secret().to_string()),
            ),
            (jwt, webhook) if settings.dev_mode => {
                let dev = dev_secrets(&settings.data_dir)?;
                (
                    jwt.as_ref().map_or(dev.jwt_secret, |j| j.expose_secret().to_string()),
                    Some(
                        webhook
                            .as_ref()
                            .map_or(dev.webhook_secret, |w| w.expose_secret().to_string()),
                    ),
                )
            }
            _ => anyhow::bail!("setting JWT_SECRET is required outside dev mode"),
        };
        if jwt.len() < 32 {
            anyhow::bail!("setting JWT_SECRET is too short: use at least 32 characters");
        }
        Ok(Self::new(jwt.as_bytes(), webhook.map(SecretString::from)))
    }

    pub fn new(jwt_secret: &[u8], webhook_secret: Option<SecretString>) -> Self {
        let invitation = hmac(jwt_secret, b"soho-portal invitation links").to_vec();
        Self { jwt: jwt_secret.to_vec(), invitation, webhook_secret }
    }

    pub fn jwt(&self) -> &[u8] {
        &self.jwt
    }

    pub fn webhook_secret(&self) -> Option<&SecretString> {
        self.webhook_secret.as_ref()
    }

    /// The secret part of an invitation link, for this invitation.
    pub fn invitation_token(&self, invitation_id: InvitationId) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(hmac(&self.invitation, invitation_id.0.as_bytes()))
    }

    /// The secret of a user's unsubscribe link: it turns the user's notifications off, and
    /// nothing else, without a login.
    pub fn unsubscribe_token(&self, user_id: UserId) -> String {
        let message = [b"unsubscribe ".as_slice(), user_id.0.as_bytes()].concat();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hmac(&self.invitation, &message))
    }

    /// Whether `token` is `user_id`'s unsubscribe token (compared in constant time).
    pub fn is_unsubscribe_token(&self, user_id: UserId, token: &str) -> bool {
        let Ok(given) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim())
        else {
            return false;
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.invitation).expect("HMAC takes any key length");
        mac.update(b"unsubscribe ");
        mac.update(user_id.0.as_bytes());
        mac.verify_slice(&given).is_ok()
    }

    /// The secret part of a password reset link, for this reset (never the same as any
    /// invitation's: the message differs).
    pub fn password_reset_token(&self, reset_id: InvitationId) -> String {
        let message = [b"password reset ".as_slice(), reset_id.0.as_bytes()].concat();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hmac(&self.invitation, &message))
    }
}

/// SHA-256 of an invitation token, hex: what the log keeps and registration looks up.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn dev_secrets(data_dir: &Path) -> anyhow::Result<DevSecrets> {
    let path = data_dir.join("secrets.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is malformed", path.display()));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let jwt_secret = base64::engine::general_purpose::STANDARD.encode(bytes);
    rand::rng().fill_bytes(&mut bytes);
    let webhook_secret =
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    let secrets = DevSecrets { jwt_secret, webhook_secret };
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, serde_json::to_string_pretty(&secrets)?)
        .with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitation_tokens_are_stable_per_invitation_and_hashed_for_storage() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef", None);
        let id = InvitationId(uuid::Uuid::from_u128(9));
        assert_eq!(keys.invitation_token(id), keys.invitation_token(id));
        assert_ne!(
            keys.invitation_token(id),
            keys.invitation_token(InvitationId(uuid::Uuid::from_u128(10)))
        );
        assert_eq!(token_hash("abc").len(), 64);
        let other = Keys::new(b"another secret of enough length!!", None);
        assert_ne!(keys.invitation_token(id), other.invitation_token(id));
        assert_ne!(keys.invitation_token(id), keys.password_reset_token(id));
        assert_eq!(keys.password_reset_token(id), keys.password_reset_token(id));
        // The same bytes as a user's id: its unsubscribe token is still none of the others.
        let user = UserId(id.0);
        assert!(keys.is_unsubscribe_token(user, &keys.unsubscribe_token(user)));
        let other_user = UserId(uuid::Uuid::from_u128(10));
        assert!(!keys.is_unsubscribe_token(other_user, &keys.unsubscribe_token(user)));
        assert!(!keys.is_unsubscribe_token(user, &keys.invitation_token(id)));
    }
}
