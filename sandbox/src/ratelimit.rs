//! Requests per minute per API key, as a sliding window: a call is allowed
//! when fewer than `limit` calls were allowed in the 60 seconds before it.
//! Exact (a log of instants, no bucket edges where twice the limit slips
//! through), and small at sandbox scale. Refused calls are not counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The window the limit counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The calls each API key made in the current window.
#[derive(Debug, Default)]
pub struct RateLimiter {
    calls: Mutex<HashMap<String, VecDeque<Instant>>>,
    allowed: AtomicU64,
    refused: AtomicU64,
}

/// Every authenticated API call since the sandbox started, by how the limit answered it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    pub allowed: u64,
    /// Answered `429 rate_limited`.
    pub rate_limited: u64,
}

impl RateLimiter {
    /// Counts a call by `api_key`, or answers how many whole seconds to wait
    /// (at least 1) before the next call can be allowed.
    pub fn check(&self, api_key: &str, limit: u32, now: Instant) -> Result<(), u64> {
        let mut calls = self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let log = calls.entry(api_key.to_owned()).or_default();
        while log.front().is_some_and(|&at| now.duration_since(at) >= WINDOW) {
            log.pop_front();
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if log.len() < limit {
            log.push_back(now);
            self.allowed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        // The call that frees a slot is the `len - limit + 1`-th oldest (the
        // limit may have been lowered below what the window already holds).
        let freeing = log.get(log.len().saturating_sub(limit.max(1))).copied().unwrap_or(now);
        let wait = WINDOW.saturating_sub(now.duration_since(freeing));
        Err(wait.as_millis().div_ceil(1000).max(1).try_into().unwrap_or(u64::MAX))
    }

    /// The calls counted so far (what a test checks a client's own budget against).
    pub fn counts(&self) -> CallCounts {
        CallCounts { allowed: self.allowed.load(Ordering::Relaxed), rate_limited: self.refused.load(Ordering::Relaxed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_slides_with_time() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.check("k", 3, start + Duration::from_secs(i * 10)), Ok(()));
        }
        // The first call (at 0 s) leaves the window at 60 s.
        assert_eq!(limiter.check("k", 3, start + Duration::from_secs(25)), Err(35));
        assert_eq!(limiter.check("other", 3, start + Duration::from_secs(25)), Ok(()));
        assert_eq!(limiter.check("k", 3, start + Duration::from_secs(60)), Ok(()));
        assert_eq!(limiter.check("k", 3, start + Duration::from_millis(60_500)), Err(10));
    }

    #[test]
    fn a_lowered_limit_waits_for_enough_calls_to_leave() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..4 {
            limiter.check("k", 10, start + Duration::from_secs(i)).unwrap();
        }
        // With a limit of 2, three of the four must leave: the one at 2 s does so at 62 s.
        assert_eq!(limiter.check("k", 2, start + Duration::from_secs(10)), Err(52));
    }
}
