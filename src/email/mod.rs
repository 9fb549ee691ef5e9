//! Email: an SMTP relay when `SMTP_URL` is set (with `EMAIL_API_KEY` as its password, as
//! SendGrid's relay wants), otherwise (dev mode only) the dev mailbox: a table the dev pages
//! list, so a person trying the portal can open an invitation without any mail server.

pub mod endpoint_disabled;
pub mod invitation;
pub mod password_reset;
pub mod sender;

use anyhow::Context;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use sqlx::PgPool;

use crate::config::Settings;

/// One email, text and HTML.
#[derive(Debug, Clone)]
pub struct Email {
    /// Stable per message, so a receiver (and the dev mailbox) can tell a re-send from a new one.
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server refused this message for good (a bad address, say): retrying will not help.
    #[error("the mail server refused the message: {0}")]
    Permanent(String),
    /// The server is down or busy: try again later.
    #[error("the mail server is unavailable: {0}")]
    Transient(String),
}

pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        /// The whole send's limit: lettre's own timeout does not cover every wait.
        timeout: std::time::Duration,
    },
    DevMailbox {
        pool: PgPool,
        from: Mailbox,
    },
}

impl Mailer {
    pub fn from_settings(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let from: Mailbox =
            settings.mail_from.parse().context("setting MAIL_FROM is not an address")?;
        let Some(url) = &settings.smtp_url else {
            return Ok(Self::DevMailbox { pool, from });
        };
        let url = url.expose_secret();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("setting SMTP_URL is not an SMTP URL (smtp://host:port or smtps://user@host)")?
            .timeout(Some(settings.smtp_timeout));
        if let Some(key) = &settings.email_api_key {
            let user = reqwest::Url::parse(url)
                .ok()
                .map(|u| u.username().to_string())
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "apikey".to_string());
            builder = builder.credentials(Credentials::new(user, key.expose_secret().to_string()));
        }
        Ok(Self::Smtp { transport: builder.build(), from, timeout: settings.smtp_timeout })
    }

    #[tracing::instrument(skip_all, fields(to = %email.to, message_id = %email.message_id), err)]
    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        match self {
            Self::Smtp { transport, from, timeout } => {
                let message = build(from, email)?;
                let sent = tokio::time::timeout(*timeout, transport.send(message)).await.map_err(
                    |_| SendError::Transient(format!("no answer within {} s", timeout.as_secs())),
                )?;
                sent.map(|_| ()).map_err(|e| {
                    if e.is_permanent() {
                        SendError::Permanent(e.to_string())
                    } else {
                        SendError::Transient(e.to_string())
                    }
                })
            }
            Self::DevMailbox { pool, .. } => {
                sqlx::query(
                    "INSERT INTO dev_mailbox (message_id, recipient, subject, text_body, html_body) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(&email.message_id)
                .bind(&email.to)
                .bind(&email.subject)
                .bind(&email.text)
                .bind(&email.html)
                .execute(pool)
                .await
                .map_err(|e| SendError::Transient(e.to_string()))?;
                // Never the body: it carries the registration link, and logs are read by more
                // people than the mailbox.
                tracing::info!(to = %email.to, subject = %email.subject, "dev mailbox: email kept (see /dev/mailbox)");
                Ok(())
            }
        }
    }
}

impl Mailer {
    /// Sends `email` for a sender that retries: `Ok(true)` sent; `Ok(false)` refused for good by
    /// the server (logged: retrying cannot help, so the caller moves on); `Err` the server is
    /// unavailable (the caller tries again later).
    pub async fn deliver(&self, email: &Email, what: &str) -> Result<bool, String> {
        match self.send(email).await {
            Ok(()) => Ok(true),
            Err(SendError::Permanent(why)) => {
                tracing::error!(%why, to = %email.to, "the {what} cannot be delivered; skipping it");
                Ok(false)
            }
            Err(SendError::Transient(why)) => Err(why),
        }
    }
}

fn build(from: &Mailbox, email: &Email) -> Result<Message, SendError> {
    let to: Mailbox =
        email.to.parse().map_err(|e| SendError::Permanent(format!("bad recipient: {e}")))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&email.subject)
        .message_id(Some(email.message_id.clone()))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder().header(ContentType::TEXT_PLAIN).body(email.text.clone()),
                )
                .singlepart(
                    SinglePart::builder().header(ContentType::TEXT_HTML).body(email.html.clone()),
                ),
        )
        .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
}

/// Text made safe for HTML, in element content and in double-quoted attributes alike.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
