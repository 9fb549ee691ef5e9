//! The Soho CRM client (Zoho CRM's API shape, CONTRACT.md 4).
//!
//! One access token is shared by every caller and refreshed a few minutes before it expires, by
//! one caller at a time, and never more than 10 times in 10 minutes (Zoho's limit). Every call
//! has a timeout. Failures come back classified: retry later (429, 5xx, timeouts, refused or
//! dropped connections; with the server's `Retry-After` when it gave one) or permanent (other
//! 4xx, with the CRM's code and message). A 401 `INVALID_TOKEN` refreshes the token once and
//! retries.

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

    /// Creates or updates the lead whose `Portal_Lead_Id` is in `record`; returns the CRM's id.
    #[tracing::instrument(skip_all, err)]
    pub async fn upsert_lead(&self, record: Value) -> Result<String, CrmError> {
        let body =
            json!({"data": [record], "duplicate_check_fields": ["Portal_Lead_Id"], "trigger": []});
        let answer = self.call(reqwest::Method::POST, "/Leads/upsert", &body).await?;
        answer["data"][0]["details"]["id"].as_str().map(str::to_string).ok_or_else(|| {
            CrmError::Retry { reason: "the upsert answer has no record id".into(), after: None }
        })
    }

    /// Sets a lead's `Lead_Status`, without triggering the CRM's workflows (so no webhook echo).
    #[tracing::instrument(skip_all, fields(soho_lead_id), err)]
    pub async fn update_status(
        &self,
        soho_lead_id: &str,
        crm_status: &str,
    ) -> Result<(), CrmError> {
        let body = json!({"data": [{"Lead_Status": crm_status}], "trigger": []});
        self.call(reqwest::Method::PUT, &format!("/Leads/{soho_lead_id}"), &body).await.map(|_| ())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
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
            let code = answer["code"]
                .as_str()
                .or(answer["data"][0]["code"].as_str())
                .unwrap_or("")
                .to_string();
            let message = answer["message"]
                .as_str()
                .or(answer["data"][0]["message"].as_str())
                .unwrap_or("")
                .to_string();
            if status == reqwest::StatusCode::UNAUTHORIZED && code == "INVALID_TOKEN" && !refreshed
            {
                refreshed = true;
                self.invalidate(&token).await;
                continue;
            }
            if status.is_success() {
                if answer["data"][0]["status"].as_str() == Some("error") {
                    return Err(CrmError::Permanent { code, message });
                }
                return Ok(answer);
            }
            // LIMIT_REACHED (429 or 403): the org's API budget is spent for now; it comes back.
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
                || status == reqwest::StatusCode::UNAUTHORIZED
                || code == "LIMIT_REACHED"
            {
                return Err(CrmError::Retry {
                    reason: format!("{status} {code}").trim().to_string(),
                    after: retry_after,
                });
            }
            let code = if code.is_empty() { status.as_u16().to_string() } else { code };
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
