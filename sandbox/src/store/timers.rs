//! The store's deadlines, soonest first: when each RESERVED intent expires and
//! when auto-review acts on a record next.
//!
//! Every change wakes the review loop, so a wake-up must cost what is due, not
//! what is stored: with a scan of every record per wake-up, creating the
//! 100,000th intent cost a scan of 99,999 others, and seeding slowed to a few
//! hundred intents a second.
//!
//! A deadline is written when it is set and never rewritten: a record that
//! moves on leaves its old deadline behind. [`Store::run_timers`](super::Store::run_timers)
//! checks each deadline it takes against the record before acting, so a stale
//! one costs a wake-up that does nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use pientegra_shared::time::Timestamp;
use tokio::time::Instant;
use uuid::Uuid;

/// What an auto-review deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Review {
    Intent(Uuid),
    Withdrawal(Uuid),
}

#[derive(Debug, Default)]
pub(super) struct Timers {
    /// RESERVED intents by `expires_at` (wall-clock time, as the wire shows it).
    expiries: BTreeSet<(Timestamp, Uuid)>,
    /// Auto-review deadlines (the monotonic clock's).
    reviews: BTreeSet<(Instant, Review)>,
}

impl Timers {
    pub(super) fn expire_at(&mut self, at: Timestamp, intent: Uuid) {
        self.expiries.insert((at, intent));
    }

    /// Sets a record's auto-review deadline (`slot`, its `auto_due`) to `at`
    /// and schedules it; `None` clears it. The one way a deadline is set, so
    /// every deadline a record holds is in the set.
    pub(super) fn review_at(&mut self, slot: &mut Option<Instant>, at: Option<Instant>, what: Review) {
        *slot = at;
        if let Some(at) = at {
            self.reviews.insert((at, what));
        }
    }

    /// Takes the expiries due by `now`.
    pub(super) fn due_expiries(&mut self, now: Timestamp) -> Vec<(Timestamp, Uuid)> {
        take_due(&mut self.expiries, now)
    }

    /// Takes the reviews due by `clock`.
    pub(super) fn due_reviews(&mut self, clock: Instant) -> Vec<(Instant, Review)> {
        take_due(&mut self.reviews, clock)
    }

    /// When the soonest deadline falls, on the monotonic clock.
    pub(super) fn next(&self, now: Timestamp, clock: Instant) -> Option<Instant> {
        let expiry = self.expiries.first().map(|(at, _)| clock + (*at - now).to_std().unwrap_or(Duration::ZERO));
        let review = self.reviews.first().map(|(at, _)| *at);
        expiry.into_iter().chain(review).min()
    }
}

fn take_due<T: Ord + Copy, W: Ord>(deadlines: &mut BTreeSet<(T, W)>, by: T) -> Vec<(T, W)> {
    let mut due = Vec::new();
    while deadlines.first().is_some_and(|(at, _)| *at <= by) {
        due.extend(deadlines.pop_first());
    }
    due
}
