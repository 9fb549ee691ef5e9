//! The portal's settings: one typed struct, read once at start-up from the environment (and an
//! optional `.env`). A missing or malformed setting stops start-up with a message naming it;
//! secrets are wrapped so that they never reach a log line or a `Debug` print.
//!
//! Every setting is documented in `.env.example`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("setting {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
    #[error("setting {name} is required when {because}")]
    Missing { name: &'static str, because: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Soho CRM OAuth (refresh-token flow) settings, all or none.
#[derive(Debug, Clone)]
pub struct SohoOAuth {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen for HTTP.
    pub listen_addr: SocketAddr,
    /// The address people open, used in invitation links.
    pub public_base_url: String,
    /// An external PostgreSQL; `None` runs the embedded one under `data_dir`.
    pub database_url: Option<SecretString>,
    pub data_dir: PathBuf,
    /// `None` in dev: a random secret is kept under `data_dir` so sessions survive restarts.
    pub jwt_secret: Option<SecretString>,
    pub jwt_ttl_seconds: u64,
    pub soho_api_base: Option<String>,
    pub soho_accounts_url: Option<String>,
    pub soho_oauth: Option<SohoOAuth>,
    pub soho_api_key: Option<SecretString>,
    pub soho_webhook_secret: Option<SecretString>,
    pub smtp_url: Option<SecretString>,
    /// How long the SMTP server may take to answer before a send counts as failed (and is retried).
    pub smtp_timeout: std::time::Duration,
    /// How often a user who chose the daily digest gets it (a day; shorter in tests).
    pub digest_interval: std::time::Duration,
    pub email_api_key: Option<SecretString>,
    pub mail_from: String,
    pub log_format: LogFormat,
    /// Dev conveniences (mailbox page, simulator links): on when nothing external is configured.
    pub dev_mode: bool,
    /// Whether partners' users may set `converted` themselves; off, only Soho CRM does (it
    /// drives commission: contract 3).
    pub partners_may_convert: bool,
    /// Login and registration attempts allowed a minute per client address (all attempts: each
    /// costs an Argon2 hash).
    pub auth_limit_per_address: u32,
    /// Failed logins allowed a minute for one email from one client address.
    pub auth_limit_per_email: u32,
    /// Failed logins allowed a minute for one email from all addresses together: high, so that
    /// one attacker cannot reach it and lock the real user out.
    pub auth_failure_limit_per_email: u32,
    /// Invitations an admin may send an hour, and that one recipient may receive an hour.
    pub invite_limit_per_admin: u32,
    pub invite_limit_per_recipient: u32,
    /// Leads one user, and one partner with all its users, may submit a minute.
    pub lead_limit_per_user: u32,
    /// Requests a minute per API key, then 429.
    pub api_key_limit: u32,
    /// The waits between attempts of an outbound webhook (Standard Webhooks: 5 s, 5 min, 30 min,
    /// 2 h, 5 h, 10 h, 10 h); after the last, the delivery has failed.
    pub webhook_retry_schedule: Vec<std::time::Duration>,
    /// How long a partner's endpoint has to answer a delivery.
    pub webhook_timeout: std::time::Duration,
    pub lead_limit_per_partner: u32,
    /// How long a client may take to send a request's headers (also the idle keep-alive time).
    pub http_header_timeout: std::time::Duration,
    /// How long a request may take, body included, before it is answered 408.
    pub http_request_timeout: std::time::Duration,
    /// Connections open at once; past it a new one is answered 503 and closed.
    pub http_max_connections: usize,
    /// Public-form submissions allowed a minute per client address.
    pub public_form_limit_per_address: u32,
    /// The org's cap on Soho CRM calls at once, across every server on this database (Zoho: 5
    /// on Free to 25 on Ultimate).
    pub soho_concurrency: usize,
    /// The org's Soho CRM API credits per rolling 24 hours (one per call of up to 100 records;
    /// Zoho Enterprise: 50,000 + 1,000 per user license).
    pub soho_daily_credits: u64,
    /// Where the in-process Soho CRM simulator listens (when `SOHO_API_BASE` is not set).
    pub simulator_listen_addr: Option<SocketAddr>,
    /// The built browser portal (`web/dist`).
    pub web_dir: PathBuf,
    /// Soho CRM `Lead_Status` values ↔ portal statuses.
    pub status_mapping: crate::leads::status_mapping::StatusMapping,
}

impl Settings {
    /// Reads the settings from the process environment (after loading `.env`, if any).
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is not.
        if let Err(error) = dotenvy::dotenv() {
            if !error.not_found() {
                return Err(ConfigError::Malformed { name: ".env", reason: error.to_string() });
            }
        }
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secret = |name: &str| lookup(name).map(SecretString::from);
        let listen_addr = match (lookup("LISTEN_ADDR"), lookup("PORT")) {
            (Some(addr), _) => parse("LISTEN_ADDR", &addr)?,
            // Container platforms (Heroku and the like) hand out a port this way.
            (None, Some(port)) => SocketAddr::from(([0, 0, 0, 0], parse::<u16>("PORT", &port)?)),
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let public_base_url = lookup("PUBLIC_BASE_URL")
            .unwrap_or_else(|| format!("http://{}", display_host(listen_addr)))
            .trim_end_matches('/')
            .to_string();
        if !public_base_url.starts_with("http://") && !public_base_url.starts_with("https://") {
            return Err(ConfigError::Malformed {
                name: "PUBLIC_BASE_URL",
                reason: "must start with http:// or https://".into(),
            });
        }
        let database_url = secret("DB_URL").or_else(|| secret("DATABASE_URL"));
        let soho_oauth = match (
            lookup("SOHO_CLIENT_ID"),
            secret("SOHO_CLIENT_SECRET"),
            secret("SOHO_REFRESH_TOKEN"),
        ) {
            (None, None, None) => None,
            (Some(client_id), Some(client_secret), Some(refresh_token)) => {
                Some(SohoOAuth { client_id, client_secret, refresh_token })
            }
            (None, ..) => {
                return Err(missing("SOHO_CLIENT_ID", "other SOHO OAuth settings are set"))
            }
            (_, None, _) => {
                return Err(missing("SOHO_CLIENT_SECRET", "SOHO_CLIENT_ID is set"));
            }
            (_, _, None) => {
                return Err(missing("SOHO_REFRESH_TOKEN", "SOHO_CLIENT_ID is set"));
            }
        };
        let soho_api_base = lookup("SOHO_API_BASE");
        let soho_api_key = secret("SOHO_API_KEY");
        if soho_api_base.is_some() && soho_oauth.is_none() && soho_api_key.is_none() {
            return Err(missing(
                "SOHO_API_KEY",
                "SOHO_API_BASE is set without SOHO OAuth settings",
            ));
        }
        if soho_oauth.is_some() && lookup("SOHO_ACCOUNTS_URL").is_none() {
            return Err(missing("SOHO_ACCOUNTS_URL", "SOHO OAuth settings are set"));
        }
        let soho_webhook_secret = secret("SOHO_WEBHOOK_SECRET");
        if let Some(value) = lookup("SOHO_WEBHOOK_SECRET") {
            if !value.starts_with("whsec_") {
                return Err(ConfigError::Malformed {
                    name: "SOHO_WEBHOOK_SECRET",
                    reason: "must start with whsec_ followed by a base64 key".into(),
                });
            }
        }
        let log_format = match lookup("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Malformed {
                    name: "LOG_FORMAT",
                    reason: format!("{other:?} is neither text nor json"),
                })
            }
        };
        let smtp_url = secret("SMTP_URL");
        let dev_mode = match lookup("DEV_MODE") {
            Some(v) => parse_bool("DEV_MODE", &v)?,
            None => database_url.is_none() && soho_api_base.is_none() && smtp_url.is_none(),
        };
        let partners_may_convert = match lookup("PARTNERS_MAY_CONVERT") {
            Some(v) => parse_bool("PARTNERS_MAY_CONVERT", &v)?,
            None => false,
        };
        Ok(Self {
            partners_may_convert,
            listen_addr,
            public_base_url,
            database_url,
            data_dir: PathBuf::from(lookup("DATA_DIR").unwrap_or_else(|| ".data".into())),
            jwt_secret: secret("JWT_SECRET"),
            jwt_ttl_seconds: lookup("JWT_TTL_SECONDS")
                .map(|v| parse("JWT_TTL_SECONDS", &v))
                .transpose()?
                .unwrap_or(900),
            soho_api_base,
            soho_accounts_url: lookup("SOHO_ACCOUNTS_URL"),
            soho_oauth,
            soho_api_key,
            soho_webhook_secret,
            smtp_url,
            smtp_timeout: seconds(&lookup, "SMTP_TIMEOUT_SECONDS", 15)?,
            digest_interval: seconds(&lookup, "DIGEST_INTERVAL_SECONDS", 86_400)?,
            email_api_key: secret("EMAIL_API_KEY"),
            mail_from: lookup("MAIL_FROM")
                .unwrap_or_else(|| "Soho Partner Portal <portal@localhost>".into()),
            log_format,
            dev_mode,
            auth_limit_per_address: number(&lookup, "AUTH_RATE_LIMIT_PER_ADDRESS", 30)?,
            auth_limit_per_email: number(&lookup, "AUTH_RATE_LIMIT_PER_EMAIL", 10)?,
            auth_failure_limit_per_email: number(&lookup, "AUTH_FAILURE_LIMIT_PER_EMAIL", 100)?,
            invite_limit_per_admin: number(&lookup, "INVITE_LIMIT_PER_ADMIN", 30)?,
            invite_limit_per_recipient: number(&lookup, "INVITE_LIMIT_PER_RECIPIENT", 3)?,
            lead_limit_per_user: number(&lookup, "LEAD_LIMIT_PER_USER", 120)?,
            api_key_limit: number(&lookup, "API_KEY_RATE_LIMIT", 600)?,
            webhook_retry_schedule: retry_schedule(&lookup)?,
            webhook_timeout: seconds(&lookup, "WEBHOOK_TIMEOUT_SECONDS", 15)?,
            lead_limit_per_partner: number(&lookup, "LEAD_LIMIT_PER_PARTNER", 600)?,
            http_header_timeout: seconds(&lookup, "HTTP_HEADER_TIMEOUT_SECONDS", 10)?,
            http_request_timeout: seconds(&lookup, "HTTP_REQUEST_TIMEOUT_SECONDS", 30)?,
            http_max_connections: number(&lookup, "HTTP_MAX_CONNECTIONS", 8192)? as usize,
            public_form_limit_per_address: number(
                &lookup,
                "PUBLIC_FORM_RATE_LIMIT_PER_ADDRESS",
                10,
            )?,
            soho_concurrency: number(&lookup, "SOHO_CONCURRENCY", 10)?.max(1) as usize,
            soho_daily_credits: number(&lookup, "SOHO_DAILY_CREDITS", 60_000)?.into(),
            web_dir: PathBuf::from(
                lookup("WEB_DIR").unwrap_or_else(|| {
                    concat!(env!("CARGO_MANIFEST_DIR"), "/web/dist").to_string()
                }),
            ),
            simulator_listen_addr: lookup("SIM_LISTEN_ADDR")
                .map(|v| parse("SIM_LISTEN_ADDR", &v))
                .transpose()?,
            status_mapping: match lookup("STATUS_MAPPING") {
                None => Default::default(),
                Some(text) => crate::leads::status_mapping::StatusMapping::parse(&text)
                    .map_err(|reason| ConfigError::Malformed { name: "STATUS_MAPPING", reason })?,
            },
        })
    }
}

