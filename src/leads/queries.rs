//! Reading leads: one lead as the API shows it, the scoped and filtered list with keyset
//! pagination, the status history, and the dashboard figures. All from the read models.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use soho_aggregates::{LeadId, LeadStatus, PartnerId, UserId};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;

use super::order::{self, Cursor, LeadOrder, SORTED_AT_MOST};

/// Whose leads a caller may see: a partner's (its admin) or one user's (a sub-account).
#[derive(Debug, Clone, Copy)]
pub enum LeadScope {
    Partner(PartnerId),
    User(PartnerId, UserId),
}

impl LeadScope {
    /// Whether a lead of `partner`, submitted by `submitted_by`, is in this scope.
    pub fn contains(&self, partner: PartnerId, submitted_by: Option<UserId>) -> bool {
        match self {
            Self::Partner(own) => partner == *own,
            Self::User(own, user) => partner == *own && submitted_by == Some(*user),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubmittedBy {
    /// `user` or `public`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
}

/// A lead as the API shows it (CONTRACT.md 3).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeadView {
    pub id: uuid::Uuid,
    pub partner_id: uuid::Uuid,
    pub submitted_by: SubmittedBy,
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub notes: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub status: String,
    pub crm_status: String,
    pub soho_lead_id: Option<String>,
    /// `pending`, `synced` or `failed`.
    pub sync_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_error: Option<String>,
    pub channel_conflict: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub struct LeadRow {
    lead_id: uuid::Uuid,
    partner_id: uuid::Uuid,
    submitted_by_user: Option<uuid::Uuid>,
    first_name: Option<String>,
    last_name: String,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
    notes: Option<String>,
    metadata: sqlx::types::Json<BTreeMap<String, String>>,
    status: String,
    crm_status: String,
    soho_lead_id: Option<String>,
    sync_state: String,
    sync_error: Option<String>,
    channel_conflict: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub const LEAD_COLUMNS: &str = "lead_id, partner_id, submitted_by_user, first_name, last_name, email, phone, \
     company, notes, metadata, status, crm_status, soho_lead_id, sync_state, sync_error, channel_conflict, \
     created_at, updated_at";

impl LeadRow {
    /// Where a page ending on this lead leaves off, in `order`.
    fn cursor(&self, order: LeadOrder) -> Result<Cursor, sqlx::Error> {
        let id = self.lead_id;
        Ok(match order {
            LeadOrder::Newest | LeadOrder::Oldest => {
                Cursor::Submitted { created_at: self.created_at, id }
            }
            LeadOrder::Name => Cursor::Name {
                last: self.last_name.clone(),
                first: self.first_name.clone().unwrap_or_default(),
                id,
            },
            LeadOrder::Status => Cursor::Status {
                status: LeadStatus::parse(&self.status).ok_or_else(|| {
                    sqlx::Error::Decode(format!("lead {id} has status {:?}", self.status).into())
                })?,
                created_at: self.created_at,
                id,
            },
            LeadOrder::Updated => Cursor::Updated { updated_at: self.updated_at, id },
        })
    }
}

impl From<LeadRow> for LeadView {
    fn from(row: LeadRow) -> Self {
        Self {
            id: row.lead_id,
            partner_id: row.partner_id,
            submitted_by: match row.submitted_by_user {
                Some(id) => SubmittedBy { kind: "user", id: Some(id) },
                None => SubmittedBy { kind: "public", id: None },
            },
            first_name: row.first_name,
            last_name: row.last_name,
            email: row.email,
            phone: row.phone,
            company: row.company,
            notes: row.notes,
            metadata: row.metadata.0,
            status: row.status,
            crm_status: row.crm_status,
            soho_lead_id: row.soho_lead_id,
            sync_state: row.sync_state,
            sync_error: row.sync_error,
            channel_conflict: row.channel_conflict,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl LeadView {
    /// The view of a lead aggregate (for audits: the lead as its events made it).
    pub fn of_aggregate(lead: &soho_aggregates::Lead) -> Option<Self> {
        use soho_aggregates::lead::Submitter;
        let created_at = lead.created_at?;
        let details = lead.details.as_ref()?;
        Some(Self {
            id: lead.id?.as_uuid(),
            partner_id: lead.partner_id?.as_uuid(),
            submitted_by: match lead.submitted_by.as_ref()? {
                Submitter::User { id } => SubmittedBy { kind: "user", id: Some(id.as_uuid()) },
                Submitter::Public => SubmittedBy { kind: "public", id: None },
            },
            first_name: details.first_name.clone(),
            last_name: details.last_name.clone(),
            email: details.email.clone(),
            phone: details.phone.clone(),
            company: details.company.clone(),
            notes: details.notes.clone(),
            metadata: details.metadata.clone(),
            status: lead.status.as_str().to_string(),
            crm_status: lead.crm_status.clone(),
            soho_lead_id: lead.soho_lead_id.clone(),
            sync_state: lead.sync_state.as_str().to_string(),
            sync_error: lead.sync_error.clone(),
            channel_conflict: lead.channel_conflict,
            // As the read model stores them: PostgreSQL keeps microseconds, and sqlx truncates.
            created_at: created_at.trunc_subsecs(6),
            updated_at: lead.updated_at.unwrap_or(created_at).trunc_subsecs(6),
        })
    }
}

/// One lead, if it exists and is within `scope` (None for an auditor: any lead).
pub async fn lead(
    pool: &PgPool,
    id: LeadId,
    scope: Option<LeadScope>,
) -> Result<Option<LeadView>, sqlx::Error> {
    let row: Option<LeadRow> =
        sqlx::query_as(&format!("SELECT {LEAD_COLUMNS} FROM leads WHERE lead_id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?;
    Ok(row.map(LeadView::from).filter(|lead| {
        scope.is_none_or(|scope| {
            scope.contains(PartnerId(lead.partner_id), lead.submitted_by.id.map(UserId))
        })
    }))
}

/// The lead Soho CRM knows by `soho_id`, if any.
pub async fn by_soho_id(pool: &PgPool, soho_id: &str) -> Result<Option<LeadId>, sqlx::Error> {
    let id: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT lead_id FROM lead_soho_ids WHERE soho_lead_id = $1")
            .bind(soho_id)
            .fetch_optional(pool)
            .await?;
    Ok(id.map(LeadId))
}

/// Several leads by id, in no particular order (for rendering live messages).
pub async fn leads_by_id(
    executor: impl sqlx::PgExecutor<'_>,
    ids: &[LeadId],
) -> Result<Vec<LeadView>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(LeadId::as_uuid).collect();
    let rows: Vec<LeadRow> = sqlx::query_as(&format!(
        "SELECT l.* FROM unnest($1::uuid[]) AS w(id) \
             CROSS JOIN LATERAL (SELECT {LEAD_COLUMNS} FROM leads WHERE lead_id = w.id LIMIT 1) l"
    ))
    .bind(ids)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(LeadView::from).collect())
}

/// The list filters of `GET /leads`, parsed.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub status: Option<LeadStatus>,
    pub q: Option<String>,
    /// A user id, or `None` with `public_only` for public-form leads.
    pub submitted_by: Option<UserId>,
    pub public_only: bool,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub order: LeadOrder,
}

/// The filtered, scoped query in `filter.order`; `after` continues from a cursor. Every filter
/// combination is served by an index that starts with the scope (see the migration), with no
/// OFFSET and no count: by submission a page costs the same on the first page or the
/// thousandth (the other orders sort what matches: see [`super::order`]).
pub fn select<'a>(
    scope: LeadScope,
    filter: &'a LeadFilter,
    after: Option<Cursor>,
) -> QueryBuilder<'a, Postgres> {
    let mut query = QueryBuilder::new(format!("SELECT {LEAD_COLUMNS} FROM leads WHERE "));
    push_matching(&mut query, scope, filter);
    order::push_order(&mut query, filter.order, after);
    query
}

/// The conditions of the scope and the filters.
fn push_matching<'a>(
    query: &mut QueryBuilder<'a, Postgres>,
    scope: LeadScope,
    filter: &'a LeadFilter,
) {
    match scope {
        LeadScope::Partner(partner) => {
            query.push("partner_id = ").push_bind(partner.as_uuid());
        }
        LeadScope::User(partner, user) => {
            query.push("submitted_by_user = ").push_bind(user.as_uuid());
            query.push(" AND partner_id = ").push_bind(partner.as_uuid());
        }
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(q) = &filter.q {
        let pattern = format!(
            "%{}%",
            q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
        );
        query
            .push(" AND lead_id IN (SELECT lead_id FROM lead_search WHERE search_text LIKE ")
            .push_bind(pattern)
            .push(")");
    }
    if let Some(user) = filter.submitted_by {
        query.push(" AND submitted_by_user = ").push_bind(user.as_uuid());
    }
    if filter.public_only {
        query.push(" AND submitted_by_user IS NULL");
    }
    if let Some(after) = filter.created_after {
        query.push(" AND created_at >= ").push_bind(after);
    }
    if let Some(before) = filter.created_before {
        query.push(" AND created_at < ").push_bind(before);
    }
}

/// Whether more leads match than an order without an index sorts ([`SORTED_AT_MOST`]):
/// counted up to one past it, so the answer costs at most that many index entries.
pub async fn too_many_to_sort(
    pool: &PgPool,
    scope: LeadScope,
    filter: &LeadFilter,
) -> Result<bool, sqlx::Error> {
    let mut query = QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM leads WHERE ");
    push_matching(&mut query, scope, filter);
    query.push(" LIMIT ").push_bind(SORTED_AT_MOST + 1).push(") matching");
    let (count,): (i64,) = query.build_query_as().fetch_one(pool).await?;
    Ok(count > SORTED_AT_MOST)
}

/// One page and the cursor of the next, if there is one.
pub async fn page(
    pool: &PgPool,
    scope: LeadScope,
    filter: &LeadFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<(Vec<LeadView>, Option<Cursor>), sqlx::Error> {
    let mut query = select(scope, filter, after);
    query.push(" LIMIT ").push_bind(limit + 1);
    // A search is planned for its own pattern: a cached generic plan cannot tell a rare name from
    // a common word, and walked the partner's whole newest-first index for rare ones.
    let planned_each_time = filter.q.is_some();
    let mut rows: Vec<LeadRow> =
        query.build_query_as().persistent(!planned_each_time).fetch_all(pool).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = match rows.last() {
        Some(last) if more => Some(last.cursor(filter.order)?),
        _ => None,
    };
    Ok((rows.into_iter().map(LeadView::from).collect(), next))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StatusHistoryEntry {
    pub old_status: String,
    pub new_status: String,
    pub crm_status: String,
    #[serde(rename = "timestamp")]
    pub occurred_at: DateTime<Utc>,
    pub source: String,
    #[sqlx(skip)]
    pub actor: Actor,
    #[serde(skip)]
    actor_type: String,
    #[serde(skip)]
    actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The applied status changes of a lead, oldest first.
pub async fn history(pool: &PgPool, lead: LeadId) -> Result<Vec<StatusHistoryEntry>, sqlx::Error> {
    let mut entries: Vec<StatusHistoryEntry> = sqlx::query_as(
        "SELECT old_status, new_status, crm_status, occurred_at, source, actor_type, actor_id, note \
         FROM lead_status_history WHERE lead_id = $1 AND applied ORDER BY sequence",
    )
    .bind(lead.as_uuid())
    .fetch_all(pool)
    .await?;
    for entry in &mut entries {
        entry.actor = Actor { kind: entry.actor_type.clone(), id: entry.actor_id.clone() };
    }
    Ok(entries)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardStats {
    /// `partner` (an admin's view) or `user` (a sub-account's).
    pub scope: &'static str,
    pub total_leads: i64,
    pub by_status: BTreeMap<String, i64>,
    /// converted / total, 0 when there are no leads.
    pub conversion_rate: f64,
}

/// The dashboard figures, read from the counters the projection keeps (five rows at most).
pub async fn stats(pool: &PgPool, scope: LeadScope) -> Result<DashboardStats, sqlx::Error> {
    let (kind, id) = match scope {
        LeadScope::Partner(partner) => ("partner", partner.as_uuid()),
        LeadScope::User(_, user) => ("user", user.as_uuid()),
    };
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, leads FROM lead_counts WHERE scope = $1 AND scope_id = $2")
            .bind(kind)
            .bind(id)
            .fetch_all(pool)
            .await?;
    Ok(DashboardStats::of_counts(kind, rows))
}

impl DashboardStats {
    /// The figures from leads counted by status (statuses without leads count 0).
    pub fn of_counts(scope: &'static str, counts: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut by_status: BTreeMap<String, i64> =
            LeadStatus::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
        for (status, leads) in counts {
            *by_status.entry(status).or_default() += leads;
        }
        let total_leads: i64 = by_status.values().sum();
        let converted = by_status.get("converted").copied().unwrap_or(0);
        let conversion_rate =
            if total_leads == 0 { 0.0 } else { converted as f64 / total_leads as f64 };
        DashboardStats { scope, total_leads, by_status, conversion_rate }
    }
}

/// One week of the dashboard's chart.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct WeekFigures {
    /// The week's Monday (UTC).
    pub week: chrono::NaiveDate,
    /// Leads submitted that week.
    pub submitted: i64,
    /// Of those, how many are converted now.
    pub converted: i64,
}

/// The last `weeks` weeks, this one included, oldest first, weeks without leads as zeros: read
/// from the series the projection keeps, so it is exact whatever the number of leads.
pub async fn weekly(
    pool: &PgPool,
    scope: LeadScope,
    weeks: i32,
) -> Result<Vec<WeekFigures>, sqlx::Error> {
    let (kind, id) = match scope {
        LeadScope::Partner(partner) => ("partner", partner.as_uuid()),
        LeadScope::User(_, user) => ("user", user.as_uuid()),
    };
    sqlx::query_as(
        "WITH span AS (SELECT generate_series( \
             date_trunc('week', now() AT TIME ZONE 'UTC')::date - 7 * ($3 - 1), \
             date_trunc('week', now() AT TIME ZONE 'UTC')::date, interval '7 days')::date AS week) \
         SELECT span.week, coalesce(w.submitted, 0)::bigint AS submitted, \
                coalesce(w.converted, 0)::bigint AS converted \
         FROM span LEFT JOIN lead_weeks w ON w.scope = $1 AND w.scope_id = $2 AND w.week = span.week \
         ORDER BY span.week",
    )
    .bind(kind)
    .bind(id)
    .bind(weeks)
    .fetch_all(pool)
    .await
}
