//! One's own account: the name one goes by, and a new password (given the current one).

use chrono::Utc;
use soho_aggregates::user::{UserCommand, UserError};
use soho_aggregates::UserId;

use super::OnboardingError;
use crate::auth::password::{self, Password};
use crate::auth::refresh;
use crate::commands::{CommandContext, CommandError};
use crate::portal::Portal;

/// Whether `current` is the user's password now (an Argon2 check: the caller limits attempts).
pub async fn is_current_password(
    portal: &Portal,
    user: UserId,
    current: String,
) -> Result<bool, OnboardingError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE user_id = $1")
            .bind(user.as_uuid())
            .fetch_optional(&portal.pool)
            .await?
            .flatten();
    Ok(password::verify(current, stored).await?)
}

/// Sets a new password and ends every session of the user (the caller starts a new one).
#[tracing::instrument(skip_all, err)]
pub async fn change_password(
    portal: &Portal,
    user: UserId,
    new: Password,
    context: &CommandContext,
) -> Result<(), OnboardingError> {
    let password_hash = password::hash(new).await?;
    let command = UserCommand::ChangePassword { password_hash, at: Utc::now() };
    execute(portal, user, command, context).await?;
    refresh::revoke_all(&portal.pool, user).await?;
    Ok(())
}

/// Changes the name the user goes by (shown to its team and in the header).
#[tracing::instrument(skip_all, err)]
pub async fn rename(
    portal: &Portal,
    user: UserId,
    name: Option<String>,
    context: &CommandContext,
) -> Result<(), OnboardingError> {
    execute(portal, user, UserCommand::Rename { name, at: Utc::now() }, context).await
}

async fn execute(
    portal: &Portal,
    user: UserId,
    command: UserCommand,
    context: &CommandContext,
) -> Result<(), OnboardingError> {
    match portal.commands.execute(&portal.commands.users, user, command, context).await {
        Ok(_) => Ok(()),
        Err(CommandError::Rule(UserError::Disabled)) => Err(OnboardingError::Disabled),
        Err(CommandError::Rule(UserError::NotFound)) => Err(OnboardingError::NotFound),
        Err(error) => Err(error.into()),
    }
}
