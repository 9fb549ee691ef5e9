//! Soho CRM: the API client, the outbox of calls owed to it, the workers that make them in
//! batches within the org's limits, and the operator's view of the backlog.

mod batch;
pub mod client;
pub mod limits;
pub mod outbox;
pub mod worker;

use secrecy::SecretString;

use crate::config::Settings;
use client::{CrmAuth, CrmClient, OAuth};

/// The client for the configured CRM, or for the in-process simulator at `simulator_url`.
pub fn client(settings: &Settings, simulator_url: Option<&str>) -> CrmClient {
    match (&settings.soho_api_base, simulator_url) {
        (Some(api_base), _) => {
            let auth = match (&settings.soho_oauth, &settings.soho_api_key) {
                (Some(oauth), _) => CrmAuth::OAuth(OAuth {
                    accounts_url: settings.soho_accounts_url.clone().unwrap_or_default(),
                    client_id: oauth.client_id.clone(),
                    client_secret: oauth.client_secret.clone(),
                    refresh_token: oauth.refresh_token.clone(),
                }),
                (None, Some(key)) => CrmAuth::Static(key.clone()),
                (None, None) => CrmAuth::Static(SecretString::from(String::new())),
            };
            CrmClient::new(api_base, auth)
        }
        (None, sim) => {
            let sim = sim.unwrap_or("http://127.0.0.1:9090");
            CrmClient::new(
                &format!("{sim}/crm/v8"),
                CrmAuth::OAuth(OAuth {
                    accounts_url: sim.to_string(),
                    client_id: "portal-dev".into(),
                    client_secret: SecretString::from("portal-dev".to_string()),
                    refresh_token: SecretString::from("portal-dev".to_string()),
                }),
            )
        }
    }
}
