//! Rate limits on login and registration, per client address and per email, so that neither one
//! address nor a spread of addresses can guess one account's password quickly.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::http::problem::ApiError;

pub struct Limiter<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    /// `per_minute` requests a minute, in a burst of as many.
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self { limiter: RateLimiter::keyed(Quota::per_minute(n)) }
    }

    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        // Forget keys that have been quiet long enough to be full again, so memory stays bounded.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::TooManyRequests { retry_after_seconds: wait.as_secs() + 1 }
        })
    }
}

pub struct AuthLimits {
    pub by_address: Limiter<IpAddr>,
    pub by_email: Limiter<String>,
}

impl AuthLimits {
    pub fn new(per_address: u32, per_email: u32) -> Self {
        Self {
            by_address: Limiter::per_minute(per_address),
            by_email: Limiter::per_minute(per_email),
        }
    }

    pub fn check(&self, address: IpAddr, email: Option<&str>) -> Result<(), ApiError> {
        self.by_address.check(&address)?;
        if let Some(email) = email {
            self.by_email.check(&email.trim().to_lowercase())?;
        }
        Ok(())
    }
}
