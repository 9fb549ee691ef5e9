//! A partner's profile and its team: `GET /partners/{id}`, the sub-accounts routes, and
//! `POST /invite`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use soho_aggregates::{Actor, PartnerId, Role, UserId};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::guard::{PartnerAdmin, PartnerMember};
use super::json::ApiJson;
use super::path::ApiPath;
use super::problem::ApiError;
use super::AppState;
use crate::commands::CommandContext;
use crate::fields;
use crate::onboarding::invitations::{self, SubAccountInvitation};
use crate::onboarding::queries::{self, PartnerProfile, SubAccount};
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
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<PartnerId>,
) -> Result<Json<PartnerProfile>, ApiError> {
    let name = queries::public_name(&pool, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(PartnerProfile { id: id.as_uuid(), name, ..PartnerProfile::default() }))
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
    State(pool): State<PgPool>,
    PartnerMember(user, partner): PartnerMember,
    ApiPath(id): ApiPath<PartnerId>,
) -> Result<Json<PartnerProfile>, ApiError> {
    own(partner, id)?;
    let mut profile = queries::profile(&pool, id).await?.ok_or(ApiError::NotFound)?;
    if user.role != Role::Admin {
        profile = profile.basic();
    }
    Ok(Json(profile))
}

async fn sub_account(
    portal: &Portal,
    partner: PartnerId,
    user: UserId,
) -> Result<SubAccount, ApiError> {
    queries::sub_account(&portal.pool, partner, user).await?.ok_or(ApiError::NotFound)
}

/// The partner's sub-accounts, oldest first.
#[utoipa::path(get, path = "/partners/{id}/sub-accounts", tag = "partners", security(("bearer" = [])), responses(
    (status = 200, body = [SubAccount]), (status = 404, body = super::problem::Problem)))]
pub async fn sub_accounts(
    State(pool): State<PgPool>,
    PartnerAdmin(_admin, partner): PartnerAdmin,
    ApiPath(id): ApiPath<PartnerId>,
) -> Result<Json<Vec<SubAccount>>, ApiError> {
    own(partner, id)?;
    let accounts = queries::sub_accounts(&pool, id).await?;
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
