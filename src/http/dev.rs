//! Dev-mode pages (only routed when `DEV_MODE` is on): the mailbox, where emails go when no SMTP
//! server is configured, so a person trying the portal can open an invitation.

use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::problem::ApiError;
use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dev/mailbox", get(mailbox_page))
        .route("/dev/mailbox.json", get(mailbox_json))
        .route("/dev/info", get(info))
}

/// Where the dev conveniences are, for the browser portal's dev links.
async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "mailboxUrl": "/dev/mailbox",
        "simulatorUrl": state.simulator_url,
    }))
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DevEmail {
    pub message_id: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub sent_at: DateTime<Utc>,
}

async fn emails(state: &AppState) -> Result<Vec<DevEmail>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT message_id, recipient, subject, text_body, sent_at FROM dev_mailbox ORDER BY sent_at DESC LIMIT 100",
    )
    .fetch_all(&state.pool)
    .await?)
}

async fn mailbox_json(State(state): State<AppState>) -> Result<Json<Vec<DevEmail>>, ApiError> {
    emails(&state).await.map(Json)
}

async fn mailbox_page(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Dev mailbox</title>\
         <style>body{font-family:sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}\
         article{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}\
         pre{white-space:pre-wrap}</style></head><body><main><h1>Dev mailbox</h1>\
         <p>Emails the portal would have sent (no SMTP server is configured). Newest first.</p>",
    );
    let emails = emails(&state).await?;
    if emails.is_empty() {
        page.push_str("<p>No email yet. Approve a partner in the Soho CRM simulator to get an invitation.</p>");
    }
    for email in emails {
        let body = linkify(&escape(&email.text_body));
        page.push_str(&format!(
            "<article><h2>{}</h2><p>To: {} · {}</p><pre>{}</pre></article>",
            escape(&email.subject),
            escape(&email.recipient),
            email.sent_at.format("%Y-%m-%d %H:%M:%S UTC"),
            body
        ));
    }
    page.push_str("</main></body></html>");
    Ok(Html(page))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Makes the links in an escaped text clickable.
fn linkify(escaped: &str) -> String {
    escaped
        .split_inclusive(char::is_whitespace)
        .map(|word| {
            let trimmed = word.trim_end();
            if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
                format!("<a href=\"{trimmed}\">{trimmed}</a>{}", &word[trimmed.len()..])
            } else {
                word.to_string()
            }
        })
        .collect()
}
