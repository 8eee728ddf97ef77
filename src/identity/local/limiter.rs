//! Failed-login limits: per username and per client address, over a sliding window.
//!
//! An attempt is counted as a failure *before* the password is checked and forgiven when it
//! succeeds, so a burst of concurrent guesses cannot slip past the limit while their Argon2
//! verifications are still running. Names that never exist are limited exactly like real
//! ones, so a 429 tells nothing about which usernames exist.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Failures allowed per username within the window; the next attempt gets 429.
pub const USERNAME_FAILURE_LIMIT: usize = 10;
/// Failures allowed per client address within the window; the next attempt gets 429.
pub const ADDRESS_FAILURE_LIMIT: usize = 100;
/// The sliding window, in seconds (15 minutes).
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// Above this many tracked usernames or addresses, stale entries are swept out.
const SWEEP_ABOVE: usize = 10_000;

/// Counts failed logins in memory (per process).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    usernames: Failures,
    addresses: Failures,
}

/// Recent failure times per key, oldest first.
#[derive(Debug, Default)]
struct Failures {
    by_key: HashMap<String, VecDeque<i64>>,
    /// Sweep stale keys when this many are tracked (doubles when a sweep frees little, so
    /// sweeping stays amortised O(1) per attempt).
    sweep_at: usize,
}

/// One admitted attempt, already counted as a failure until [`LoginLimiter::succeeded`]
/// or [`LoginLimiter::cancel`] says otherwise.
#[derive(Debug)]
pub struct Attempt {
    username: Option<String>,
    address: String,
    at: i64,
}

impl LoginLimiter {
    /// A limiter with no failures recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits an attempt at `now` and counts it as a failure, or refuses it with the seconds
    /// until the caller may retry. `username` is `None` for attempts that name no user (a
    /// refresh-token grant): only the address limit applies to them.
    pub fn begin(&self, username: Option<&str>, address: &str, now: i64) -> Result<Attempt, u64> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *inner;
        let mut retry_after = 0;
        if let Some(username) = username
            && let Some(wait) = inner
                .usernames
                .blocked(username, USERNAME_FAILURE_LIMIT, now)
        {
            retry_after = wait;
        }
        if let Some(wait) = inner.addresses.blocked(address, ADDRESS_FAILURE_LIMIT, now) {
            retry_after = retry_after.max(wait);
        }
        if retry_after > 0 {
            return Err(retry_after);
        }
        if let Some(username) = username {
            inner.usernames.record(username, now);
        }
        inner.addresses.record(address, now);
        Ok(Attempt {
            username: username.map(str::to_string),
            address: address.to_string(),
            at: now,
        })
    }

    /// The attempt succeeded: its username's failures are forgiven, and the attempt no longer
    /// counts against its address (earlier failures from the address still do).
    pub fn succeeded(&self, attempt: Attempt) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(username) = &attempt.username {
            inner.usernames.by_key.remove(username);
        }
        inner.addresses.unrecord(&attempt.address, attempt.at);
    }

    /// The attempt could not be decided (the store was unreachable): it does not count.
    pub fn cancel(&self, attempt: Attempt) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(username) = &attempt.username {
            inner.usernames.unrecord(username, attempt.at);
        }
        inner.addresses.unrecord(&attempt.address, attempt.at);
    }
}

impl Failures {
    /// Drops failures older than the window; when `limit` remain, the seconds until the
    /// oldest leaves the window.
    fn blocked(&mut self, key: &str, limit: usize, now: i64) -> Option<u64> {
        let failures = self.by_key.get_mut(key)?;
        while failures
            .front()
            .is_some_and(|&t| t + FAILURE_WINDOW_SECS <= now)
        {
            failures.pop_front();
        }
        if failures.len() < limit {
            return None;
        }
        let oldest = *failures.front()?;
        Some((oldest + FAILURE_WINDOW_SECS - now).max(1) as u64)
    }

    fn record(&mut self, key: &str, now: i64) {
        if self.by_key.len() >= self.sweep_at.max(SWEEP_ABOVE) && !self.by_key.contains_key(key) {
            self.by_key.retain(|_, failures| {
                failures
                    .back()
                    .is_some_and(|&t| t + FAILURE_WINDOW_SECS > now)
            });
            self.sweep_at = (self.by_key.len() * 2).max(SWEEP_ABOVE);
        }
        self.by_key
            .entry(key.to_string())
            .or_default()
            .push_back(now);
    }

    fn unrecord(&mut self, key: &str, at: i64) {
        if let Some(failures) = self.by_key.get_mut(key) {
            if let Some(i) = failures.iter().rposition(|&t| t == at) {
                failures.remove(i);
            }
            if failures.is_empty() {
                self.by_key.remove(key);
            }
        }
    }
}
