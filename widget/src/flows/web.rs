//! The seams as the browser provides them: windows and sessionStorage
//! ([`crate::browser`]), the host element's events ([`crate::host_events`]),
//! the user's [`Feed`] and the companion server's [`Client`].

use pientegra_shared::Amount;
use web_sys::{HtmlElement, Window};

use super::{Account, Page, Server, Session, Windows};
use crate::api::{ApiFailure, Client, Deposit, Framing, NewWithdrawal, Withdrawal};
use crate::feed::Feed;
use crate::{browser, host_events};

/// One widget's view of the browser: the element it is mounted in, its
/// user's feed and its server.
pub struct Web {
    host: HtmlElement,
    feed: Feed,
    client: Client,
}

impl Web {
    pub fn new(host: HtmlElement, feed: Feed, client: Client) -> Web {
        Web { host, feed, client }
    }
}

impl Windows for Web {
    type Popup = Window;

    fn open_blank_popup(&self, title: &str, message: &str) -> Option<Window> {
        browser::open_blank_popup(title, message)
    }

    fn navigate_popup(&self, popup: &Window, url: &str) -> bool {
        browser::navigate_popup(popup, url)
    }

    fn close_popup(&self, popup: &Window) {
        let _ = popup.close();
    }

    fn redirect(&self, url: &str) {
        browser::redirect(url);
    }

    fn is_safe_deposit_url(&self, url: &str) -> bool {
        browser::is_safe_deposit_url(url)
    }
}

impl Session for Web {
    fn get(&self, key: &str) -> Option<String> {
        browser::session_get(key)
    }

    fn set(&self, key: &str, value: &str) {
        browser::session_set(key, value);
    }

    fn remove(&self, key: &str) {
        browser::session_remove(key);
    }

    fn new_key(&self) -> String {
        browser::uuid_v4()
    }
}

impl Page for Web {
    fn error(&self, code: &str, message: &str) {
        host_events::error(&self.host, code, message);
    }

    fn deposit_status(&self, deposit: &Deposit) {
        host_events::deposit_status(&self.host, deposit);
    }

    fn withdrawal_status(&self, withdrawal: &Withdrawal) {
        host_events::withdrawal_status(&self.host, withdrawal);
    }

    fn focus(&self, id: &str) {
        browser::focus(id);
    }
}

impl Account for Web {
    fn user(&self) -> String {
        self.feed.with_untracked(|a| a.user.clone()).flatten().unwrap_or_default()
    }

    fn available(&self) -> Option<Amount> {
        self.feed.with_untracked(|a| a.balance.as_ref().map(|b| b.available)).flatten()
    }

    fn known_deposit(&self, intent_id: &str) -> Option<Deposit> {
        self.feed.with(|a| a.deposits.iter().find(|d| d.intent_id == intent_id).cloned())
    }

    fn known_withdrawal(&self, withdrawal_id: &str) -> Option<Withdrawal> {
        self.feed.with(|a| a.withdrawals.iter().find(|w| w.withdrawal_id == withdrawal_id).cloned())
    }

    fn learn_deposit(&self, deposit: Deposit) {
        self.feed.upsert_deposit(deposit);
    }

    fn learn_withdrawal(&self, withdrawal: Withdrawal) {
        self.feed.upsert_withdrawal(withdrawal);
    }

    fn token_refused(&self, failure: ApiFailure) {
        self.feed.set_problem(failure);
    }
}

impl Server for Web {
    async fn get_deposit(&self, intent_id: &str) -> Result<Deposit, ApiFailure> {
        self.client.deposit(intent_id).await
    }

    async fn create_deposit(&self, amount: Amount, key: &str) -> Result<(Deposit, Framing), ApiFailure> {
        self.client.create_deposit(amount, key).await
    }

    async fn create_withdrawal(&self, request: &NewWithdrawal, key: &str) -> Result<Withdrawal, ApiFailure> {
        self.client.create_withdrawal(request, key).await
    }
}
