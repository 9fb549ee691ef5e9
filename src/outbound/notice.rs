//! Tells a partner's admins when the portal has disabled one of its endpoints. The notice is made
//! due by the statement that disables the endpoint (`delivery::record`) and cleared here once the
//! mail server has taken every admin's copy; until then it is tried again, so neither a crash nor
//! an SMTP outage loses it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::email::endpoint_disabled::EndpointDisabledEmail;
use crate::email::Mailer;
use crate::portal::Portal;

/// How often due notices are looked for; disabling happens after three days, so this is plenty.
const EVERY: Duration = Duration::from_secs(2);

pub fn spawn(portal: std::sync::Arc<Portal>, mailer: Mailer) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = send_due(&portal, &mailer).await {
                tracing::warn!(error = %error, "endpoint-disabled notices wait for the next round");
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}

#[derive(sqlx::FromRow)]
struct Due {
    endpoint_id: uuid::Uuid,
    url: String,
    disabled_reason: Option<String>,
    failing_since: Option<DateTime<Utc>>,
    partner_name: String,
    admins: Vec<String>,
}

#[tracing::instrument(skip_all, err)]
async fn send_due(portal: &Portal, mailer: &Mailer) -> anyhow::Result<()> {
    let mut tx = portal.pool.begin().await?;
    // Locked while sent, so two servers do not both send it.
    let due: Vec<Due> = sqlx::query_as(
        "SELECT e.endpoint_id, e.url, e.disabled_reason, e.failing_since, p.name AS partner_name, \
           ARRAY(SELECT u.email FROM users u WHERE u.partner_id = e.partner_id \
                 AND u.role = 'admin' AND u.status = 'active' ORDER BY u.email) AS admins \
         FROM webhook_endpoints e JOIN partners p ON p.partner_id = e.partner_id \
         WHERE e.disabled_notice_due FOR UPDATE OF e SKIP LOCKED LIMIT 20",
    )
    .fetch_all(&mut *tx)
    .await?;
    let link = format!("{}/profile", portal.settings.public_base_url.trim_end_matches('/'));
    for endpoint in &due {
        let reason = endpoint.disabled_reason.as_deref().unwrap_or("failing for three days");
        for admin in &endpoint.admins {
            let email = EndpointDisabledEmail {
                endpoint_id: endpoint.endpoint_id,
                failing_since: endpoint.failing_since.unwrap_or_default(),
                to: admin,
                partner_name: &endpoint.partner_name,
                url: &endpoint.url,
                reason,
                link: &link,
            }
            .render();
            match mailer.send(&email).await {
                Ok(()) => {}
                // A bad address will not get better: the other admins still hear of it.
                Err(crate::email::SendError::Permanent(error)) => {
                    tracing::warn!(error = %error, to = %admin, "endpoint-disabled notice refused for good")
                }
                Err(error) => return Err(error.into()),
            }
        }
        sqlx::query(
            "UPDATE webhook_endpoints SET disabled_notice_due = false WHERE endpoint_id = $1",
        )
        .bind(endpoint.endpoint_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
