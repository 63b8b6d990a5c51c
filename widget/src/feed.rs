//! What the page knows about the user's account, as the server told it.
//!
//! The feed is written only by server answers: the `/api/account` load, the
//! SSE events and the polling fallback. Nothing in the widget ever raises a
//! balance or moves a status on its own. Events can arrive late, twice or out
//! of order (a poll racing the stream), so records only ever move forward.

use leptos::prelude::*;
use pientegra_shared::api::{Account, Balance, Deposit, UserEvent, Withdrawal};

use crate::api::ApiFailure;

/// How the feed is currently kept up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The event stream is (re)connecting.
    Connecting,
    /// Events arrive as they happen.
    Live,
    /// The stream is unavailable; the account is fetched periodically instead.
    Polling,
}

impl Link {
    /// The `data-state` of the connection indicator.
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Connecting => "connecting",
            Link::Live => "live",
            Link::Polling => "polling",
        }
    }
}

/// One received SSE event, for the demo's live event log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    /// The SSE `id:` field.
    pub id: String,
    /// When the browser received it.
    pub received_ms: i64,
    pub event: UserEvent,
}

/// The most recent log entries kept.
const LOG_LIMIT: usize = 50;

/// The shared, reactive account state of one user on this page. `Copy`: its
/// signals live in an owner that outlives every widget showing them.
#[derive(Clone, Copy)]
pub struct Feed {
    pub balance: RwSignal<Option<Balance>>,
    pub user: RwSignal<Option<String>>,
    /// Newest first.
    pub deposits: RwSignal<Vec<Deposit>>,
    /// Newest first.
    pub withdrawals: RwSignal<Vec<Withdrawal>>,
    /// Newest first.
    pub log: RwSignal<Vec<LogEntry>>,
    pub link: RwSignal<Link>,
    /// The last failure to load the account (e.g. an expired token), cleared by the next success.
    pub problem: RwSignal<Option<ApiFailure>>,
}

impl Feed {
    /// Empty state; call inside the owner that should hold the signals.
    pub fn new() -> Feed {
        Feed {
            balance: RwSignal::new(None),
            user: RwSignal::new(None),
            deposits: RwSignal::new(Vec::new()),
            withdrawals: RwSignal::new(Vec::new()),
            log: RwSignal::new(Vec::new()),
            link: RwSignal::new(Link::Connecting),
            problem: RwSignal::new(None),
        }
    }

    /// Applies one event of the stream.
    pub fn apply(&self, event: &UserEvent) {
        match event {
            UserEvent::Deposit(deposit) => self.upsert_deposit(deposit.clone()),
            UserEvent::Withdrawal(withdrawal) => self.upsert_withdrawal(withdrawal.clone()),
            UserEvent::Balance(balance) => self.balance.set(Some(balance.clone())),
        }
    }

    /// Applies a `GET /api/account` answer.
    pub fn apply_account(&self, account: Account) {
        self.problem.set(None);
        self.user.set(Some(account.external_user_id));
        self.balance.set(Some(account.balance));
        // Every record is merged (no short-circuit); subscribers hear of it only if one changed.
        self.deposits.maybe_update(|list| {
            let mut changed = false;
            for deposit in account.deposits {
                changed |= merge_deposit(list, deposit);
            }
            changed
        });
        self.withdrawals.maybe_update(|list| {
            let mut changed = false;
            for withdrawal in account.withdrawals {
                changed |= merge_withdrawal(list, withdrawal);
            }
            changed
        });
    }

    /// Records a deposit the server returned (a create or a lookup).
    pub fn upsert_deposit(&self, deposit: Deposit) {
        self.deposits.maybe_update(|list| merge_deposit(list, deposit));
    }

    /// Records a withdrawal the server returned.
    pub fn upsert_withdrawal(&self, withdrawal: Withdrawal) {
        self.withdrawals.maybe_update(|list| merge_withdrawal(list, withdrawal));
    }

