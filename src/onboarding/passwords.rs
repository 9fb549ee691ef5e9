//! "Forgot your password?": a reset link by email, and a new password set with it. The email
//! follows from the `PasswordResetRequested` event, as an invitation's does
//! (`crate::email::sender`): never lost, never sent twice.

use chrono::{Duration, Utc};
use soho_aggregates::user::{Invitation, UserCommand, UserError};
use soho_aggregates::UserId;

use super::OnboardingError;
use crate::auth::keys::token_hash;
use crate::auth::password::{self, Password};
use crate::auth::refresh;
use crate::commands::{CommandContext, CommandError};
use crate::portal::Portal;

/// How long a reset link works: long enough to find the email, short enough that an old mailbox
/// is not a way in.
pub const RESET_LIFETIME: Duration = Duration::hours(1);

/// Makes a reset link for the registered, enabled user with this email, if there is one (and
/// nothing otherwise: the caller answers the same either way).
#[tracing::instrument(skip_all, err)]
pub async fn request_reset(
    portal: &Portal,
    email: &str,
    context: &CommandContext,
) -> Result<(), OnboardingError> {
    let user: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM users WHERE lower(email) = lower($1) AND registered AND status = 'active'",
    )
    .bind(email)
    .fetch_optional(&portal.pool)
    .await?;
    let Some(user) = user else { return Ok(()) };
    let reset_id = soho_aggregates::InvitationId::new();
    let reset = Invitation {
        invitation_id: reset_id,
        token_hash: token_hash(&portal.keys.password_reset_token(reset_id)),
        expires_at: Utc::now() + RESET_LIFETIME,
    };
    let command = UserCommand::RequestPasswordReset { reset, at: Utc::now() };
    portal.commands.execute(&portal.commands.users, UserId(user), command, context).await?;
    Ok(())
}

/// Sets a new password with a reset link, and ends the user's other sessions. Returns the user.
#[tracing::instrument(skip_all, err)]
pub async fn reset_password(
    portal: &Portal,
    token: &str,
    password: Password,
    context: &CommandContext,
) -> Result<UserId, OnboardingError> {
    let hash = token_hash(token);
    let found: Option<(uuid::Uuid, Option<chrono::DateTime<Utc>>, bool)> = sqlx::query_as(
        "SELECT user_id, password_reset_expires_at, status = 'disabled' FROM users \
         WHERE password_reset_token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&portal.pool)
    .await?;
    let (user, expires_at, disabled) = found.ok_or(OnboardingError::InvalidResetLink)?;
    // Refused before the (costly) hash is made.
    if disabled {
        return Err(OnboardingError::Disabled);
    }
    if expires_at.is_none_or(|at| at <= Utc::now()) {
        return Err(OnboardingError::ResetLinkExpired);
    }
    let password_hash = password::hash(password).await?;
    let command = UserCommand::ResetPassword { token_hash: hash, password_hash, at: Utc::now() };
    let user = UserId(user);
    match portal.commands.execute(&portal.commands.users, user, command, context).await {
        Ok(_) => {}
        Err(CommandError::Rule(UserError::ResetLinkExpired)) => {
            return Err(OnboardingError::ResetLinkExpired)
        }
        Err(CommandError::Rule(UserError::Disabled)) => return Err(OnboardingError::Disabled),
        Err(CommandError::Rule(_)) => return Err(OnboardingError::InvalidResetLink),
        Err(error) => return Err(error.into()),
    }
    refresh::revoke_all(&portal.pool, user).await?;
    Ok(user)
}
