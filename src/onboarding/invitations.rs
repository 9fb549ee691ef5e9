//! Invitations: inviting a user, re-sending (the old link stops working), registering with a
//! link, and disabling or enabling an account. Sending the email is not done here: it follows
//! from the `UserInvited`/`InvitationReissued` event (see `crate::email::sender`).

use chrono::{Duration, Utc};
use soho_aggregates::user::{Invitation, UserCommand, UserError};
use soho_aggregates::{PartnerId, Role, UserId};

use super::OnboardingError;
use crate::auth::keys::token_hash;
use crate::auth::password::{self, Password};
use crate::commands::{CommandContext, CommandError};
use crate::portal::Portal;

/// How long an invitation link works.
pub const INVITATION_LIFETIME: Duration = Duration::hours(72);

#[derive(Debug, Clone)]
pub struct Invitee {
    pub user_id: UserId,
    pub partner_id: Option<PartnerId>,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
}

fn new_invitation(portal: &Portal) -> Invitation {
    let invitation_id = soho_aggregates::InvitationId::new();
    Invitation {
        invitation_id,
        token_hash: token_hash(&portal.keys.invitation_token(invitation_id)),
        expires_at: Utc::now() + INVITATION_LIFETIME,
    }
}

pub async fn invite(
    portal: &Portal,
    invitee: Invitee,
    context: &CommandContext,
) -> Result<Invitation, OnboardingError> {
    let invitation = new_invitation(portal);
    let command = UserCommand::Invite {
        user_id: invitee.user_id,
        partner_id: invitee.partner_id,
        email: invitee.email,
        name: invitee.name,
        role: invitee.role,
        invitation: invitation.clone(),
        at: Utc::now(),
    };
    let users = &portal.commands.users;
    portal.commands.execute(users, invitee.user_id, command, context).await?;
    Ok(invitation)
}

/// What inviting a sub-account came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAccountInvitation {
    /// A new sub-account, invited.
    Invited(UserId),
    /// This partner's own pending sub-account, sent a new link (the old one stops working).
    Reissued(UserId),
    /// The email belongs to someone outside this partner. The caller answers as for `Invited`,
    /// with nothing recorded and nothing sent, so that no admin can learn who else uses the
    /// portal by inviting them.
    Elsewhere,
}

/// Invites `email` as a sub-account of `partner`; with `resend`, a pending invitation of this
/// partner's is sent again instead of refused.
pub async fn invite_sub_account(
    portal: &Portal,
    partner: PartnerId,
    email: String,
    name: Option<String>,
    resend: bool,
    context: &CommandContext,
) -> Result<SubAccountInvitation, OnboardingError> {
    match holder_of(portal, &email).await? {
        None => {}
        Some(holder) if holder.partner_id != Some(partner.as_uuid()) => {
            return Ok(SubAccountInvitation::Elsewhere)
        }
        Some(holder) if resend && !holder.registered && holder.role == Role::Sub.as_str() => {
            reissue(portal, UserId(holder.user_id), context).await?;
            return Ok(SubAccountInvitation::Reissued(UserId(holder.user_id)));
        }
        Some(holder) if holder.registered => {
            return Err(OnboardingError::Refused("this person has already registered".into()))
        }
        Some(_) => return Err(OnboardingError::EmailTaken),
    }
    let user = UserId::new();
    let invitee =
        Invitee { user_id: user, partner_id: Some(partner), email, name, role: Role::Sub };
    match invite(portal, invitee, context).await {
        Ok(_) => Ok(SubAccountInvitation::Invited(user)),
        // Taken between the look-up and the command: by someone of this partner or not, the
        // answer must not say which.
        Err(OnboardingError::EmailTaken) => Ok(SubAccountInvitation::Elsewhere),
        Err(error) => Err(error),
    }
}

/// Who holds an email, from the users read model.
#[derive(sqlx::FromRow)]
pub struct Holder {
    pub user_id: uuid::Uuid,
    pub partner_id: Option<uuid::Uuid>,
    pub role: String,
    pub registered: bool,
}

pub async fn holder_of(portal: &Portal, email: &str) -> Result<Option<Holder>, OnboardingError> {
    Ok(sqlx::query_as(
        "SELECT user_id, partner_id, role, registered FROM users WHERE lower(email) = lower($1)",
    )
    .bind(email)
    .fetch_optional(&portal.pool)
    .await?)
}

/// Frees `email` for a partner's owner whom Soho CRM has just approved: an unregistered
/// sub-account invitation holding it (another partner's admin may have invited the owner to get
/// there first) is voided. A registered user, or another partner's owner, keeps it.
pub async fn claim_for_owner(
    portal: &Portal,
    email: &str,
    context: &CommandContext,
) -> Result<(), OnboardingError> {
    let Some(holder) = holder_of(portal, email).await? else { return Ok(()) };
    if holder.registered || holder.role != Role::Sub.as_str() {
        return Err(OnboardingError::EmailTaken);
    }
    tracing::warn!(
        user = %holder.user_id,
        "Soho CRM approved a partner whose owner's email a pending sub-account invitation held; \
         that invitation is void"
    );
    let command = UserCommand::VoidInvitation { at: Utc::now() };
    let users = &portal.commands.users;
    match portal.commands.execute(users, UserId(holder.user_id), command, context).await {
        Ok(_) | Err(CommandError::Rule(UserError::NotFound)) => Ok(()),
        Err(CommandError::Rule(UserError::AlreadyRegistered)) => Err(OnboardingError::EmailTaken),
        Err(error) => Err(error.into()),
    }
}

