//! The Soho CRM client (Zoho CRM's API shape, CONTRACT.md 4).
//!
//! One access token is shared by every caller and refreshed a few minutes before it expires, by
//! one caller at a time, and never more than 10 times in 10 minutes (Zoho's limit). Every call
//! has a timeout. Calls carry up to 100 records and are answered record by record; a failure of
//! the call as a whole comes back classified: retry later (429, 5xx, timeouts, refused or dropped
//! connections; with the server's `Retry-After` when it gave one), credits spent
//! (`LIMIT_REACHED`), or permanent (other 4xx, with the CRM's code and message). A 401
//! `INVALID_TOKEN` refreshes the token once and retries.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::sync::{Mutex, RwLock};

const TIMEOUT: Duration = Duration::from_secs(15);
const REFRESH_AHEAD: Duration = Duration::from_secs(300);
const REFRESH_WINDOW: Duration = Duration::from_secs(600);
const REFRESHES_PER_WINDOW: usize = 10;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CrmError {
    #[error("Soho CRM is unavailable: {reason}")]
    Retry { reason: String, after: Option<Duration> },
    /// The org's API credits are spent (`LIMIT_REACHED`): no call succeeds until they return.
    #[error("Soho CRM's API credits are spent (LIMIT_REACHED)")]
    LimitReached { after: Option<Duration> },
    #[error("Soho CRM refused the call: {code}: {message}")]
    Permanent { code: String, message: String },
}

pub struct OAuth {
    pub accounts_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

pub enum CrmAuth {
    /// `SOHO_API_KEY`: a token that does not expire (setups without OAuth).
    Static(SecretString),
    OAuth(OAuth),
}

struct Token {
    value: String,
    expires_at: Instant,
}

pub struct CrmClient {
    http: reqwest::Client,
    api_base: String,
    auth: CrmAuth,
    token: RwLock<Option<Token>>,
    /// Held while refreshing, with the times of recent refreshes.
    refreshes: Mutex<VecDeque<Instant>>,
}

impl CrmClient {
    pub fn new(api_base: &str, auth: CrmAuth) -> Self {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            auth,
            token: RwLock::new(None),
            refreshes: Mutex::new(VecDeque::new()),
        }
    }

    /// Creates or updates the leads in `records` (up to 100), matched on `Portal_Lead_Id`;
    /// answers each record, in order: its CRM id, or why the CRM refused it.
    #[tracing::instrument(skip_all, fields(records = records.len()), err)]
    pub async fn upsert_leads(&self, records: Vec<Value>) -> Result<Vec<RecordAnswer>, CrmError> {
        let count = records.len();
        let body =
            json!({"data": records, "duplicate_check_fields": ["Portal_Lead_Id"], "trigger": []});
        let answer = self.call(reqwest::Method::POST, "/Leads/upsert", &body, count).await?;
        Ok(per_record(&answer, count))
    }

    /// Sets the `Lead_Status` of up to 100 leads, `(soho lead id, CRM status)`, without
    /// triggering the CRM's workflows (so no webhook echo); answers each, in order.
    #[tracing::instrument(skip_all, fields(records = updates.len()), err)]
    pub async fn update_statuses(
        &self,
        updates: &[(String, String)],
    ) -> Result<Vec<RecordAnswer>, CrmError> {
        let data: Vec<Value> =
            updates.iter().map(|(id, status)| json!({"id": id, "Lead_Status": status})).collect();
        let body = json!({"data": data, "trigger": []});
        let answer = self.call(reqwest::Method::PUT, "/Leads", &body, updates.len()).await?;
        Ok(per_record(&answer, updates.len()))
    }

