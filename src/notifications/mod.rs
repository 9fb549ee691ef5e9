//! Lead notifications by email: a partner user hears when a lead it submitted changes status
//! (unless it made the change), and a partner's admins when a lead arrives through the public
//! form or is flagged as a channel conflict. Each user chooses instant, a daily digest, or off
//! (Profile, or the unsubscribe link every notification carries). Sent by a checkpointed subscriber
//! ([`sender::LeadNotifier`]): never lost to a crash or an SMTP outage, never sent twice.

pub mod digest;
pub mod email;
pub mod sender;

use soho_aggregates::UserId;
use sqlx::PgPool;

/// How a user wants to hear about its leads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An email as each thing happens (the default).
    Instant,
    /// One email a day with everything since the last.
    Daily,
    /// No email.
    Off,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Instant => "instant",
            Self::Daily => "daily",
            Self::Off => "off",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "instant" => Ok(Self::Instant),
            "daily" => Ok(Self::Daily),
            "off" => Ok(Self::Off),
            other => Err(format!("{other:?} is not a notification mode")),
        }
    }
}

/// The user's choice (instant when it never chose).
pub async fn mode(pool: &PgPool, user: UserId) -> Result<Mode, sqlx::Error> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT mode FROM notification_settings WHERE user_id = $1")
            .bind(user.as_uuid())
            .fetch_optional(pool)
            .await?;
    stored
        .map_or(Ok(Mode::Instant), |m| m.parse().map_err(|e: String| sqlx::Error::Decode(e.into())))
}

#[tracing::instrument(skip(pool), err)]
pub async fn set_mode(pool: &PgPool, user: UserId, mode: Mode) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notification_settings (user_id, mode) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET mode = EXCLUDED.mode",
    )
    .bind(user.as_uuid())
    .bind(mode.as_str())
    .execute(pool)
    .await?;
    Ok(())
}
