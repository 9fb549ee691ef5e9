//! A partner's profile and its team: `GET /partners/{id}`, the sub-accounts routes, and
//! `POST /invite`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use soho_aggregates::{Actor, PartnerId, Role, UserId};
use utoipa::ToSchema;

use super::guard::{PartnerAdmin, PartnerMember};
use super::json::ApiJson;
use super::path::ApiPath;
use super::problem::ApiError;
use super::AppState;
use crate::commands::CommandContext;
use crate::fields;
use crate::onboarding::invitations::{self, SubAccountInvitation};
use crate::portal::Portal;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/partners/{id}", get(profile))
        .route("/partners/{id}/sub-accounts", get(sub_accounts).post(create_sub_account))
        .route("/partners/{id}/sub-accounts/{user_id}", patch(update_sub_account))
        .route("/invite", post(invite))
        .route("/public/partners/{id}", get(public_profile))
}

/// A partner's name, for its public lead form (no login). Only approved partners are shown.
#[utoipa::path(get, path = "/public/partners/{id}", tag = "partners",
    responses((status = 200, body = PartnerProfile), (status = 404, body = super::problem::Problem)))]
pub async fn public_profile(
    State(portal): State<AppState>,
    ApiPath(id): ApiPath<PartnerId>,
) -> Result<Json<PartnerProfile>, ApiError> {
    let name: Option<String> = sqlx::query_scalar(
        "SELECT name FROM partners WHERE partner_id = $1 AND status = 'approved'",
    )
    .bind(id.as_uuid())
    .fetch_optional(&portal.pool)
    .await?;
    let name = name.ok_or(ApiError::NotFound)?;
    Ok(Json(PartnerProfile {
        id: id.as_uuid(),
        name,
        email: None,
        soho_partner_id: None,
        tier: None,
        commission_rate: None,
        status: None,
        created_at: None,
    }))
}

/// A partner: basic info (`id`, `name`) for everyone in it; the rest for its admin.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubAccount {
    pub email: String,
    pub name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubAccountChange {
    pub disabled: bool,
}

/// One's own partner only: any other id is 404, as if it did not exist.
pub(super) fn own(partner: PartnerId, id: PartnerId) -> Result<(), ApiError> {
    if partner == id {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// A partner's profile.
#[utoipa::path(get, path = "/partners/{id}", tag = "partners", security(("bearer" = [])), responses(
    (status = 200, body = PartnerProfile), (status = 404, body = super::problem::Problem)))]
pub async fn profile(
    State(portal): State<AppState>,
    PartnerMember(user, partner): PartnerMember,
    ApiPath(id): ApiPath<PartnerId>,
) -> Result<Json<PartnerProfile>, ApiError> {
    own(partner, id)?;
    let mut profile: PartnerProfile = sqlx::query_as(
        "SELECT partner_id AS id, name, email, soho_partner_id, tier, commission_rate, status, created_at \
         FROM partners WHERE partner_id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(&portal.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    if user.role != Role::Admin {
        profile = PartnerProfile {
            id: profile.id,
            name: profile.name,
            email: None,
            soho_partner_id: None,
            tier: None,
            commission_rate: None,
            status: None,
            created_at: None,
        };
    }
    Ok(Json(profile))
}

const SUB_ACCOUNT_COLUMNS: &str = "u.user_id AS id, u.email, u.name, u.status, u.created_at, \
     COALESCE((SELECT count(*) FROM leads l WHERE l.submitted_by_user = u.user_id), 0) AS lead_count, \
     CASE WHEN u.status = 'invited' THEN u.invitation_expires_at END AS invitation_expires_at, \
     (SELECT s.signed_in_at FROM user_sign_ins s WHERE s.user_id = u.user_id) AS last_sign_in_at";

async fn sub_account(
    portal: &Portal,
    partner: PartnerId,
    user: UserId,
) -> Result<SubAccount, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {SUB_ACCOUNT_COLUMNS} FROM users u WHERE u.user_id = $1 AND u.partner_id = $2 AND u.role = 'sub'"
    ))
    .bind(user.as_uuid())
    .bind(partner.as_uuid())
    .fetch_optional(&portal.pool)
    .await?
    .ok_or(ApiError::NotFound)
}

/// The partner's sub-accounts, oldest first.
#[utoipa::path(get, path = "/partners/{id}/sub-accounts", tag = "partners", security(("bearer" = [])), responses(
    (status = 200, body = [SubAccount]), (status = 404, body = super::problem::Problem)))]
pub async fn sub_accounts(
    State(portal): State<AppState>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath(id): ApiPath<PartnerId>,
) -> Result<Json<Vec<SubAccount>>, ApiError> {
    own(partner, id)?;
    let accounts = sqlx::query_as(&format!(
        "SELECT {SUB_ACCOUNT_COLUMNS} FROM users u WHERE u.partner_id = $1 AND u.role = 'sub' ORDER BY u.created_at, u.user_id"
    ))
    .bind(id.as_uuid())
    .fetch_all(&portal.pool)
    .await?;
    Ok(Json(accounts))
}

