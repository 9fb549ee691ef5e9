//! Finding what to audit: a lead by its id, its Soho CRM id or its partner, and the partners.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// A lead as an auditor's search lists it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct FoundLead {
    pub id: uuid::Uuid,
    pub partner_id: uuid::Uuid,
    pub partner_name: String,
    pub last_name: String,
    pub status: String,
    pub soho_lead_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A partner as an auditor picks it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AuditedPartner {
    pub id: uuid::Uuid,
    pub name: String,
    pub soho_partner_id: String,
    pub status: String,
}

/// What to look a lead up by.
pub enum LeadKey {
    Id(uuid::Uuid),
    SohoLeadId(String),
    /// The partner's newest leads, at most [`PARTNER_LEADS`].
    Partner(uuid::Uuid),
}

pub const PARTNER_LEADS: i64 = 100;

const COLUMNS: &str = "l.lead_id AS id, l.partner_id, coalesce(p.name, '') AS partner_name, \
     l.last_name, l.status, l.soho_lead_id, l.created_at";

pub async fn leads(pool: &PgPool, key: LeadKey) -> Result<Vec<FoundLead>, sqlx::Error> {
    let from = "leads l LEFT JOIN partners p ON p.partner_id = l.partner_id";
    match key {
        LeadKey::Id(id) => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM {from} WHERE l.lead_id = $1"))
                .bind(id)
                .fetch_all(pool)
                .await
        }
        LeadKey::SohoLeadId(soho) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM lead_soho_ids s JOIN {from} ON l.lead_id = s.lead_id \
                 WHERE s.soho_lead_id = $1"
            ))
            .bind(soho)
            .fetch_all(pool)
            .await
        }
        LeadKey::Partner(partner) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM {from} WHERE l.partner_id = $1 \
                 ORDER BY l.created_at DESC, l.lead_id DESC LIMIT $2"
            ))
            .bind(partner)
            .bind(PARTNER_LEADS)
            .fetch_all(pool)
            .await
        }
    }
}

/// Every partner, by name.
pub async fn partners(pool: &PgPool) -> Result<Vec<AuditedPartner>, sqlx::Error> {
    sqlx::query_as(
        "SELECT partner_id AS id, name, soho_partner_id, status FROM partners ORDER BY lower(name), partner_id",
    )
    .fetch_all(pool)
    .await
}
