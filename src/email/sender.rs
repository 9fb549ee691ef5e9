//! Sends invitation (and password reset) emails as the log records them: a checkpointed subscriber, so an
//! invitation is never lost to a crash or an SMTP outage (the batch is retried with backoff until
//! the server takes it), and each delivery is recorded as `InvitationSent`, so it is not sent
//! again. Only the current invitation of a not-yet-registered user is sent: a re-sent invitation
//! supersedes the earlier one, which is then skipped if not yet out.
//!
//! Exactly once is as close as SMTP allows: a crash between the server's acceptance and the
//! `InvitationSent` record would send again; the message id is the same, so clients can fold it.

use std::sync::Arc;

use soho_aggregates::aggregate_type;
use soho_aggregates::user::UserEvent;
use soho_aggregates::{InvitationId, Role, User, UserId};
use soho_projections::{Projection, ProjectionError, StoredEvent};
use sqlx::PgConnection;

use super::invitation::InvitationEmail;
use super::password_reset::PasswordResetEmail;
use super::Mailer;
use crate::commands::{load_aggregate, CommandContext};
use crate::portal::Portal;

pub struct InvitationSender {
    pub portal: Arc<Portal>,
    pub mailer: Mailer,
}

#[async_trait::async_trait]
impl Projection for InvitationSender {
    fn name(&self) -> &'static str {
        "invitation_emails"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn reads(&self) -> &'static [&'static str] {
        &[aggregate_type::USER]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for stored in events.iter().filter(|e| e.aggregate_type == aggregate_type::USER) {
            let user = UserId(stored.aggregate_uuid()?);
            match stored.decode::<UserEvent>()? {
                UserEvent::UserInvited { invitation, .. }
                | UserEvent::InvitationReissued { invitation, .. } => {
                    self.send(tx, user, invitation.invitation_id).await?
                }
                UserEvent::PasswordResetRequested { reset, .. } => {
                    self.send_reset(tx, user, reset.invitation_id).await?
                }
                _ => continue,
            }
        }
        Ok(())
    }
}

impl InvitationSender {
    #[tracing::instrument(skip(self, tx), err)]
    async fn send(
        &self,
        tx: &mut PgConnection,
        user_id: UserId,
        invitation_id: InvitationId,
    ) -> Result<(), ProjectionError> {
        let (user, _) = load_aggregate::<User>(tx, user_id, None)
            .await
            .map_err(|e| ProjectionError::Effect(format!("loading user {user_id}: {e}")))?;
        let current = user.invitation.as_ref().is_some_and(|i| i.invitation_id == invitation_id);
        if !current
            || user.registered
            || user.sent_invitations.contains(&invitation_id)
            || user.role == Role::Auditor
        {
            return Ok(());
        }
        let Some(invitation) = &user.invitation else { return Ok(()) };
        let partner_name: Option<String> = match user.partner_id {
            Some(partner) => {
                sqlx::query_scalar("SELECT name FROM partners WHERE partner_id = $1")
                    .bind(partner.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let link = self.portal.registration_link(invitation_id);
        let email = InvitationEmail {
            invitation_id,
            to: &user.email,
            name: user.name.as_deref(),
            partner_name: partner_name.as_deref(),
            role: user.role,
            link: &link,
            expires_at: invitation.expires_at,
        }
        .render();
        if !self.mailer.deliver(&email, "invitation").await.map_err(ProjectionError::Effect)? {
            return Ok(());
        }
        self.record_sent(user_id, invitation_id).await
    }

    /// Sends a password reset link: only the user's current one, once, while the user is
    /// enabled (a link asked for twice quickly sends the second only, if the first is not out).
    #[tracing::instrument(skip(self, tx), err)]
    async fn send_reset(
        &self,
        tx: &mut PgConnection,
        user_id: UserId,
        reset_id: InvitationId,
    ) -> Result<(), ProjectionError> {
        let (user, _) = load_aggregate::<User>(tx, user_id, None)
            .await
            .map_err(|e| ProjectionError::Effect(format!("loading user {user_id}: {e}")))?;
        let Some(reset) = user.password_reset.as_ref().filter(|r| r.invitation_id == reset_id)
        else {
            return Ok(());
        };
        if user.disabled || user.sent_invitations.contains(&reset_id) {
            return Ok(());
        }
        let link = self.portal.password_reset_link(reset_id);
        let email = PasswordResetEmail {
            reset_id,
            to: &user.email,
            name: user.name.as_deref(),
            link: &link,
            expires_at: reset.expires_at,
        }
        .render();
        if !self
            .mailer
            .deliver(&email, "password reset link")
            .await
            .map_err(ProjectionError::Effect)?
        {
            return Ok(());
        }
        self.record_sent(user_id, reset_id).await
    }

    /// Records a delivered email (its invitation or reset id), so it is not sent again.
    async fn record_sent(
        &self,
        user_id: UserId,
        invitation_id: InvitationId,
    ) -> Result<(), ProjectionError> {
        let command = soho_aggregates::UserCommand::RecordInvitationSent {
            invitation_id,
            at: chrono::Utc::now(),
        };
        let commands = &self.portal.commands;
        commands
            .record(
                &commands.users,
                user_id,
                command,
                &CommandContext::new(soho_aggregates::Actor::system()),
            )
            .await
            .map_err(|e| ProjectionError::Effect(format!("recording the sent invitation: {e}")))
    }
}
