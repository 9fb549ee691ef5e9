//! The subscriber that sends lead notifications as the log records what they are about.
//!
//! Each notification has a message id made from the event and the recipient. It is sent, then
//! recorded in `notifications_sent` on a connection of its own (committed at once): a batch
//! rolled back and retried after a failure skips what already went out. A crash between the
//! SMTP server's acceptance and the record sends it again with the same message id, as close
//! to exactly once as SMTP allows (the invitations' rule too).

use std::collections::HashMap;
use std::sync::Arc;

use soho_aggregates::aggregate_type;
use soho_aggregates::lead::{LeadEvent, Submitter};
use soho_aggregates::ActorKind;
use soho_projections::{Projection, ProjectionError, StoredEvent};
use sqlx::PgConnection;

use super::email::{Notice, NotificationEmail};
use crate::email::Mailer;
use crate::portal::Portal;

pub struct LeadNotifier {
    pub portal: Arc<Portal>,
    pub mailer: Mailer,
}

/// Who gets one notification.
#[derive(sqlx::FromRow)]
struct Recipient {
    user_id: uuid::Uuid,
    email: String,
    name: Option<String>,
    /// `instant` or `daily`.
    mode: String,
}

/// A user's choice (instant when it never chose).
const MODE: &str =
    "coalesce((SELECT n.mode FROM notification_settings n WHERE n.user_id = u.user_id), 'instant')";

#[async_trait::async_trait]
impl Projection for LeadNotifier {
    fn name(&self) -> &'static str {
        "lead_notifications"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn reads(&self) -> &'static [&'static str] {
        &[aggregate_type::LEAD]
    }

    /// Nobody waits on an email by the second: under load a batch gathers many events, and the
    /// write path pays next to nothing for this subscriber.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::from_millis(500)
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut decoded = Vec::new();
        for stored in events.iter().filter(|e| e.aggregate_type == aggregate_type::LEAD) {
            decoded.push((
                stored.aggregate_uuid()?,
                stored.sequence,
                stored.decode::<LeadEvent>()?,
                acting_user(&stored.metadata),
            ));
        }
        // The submitters of every changed lead of the batch, in one query.
        let changed: Vec<uuid::Uuid> = decoded
            .iter()
            .filter(|(_, _, e, _)| matches!(e, LeadEvent::LeadStatusChanged { .. }))
            .map(|(lead, _, _, _)| *lead)
            .collect();
        let submitters = submitters(tx, &changed).await?;
        for (lead, sequence, event, actor) in decoded {
            let event_id = format!("{lead}-{sequence}");
            match event {
                LeadEvent::LeadStatusChanged { old_status, change, .. } => {
                    let Some((recipient, lead_name)) = submitters.get(&lead) else { continue };
                    // Nobody is told of its own change.
                    let own = change.actor.kind == ActorKind::User
                        && change.actor.id.as_deref() == Some(&recipient.user_id.to_string());
                    if own {
                        continue;
                    }
                    let notice = Notice::StatusChanged {
                        old: old_status.as_str(),
                        new: change.status.as_str(),
                        by_crm: change.actor.kind == ActorKind::Crm,
                    };
                    self.send(tx, &event_id, lead, lead_name, recipient, notice).await?;
                }
                LeadEvent::LeadSubmitted {
                    partner_id,
                    submitted_by,
                    details,
                    channel_conflict,
                    ..
                } => {
                    let public = submitted_by == Submitter::Public;
                    if !public && !channel_conflict {
                        continue;
                    }
                    let lead_name =
                        [details.first_name.as_deref(), Some(details.last_name.as_str())]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ");
                    for recipient in admins(tx, partner_id.as_uuid()).await? {
                        // An admin who submitted it was told so in the answer (a partner's
                        // system with a key is not the admin, and its admins hear of it).
                        if actor == Some(recipient.user_id) {
                            continue;
                        }
                        let notice = if channel_conflict {
                            Notice::ChannelConflict
                        } else {
                            Notice::PublicLead
                        };
                        self.send(tx, &event_id, lead, &lead_name, &recipient, notice).await?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The portal user an event's metadata says caused it (none for Soho CRM, the public form, an
/// API key or the portal itself).
fn acting_user(metadata: &serde_json::Value) -> Option<uuid::Uuid> {
    (metadata["actorType"] == ActorKind::User.as_str())
        .then(|| metadata["actorId"].as_str()?.parse().ok())
        .flatten()
}

/// For each of `leads` whose submitter wants to hear: the submitter, and the lead's name.
async fn submitters(
    tx: &mut PgConnection,
    leads: &[uuid::Uuid],
) -> Result<HashMap<uuid::Uuid, (Recipient, String)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        lead_id: uuid::Uuid,
        #[sqlx(flatten)]
        recipient: Recipient,
        lead_name: String,
    }
    if leads.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT * FROM (SELECT l.lead_id, u.user_id, u.email, u.name, {MODE} AS mode, \
           concat_ws(' ', l.first_name, l.last_name) AS lead_name \
         FROM leads l JOIN users u ON u.user_id = l.submitted_by_user \
         WHERE l.lead_id = ANY($1) AND u.status = 'active') r WHERE r.mode <> 'off'"
    ))
    .bind(leads)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|r| (r.lead_id, (r.recipient, r.lead_name))).collect())
}

