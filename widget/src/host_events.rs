//! The events the partner page hears: bubbling, composed `CustomEvent`s
//! dispatched on the element a widget is mounted in. Their names and
//! `detail` shapes are part of the public API (`pientegra.d.ts`).
//!
//! | event | detail |
//! |---|---|
//! | `pientegra:deposit-status` | `{intentId, referenceNo, status, amount, currency, rejectedReason}` |
//! | `pientegra:withdrawal-status` | `{withdrawalId, referenceNo, status, amount, currency, ibanMasked, rejectedReason}` |
//! | `pientegra:balance` | `{available, reserved, currency}` |
//! | `pientegra:error` | `{code, message}` |
//! | `pientegra:token-expired` | `{code}` |
//!
//! Amounts are strings of minor units, as on the wire.

use js_sys::{Object, Reflect};
use wasm_bindgen::JsValue;
use web_sys::{CustomEvent, CustomEventInit, HtmlElement};

use crate::api::{ApiFailure, Balance, Deposit, Withdrawal};

/// The only currency the kit handles.
const CURRENCY: &str = "TRY";

/// Dispatches `name` with `detail` on `host`.
fn emit(host: &HtmlElement, name: &str, detail: &Object) {
    let init = CustomEventInit::new();
    init.set_bubbles(true);
    init.set_composed(true);
    init.set_detail(detail);
    if let Ok(event) = CustomEvent::new_with_event_init_dict(name, &init) {
        let _ = host.dispatch_event(&event);
    }
}

/// A plain object of `(name, value)` fields.
fn object(fields: &[(&str, JsValue)]) -> Object {
    let object = Object::new();
    for (name, value) in fields {
        let _ = Reflect::set(&object, &JsValue::from_str(name), value);
    }
    object
}

fn text(value: &str) -> JsValue {
    JsValue::from_str(value)
}

fn text_or_null(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from_str)
}

/// `pientegra:deposit-status`.
pub fn deposit_status(host: &HtmlElement, deposit: &Deposit) {
    let detail = object(&[
        ("intentId", text(&deposit.intent_id)),
        ("referenceNo", text(&deposit.reference_no)),
        ("status", text(deposit.status.as_str())),
        ("amount", text(&deposit.amount.to_string())),
        ("currency", text(CURRENCY)),
        ("rejectedReason", text_or_null(deposit.rejected_reason.as_deref())),
    ]);
    emit(host, "pientegra:deposit-status", &detail);
}

/// `pientegra:withdrawal-status`.
pub fn withdrawal_status(host: &HtmlElement, withdrawal: &Withdrawal) {
    let detail = object(&[
        ("withdrawalId", text(&withdrawal.withdrawal_id)),
        ("referenceNo", text(&withdrawal.reference_no)),
        ("status", text(withdrawal.status.as_str())),
        ("amount", text(&withdrawal.amount.to_string())),
        ("currency", text(CURRENCY)),
        ("ibanMasked", text(&withdrawal.iban_masked)),
        ("rejectedReason", text_or_null(withdrawal.rejected_reason.as_deref())),
    ]);
    emit(host, "pientegra:withdrawal-status", &detail);
}

/// `pientegra:balance`.
pub fn balance(host: &HtmlElement, balance: &Balance) {
    let detail = object(&[
        ("available", text(&balance.available.to_string())),
        ("reserved", text(&balance.reserved.to_string())),
        ("currency", text(CURRENCY)),
    ]);
    emit(host, "pientegra:balance", &detail);
}

/// `pientegra:error`: an error the user was shown, with its stable code.
pub fn error(host: &HtmlElement, code: &str, message: &str) {
    emit(host, "pientegra:error", &object(&[("code", text(code)), ("message", text(message))]));
}

/// `pientegra:token-expired`: the server no longer accepts the token (`failure` says why).
pub fn token_refused(host: &HtmlElement, failure: &ApiFailure) {
    emit(host, "pientegra:token-expired", &object(&[("code", text(failure.code()))]));
}