impl Settings {
    /// What serving needs: outside dev mode, the real outside world and never a stand-in (no
    /// simulator, whose operator API is open, and no dev mailbox, which would keep invitation
    /// links where only logs and the database see them). Checked when the server starts, not
    /// when settings load: the command line's offline commands (replay, audit) need none of it.
    pub fn check_for_serving(&self) -> Result<(), ConfigError> {
        if self.dev_mode {
            if let Some(address) = self.simulator_listen_addr {
                if !address.ip().is_loopback() {
                    return Err(ConfigError::Malformed {
                        name: "SIM_LISTEN_ADDR",
                        reason: "the simulator listens on loopback only (127.0.0.1 or ::1)".into(),
                    });
                }
            }
            return Ok(());
        }
        let because = "DEV_MODE is off";
        let required = [
            ("JWT_SECRET", self.jwt_secret.is_some()),
            ("SMTP_URL", self.smtp_url.is_some()),
            ("SOHO_API_BASE", self.soho_api_base.is_some()),
            ("SOHO_WEBHOOK_SECRET", self.soho_webhook_secret.is_some()),
        ];
        match required.into_iter().find(|(_, set)| !set) {
            Some((name, _)) => Err(ConfigError::Missing { name, because }),
            None => Ok(()),
        }
    }
}