    /// Adds a received event to the log.
    pub fn log_event(&self, entry: LogEntry) {
        self.log.update(|log| {
            log.insert(0, entry);
            log.truncate(LOG_LIMIT);
        });
    }
}

/// Inserts or replaces `new` in a newest-first list if it is news; returns whether anything changed.
pub fn merge_deposit(list: &mut Vec<Deposit>, new: Deposit) -> bool {
    merge(
        list,
        new,
        |d| d.intent_id,
        |d| d.created_at,
        |old, new| {
            old.status.can_advance_to(new.status)
                || (old.status == new.status && new.updated_at >= old.updated_at && old != new)
        },
    )
}

/// Inserts or replaces `new` in a newest-first list if it is news; returns whether anything changed.
pub fn merge_withdrawal(list: &mut Vec<Withdrawal>, new: Withdrawal) -> bool {
    merge(
        list,
        new,
        |w| w.withdrawal_id,
        |w| w.created_at,
        |old, new| {
            old.status.can_advance_to(new.status)
                || (old.status == new.status && new.updated_at >= old.updated_at && old != new)
        },
    )
}

fn merge<T, K: PartialEq, C: PartialOrd>(
    list: &mut Vec<T>,
    new: T,
    id: impl Fn(&T) -> K,
    created: impl Fn(&T) -> C,
    supersedes: impl Fn(&T, &T) -> bool,
) -> bool {
    match list.iter().position(|old| id(old) == id(&new)) {
        Some(i) if supersedes(&list[i], &new) => {
            list[i] = new;
            true
        }
        Some(_) => false,
        None => {
            let at = list.partition_point(|old| created(old) >= created(&new));
            list.insert(at, new);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pientegra_shared::Amount;
    use pientegra_shared::status::IntentStatus;
    use pientegra_shared::time;

    fn deposit(n: u128, status: IntentStatus, created: &str, updated: &str) -> Deposit {
        Deposit {
            intent_id: uuid::Uuid::from_u128(n),
            reference_no: format!("REF{n}"),
            deposit_url: "https://pay.example/d/x".into(),
            requested_amount: Amount::from_minor(150_000),
            amount: Amount::from_minor(150_000),
            currency: "TRY".into(),
            expires_at: time::parse("2026-04-28T13:00:00Z").unwrap(),
            status,
            rejected_reason: None,
            created_at: time::parse(created).unwrap(),
            updated_at: time::parse(updated).unwrap(),
        }
    }

    #[test]
    fn a_stale_status_never_replaces_a_newer_one() {
        let t = "2026-04-28T12:00:00Z";
        let mut list = vec![deposit(1, IntentStatus::Approved, t, "2026-04-28T12:05:00Z")];
        assert!(!merge_deposit(&mut list, deposit(1, IntentStatus::PendingReview, t, t)));
        assert_eq!(list[0].status, IntentStatus::Approved);
    }

    #[test]
    fn a_forward_step_replaces_the_record() {
        let t = "2026-04-28T12:00:00Z";
        let mut list = vec![deposit(1, IntentStatus::Reserved, t, t)];
        assert!(merge_deposit(&mut list, deposit(1, IntentStatus::PendingReview, t, t)));
        assert_eq!(list[0].status, IntentStatus::PendingReview);
        assert!(!merge_deposit(&mut list, deposit(1, IntentStatus::PendingReview, t, t)));
    }

    #[test]
    fn new_records_keep_the_list_newest_first() {
        let mut list = Vec::new();
        for (n, created) in [(1, "2026-04-28T12:00:00Z"), (3, "2026-04-28T12:02:00Z"), (2, "2026-04-28T12:01:00Z")] {
            assert!(merge_deposit(&mut list, deposit(n, IntentStatus::Reserved, created, created)));
        }
        let order: Vec<u128> = list.iter().map(|d| d.intent_id.as_u128()).collect();
        assert_eq!(order, [3, 2, 1]);
    }
}
