//! The daily digest: for each user with notices kept (`notification_digest_items`, written by
//! the sender for users who chose `daily`), one email once its last digest (or, for its first,
//! its oldest notice) is a day old (`DIGEST_INTERVAL_SECONDS`). The notices stay until the mail server has taken the email, so
//! neither a crash nor an SMTP outage loses them; the email's id is made from its last notice, and
//! recorded once sent, so a digest is not sent twice; one server sends a user's digest at a time
//! (an advisory lock).

use std::time::Duration;

use super::email::DigestEmail;
use crate::email::Mailer;
use crate::portal::Portal;

pub fn spawn(portal: std::sync::Arc<Portal>, mailer: Mailer) -> tokio::task::JoinHandle<()> {
    // A tenth of the interval, between 1 s and a minute: a digest is at most that late.
    let every = (portal.settings.digest_interval / 10)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        loop {
            if let Err(error) = send_due(&portal, &mailer).await {
                tracing::warn!(error = %error, "lead digests wait for the next round");
            }
            tokio::time::sleep(every).await;
        }
    })
}

#[derive(sqlx::FromRow)]
struct Due {
    user_id: uuid::Uuid,
    email: String,
    name: Option<String>,
    mode: String,
    status: String,
}

#[tracing::instrument(skip_all, err)]
async fn send_due(portal: &Portal, mailer: &Mailer) -> anyhow::Result<()> {
    let interval = portal.settings.digest_interval.as_secs_f64();
    let due: Vec<Due> = sqlx::query_as(
        "SELECT u.user_id, u.email, u.name, u.status, \
           coalesce((SELECT n.mode FROM notification_settings n WHERE n.user_id = u.user_id), 'instant') AS mode \
         FROM (SELECT user_id, min(created_at) AS first FROM notification_digest_items GROUP BY user_id) i \
         JOIN users u ON u.user_id = i.user_id \
         WHERE coalesce((SELECT d.sent_at FROM notification_digests d WHERE d.user_id = i.user_id), i.first) \
               <= now() - make_interval(secs => $1)",
    )
    .bind(interval)
    .fetch_all(&portal.pool)
    .await?;
    for user in due {
        send_one(portal, mailer, &user).await?;
    }
    Ok(())
}

async fn send_one(portal: &Portal, mailer: &Mailer, user: &Due) -> anyhow::Result<()> {
    let mut tx = portal.pool.begin().await?;
    let mine: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext('soho-digest'), hashtext($1))",
    )
    .bind(user.user_id.to_string())
    .fetch_one(&mut *tx)
    .await?;
    if !mine {
        return Ok(());
    }
    let items: Vec<(i64, uuid::Uuid, String)> = sqlx::query_as(
        "SELECT item_id, lead_id, line FROM notification_digest_items WHERE user_id = $1 ORDER BY item_id",
    )
    .bind(user.user_id)
    .fetch_all(&mut *tx)
    .await?;
    let Some(last) = items.last().map(|i| i.0) else { return Ok(()) };
    // Who turned notifications off, or was disabled, since: the notices are dropped unsent.
    let wanted = user.mode != "off" && user.status == "active";
    let message_id = format!("<digest-{}-{last}@soho-partner-portal>", user.user_id);
    let sent: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notifications_sent WHERE message_id = $1)",
    )
    .bind(&message_id)
    .fetch_one(&mut *tx)
    .await?;
    if wanted && !sent {
        let base = &portal.settings.public_base_url;
        let lines: Vec<(String, String)> = items
            .iter()
            .map(|(_, lead, line)| (line.clone(), format!("{base}/leads/{lead}")))
            .collect();
        let token = portal.keys.unsubscribe_token(soho_aggregates::UserId(user.user_id));
        let unsubscribe_link = format!("{base}/unsubscribe?user={}&token={token}", user.user_id);
        let email = DigestEmail {
            message_id: message_id.clone(),
            to: &user.email,
            name: user.name.as_deref(),
            items: &lines,
            unsubscribe_link: &unsubscribe_link,
        }
        .render();
        // Refused for good: dropped with its notices, as a sent one is.
        mailer.deliver(&email, "digest").await.map_err(anyhow::Error::msg)?;
        // At once, on its own: a rollback below must not forget that it went out.
        sqlx::query(
            "INSERT INTO notifications_sent (message_id) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .bind(&message_id)
        .execute(&portal.pool)
        .await?;
    }
    sqlx::query("DELETE FROM notification_digest_items WHERE user_id = $1 AND item_id <= $2")
        .bind(user.user_id)
        .bind(last)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO notification_digests (user_id, sent_at) VALUES ($1, now()) \
         ON CONFLICT (user_id) DO UPDATE SET sent_at = EXCLUDED.sent_at",
    )
    .bind(user.user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
