//! The per-user limit on the money-moving endpoints: GCRA (`governor`), one
//! state per user in a sharded map, no lock shared by every request.
//!
//! A user may send `per_minute` requests at once, and then one more every
//! `60 s / per_minute`: no window edge lets a second burst through on the heels
//! of the first. Users whose state has fully recovered are indistinguishable
//! from new ones, so they are swept out whenever the map has doubled since the
//! last sweep: memory follows the users active within the last minute.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Gcra};

/// The map is never swept below this many users: a sweep of a small map buys nothing.
const MIN_SWEEP_AT: usize = 10_000;

/// Allows each key `per_minute` requests at once, refilled at that rate.
#[derive(Clone)]
pub struct RateLimiter<C: Clock + Clone = DefaultClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: Clock> {
    gcra: Gcra<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// The map's size that triggers the next sweep.
    sweep_at: AtomicUsize,
}

impl RateLimiter {
    /// Allows `per_minute` requests per key per minute (at least 1).
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// As [`RateLimiter::new`], on the given clock (tests drive a fake one).
    pub fn with_clock(per_minute: u32, clock: C) -> RateLimiter<C> {
        let burst = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(burst).allow_burst(burst);
        let gcra = Gcra::new(quota, DefaultKeyedStateStore::default(), clock.clone());
        RateLimiter { inner: Arc::new(Inner { gcra, clock, sweep_at: AtomicUsize::new(MIN_SWEEP_AT) }) }
    }

    /// Counts one request; `Err(whole seconds until one would pass, at least 1)`
    /// when over the limit (the 429's `Retry-After`).
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let Inner { gcra, clock, .. } = &*self.inner;
        let outcome = gcra.check_key(&key.to_owned());
        self.sweep_if_grown();
        outcome.map_err(|not_until| {
            let wait = not_until.wait_time_from(clock.now());
            let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            whole.max(1)
        })
    }

    /// The number of users the limiter holds state for.
    pub fn tracked(&self) -> usize {
        self.inner.gcra.len()
    }

    fn sweep_if_grown(&self) {
        let Inner { gcra, sweep_at, .. } = &*self.inner;
        let threshold = sweep_at.load(Ordering::Relaxed);
        if gcra.len() < threshold {
            return;
        }
        // One caller sweeps; the others carry on.
        if sweep_at.compare_exchange(threshold, usize::MAX, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return;
        }
        gcra.retain_recent();
        gcra.shrink_to_fit();
        // Users still limited stay; the next sweep waits for the map to double.
        sweep_at.store(gcra.len().saturating_mul(2).max(MIN_SWEEP_AT), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn fake(per_minute: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimiter::with_clock(per_minute, clock.clone()), clock)
    }

    #[test]
    fn the_limit_is_per_key() {
        let (limiter, _) = fake(2);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
        assert!(limiter.check("b").is_ok());
        assert!(limiter.check("b").is_ok());
        assert!(limiter.check("b").is_err());
    }

    #[test]
    fn the_burst_is_the_limit_and_no_window_edge_lets_a_second_one_through() {
        let (limiter, clock) = fake(30);
        // A fixed window would open at this first request and reset 60 s later.
        assert!(limiter.check("u").is_ok());
        clock.advance(Duration::from_millis(59_900));
        let burst = (0..100).filter(|_| limiter.check("u").is_ok()).count();
        assert_eq!(burst, 30, "a full burst, and no more");
        // Just past where the window would reset: nothing more. One request is earned every 2 s.
        clock.advance(Duration::from_millis(200));
        assert!(limiter.check("u").is_err());
        clock.advance(Duration::from_millis(1_800));
        assert!(limiter.check("u").is_ok());
        assert!(limiter.check("u").is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let (limiter, clock) = fake(30);
        for _ in 0..30 {
            limiter.check("u").unwrap();
        }
        // The next request is earned in 2 s.
        assert_eq!(limiter.check("u"), Err(2));
        clock.advance(Duration::from_millis(1_999));
        assert_eq!(limiter.check("u"), Err(1), "1 ms rounds up to a whole second");
        let (slow, _) = fake(1);
        slow.check("u").unwrap();
        assert_eq!(slow.check("u"), Err(60));
    }

    #[test]
    fn users_who_have_recovered_are_swept_out_and_limited_ones_kept() {
        let (limiter, clock) = fake(30);
        for _ in 0..30 {
            limiter.check("busy").unwrap();
        }
        // A thousand new users a second, one request each: a user's state
        // recovers 2 s after its request, and the map is swept at 10,000.
        for i in 0..MIN_SWEEP_AT * 3 {
            limiter.check(&format!("user-{i}")).unwrap();
            if i % 1_000 == 999 {
                clock.advance(Duration::from_secs(1));
            }
        }
        assert!(limiter.tracked() < MIN_SWEEP_AT, "{} users held", limiter.tracked());
        // "busy" kept its state through the sweeps: 30 s after its burst it has
        // earned 15 requests, not a fresh burst of 30.
        assert_eq!((0..100).filter(|_| limiter.check("busy").is_ok()).count(), 15);
    }
}