    /// Makes a call carrying `records` records. Its answer is returned when the CRM carried it
    /// out, wholly or record by record (200, or 207/400 with one `data` entry per record); a
    /// failure of the call as a whole comes back as an error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        records: usize,
    ) -> Result<Value, CrmError> {
        let mut refreshed = false;
        loop {
            let token = self.access_token().await?;
            let response = self
                .http
                .request(method.clone(), format!("{}{path}", self.api_base))
                .header("authorization", format!("Zoho-oauthtoken {token}"))
                .json(body)
                .send()
                .await
                .map_err(transport)?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response.text().await.map_err(transport)?;
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = answer["code"].as_str().unwrap_or("").to_string();
            let by_record = code.is_empty()
                && answer["data"].as_array().is_some_and(|entries| entries.len() == records);
            if by_record && (status.is_success() || status == reqwest::StatusCode::BAD_REQUEST) {
                return Ok(answer);
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && code == "INVALID_TOKEN" && !refreshed
            {
                refreshed = true;
                self.invalidate(&token).await;
                continue;
            }
            // LIMIT_REACHED (429 or 403): the org's credits are spent for now; they come back.
            if code == "LIMIT_REACHED" {
                return Err(CrmError::LimitReached { after: retry_after });
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
                || status == reqwest::StatusCode::UNAUTHORIZED
                || status.is_success()
            {
                // A 2xx without an answer per record is the CRM's slip, not the leads': retry.
                return Err(CrmError::Retry {
                    reason: format!("{status} {code}").trim().to_string(),
                    after: retry_after,
                });
            }
            let code = if code.is_empty() { status.as_u16().to_string() } else { code };
            let message = answer["message"].as_str().unwrap_or("").to_string();
            return Err(CrmError::Permanent { code, message });
        }
    }

    /// Forgets `token` if it is still the current one, so the next call refreshes.
    async fn invalidate(&self, token: &str) {
        let mut current = self.token.write().await;
        if current.as_ref().is_some_and(|t| t.value == token) {
            *current = None;
        }
    }

    async fn access_token(&self) -> Result<String, CrmError> {
        let oauth = match &self.auth {
            CrmAuth::Static(key) => return Ok(key.expose_secret().to_string()),
            CrmAuth::OAuth(oauth) => oauth,
        };
        if let Some(token) = self.token.read().await.as_ref() {
            if token.expires_at > Instant::now() + REFRESH_AHEAD {
                return Ok(token.value.clone());
            }
        }
        let mut refreshes = self.refreshes.lock().await;
        // Someone else may have refreshed while we waited for the lock.
        if let Some(token) = self.token.read().await.as_ref() {
            if token.expires_at > Instant::now() + REFRESH_AHEAD {
                return Ok(token.value.clone());
            }
        }
        while refreshes.front().is_some_and(|at| at.elapsed() > REFRESH_WINDOW) {
            refreshes.pop_front();
        }
        if refreshes.len() >= REFRESHES_PER_WINDOW {
            let wait = REFRESH_WINDOW
                .saturating_sub(refreshes.front().map_or(Duration::ZERO, |at| at.elapsed()));
            return Err(CrmError::Retry {
                reason: "token refresh limit reached".into(),
                after: Some(wait),
            });
        }
        refreshes.push_back(Instant::now());
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", oauth.refresh_token.expose_secret()),
            ("client_id", oauth.client_id.as_str()),
            ("client_secret", oauth.client_secret.expose_secret()),
        ];
        let response = self
            .http
            .post(format!("{}/oauth/v2/token", oauth.accounts_url.trim_end_matches('/')))
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(transport)?;
        let (Some(value), true) = (answer["access_token"].as_str(), status.is_success()) else {
            // Not the lead's fault: a misconfigured or revoked refresh token holds every call
            // back (visibly, in `crm status`) until an operator fixes it.
            let error = answer["error"].as_str().unwrap_or("no access token");
            return Err(CrmError::Retry {
                reason: format!("token refresh refused ({status}): {error}"),
                after: None,
            });
        };
        let expires_in = answer["expires_in"].as_u64().unwrap_or(3600);
        tracing::info!(expires_in, "Soho CRM access token refreshed");
        *self.token.write().await = Some(Token {
            value: value.to_string(),
            expires_at: Instant::now() + Duration::from_secs(expires_in),
        });
        Ok(value.to_string())
    }
}

/// One record's answer in a batch call.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordAnswer {
    /// Done; the record's CRM id (empty if the answer did not name it).
    Done(String),
    /// Refused for good, with the CRM's code and its message naming the field.
    Refused { code: String, message: String },
}

/// The answers to a call's `records` records, from its `data` (checked to have one each).
fn per_record(answer: &Value, records: usize) -> Vec<RecordAnswer> {
    (0..records)
        .map(|n| {
            let entry = &answer["data"][n];
            match (entry["status"].as_str(), entry["details"]["id"].as_str()) {
                // An update's answer need not name the record; an upsert's must (checked there).
                (Some("success"), id) => RecordAnswer::Done(id.unwrap_or_default().to_string()),
                _ => {
                    let code = entry["code"].as_str().unwrap_or("UNKNOWN").to_string();
                    let mut message = entry["message"].as_str().unwrap_or("").to_string();
                    let details = &entry["details"];
                    if let Some(field) = details["api_name"].as_str().or(details["id"].as_str()) {
                        message = format!("{message} ({field})");
                    }
                    RecordAnswer::Refused { code, message }
                }
            }
        })
        .collect()
}

fn transport(error: reqwest::Error) -> CrmError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection refused"
    } else {
        "connection failed"
    };
    CrmError::Retry { reason: format!("{kind}: {error}"), after: None }
}
