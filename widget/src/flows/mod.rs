//! What the deposit widget and the withdrawal form decide, as plain types:
//! [`DepositFlow`] (the amount, where the hosted page opens, the way back
//! from it) and [`WithdrawalFlow`] (the form's checks and the request), with
//! the idempotency keys of both in [`keys`].
//!
//! A flow reaches the world only through the seams below, so the same code
//! runs in the browser ([`Web`]) and in host tests (against fakes): the
//! windows ([`Windows`]), sessionStorage ([`Session`]), the partner page
//! ([`Page`]), the shared account feed ([`Account`]) and the companion
//! server ([`Server`]). The components render a flow's state and hand it
//! their events.

mod deposit;
pub mod keys;
mod web;
mod withdrawal;

#[cfg(test)]
mod fake;

use std::cell::RefCell;

use leptos::prelude::{ArcTrigger, Notify, Track};
use pientegra_shared::{Amount, Locale};

use crate::api::{ApiFailure, Deposit, Framing, NewWithdrawal, Withdrawal};
use crate::i18n::amount_error;

pub use deposit::{DepositFlow, Modal, Offer, Panel};
pub use web::Web;
pub use withdrawal::{FieldIds, Form, WithdrawalFlow};

/// The browser's windows, as the deposit flow uses them.
pub trait Windows {
    /// An open popup window.
    type Popup;

    /// Opens the deposit popup on `about:blank`, showing `message`; `None`
    /// when the browser blocks it. Only works inside a click handler, before
    /// anything awaits.
    fn open_blank_popup(&self, title: &str, message: &str) -> Option<Self::Popup>;

    /// Sends an open popup to `url`; `false` if it was closed meanwhile.
    fn navigate_popup(&self, popup: &Self::Popup, url: &str) -> bool;

    fn close_popup(&self, popup: &Self::Popup);

    /// Leaves the page for `url` (a full-page redirect).
    fn redirect(&self, url: &str);

    /// Whether the widget may send the user to `url` (the browser's own last check).
    fn is_safe_deposit_url(&self, url: &str) -> bool;

    /// Opens `url` in a fresh popup from a click (when the address is already
    /// known), falling back to this tab if the popup is blocked.
    fn open_or_redirect(&self, url: &str) {
        match self.open_blank_popup("", "") {
            Some(popup) if self.navigate_popup(&popup, url) => {}
            _ => self.redirect(url),
        }
    }
}

/// This tab's storage (sessionStorage, which survives a reload and the way
/// back from a redirect) and fresh random keys.
pub trait Session {
    fn get(&self, key: &str) -> Option<String>;
    fn set(&self, key: &str, value: &str);
    fn remove(&self, key: &str);
    /// A new random key (a UUID).
    fn new_key(&self) -> String;
}

/// The partner page around the widget, and the widget's own fields.
pub trait Page {
    /// `pientegra:error`: the user was shown `message`.
    fn error(&self, code: &str, message: &str);
    /// `pientegra:deposit-status`.
    fn deposit_status(&self, deposit: &Deposit);
    /// `pientegra:withdrawal-status`.
    fn withdrawal_status(&self, withdrawal: &Withdrawal);
    /// Moves keyboard focus to the element with `id`.
    fn focus(&self, id: &str);
}

/// What the page knows about the account: the feed every widget of the user
/// shares. Lookups of records follow their changes when read reactively.
pub trait Account {
    /// The user the feed speaks for; empty until the account has loaded.
    fn user(&self) -> String;
    /// The available balance, if known.
    fn available(&self) -> Option<Amount>;
    fn known_deposit(&self, intent_id: &str) -> Option<Deposit>;
    fn known_withdrawal(&self, withdrawal_id: &str) -> Option<Withdrawal>;
    /// A deposit the server returned.
    fn learn_deposit(&self, deposit: Deposit);
    /// A withdrawal the server returned.
    fn learn_withdrawal(&self, withdrawal: Withdrawal);
    /// The server no longer accepts the token.
    fn token_refused(&self, failure: ApiFailure);
}

/// The companion server's calls the flows make. The create calls retry a
/// transient failure themselves, with the same key, before they answer.
pub trait Server {
    async fn get_deposit(&self, intent_id: &str) -> Result<Deposit, ApiFailure>;
    async fn create_deposit(&self, amount: Amount, key: &str) -> Result<(Deposit, Framing), ApiFailure>;
    async fn create_withdrawal(&self, request: &NewWithdrawal, key: &str) -> Result<Withdrawal, ApiFailure>;
}

/// Everything a flow reaches outside itself.
pub trait Env: Windows + Session + Page + Account + Server {}

impl<T: Windows + Session + Page + Account + Server> Env for T {}

/// A flow's state: read by the views, which then follow its changes, and
/// changed by the flow alone. Never borrowed across a call into a seam: a
/// browser call can fire events (a blur, a partner page's listener) that come
/// straight back into the flow.
struct Shared<S> {
    value: RefCell<S>,
    changed: ArcTrigger,
}

impl<S> Shared<S> {
    fn new(value: S) -> Shared<S> {
        Shared { value: RefCell::new(value), changed: ArcTrigger::new() }
    }

    /// Reads the state, subscribing a reactive caller to its changes.
    fn watch<R>(&self, read: impl FnOnce(&S) -> R) -> R {
        self.changed.track();
        read(&self.value.borrow())
    }

    /// Reads the state without subscribing.
    fn peek<R>(&self, read: impl FnOnce(&S) -> R) -> R {
        read(&self.value.borrow())
    }

    fn update(&self, change: impl FnOnce(&mut S)) {
        change(&mut self.value.borrow_mut());
        self.changed.notify();
    }
}

/// What the user typed, in major units, as an exact amount within the payment range.
/// The error is the stable code [`crate::i18n::amount_error`] explains.
pub fn check_amount(input: &str, locale: Locale) -> Result<Amount, &'static str> {
    Amount::parse_input(input, locale).map_err(|e| e.code())?.check_range().map_err(|e| e.code())
}

/// Why the typed amount is not accepted, in words; empty when it is, and
/// for an empty field until the user `attempted` to go on.
fn amount_problem(input: &str, attempted: bool, locale: Locale) -> String {
    match check_amount(input, locale) {
        Err(code) if code != "amount_empty" || attempted => amount_error(locale, code),
        _ => String::new(),
    }
}

/// An amount as the user reads it, or a dash while it is not known yet.
pub fn shown(amount: Option<Amount>, locale: Locale) -> String {
    amount.map_or_else(|| "—".to_owned(), |a| a.format(locale))
}