/// Create a sub-account and email its invitation.
#[utoipa::path(post, path = "/partners/{id}/sub-accounts", tag = "partners", security(("bearer" = [])),
    request_body = NewSubAccount, responses(
        (status = 201, description = "invited (also the answer for an email that belongs to someone outside this partner, with nothing recorded)", body = SubAccount),
        (status = 409, body = super::problem::Problem), (status = 422, body = super::problem::Problem),
        (status = 429, description = "too many invitations by this admin or to this recipient", body = super::problem::Problem)))]
pub async fn create_sub_account(
    State(portal): State<AppState>,
    PartnerAdmin(admin, partner): PartnerAdmin,
    ApiPath(id): ApiPath<PartnerId>,
    ApiJson(body): ApiJson<NewSubAccount>,
) -> Result<(StatusCode, Json<SubAccount>), ApiError> {
    own(partner, id)?;
    invite_as(&portal, admin.id, partner, body, false).await
}

/// Disable or enable a sub-account. A disabled user cannot log in, and its tokens stop working.
#[utoipa::path(patch, path = "/partners/{id}/sub-accounts/{user_id}", tag = "partners", security(("bearer" = [])),
    request_body = SubAccountChange, responses((status = 200, body = SubAccount), (status = 404, body = super::problem::Problem)))]
pub async fn update_sub_account(
    State(portal): State<AppState>,
    PartnerAdmin(admin, partner): PartnerAdmin,
    ApiPath((id, user)): ApiPath<(PartnerId, UserId)>,
    ApiJson(change): ApiJson<SubAccountChange>,
) -> Result<Json<SubAccount>, ApiError> {
    own(partner, id)?;
    sub_account(&portal, partner, user).await?;
    let context = CommandContext::new(Actor::user(admin.id));
    invitations::set_disabled(&portal, user, change.disabled, &context).await?;
    Ok(Json(sub_account(&portal, partner, user).await?))
}

/// Invite a sub-account, or re-send a pending invitation (the earlier link stops working).
#[utoipa::path(post, path = "/invite", tag = "partners", security(("bearer" = [])), request_body = NewSubAccount,
    responses((status = 201, description = "invited (also the answer for an email that belongs to someone outside this partner, with nothing recorded)", body = SubAccount),
        (status = 200, description = "invitation re-sent", body = SubAccount),
        (status = 409, body = super::problem::Problem), (status = 422, body = super::problem::Problem),
        (status = 429, description = "too many invitations by this admin or to this recipient", body = super::problem::Problem)))]
pub async fn invite(
    State(portal): State<AppState>,
    PartnerAdmin(admin, partner): PartnerAdmin,
    ApiJson(body): ApiJson<NewSubAccount>,
) -> Result<(StatusCode, Json<SubAccount>), ApiError> {
    invite_as(&portal, admin.id, partner, body, true).await
}

/// Both invitation routes: limited per admin and per recipient (each one sends an email from the
/// portal's address), and answered alike for unknown emails and other partners' people.
async fn invite_as(
    portal: &Portal,
    admin: UserId,
    partner: PartnerId,
    body: NewSubAccount,
    resend: bool,
) -> Result<(StatusCode, Json<SubAccount>), ApiError> {
    let (email, name) = parse_invitee(body)?;
    portal.invite_limits.0.check(admin)?;
    portal.invite_limits.1.check(email.to_lowercase())?;
    let context = CommandContext::new(Actor::user(admin));
    let invited = invitations::invite_sub_account(
        portal,
        partner,
        email.clone(),
        name.clone(),
        resend,
        &context,
    )
    .await?;
    match invited {
        SubAccountInvitation::Invited(user) => {
            Ok((StatusCode::CREATED, Json(sub_account(portal, partner, user).await?)))
        }
        SubAccountInvitation::Reissued(user) => {
            Ok((StatusCode::OK, Json(sub_account(portal, partner, user).await?)))
        }
        SubAccountInvitation::Elsewhere => Ok((
            StatusCode::CREATED,
            Json(SubAccount {
                id: uuid::Uuid::now_v7(),
                email,
                name,
                status: "invited".into(),
                created_at: Utc::now(),
                lead_count: 0,
                // As a real invitation's, so the answer tells nothing.
                invitation_expires_at: Some(Utc::now() + invitations::INVITATION_LIFETIME),
                last_sign_in_at: None,
            }),
        )),
    }
}

fn parse_invitee(body: NewSubAccount) -> Result<(String, Option<String>), ApiError> {
    let mut errors = vec![];
    let email = fields::email("email", Some(body.email), &mut errors);
    let name = fields::person_name("name", body.name, &mut errors);
    if errors.is_empty() {
        Ok((email, name))
    } else {
        Err(ApiError::Invalid(errors))
    }
}
