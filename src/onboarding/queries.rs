//! What the partner and team pages read: a partner's profile and its sub-accounts, from the
//! `partners` and `users` read models (written by `soho_projections::{partners, users}`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use soho_aggregates::{PartnerId, UserId};
use sqlx::PgPool;
use utoipa::ToSchema;

/// A partner: basic info (`id`, `name`) for everyone in it; the rest for its admin.
#[derive(Default, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PartnerProfile {
    pub id: uuid::Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soho_partner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commission_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SubAccount {
    pub id: uuid::Uuid,
    pub email: String,
    pub name: Option<String>,
    /// `invited`, `active` or `disabled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub lead_count: i64,
    /// While `invited`: when the current invitation link stops working.
    pub invitation_expires_at: Option<DateTime<Utc>>,
    /// When the account last logged in (never: null).
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

const SUB_ACCOUNT_COLUMNS: &str = "u.user_id AS id, u.email, u.name, u.status, u.created_at, \
     COALESCE((SELECT count(*) FROM leads l WHERE l.submitted_by_user = u.user_id), 0) AS lead_count, \
     CASE WHEN u.status = 'invited' THEN u.invitation_expires_at END AS invitation_expires_at, \
     (SELECT s.signed_in_at FROM user_sign_ins s WHERE s.user_id = u.user_id) AS last_sign_in_at";

impl PartnerProfile {
    /// Only the basic info (`id`, `name`): what sub-accounts and the public form see.
    pub fn basic(self) -> Self {
        Self { id: self.id, name: self.name, ..Self::default() }
    }
}

/// The name of an approved partner, for its public form; `None` for any other.
pub async fn public_name(pool: &PgPool, partner: PartnerId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM partners WHERE partner_id = $1 AND status = 'approved'")
        .bind(partner.as_uuid())
        .fetch_optional(pool)
        .await
}

/// A partner's whole profile (the HTTP layer trims it for sub-accounts).
pub async fn profile(
    pool: &PgPool,
    partner: PartnerId,
) -> Result<Option<PartnerProfile>, sqlx::Error> {
    sqlx::query_as(
        "SELECT partner_id AS id, name, email, soho_partner_id, tier, commission_rate, status, created_at \
         FROM partners WHERE partner_id = $1",
    )
    .bind(partner.as_uuid())
    .fetch_optional(pool)
    .await
}

/// One of the partner's sub-accounts.
pub async fn sub_account(
    pool: &PgPool,
    partner: PartnerId,
    user: UserId,
) -> Result<Option<SubAccount>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SUB_ACCOUNT_COLUMNS} FROM users u WHERE u.user_id = $1 AND u.partner_id = $2 AND u.role = 'sub'"
    ))
    .bind(user.as_uuid())
    .bind(partner.as_uuid())
    .fetch_optional(pool)
    .await
}

/// The partner's sub-accounts, oldest first.
pub async fn sub_accounts(
    pool: &PgPool,
    partner: PartnerId,
) -> Result<Vec<SubAccount>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SUB_ACCOUNT_COLUMNS} FROM users u WHERE u.partner_id = $1 AND u.role = 'sub' ORDER BY u.created_at, u.user_id"
    ))
    .bind(partner.as_uuid())
    .fetch_all(pool)
    .await
}