pub async fn reissue(
    portal: &Portal,
    user: UserId,
    context: &CommandContext,
) -> Result<Invitation, OnboardingError> {
    let invitation = new_invitation(portal);
    let command = UserCommand::ReissueInvitation { invitation: invitation.clone(), at: Utc::now() };
    let users = &portal.commands.users;
    match portal.commands.execute(users, user, command, context).await {
        Ok(_) => Ok(invitation),
        Err(CommandError::Rule(UserError::AlreadyRegistered)) => {
            Err(OnboardingError::Refused("this user has already registered".into()))
        }
        Err(CommandError::Rule(UserError::NotFound)) => Err(OnboardingError::NotFound),
        Err(error) => Err(error.into()),
    }
}

#[derive(sqlx::FromRow)]
struct Invited {
    user_id: uuid::Uuid,
    registered: bool,
    disabled: bool,
    invitation_expires_at: Option<chrono::DateTime<Utc>>,
}

/// Accepts an invitation: checks the link, sets the password. Returns the registered user.
#[tracing::instrument(skip_all, err)]
pub async fn register(
    portal: &Portal,
    token: &str,
    password: Password,
    name: Option<String>,
    context: &CommandContext,
) -> Result<UserId, OnboardingError> {
    let hash = token_hash(token);
    let invited: Option<Invited> = sqlx::query_as(
        "SELECT user_id, registered, status = 'disabled' AS disabled, invitation_expires_at \
         FROM users WHERE invitation_token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&portal.pool)
    .await?;
    let invited = invited.ok_or(OnboardingError::InvalidToken)?;
    if invited.registered {
        return Err(OnboardingError::Used);
    }
    if invited.disabled {
        return Err(OnboardingError::Disabled);
    }
    if invited.invitation_expires_at.is_none_or(|at| at <= Utc::now()) {
        return Err(OnboardingError::Expired);
    }
    let password_hash = password::hash(password).await?;
    let command = UserCommand::Register { token_hash: hash, password_hash, name, at: Utc::now() };
    let users = &portal.commands.users;
    let user = UserId(invited.user_id);
    match portal.commands.execute(users, user, command, context).await {
        Ok(_) => Ok(user),
        Err(CommandError::Rule(UserError::AlreadyRegistered)) => Err(OnboardingError::Used),
        Err(CommandError::Rule(UserError::InvitationExpired)) => Err(OnboardingError::Expired),
        Err(CommandError::Rule(UserError::Disabled)) => Err(OnboardingError::Disabled),
        Err(CommandError::Rule(_)) => Err(OnboardingError::InvalidToken),
        Err(error) => Err(error.into()),
    }
}

pub async fn set_disabled(
    portal: &Portal,
    user: UserId,
    disabled: bool,
    context: &CommandContext,
) -> Result<(), OnboardingError> {
    let at = Utc::now();
    let command = if disabled { UserCommand::Disable { at } } else { UserCommand::Enable { at } };
    let users = &portal.commands.users;
    portal.commands.execute(users, user, command, context).await?;
    portal.standings.forget_user(user);
    Ok(())
}

/// What an invitation link is for, shown on the registration page before anything is set.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    /// The email the account will log in with.
    pub email: String,
    /// The name the inviter gave (prefills the form).
    pub name: Option<String>,
    /// `admin`, `sub` or `auditor`.
    pub role: String,
    /// The company joined (none for an auditor).
    pub partner_name: Option<String>,
    /// Who sent the invitation: a person's name (or email) for a team invitation; none when
    /// Soho CRM's approval of the partner sent it.
    pub invited_by: Option<String>,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Describes the invitation `token` opens, refusing as registration would (unknown, used,
/// disabled, expired): the page can say so before the person types a password.
#[tracing::instrument(skip_all, err)]
pub async fn describe(portal: &Portal, token: &str) -> Result<InvitationView, OnboardingError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        view: InvitationView,
        registered: bool,
        disabled: bool,
    }
    // The inviter is whoever the log records as the invitation's actor (the user's first
    // event), when that was a person.
    let row: Option<Row> = sqlx::query_as(
        "SELECT u.email, u.name, u.role, p.name AS partner_name, \
           (SELECT coalesce(nullif(i.name, ''), i.email) FROM events e \
              JOIN users i ON i.user_id::text = e.metadata->>'actorId' \
            WHERE e.aggregate_type = 'User' AND e.aggregate_id = u.user_id::text AND e.sequence = 1 \
              AND e.metadata->>'actorType' = 'user') AS invited_by, \
           u.invitation_expires_at AS expires_at, u.registered, u.status = 'disabled' AS disabled \
         FROM users u LEFT JOIN partners p ON p.partner_id = u.partner_id \
         WHERE u.invitation_token_hash = $1",
    )
    .bind(token_hash(token))
    .fetch_optional(&portal.pool)
    .await?;
    let row = row.ok_or(OnboardingError::InvalidToken)?;
    if row.registered {
        return Err(OnboardingError::Used);
    }
    if row.disabled {
        return Err(OnboardingError::Disabled);
    }
    if row.view.expires_at <= Utc::now() {
        return Err(OnboardingError::Expired);
    }
    Ok(row.view)
}
