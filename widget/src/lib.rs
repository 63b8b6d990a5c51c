//! The Pientegra deposit and withdrawal widget (Leptos, wasm32).
//!
//! Partner pages load it through the loader `pientegra.js` (`widget/loader/`),
//! which initialises this module and defines the `<pientegra-deposit>` and
//! `<pientegra-withdrawal>` elements over the mount functions below:
//!
//! ```js
//! const handle = mountDeposit(element, { endpoint, token, locale: "tr", mode: "popup", theme: "light" });
//! handle.setToken(freshToken); // same user, state kept
//! handle.unmount();
//! ```
//!
//! Every widget of one user on a page shares a single SSE connection. The
//! widget holds no secret: only the widget token. What it learns reaches the
//! page as DOM events ([`host_events`]).

mod api;
mod browser;
mod components;
mod feed;
mod flows;
mod hooks;
mod host_events;
mod i18n;
mod options;

use std::any::Any;

use leptos::mount::mount_to;
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use web_sys::HtmlElement;

use api::Client;
#[cfg(feature = "demo")]
use components::{Activity, BalanceCard, EventLog};
use components::{DepositWidget, WithdrawalForm};
use options::Options;

/// A mounted widget. `unmount()` removes it from the page and, with the last
/// widget of a user, closes the shared event stream.
#[wasm_bindgen]
pub struct Mounted {
    handle: Option<Box<dyn Any>>,
    client: Client,
}

#[wasm_bindgen]
impl Mounted {
    /// Removes the widget (idempotent).
    pub fn unmount(&mut self) {
        self.handle.take();
    }

    /// Hands the widget (and every widget sharing its token) a fresh token
    /// for the same user, keeping what they show and do. A stream stopped
    /// because the server refused the old token starts again.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: &str) -> Result<(), JsValue> {
        let token = token.trim();
        if !options::is_well_formed_token(token) {
            return Err(options::refusal("token_malformed", "the token is not a widget token (three base64url parts)"));
        }
        self.client.set_token(token);
        hooks::token_changed(&self.client);
        Ok(())
    }
}

fn mount<V: IntoView + 'static>(
    element: HtmlElement,
    options: &JsValue,
    widget: impl FnOnce(Options) -> V + 'static,
) -> Result<Mounted, JsValue> {
    let options = Options::from_js(options, element.clone())?;
    let client = options.client.clone();
    let handle = mount_to(element, move || widget(options));
    Ok(Mounted { handle: Some(Box::new(handle)), client })
}

/// Mounts the deposit widget into `element`.
#[wasm_bindgen(js_name = mountDeposit)]
pub fn mount_deposit(element: HtmlElement, options: JsValue) -> Result<Mounted, JsValue> {
    mount(element, &options, |options| view! { <DepositWidget options/> })
}

/// Mounts the withdrawal form into `element`.
#[wasm_bindgen(js_name = mountWithdrawal)]
pub fn mount_withdrawal(element: HtmlElement, options: JsValue) -> Result<Mounted, JsValue> {
    mount(element, &options, |options| view! { <WithdrawalForm options/> })
}

#[cfg(feature = "demo")]
/// Mounts a balance card into `element`.
#[wasm_bindgen(js_name = mountBalance)]
pub fn mount_balance(element: HtmlElement, options: JsValue) -> Result<Mounted, JsValue> {
    mount(element, &options, |options| view! { <BalanceCard options/> })
}

#[cfg(feature = "demo")]
/// Mounts the activity list (deposits and withdrawals) into `element`.
#[wasm_bindgen(js_name = mountActivity)]
pub fn mount_activity(element: HtmlElement, options: JsValue) -> Result<Mounted, JsValue> {
    mount(element, &options, |options| view! { <Activity options/> })
}

#[cfg(feature = "demo")]
/// Mounts the live event log into `element`.
#[wasm_bindgen(js_name = mountEventLog)]
pub fn mount_event_log(element: HtmlElement, options: JsValue) -> Result<Mounted, JsValue> {
    mount(element, &options, |options| view! { <EventLog options/> })
}