/// `WEBHOOK_RETRY_SCHEDULE`: seconds between attempts, comma-separated.
fn retry_schedule(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<std::time::Duration>, ConfigError> {
    let text = lookup("WEBHOOK_RETRY_SCHEDULE")
        .unwrap_or_else(|| "5,300,1800,7200,18000,36000,36000".to_string());
    text.split(',')
        .map(|s| {
            parse::<u64>("WEBHOOK_RETRY_SCHEDULE", s.trim()).map(std::time::Duration::from_secs)
        })
        .collect()
}

fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u32,
) -> Result<u32, ConfigError> {
    lookup(name).map(|v| parse(name, &v)).transpose().map(|v| v.unwrap_or(default))
}

fn seconds(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u32,
) -> Result<std::time::Duration, ConfigError> {
    let seconds = number(lookup, name, default)?;
    if seconds == 0 {
        return Err(ConfigError::Malformed { name, reason: "must be at least 1".into() });
    }
    Ok(std::time::Duration::from_secs(seconds.into()))
}

fn missing(name: &'static str, because: &'static str) -> ConfigError {
    ConfigError::Missing { name, because }
}

fn parse<T: FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError::Malformed { name, reason: e.to_string() })
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => {
            Err(ConfigError::Malformed { name, reason: format!("{other:?} is not a boolean") })
        }
    }
}

