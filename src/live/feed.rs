//! Reading the live feed: messages after a position, as JSON, optionally within a scope.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use soho_aggregates::{LeadId, PartnerId, UserId};
use soho_projections::leads::FeedKind;
use sqlx::PgPool;

use crate::leads::queries::{self, LeadScope};

/// One message, rendered once and shared by every socket that may see it.
#[derive(Debug, Clone)]
pub struct LiveMessage {
    pub position: i64,
    pub partner_id: uuid::Uuid,
    pub submitted_by: Option<uuid::Uuid>,
    pub json: Arc<str>,
    pub value: Arc<Value>,
}

impl LiveMessage {
    /// Whether a caller with `scope` may see it: a partner's admin its partner's, a sub-account
    /// only the leads it submitted.
    pub fn visible_to(&self, scope: &LeadScope) -> bool {
        scope.contains(PartnerId(self.partner_id), self.submitted_by.map(UserId))
    }
}

#[derive(sqlx::FromRow)]
struct FeedRow {
    position: i64,
    kind: String,
    lead_id: uuid::Uuid,
    partner_id: uuid::Uuid,
    submitted_by_user: Option<uuid::Uuid>,
    data: Value,
}

/// The messages after `after`, oldest first, at most `limit`, within `scope` if given.
pub async fn after(
    pool: &PgPool,
    after: i64,
    scope: Option<LeadScope>,
    limit: i64,
) -> Result<Vec<LiveMessage>, sqlx::Error> {
    let columns = "position, kind, lead_id, partner_id, submitted_by_user, data";
    let rows: Vec<FeedRow> = match scope {
        None => sqlx::query_as(&format!("SELECT {columns} FROM live_feed WHERE position > $1 ORDER BY position LIMIT $2"))
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?,
        Some(LeadScope::Partner(partner)) => sqlx::query_as(&format!(
            "SELECT {columns} FROM live_feed WHERE partner_id = $3 AND position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .bind(partner.as_uuid())
        .fetch_all(pool)
        .await?,
        Some(LeadScope::User(_, user)) => sqlx::query_as(&format!(
            "SELECT {columns} FROM live_feed WHERE submitted_by_user = $3 AND position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .bind(user.as_uuid())
        .fetch_all(pool)
        .await?,
    };
    // The leads of `lead.created` messages, in one query.
    let created: Vec<LeadId> = rows
        .iter()
        .filter(|r| r.kind == FeedKind::Created.as_str())
        .map(|r| LeadId(r.lead_id))
        .collect();
    let leads: HashMap<uuid::Uuid, Value> = if created.is_empty() {
        HashMap::new()
    } else {
        queries::leads_by_id(pool, &created)
            .await?
            .into_iter()
            .map(|l| (l.id, serde_json::to_value(l).unwrap_or_default()))
            .collect()
    };
    rows.into_iter()
        .map(|row| {
            // An unknown stored kind is our error, never passed on as if it were one we know.
            let kind = FeedKind::parse(&row.kind).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown live message kind {:?}", row.kind).into())
            })?;
            let mut message = match kind {
                FeedKind::Created => {
                    json!({"lead": leads.get(&row.lead_id).cloned().unwrap_or(Value::Null)})
                }
                FeedKind::StatusChanged | FeedKind::Synced | FeedKind::SyncFailed => {
                    let mut data = row.data;
                    data["leadId"] = json!(row.lead_id);
                    data
                }
            };
            message["type"] = json!(kind.as_str());
            message["position"] = json!(row.position);
            Ok(LiveMessage {
                position: row.position,
                partner_id: row.partner_id,
                submitted_by: row.submitted_by_user,
                json: Arc::from(message.to_string()),
                value: Arc::new(message),
            })
        })
        .collect()
}

/// The newest position (0 for an empty feed).
pub async fn head(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM live_feed").fetch_one(pool).await
}
