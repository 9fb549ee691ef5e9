//! Following Soho CRM's partner records: a `partner.created`/`partner.updated` webhook becomes a
//! command on the Partner aggregate, and an approved partner gets its admin user, invited.

use chrono::{DateTime, Utc};
use soho_aggregates::partner::{PartnerCommand, PartnerDetails};
use soho_aggregates::{PartnerId, PartnerStatus, Role, UserId};

use super::invitations::{claim_for_owner, invite, Invitee};
use super::OnboardingError;
use crate::commands::{CommandContext, CommandError};
use crate::portal::Portal;

/// A partner as Soho CRM describes it, already validated.
#[derive(Debug, Clone)]
pub struct CrmPartner {
    pub soho_partner_id: String,
    pub details: PartnerDetails,
    pub approved: bool,
}

/// Applies the CRM's view of a partner; returns the partner and its status now.
#[tracing::instrument(skip_all, fields(soho_partner_id = %partner.soho_partner_id), err)]
pub async fn apply_crm_partner(
    portal: &Portal,
    partner: CrmPartner,
    at: DateTime<Utc>,
    context: &CommandContext,
) -> Result<(PartnerId, PartnerStatus), OnboardingError> {
    let mut attempt = 0;
    let partner_id = loop {
        let partner_id =
            find_by_soho_id(portal, &partner.soho_partner_id).await?.unwrap_or_else(PartnerId::new);
        let command = PartnerCommand::ApplyCrmState {
            partner_id,
            soho_partner_id: partner.soho_partner_id.clone(),
            details: partner.details.clone(),
            approved: partner.approved,
            at,
        };
        let commands = &portal.commands;
        match commands.execute(&commands.partners, partner_id, command, context).await {
            Ok(_) => break partner_id,
            // Two first webhooks for one CRM partner raced and the other registered it: use its id.
            Err(CommandError::Taken(_)) if attempt == 0 => attempt += 1,
            Err(error) => return Err(error.into()),
        }
    };
    portal.standings.forget_partner(partner_id);
    let status = partner_status(portal, partner_id).await?.ok_or(OnboardingError::NotFound)?;
    if status == PartnerStatus::Approved {
        ensure_admin_invited(portal, partner_id, &partner.details.email, context).await?;
    }
    Ok((partner_id, status))
}

/// The admin's id is derived from the partner's, so that two deliveries racing to create it
/// meet on one aggregate instead of creating two admins.
pub fn admin_id(partner: PartnerId) -> UserId {
    UserId(uuid::Uuid::new_v5(&partner.as_uuid(), b"admin"))
}

async fn ensure_admin_invited(
    portal: &Portal,
    partner: PartnerId,
    email: &str,
    context: &CommandContext,
) -> Result<(), OnboardingError> {
    let admin = admin_id(partner);
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)")
        .bind(admin.as_uuid())
        .fetch_one(&portal.pool)
        .await?;
    if exists {
        return Ok(());
    }
    let invitee = Invitee {
        user_id: admin,
        partner_id: Some(partner),
        email: email.to_string(),
        name: None,
        role: Role::Admin,
    };
    let mut claimed = false;
    loop {
        match invite(portal, invitee.clone(), context).await {
            Ok(_) => return Ok(()),
            // Invited meanwhile by a concurrent delivery.
            Err(OnboardingError::Refused(_)) => return Ok(()),
            // The CRM is the authority on who owns the partner: a pending sub-account
            // invitation holding the email gives way (once; a registered user does not).
            Err(OnboardingError::EmailTaken) if !claimed => {
                claim_for_owner(portal, email, context).await?;
                claimed = true;
            }
            Err(error) => return Err(error),
        }
    }
}

pub async fn find_by_soho_id(
    portal: &Portal,
    soho_partner_id: &str,
) -> Result<Option<PartnerId>, OnboardingError> {
    let id: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT partner_id FROM partner_soho_ids WHERE soho_partner_id = $1")
            .bind(soho_partner_id)
            .fetch_optional(&portal.pool)
            .await?;
    Ok(id.map(PartnerId))
}

pub async fn partner_status(
    portal: &Portal,
    partner: PartnerId,
) -> Result<Option<PartnerStatus>, OnboardingError> {
    Ok(public_partner(portal, partner).await?.map(|(status, _)| status))
}

/// A partner as its public form knows it: its standing and its name.
pub async fn public_partner(
    portal: &Portal,
    partner: PartnerId,
) -> Result<Option<(PartnerStatus, String)>, OnboardingError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT status, name FROM partners WHERE partner_id = $1")
            .bind(partner.as_uuid())
            .fetch_optional(&portal.pool)
            .await?;
    // An unknown stored status is our error (a 500), never a guess.
    row.map(|(status, name)| {
        Ok((status.parse::<PartnerStatus>().map_err(anyhow::Error::from)?, name))
    })
    .transpose()
}
