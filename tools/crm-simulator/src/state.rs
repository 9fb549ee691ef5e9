//! The simulator's state: partners, leads, tokens, faults, and a log of API calls for tests.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::SimConfig;

/// Faults applied to the CRM API calls (not the operator's).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added to every call.
    pub latency_ms: u64,
    /// Share of calls (0 to 1) answered 500.
    pub error_rate: f64,
    /// The next this-many calls are answered 429 with `Retry-After`.
    pub rate_limit_burst: u32,
    pub retry_after_seconds: u64,
    /// Share of calls that are carried out and then never answered (the client times out).
    pub timeout_rate: f64,
    /// Share of calls whose connection is dropped before an answer.
    pub drop_rate: f64,
    /// The next this-many calls are carried out and never answered (whatever the dice say).
    pub hang_next: u32,
    /// The next this-many calls are carried out and their connection dropped.
    pub drop_next: u32,
    /// For this many seconds from now, every call is answered 503.
    pub outage_seconds: u64,
    /// Revoke every token issued so far (calls answer 401 INVALID_TOKEN until refreshed).
    pub expire_tokens: bool,
    /// Refuse, for good (`INVALID_DATA` for that record), leads whose last name starts with
    /// this: a permanent failure of some records of a batch.
    pub reject_last_name: Option<String>,
    /// The token endpoint refuses the portal's client (400 `invalid_client`).
    pub refuse_tokens: bool,
    /// The org's API budget is spent: every call is 403 `LIMIT_REACHED`.
    pub limit_reached: bool,
    /// Refuse, for good (400 INVALID_DATA), status updates to this `Lead_Status`.
    pub reject_status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimLead {
    pub id: String,
    /// The record's fields as the portal sent them (`Last_Name`, `Portal_Lead_Id`, ...).
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub lead_status: String,
    /// How many upserts inserted it (must stay 1) and updated it.
    pub inserts: u32,
    pub updates: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimPartner {
    pub soho_partner_id: String,
    pub name: String,
    pub email: String,
    pub approved: bool,
    pub tier: Option<String>,
    pub commission_rate: Option<f64>,
}

/// The org's limits, as Zoho meters them (CONTRACT.md 4). The defaults are an Enterprise org of
/// 10 users: 20 calls at once, 50,000 + 10 × 1,000 credits a day.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Limits {
    /// Calls in flight at once; one more is answered 429 `TOO_MANY_REQUESTS`, no `Retry-After`.
    pub concurrency: u32,
    /// Credits per rolling 24 hours, one per call; past them, 429 `LIMIT_REACHED`.
    pub daily_credits: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { concurrency: 20, daily_credits: 60_000 }
    }
}

/// One API call as the simulator saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The records it carried, in order, each with the code it was answered.
    pub records: Vec<CallRecord>,
    /// The answer's status, or 0 for a dropped connection.
    pub status: u16,
    pub fault: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub portal_lead_id: Option<String>,
    pub lead_status: Option<String>,
    /// `SUCCESS`, `INVALID_DATA`, ...; none when the call as a whole was not carried out.
    pub code: Option<String>,
}

#[derive(Default)]
pub struct State {
    pub leads: HashMap<String, SimLead>,
    pub by_portal_id: HashMap<String, String>,
    pub partners: Vec<SimPartner>,
    pub tokens: HashMap<String, Instant>,
    pub faults: Faults,
    pub outage_until: Option<Instant>,
    pub calls: Vec<Call>,
    pub next_id: u64,
    pub refreshes: u32,
    /// When each token was issued: Zoho allows 10 in any 10 minutes.
    pub refreshed_at: Vec<Instant>,
    pub refreshes_in_flight: u32,
    pub most_refreshes_in_flight: u32,
    pub webhooks_sent: u32,
    pub webhooks_failed: u32,
    pub limits: Limits,
    pub calls_in_flight: u32,
    pub most_calls_in_flight: u32,
    /// When each credit of the last 24 hours was spent.
    pub credits_spent: VecDeque<Instant>,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl State {
    pub fn faults_reject(&self, last_name: &str) -> bool {
        self.faults.reject_last_name.as_deref().is_some_and(|prefix| last_name.starts_with(prefix))
    }

    /// Credits spent in the last 24 hours.
    pub fn credits_used(&mut self) -> u64 {
        while self.credits_spent.front().is_some_and(|at| at.elapsed() > DAY) {
            self.credits_spent.pop_front();
        }
        self.credits_spent.len() as u64
    }

    /// Spends one credit, if the day's budget has one left.
    pub fn spend_credit(&mut self) -> bool {
        if self.credits_used() >= self.limits.daily_credits {
            return false;
        }
        self.credits_spent.push_back(Instant::now());
        true
    }
}

pub struct Simulator {
    pub config: SimConfig,
    pub state: Mutex<State>,
    pub http: reqwest::Client,
    dice: Mutex<rand::rngs::StdRng>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        crate::install_crypto_provider();
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        let dice = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(config.seed);
        Self {
            config,
            state: Mutex::new(State { next_id: 5725767000000611001, ..Default::default() }),
            http,
            dice: Mutex::new(dice),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn issue_token(&self) -> (String, u64) {
        let token = format!("1000.{}", uuid::Uuid::new_v4().simple());
        let ttl = self.config.token_ttl_seconds;
        let mut state = self.lock();
        state.tokens.insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
        state.refreshes += 1;
        state.refreshed_at.push(Instant::now());
        (token, ttl)
    }

    /// The most tokens issued within any 10 minutes.
    pub fn most_refreshes_in_ten_minutes(&self) -> usize {
        let state = self.lock();
        let times = &state.refreshed_at;
        (0..times.len())
            .map(|i| {
                times[i..].iter().take_while(|t| t.duration_since(times[i]).as_secs() < 600).count()
            })
            .max()
            .unwrap_or(0)
    }

    /// A roll of the fault dice, in [0, 1).
    pub fn roll(&self) -> f64 {
        use rand::Rng;
        self.dice.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).random()
    }

    pub fn token_valid(&self, token: &str) -> bool {
        self.lock().tokens.get(token).is_some_and(|expires| *expires > Instant::now())
    }
}
