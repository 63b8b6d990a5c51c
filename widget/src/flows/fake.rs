//! A browser, feed and server for host tests: it records what the flows do
//! and answers each request with what the test scripted.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use pientegra_shared::Amount;
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};

use super::{Account, Page, Server, Session, Windows};
use crate::api::{ApiFailure, Deposit, Framing, NewWithdrawal, Withdrawal};
use crate::feed::{merge_deposit, merge_withdrawal};

/// What the flows did, in order, as readable lines: `popup 1 opened`,
/// `popup 1 -> https://…`, `redirect https://…`, `error amount_below_min`…
#[derive(Default)]
pub struct Fake {
    pub blocks_popups: Cell<bool>,
    /// Whether an open popup was closed by the user (navigating it fails).
    pub popup_gone: Cell<bool>,
    popups: Cell<u32>,
    keys: Cell<u32>,
    storage: RefCell<BTreeMap<String, String>>,
    log: RefCell<Vec<String>>,
    pub user: RefCell<String>,
    pub available: Cell<Option<Amount>>,
    deposits: RefCell<Vec<Deposit>>,
    withdrawals: RefCell<Vec<Withdrawal>>,
    pub refused_token: RefCell<Option<ApiFailure>>,
    /// What reached the server: `create_deposit 25000 key-1`…
    requests: RefCell<Vec<String>>,
    deposit_answers: RefCell<VecDeque<Result<(Deposit, Framing), ApiFailure>>>,
    lookup_answers: RefCell<VecDeque<Result<Deposit, ApiFailure>>>,
    withdrawal_answers: RefCell<VecDeque<Result<Withdrawal, ApiFailure>>>,
}

impl Fake {
    pub fn new() -> Rc<Fake> {
        let fake = Fake::default();
        fake.user.replace("ayse".into());
        Rc::new(fake)
    }

    /// The lines logged since the last call.
    pub fn took(&self) -> Vec<String> {
        self.log.take()
    }

    /// The requests sent since the last call.
    pub fn sent(&self) -> Vec<String> {
        self.requests.take()
    }

    pub fn stored(&self, key: &str) -> Option<String> {
        self.storage.borrow().get(key).cloned()
    }

    pub fn store(&self, key: &str, value: &str) {
        self.storage.borrow_mut().insert(key.into(), value.into());
    }

    pub fn answer_create_deposit(&self, answer: Result<(Deposit, Framing), ApiFailure>) {
        self.deposit_answers.borrow_mut().push_back(answer);
    }

    pub fn answer_get_deposit(&self, answer: Result<Deposit, ApiFailure>) {
        self.lookup_answers.borrow_mut().push_back(answer);
    }

    pub fn answer_create_withdrawal(&self, answer: Result<Withdrawal, ApiFailure>) {
        self.withdrawal_answers.borrow_mut().push_back(answer);
    }

    /// A status the stream brings.
    pub fn hear_deposit(&self, deposit: Deposit) {
        merge_deposit(&mut self.deposits.borrow_mut(), deposit);
    }

    fn note(&self, line: String) {
        self.log.borrow_mut().push(line);
    }
}

impl Windows for Rc<Fake> {
    type Popup = u32;

    fn open_blank_popup(&self, _title: &str, message: &str) -> Option<u32> {
        if self.blocks_popups.get() {
            self.note("popup blocked".into());
            return None;
        }
        let n = self.popups.get() + 1;
        self.popups.set(n);
        self.note(format!("popup {n} opened: {message}"));
        Some(n)
    }

    fn navigate_popup(&self, popup: &u32, url: &str) -> bool {
        if self.popup_gone.get() {
            return false;
        }
        self.note(format!("popup {popup} -> {url}"));
        true
    }

    fn close_popup(&self, popup: &u32) {
        self.note(format!("popup {popup} closed"));
    }

    fn redirect(&self, url: &str) {
        self.note(format!("redirect {url}"));
    }

    fn is_safe_deposit_url(&self, url: &str) -> bool {
        url.starts_with("https://")
    }
}

impl Session for Rc<Fake> {
    fn get(&self, key: &str) -> Option<String> {
        self.stored(key)
    }