/// `0.0.0.0` is where we listen, not an address a browser can open.
fn display_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn nothing_configured_means_the_embedded_dev_setup() {
        let s = settings(&[]).unwrap();
        assert!(s.dev_mode);
        assert!(s.database_url.is_none());
        assert_eq!(s.public_base_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn database_url_is_accepted_as_well_as_db_url() {
        let s = settings(&[("DATABASE_URL", "postgres://x/y")]).unwrap();
        assert_eq!(s.database_url.unwrap().expose_secret(), "postgres://x/y");
        assert!(!s.dev_mode);
    }

    #[test]
    fn a_malformed_setting_is_named() {
        let error = settings(&[("LISTEN_ADDR", "nope")]).unwrap_err().to_string();
        assert!(error.contains("LISTEN_ADDR"), "{error}");
        let error = settings(&[("SOHO_WEBHOOK_SECRET", "abc")]).unwrap_err().to_string();
        assert!(error.contains("SOHO_WEBHOOK_SECRET"), "{error}");
        let error = settings(&[("SOHO_CLIENT_ID", "id")]).unwrap_err().to_string();
        assert!(error.contains("SOHO_CLIENT_SECRET"), "{error}");
    }

    #[test]
    fn serving_outside_dev_mode_needs_the_real_outside_world() {
        let production = [
            ("DEV_MODE", "false"),
            ("DB_URL", "postgres://x/y"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("SMTP_URL", "smtp://mail.example.com:587"),
            ("SOHO_API_BASE", "https://crm.example.com/crm/v8"),
            ("SOHO_API_KEY", "key"),
            ("SOHO_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="),
        ];
        settings(&production).unwrap().check_for_serving().unwrap();
        for left_out in ["JWT_SECRET", "SMTP_URL", "SOHO_API_BASE", "SOHO_WEBHOOK_SECRET"] {
            let vars: Vec<_> = production.iter().copied().filter(|(k, _)| *k != left_out).collect();
            let error = settings(&vars).unwrap().check_for_serving().unwrap_err().to_string();
            assert!(error.contains(left_out), "{left_out}: {error}");
        }
        let exposed = settings(&[("SIM_LISTEN_ADDR", "0.0.0.0:8081")]).unwrap();
        let error = exposed.check_for_serving().unwrap_err().to_string();
        assert!(error.contains("SIM_LISTEN_ADDR"), "{error}");
        settings(&[]).unwrap().check_for_serving().unwrap();
    }

    #[test]
    fn secrets_never_print() {
        let s = settings(&[("JWT_SECRET", "hunter2-hunter2"), ("DB_URL", "postgres://u:pw@h/d")])
            .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("pw@"), "{printed}");
    }
}
