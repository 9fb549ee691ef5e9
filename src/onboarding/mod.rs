//! Bringing partners and their people in: following Soho CRM's partner records, inviting admins
//! and sub-accounts, re-sending invitations, registering, and disabling or enabling accounts.

pub mod account;
pub mod invitations;
pub mod partners;
pub mod passwords;
pub mod queries;

use crate::commands::CommandError;

#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error("this email already belongs to a portal user")]
    EmailTaken,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Refused(String),
    #[error("the invitation link is not valid; ask for a new one")]
    InvalidToken,
    #[error("the invitation link has expired; ask the person who invited you to send a new one")]
    Expired,
    #[error("this invitation has already been used; log in instead")]
    Used,
    #[error("this account has been disabled by your company's portal admin; ask them to enable it, then use this link again")]
    Disabled,
    #[error("this password reset link is not valid or has already been used; ask for a new one")]
    InvalidResetLink,
    #[error("this password reset link has expired; ask for a new one")]
    ResetLinkExpired,
    #[error("the record is being changed by another request; try again")]
    Conflict,
    #[error(transparent)]
    Busy(#[from] crate::auth::password::Busy),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::auth::password::HashError> for OnboardingError {
    fn from(error: crate::auth::password::HashError) -> Self {
        match error {
            crate::auth::password::HashError::Busy(busy) => Self::Busy(busy),
            crate::auth::password::HashError::Failed(error) => Self::Internal(error),
        }
    }
}

impl From<sqlx::Error> for OnboardingError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.into())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<CommandError<E>> for OnboardingError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Taken(rule) if rule == "user_email_unique" => Self::EmailTaken,
            CommandError::Conflict => Self::Conflict,
            CommandError::Rule(rule) => Self::Refused(rule.to_string()),
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}