    fn set(&self, key: &str, value: &str) {
        self.store(key, value);
    }

    fn remove(&self, key: &str) {
        self.storage.borrow_mut().remove(key);
    }

    fn new_key(&self) -> String {
        self.keys.set(self.keys.get() + 1);
        format!("key-{}", self.keys.get())
    }
}

impl Page for Rc<Fake> {
    fn error(&self, code: &str, message: &str) {
        self.note(format!("error {code}: {message}"));
    }

    fn deposit_status(&self, deposit: &Deposit) {
        self.note(format!("deposit-status {}", deposit.status.as_str()));
    }

    fn withdrawal_status(&self, withdrawal: &Withdrawal) {
        self.note(format!("withdrawal-status {}", withdrawal.status.as_str()));
    }

    fn focus(&self, id: &str) {
        self.note(format!("focus {id}"));
    }
}

impl Account for Rc<Fake> {
    fn user(&self) -> String {
        self.user.borrow().clone()
    }

    fn available(&self) -> Option<Amount> {
        self.available.get()
    }

    fn known_deposit(&self, intent_id: &str) -> Option<Deposit> {
        self.deposits.borrow().iter().find(|d| d.intent_id == intent_id).cloned()
    }

    fn known_withdrawal(&self, withdrawal_id: &str) -> Option<Withdrawal> {
        self.withdrawals.borrow().iter().find(|w| w.withdrawal_id == withdrawal_id).cloned()
    }

    fn learn_deposit(&self, deposit: Deposit) {
        self.hear_deposit(deposit);
    }

    fn learn_withdrawal(&self, withdrawal: Withdrawal) {
        merge_withdrawal(&mut self.withdrawals.borrow_mut(), withdrawal);
    }

    fn token_refused(&self, failure: ApiFailure) {
        self.refused_token.replace(Some(failure));
    }
}

impl Server for Rc<Fake> {
    async fn get_deposit(&self, intent_id: &str) -> Result<Deposit, ApiFailure> {
        self.requests.borrow_mut().push(format!("get_deposit {intent_id}"));
        self.lookup_answers.borrow_mut().pop_front().expect("a scripted answer")
    }

    async fn create_deposit(&self, amount: Amount, key: &str) -> Result<(Deposit, Framing), ApiFailure> {
        self.requests.borrow_mut().push(format!("create_deposit {amount} {key}"));
        self.deposit_answers.borrow_mut().pop_front().expect("a scripted answer")
    }

    async fn create_withdrawal(&self, request: &NewWithdrawal, key: &str) -> Result<Withdrawal, ApiFailure> {
        let NewWithdrawal { amount, iban, holder_name } = request;
        self.requests.borrow_mut().push(format!("create_withdrawal {amount} {iban} {holder_name} {key}"));
        self.withdrawal_answers.borrow_mut().pop_front().expect("a scripted answer")
    }
}

/// Runs a flow's future to its end: the fake server answers at once, so it
/// never waits.
pub fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the fakes answer at once"),
    }
}

/// A deposit of `amount_minor` in `status`, paid at `url`.
pub fn deposit(id: &str, amount_minor: u64, status: IntentStatus, url: &str) -> Deposit {
    Deposit {
        intent_id: id.into(),
        reference_no: format!("REF-{id}"),
        deposit_url: url.into(),
        amount: Amount::from_minor(amount_minor),
        expires_at_ms: 1_800_000,
        status,
        rejected_reason: None,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
    }
}

/// A withdrawal of `amount_minor` in `status`.
pub fn withdrawal(id: &str, amount_minor: u64, status: WithdrawalStatus) -> Withdrawal {
    Withdrawal {
        withdrawal_id: id.into(),
        reference_no: format!("REF-{id}"),
        amount: Amount::from_minor(amount_minor),
        status,
        iban_masked: "TR33 **** **** **** **** **13 26".into(),
        rejected_reason: None,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
    }
}

/// A framing answer: allowed, or not with `reason`.
pub fn framing(reason: Option<&str>) -> Framing {
    Framing { allowed: reason.is_none(), reason: reason.map(str::to_owned) }
}
