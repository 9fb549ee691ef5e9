//! Rate limits: on login and registration attempts per client address, on failed logins per
//! (email, address) and per email, on invitations and on lead submissions.
//!
//! Every limiter is keyed by a fixed-size keyed hash of what identifies the client (never the
//! value itself), and forgets keys once they have been quiet long enough, so the limiters' memory
//! stays bounded whatever clients send. IPv6 clients are counted by their /64, which one
//! customer usually holds whole.
//!
//! Failed logins are counted apart from attempts, and only failures: ten wrong guesses from one
//! address block that address for that email, not the real user elsewhere; the per-email limit
//! across all addresses is set high enough that one attacker cannot reach it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Refused for now; try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests; retry after {retry_after_seconds} s")]
pub struct RateLimited {
    pub retry_after_seconds: u64,
}

/// How many keys a limiter keeps before it forgets the quiet ones.
const PRUNE_PAST: usize = 10_000;

/// The address a limit counts: IPv4 whole, IPv6 by its /64.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

/// An email as limits count it: trimmed and lower-cased.
fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A GCRA limiter (governor) over keyed hashes.
pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<u64>,
    hasher: RandomState,
}

impl Limiter {
    /// `per_minute` requests a minute, in a burst of as many.
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with(Quota::per_minute(at_least_one(per_minute)))
    }

    /// `per_hour` requests an hour, in a burst of as many.
    pub fn per_hour(per_hour: u32) -> Self {
        Self::with(Quota::per_hour(at_least_one(per_hour)))
    }

    fn with(quota: Quota) -> Self {
        Self { limiter: RateLimiter::keyed(quota), hasher: RandomState::new() }
    }

    pub fn check(&self, key: impl Hash) -> Result<(), RateLimited> {
        if self.limiter.len() > PRUNE_PAST {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&self.hasher.hash_one(key)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            RateLimited { retry_after_seconds: wait.as_secs() + 1 }
        })
    }
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

/// Failures in fixed one-minute windows, per keyed hash: checked before an attempt, counted
/// only when the attempt fails (governor's limiters count every check).
pub struct FailureLimit {
    limit: u32,
    window: Duration,
    hasher: RandomState,
    windows: Mutex<HashMap<u64, (Instant, u32)>>,
}

impl FailureLimit {
    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            window: Duration::from_secs(60),
            hasher: RandomState::new(),
            windows: Mutex::default(),
        }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, u32)>> {
        // A panic while holding the lock cannot leave a window half-written: use it as it is.
        self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refused while `key` has reached the limit within the current window.
    pub fn check(&self, key: impl Hash) -> Result<(), RateLimited> {
        let now = Instant::now();
        match self.windows().get(&self.hasher.hash_one(key)) {
            Some((started, failures)) if *failures >= self.limit => {
                let ends = *started + self.window;
                match ends.checked_duration_since(now) {
                    Some(left) => Err(RateLimited { retry_after_seconds: left.as_secs() + 1 }),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, key: impl Hash) {
        let now = Instant::now();
        let window = self.window;
        let mut windows = self.windows();
        if windows.len() > PRUNE_PAST {
            windows.retain(|_, (started, _)| now.duration_since(*started) < window);
        }
        let entry = windows.entry(self.hasher.hash_one(key)).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    pub fn forget(&self, key: impl Hash) {
        self.windows().remove(&self.hasher.hash_one(key));
    }
}

/// The limits on logging in and registering.
pub struct AuthLimits {
    /// Every attempt, per address: each one costs an Argon2 hash.
    attempts_by_address: Limiter,
    /// Failed logins per (email, address).
    failures_by_email_and_address: FailureLimit,
    /// Failed logins per email, from every address together.
    failures_by_email: FailureLimit,
    /// Password reset links asked for per email: each sends an email, and a stranger must not
    /// be able to flood someone's mailbox.
    resets_by_email: Limiter,
}

impl AuthLimits {
    pub fn new(
        per_address: u32,
        failures_per_email_and_address: u32,
        failures_per_email: u32,
    ) -> Self {
        Self {
            attempts_by_address: Limiter::per_minute(per_address),
            failures_by_email_and_address: FailureLimit::per_minute(failures_per_email_and_address),
            failures_by_email: FailureLimit::per_minute(failures_per_email),
            resets_by_email: Limiter::per_hour(5),
        }
    }

    /// An attempt from `address` (login or registration).
    pub fn attempt(&self, address: IpAddr) -> Result<(), RateLimited> {
        self.attempts_by_address.check(client_key(address))
    }

    /// Whether a login for `email` from `address` may be tried now.
    pub fn may_try(&self, address: IpAddr, email: &str) -> Result<(), RateLimited> {
        let email = email_key(email);
        self.failures_by_email_and_address.check((&email, client_key(address)))?;
        self.failures_by_email.check(&email)
    }

    pub fn failed(&self, address: IpAddr, email: &str) {
        let email = email_key(email);
        self.failures_by_email_and_address.record_failure((&email, client_key(address)));
        self.failures_by_email.record_failure(&email);
    }

    /// A password reset link asked for `email` (whether or not it is anyone's).
    pub fn reset_asked(&self, email: &str) -> Result<(), RateLimited> {
        self.resets_by_email.check(email_key(email))
    }

    /// A successful login clears its address's failures for that email.
    pub fn succeeded(&self, address: IpAddr, email: &str) {
        self.failures_by_email_and_address.forget((&email_key(email), client_key(address)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_from_one_address_do_not_block_another() {
        let limits = AuthLimits::new(1000, 3, 100);
        let attacker: IpAddr = "198.51.100.7".parse().unwrap();
        let victim: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..3 {
            limits.may_try(attacker, "Ada@example.com").unwrap();
            limits.failed(attacker, "ada@example.com ");
        }
        assert!(limits.may_try(attacker, "ada@example.com").is_err());
        assert!(limits.may_try(victim, "ada@example.com").is_ok());
        assert!(limits.may_try(attacker, "bob@example.com").is_ok());
    }

    #[test]
    fn the_per_email_limit_counts_every_address() {
        let limits = AuthLimits::new(1000, 100, 4);
        for n in 0..4 {
            let address = IpAddr::from([10, 0, 0, n]);
            limits.failed(address, "ada@example.com");
        }
        let refused = limits.may_try(IpAddr::from([10, 0, 0, 99]), "ada@example.com");
        assert!(refused.unwrap_err().retry_after_seconds <= 61);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn quiet_failure_windows_are_forgotten() {
        let mut failures = FailureLimit::per_minute(1);
        failures.window = Duration::from_millis(20);
        for n in 0..=PRUNE_PAST {
            failures.record_failure(n);
        }
        assert_eq!(failures.windows().len(), PRUNE_PAST + 1);
        std::thread::sleep(Duration::from_millis(30));
        failures.record_failure("after");
        assert_eq!(failures.windows().len(), 1);
    }
}