/// The partner's admins who want to hear.
async fn admins(tx: &mut PgConnection, partner: uuid::Uuid) -> Result<Vec<Recipient>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT * FROM (SELECT u.user_id, u.email, u.name, {MODE} AS mode FROM users u \
         WHERE u.partner_id = $1 AND u.role = 'admin' AND u.status = 'active') r WHERE r.mode <> 'off'"
    ))
    .bind(partner)
    .fetch_all(tx)
    .await
}

impl LeadNotifier {
    #[tracing::instrument(skip_all, fields(event = %event_id, to = %recipient.email), err)]
    async fn send(
        &self,
        tx: &mut PgConnection,
        event_id: &str,
        lead: uuid::Uuid,
        lead_name: &str,
        recipient: &Recipient,
        notice: Notice<'_>,
    ) -> Result<(), ProjectionError> {
        if recipient.mode == "daily" {
            // Kept for the digest, in the batch's transaction: written once, whatever retries.
            sqlx::query(
                "INSERT INTO notification_digest_items (user_id, lead_id, line) VALUES ($1, $2, $3)",
            )
            .bind(recipient.user_id)
            .bind(lead)
            .bind(notice.line(lead_name))
            .execute(&mut *tx)
            .await?;
            return Ok(());
        }
        let message_id = format!("<lead-{event_id}-{}@soho-partner-portal>", recipient.user_id);
        let sent: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM notifications_sent WHERE message_id = $1)",
        )
        .bind(&message_id)
        .fetch_one(&mut *tx)
        .await?;
        if sent {
            return Ok(());
        }
        let base = &self.portal.settings.public_base_url;
        let lead_link = format!("{base}/leads/{lead}");
        let token = self.portal.keys.unsubscribe_token(soho_aggregates::UserId(recipient.user_id));
        let unsubscribe_link =
            format!("{base}/unsubscribe?user={}&token={token}", recipient.user_id);
        let email = NotificationEmail {
            message_id: message_id.clone(),
            to: &recipient.email,
            name: recipient.name.as_deref(),
            lead_name,
            notice,
            lead_link: &lead_link,
            unsubscribe_link: &unsubscribe_link,
        }
        .render();
        // Refused for good: recorded all the same, so it is not tried again.
        self.mailer.deliver(&email, "notification").await.map_err(ProjectionError::Effect)?;
        sqlx::query(
            "INSERT INTO notifications_sent (message_id) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .bind(&message_id)
        .execute(&self.portal.pool)
        .await?;
        Ok(())
    }
}
