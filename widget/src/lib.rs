//! The Pientegra deposit and withdrawal widget (Leptos, wasm32).
//!
//! Embedding, from JavaScript:
//!
//! ```js
//! import init, { mountDeposit, mountWithdrawal } from "./pientegra-widget.js";
//! await init();
//! const handle = mountDeposit(element, { endpoint, token, locale: "tr", mode: "popup", theme: "light" });
//! handle.unmount();
//! ```
//!
//! or as custom elements, defined when the module starts:
//! `<pientegra-deposit endpoint="…" token="…" locale="en" mode="auto"></pientegra-deposit>`
//! and `<pientegra-withdrawal …>`. Every widget of one user on a page shares a
//! single SSE connection. The widget holds no secret: only the widget token.

mod api;
mod browser;
mod components;
mod feed;
mod hooks;
mod i18n;
mod options;

use std::any::Any;

use leptos::mount::mount_to;
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use web_sys::HtmlElement;

use components::{Activity, BalanceCard, DepositWidget, EventLog, WithdrawalForm};
use options::Options;

/// A mounted widget. `unmount()` removes it from the page and, with the last
/// widget of a user, closes the shared event stream.
#[wasm_bindgen]
pub struct Mounted {
    handle: Option<Box<dyn Any>>,
}

#[wasm_bindgen]
impl Mounted {
    /// Removes the widget (idempotent).
    pub fn unmount(&mut self) {
        self.handle.take();
    }
}

fn mount<V: IntoView + 'static>(
    element: HtmlElement,
    options: &JsValue,
    widget: impl FnOnce(Options) -> V + 'static,
) -> Result<Mounted, JsValue> {
    let options = Options::from_js(options)?;
    let handle = mount_to(element, move || widget(options));
    Ok(Mounted { handle: Some(Box::new(handle)) })
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

/// Mounts a balance card into `element`.
#[wasm_bindgen(js_name = mountBalance)]
pub fn mount_balance(element: HtmlElement, options: JsValue) -> Result<Mounted, JsValue> {
    mount(element, &options, |options| view! { <BalanceCard options/> })
}

/// Mounts the activity list (deposits and withdrawals) into `element`.
#[wasm_bindgen(js_name = mountActivity)]
pub fn mount_activity(element: HtmlElement, options: JsValue) -> Result<Mounted, JsValue> {
    mount(element, &options, |options| view! { <Activity options/> })
}

/// Mounts the live event log into `element`.
#[wasm_bindgen(js_name = mountEventLog)]
pub fn mount_event_log(element: HtmlElement, options: JsValue) -> Result<Mounted, JsValue> {
    mount(element, &options, |options| view! { <EventLog options/> })
}

#[wasm_bindgen(inline_js = r#"
const ATTRIBUTES = ["endpoint", "token", "locale", "mode", "theme"];
export function definePientegraElements(mount) {
  const define = (tag, kind) => {
    if (customElements.get(tag)) return;
    customElements.define(tag, class extends HTMLElement {
      static get observedAttributes() { return ATTRIBUTES; }
      connectedCallback() { this._render(); }
      disconnectedCallback() { this._drop(); }
      attributeChangedCallback() { if (this.isConnected) this._render(); }
      _render() {
        this._drop();
        const options = {};
        for (const name of ATTRIBUTES) {
          const value = this.getAttribute(name);
          if (value !== null) options[name] = value;
        }
        if (!options.token) return; // mounted once the page sets a token
        this._handle = mount(kind, this, options);
      }
      _drop() {
        if (this._handle) { this._handle.unmount(); this._handle.free(); this._handle = null; }
      }
    });
  };
  define("pientegra-deposit", "deposit");
  define("pientegra-withdrawal", "withdrawal");
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = definePientegraElements)]
    fn define_pientegra_elements(mount: &JsValue);
}

/// Runs when the module is initialised: defines the custom elements.
#[wasm_bindgen(start)]
pub fn start() {
    let mount = Closure::<dyn Fn(String, HtmlElement, JsValue) -> Result<Mounted, JsValue>>::new(
        |kind: String, element: HtmlElement, options: JsValue| match kind.as_str() {
            "withdrawal" => mount_withdrawal(element, options),
            _ => mount_deposit(element, options),
        },
    );
    define_pientegra_elements(&mount.into_js_value());
}
