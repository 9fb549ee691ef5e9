//! The `users` read model: what login, registration and the team page read about a user.

use chrono::{DateTime, Utc};
use soho_aggregates::aggregate_type;
use soho_aggregates::user::UserEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError, StoredEvent};

pub struct UsersProjection;

#[async_trait::async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users"]
    }

    fn follows(&self) -> &'static [&'static str] {
        &[aggregate_type::USER]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for stored in events.iter().filter(|e| e.aggregate_type == aggregate_type::USER) {
            let id: Uuid = stored.aggregate_uuid()?;
            match stored.decode::<UserEvent>()? {
                UserEvent::UserInvited {
                    partner_id, email, name, role, invitation, at, ..
                } => {
                    sqlx::query(
                        "INSERT INTO users (user_id, partner_id, email, name, role, status, registered, \
                         invitation_id, invitation_token_hash, invitation_expires_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'invited', false, $6, $7, $8, $9, $9)",
                    )
                    .bind(id)
                    .bind(partner_id.map(|p| p.as_uuid()))
                    .bind(email)
                    .bind(name)
                    .bind(role.as_str())
                    .bind(invitation.invitation_id.as_uuid())
                    .bind(invitation.token_hash)
                    .bind(invitation.expires_at)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                UserEvent::InvitationReissued { invitation, at } => {
                    sqlx::query(
                        "UPDATE users SET invitation_id = $2, invitation_token_hash = $3, \
                         invitation_expires_at = $4, invitation_sent_at = NULL, updated_at = $5 \
                         WHERE user_id = $1",
                    )
                    .bind(id)
                    .bind(invitation.invitation_id.as_uuid())
                    .bind(invitation.token_hash)
                    .bind(invitation.expires_at)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                UserEvent::InvitationSent { invitation_id, at } => {
                    sqlx::query(
                        "UPDATE users SET invitation_sent_at = $3, updated_at = $3 \
                         WHERE user_id = $1 AND invitation_id = $2",
                    )
                    .bind(id)
                    .bind(invitation_id.as_uuid())
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                // The spent token's hash stays, so a second use is told "already used".
                UserEvent::UserRegistered { name, password_hash, at } => {
                    sqlx::query(
                        "UPDATE users SET name = $2, password_hash = $3, registered = true, \
                         status = CASE WHEN status = 'disabled' THEN status ELSE 'active' END, \
                         updated_at = $4 WHERE user_id = $1",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(password_hash)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                // A voided invitation leaves nothing: its email is another user's now.
                UserEvent::InvitationVoided { .. } => {
                    sqlx::query("DELETE FROM users WHERE user_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                UserEvent::PasswordResetRequested { reset, at } => {
                    sqlx::query(
                        "UPDATE users SET password_reset_token_hash = $2, \
                         password_reset_expires_at = $3, updated_at = $4 WHERE user_id = $1",
                    )
                    .bind(id)
                    .bind(reset.token_hash)
                    .bind(reset.expires_at)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                // The link is spent: a second use finds nothing.
                UserEvent::PasswordChanged { password_hash, at } => {
                    sqlx::query(
                        "UPDATE users SET password_hash = $2, password_reset_token_hash = NULL, \
                         password_reset_expires_at = NULL, updated_at = $3 WHERE user_id = $1",
                    )
                    .bind(id)
                    .bind(password_hash)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                UserEvent::UserRenamed { name, at } => {
                    sqlx::query("UPDATE users SET name = $2, updated_at = $3 WHERE user_id = $1")
                        .bind(id)
                        .bind(name)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                UserEvent::UserDisabled { at } => set_status(tx, id, "'disabled'", at).await?,
                UserEvent::UserEnabled { at } => {
                    set_status(tx, id, "CASE WHEN registered THEN 'active' ELSE 'invited' END", at)
                        .await?
                }
            }
        }
        Ok(())
    }
}

async fn set_status(
    tx: &mut PgConnection,
    id: Uuid,
    status_sql: &'static str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE users SET status = {status_sql}, updated_at = $2 WHERE user_id = $1"
    ))
    .bind(id)
    .bind(at)
    .execute(tx)
    .await?;
    Ok(())
}
