//! The widgets and their parts. Each takes its inputs as props; the shared
//! account state comes from [`crate::hooks::use_event_source`].
//!
//! Size matters here (the widget ships to every partner page). What a view
//! binds is a `Signal<String>` (or `Signal<bool>`) rather than a bare
//! closure: Leptos compiles its renderer once per bound type and once more
//! per distinct closure type, so one type for every reactive text keeps the
//! shipped wasm smaller, measurably so, despite `Signal::derive`'s own cost.

#[cfg(feature = "demo")]
mod activity;
mod amount_field;
#[cfg(feature = "demo")]
mod balance;
mod deposit;
mod deposit_status;
#[cfg(feature = "demo")]
mod event_log;
mod hosted_page;
mod withdrawal;

use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use leptos::prelude::*;
use pientegra_shared::{Amount, Locale};
use web_sys::HtmlElement;

use crate::api::{ApiFailure, Balance};
use crate::feed::Feed;
use crate::flows::shown;
use crate::host_events;
use crate::i18n::api_error;

#[cfg(feature = "demo")]
pub use activity::Activity;
#[cfg(feature = "demo")]
pub use balance::BalanceCard;
pub use deposit::DepositWidget;
#[cfg(feature = "demo")]
pub use event_log::EventLog;
pub use withdrawal::WithdrawalForm;

/// A flow as a component's closures share it. Each use takes its own `Rc`
/// rather than borrowing the stored value: reading a stored value holds the
/// reactive arena's lock, and a flow calls out to the page, whose listeners
/// may mount or unmount widgets. The request in flight holds its `Rc` too.
type FlowHandle<F> = StoredValue<Rc<F>, LocalStorage>;

/// An event handler that hands the event to the flow, unless the component
/// is already gone: a late event (a blur as the form is removed) then does
/// nothing, as a write to a disposed signal would.
fn to_flow<F: 'static, A>(flow: FlowHandle<F>, event: impl Fn(&F, A)) -> impl Fn(A) {
    move |arg| {
        if let Some(flow) = flow.try_get_value() {
            event(&flow, arg);
        }
    }
}

/// A page-unique element id, so several widgets can sit on one page and
/// still pair every label with its input.
fn unique_id(stem: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("pk{}-{stem}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One part of the balance (`|b| b.available`), as the user reads it.
fn balance_text(feed: Feed, locale: Locale, part: fn(&Balance) -> Amount) -> Signal<String> {
    Signal::derive(move || shown(feed.with(|a| a.balance.as_ref().map(part)), locale))
}

/// Why the account could not be loaded, in words; empty while it loads fine.
fn load_problem(feed: Feed, locale: Locale) -> Signal<String> {
    Signal::derive(move || feed.with(|a| a.problem.as_ref().map(|e| api_error(locale, e))).unwrap_or_default())
}

/// An ARIA boolean: `aria-disabled`, `aria-pressed` and the like.
fn yes_no(flag: bool) -> String {
    String::from(if flag { "true" } else { "false" })
}

/// `aria-invalid` of a field whose `error` text is empty while it is valid.
fn invalid(error: Signal<String>) -> Signal<String> {
    Signal::derive(move || yes_no(!error.with(String::is_empty)))
}

/// Tells the host page what this widget learns about the account: each
/// balance it shows (`pientegra:balance`), and the server refusing the token
/// (`pientegra:token-expired`, once per refusal).
fn tell_host_about_account(feed: Feed, host: HtmlElement) {
    Effect::new(move |last: Option<(Option<Balance>, bool)>| {
        let (balance, refusal) = feed.with(|a| (a.balance.clone(), a.problem.clone().filter(ApiFailure::is_auth)));
        let (last_balance, was_refused) = last.unwrap_or_default();
        if let Some(balance) = balance.as_ref().filter(|b| last_balance.as_ref() != Some(*b)) {
            host_events::balance(&host, balance);
        }
        if let Some(refusal) = refusal.as_ref().filter(|_| !was_refused) {
            host_events::token_refused(&host, refusal);
        }
        (balance, refusal.is_some())
    });
}
