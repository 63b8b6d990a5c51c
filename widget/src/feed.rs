//! What the page knows about the user's account, as the server told it.
//!
//! The feed is written only by server answers: the `/api/account` load, the
//! SSE events and the polling fallback. Nothing in the widget ever raises a
//! balance or moves a status on its own. Events can arrive late, twice or out
//! of order (a poll racing the stream), so records only ever move forward.

use leptos::prelude::*;

use crate::api::{Account, ApiFailure, Balance, Deposit, UserEvent, Withdrawal};

/// How the feed is currently kept up to date.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Link {
    /// The event stream is (re)connecting.
    #[default]
    Connecting,
    /// Events arrive as they happen.
    Live,
    /// The stream is unavailable; the account is fetched periodically instead.
    Polling,
}

impl Link {
    /// The `data-state` of the connection indicator, and the link's name
    /// between tabs.
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Connecting => "connecting",
            Link::Live => "live",
            Link::Polling => "polling",
        }
    }

    /// The link named by [`Link::as_str`].
    pub fn parse(name: &str) -> Option<Link> {
        match name {
            "connecting" => Some(Link::Connecting),
            "live" => Some(Link::Live),
            "polling" => Some(Link::Polling),
            _ => None,
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

/// What the page knows about one user's account.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountState {
    pub balance: Option<Balance>,
    pub user: Option<String>,
    /// Newest first.
    pub deposits: Vec<Deposit>,
    /// Newest first.
    pub withdrawals: Vec<Withdrawal>,
    /// Newest first.
    pub log: Vec<LogEntry>,
    pub link: Link,
    /// Whether the events come relayed from another tab's stream (this tab
    /// follows the tab that holds the user's one stream).
    pub relayed: bool,
    /// The last failure to load the account (e.g. an expired token), cleared by the next success.
    pub problem: Option<ApiFailure>,
}

/// The shared, reactive account state of one user on this page. `Copy`: its
/// signal lives in an owner that outlives every widget showing it.
///
/// One signal rather than one per field: every widget reads several fields
/// anyway, and each signal type costs the shipped wasm its own copy of the
/// reactive machinery.
#[derive(Clone, Copy)]
pub struct Feed(RwSignal<AccountState>);

impl Feed {
    /// Empty state; call inside the owner that should hold the signal.
    pub fn new() -> Feed {
        Feed(RwSignal::new(AccountState::default()))
    }

    /// Reads the state, subscribing the caller to changes.
    pub fn with<T>(&self, read: impl FnOnce(&AccountState) -> T) -> T {
        self.0.with(read)
    }

    /// Reads the state without subscribing; `None` once the feed is gone.
    pub fn with_untracked<T>(&self, read: impl FnOnce(&AccountState) -> T) -> Option<T> {
        self.0.try_with_untracked(read)
    }

    /// Applies one event of the stream.
    pub fn apply(&self, event: &UserEvent) {
        match event {
            UserEvent::Deposit(deposit) => self.upsert_deposit(deposit.clone()),
            UserEvent::Withdrawal(withdrawal) => self.upsert_withdrawal(withdrawal.clone()),
            UserEvent::Balance(balance) => self.0.update(|a| a.balance = Some(balance.clone())),
        }
    }

    /// Applies a `GET /api/account` answer.
    pub fn apply_account(&self, account: Account) {
        self.0.update(|a| {
            a.problem = None;
            a.user = Some(account.external_user_id);
            a.balance = Some(account.balance);
            for deposit in account.deposits {
                merge_deposit(&mut a.deposits, deposit);
            }
            for withdrawal in account.withdrawals {
                merge_withdrawal(&mut a.withdrawals, withdrawal);
            }
        });
    }

    /// Records a deposit the server returned (a create or a lookup).
    pub fn upsert_deposit(&self, deposit: Deposit) {
        self.0.maybe_update(|a| merge_deposit(&mut a.deposits, deposit));
    }

    /// Records a withdrawal the server returned.
    pub fn upsert_withdrawal(&self, withdrawal: Withdrawal) {
        self.0.maybe_update(|a| merge_withdrawal(&mut a.withdrawals, withdrawal));
    }

    /// Adds a received event to the log.
    pub fn log_event(&self, entry: LogEntry) {
        self.0.update(|a| {
            a.log.insert(0, entry);
            a.log.truncate(LOG_LIMIT);
        });
    }

    /// How the feed is kept up to date now.
    pub fn set_link(&self, link: Link) {
        self.0.maybe_update(|a| std::mem::replace(&mut a.link, link) != link);
    }

    /// Whether the events come relayed from another tab.
    pub fn set_relayed(&self, relayed: bool) {
        self.0.maybe_update(|a| std::mem::replace(&mut a.relayed, relayed) != relayed);
    }

    /// The last failure to load the account.
    pub fn set_problem(&self, problem: ApiFailure) {
        self.0.update(|a| a.problem = Some(problem));
    }
}

/// Inserts or replaces `new` in a newest-first list if it is news; returns whether anything changed.
pub fn merge_deposit(list: &mut Vec<Deposit>, new: Deposit) -> bool {
    merge(
        list,
        new,
        |d| d.intent_id.clone(),
        |d| d.created_at_ms,
        |old, new| {
            old.status.can_advance_to(new.status)
                || (old.status == new.status && new.updated_at_ms >= old.updated_at_ms && old != new)
        },
    )
}

/// Inserts or replaces `new` in a newest-first list if it is news; returns whether anything changed.
pub fn merge_withdrawal(list: &mut Vec<Withdrawal>, new: Withdrawal) -> bool {
    merge(
        list,
        new,
        |w| w.withdrawal_id.clone(),
        |w| w.created_at_ms,
        |old, new| {
            old.status.can_advance_to(new.status)
                || (old.status == new.status && new.updated_at_ms >= old.updated_at_ms && old != new)
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

    fn deposit(n: u32, status: IntentStatus, created_ms: i64, updated_ms: i64) -> Deposit {
        Deposit {
            intent_id: format!("id-{n}"),
            reference_no: format!("REF{n}"),
            deposit_url: "https://pay.example/d/x".into(),
            amount: Amount::from_minor(150_000),
            expires_at_ms: 1_000_000,
            status,
            rejected_reason: None,
            created_at_ms: created_ms,
            updated_at_ms: updated_ms,
        }
    }

    #[test]
    fn a_link_named_between_tabs_reads_back_as_itself() {
        for link in [Link::Connecting, Link::Live, Link::Polling] {
            assert_eq!(Link::parse(link.as_str()), Some(link));
        }
        assert_eq!(Link::parse("LIVE"), None);
    }

    #[test]
    fn a_stale_status_never_replaces_a_newer_one() {
        let mut list = vec![deposit(1, IntentStatus::Approved, 0, 300_000)];
        assert!(!merge_deposit(&mut list, deposit(1, IntentStatus::PendingReview, 0, 0)));
        assert_eq!(list[0].status, IntentStatus::Approved);
    }

    #[test]
    fn a_forward_step_replaces_the_record() {
        let mut list = vec![deposit(1, IntentStatus::Reserved, 0, 0)];
        assert!(merge_deposit(&mut list, deposit(1, IntentStatus::PendingReview, 0, 0)));
        assert_eq!(list[0].status, IntentStatus::PendingReview);
        assert!(!merge_deposit(&mut list, deposit(1, IntentStatus::PendingReview, 0, 0)));
    }

    #[test]
    fn new_records_keep_the_list_newest_first() {
        let mut list = Vec::new();
        for (n, created) in [(1, 0), (3, 120_000), (2, 60_000)] {
            assert!(merge_deposit(&mut list, deposit(n, IntentStatus::Reserved, created, created)));
        }
        let order: Vec<&str> = list.iter().map(|d| d.intent_id.as_str()).collect();
        assert_eq!(order, ["id-3", "id-2", "id-1"]);
    }
}
