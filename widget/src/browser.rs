//! Thin, stateless helpers over browser APIs: session storage, randomness,
//! time, windows and URLs. Failures of optional APIs (storage disabled, a
//! sandboxed frame) degrade to "nothing remembered" rather than panicking.

use leptos::prelude::{document, window};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Storage, Url, Window};

/// Prefix of every sessionStorage key the widget writes.
const STORAGE_PREFIX: &str = "pientegra:";

fn session() -> Option<Storage> {
    window().session_storage().ok().flatten()
}

/// Reads `pientegra:<key>` from sessionStorage.
pub fn session_get(key: &str) -> Option<String> {
    session()?.get_item(&format!("{STORAGE_PREFIX}{key}")).ok().flatten()
}

/// Writes `pientegra:<key>` to sessionStorage (a no-op where storage is unavailable).
pub fn session_set(key: &str, value: &str) {
    if let Some(storage) = session() {
        let _ = storage.set_item(&format!("{STORAGE_PREFIX}{key}"), value);
    }
}

/// Removes `pientegra:<key>` from sessionStorage.
pub fn session_remove(key: &str) {
    if let Some(storage) = session() {
        let _ = storage.remove_item(&format!("{STORAGE_PREFIX}{key}"));
    }
}

/// A random (version 4) UUID from `crypto.getRandomValues`, which, unlike
/// `crypto.randomUUID`, also exists outside secure contexts.
pub fn uuid_v4() -> String {
    let mut bytes = [0_u8; 16];
    if let Ok(crypto) = window().crypto() {
        let _ = crypto.get_random_values_with_u8_array(&mut bytes);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// Milliseconds since the Unix epoch, by the browser's clock.
#[allow(clippy::cast_possible_truncation)] // Date.now() is an integral number of ms well within i64.
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// Milliseconds since the epoch, formatted as the user reads dates in their language.
#[cfg(feature = "demo")]
#[allow(clippy::cast_precision_loss)] // ms since 1970 fit a double's 53 bits exactly.
pub fn format_ms(ms: i64, locale: pientegra_shared::Locale) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    date.to_locale_string(locale.as_str(), &JsValue::UNDEFINED).into()
}

/// Whether the widget may send the user to `url`: https, or plain http only
/// to this machine (the sandbox during development). The server allow-lists
/// deposit hosts too; this is the browser's own last check.
pub fn is_safe_deposit_url(url: &str) -> bool {
    let Ok(parsed) = Url::new(url) else {
        return false;
    };
    match parsed.protocol().as_str() {
        "https:" => true,
        "http:" => {
            let host = parsed.hostname();
            host == "localhost" || host.ends_with(".localhost") || host == "[::1]" || host.starts_with("127.")
        }
        _ => false,
    }
}

/// Window name of the deposit popup: a second click reuses the same window.
const POPUP_NAME: &str = "pientegra_deposit";

/// Opens the deposit popup on `about:blank`. Must run synchronously inside the
/// click handler, before any `await`, or the browser treats it as unsolicited.
/// The popup's `opener` is cut at once, so the hosted page can never reach
/// back into this one. `None` means the browser blocked it.
pub fn open_blank_popup(title: &str, message: &str) -> Option<Window> {
    let popup = window().open_with_url_and_target("about:blank", POPUP_NAME).ok().flatten()?;
    if popup.closed().unwrap_or(true) {
        return None;
    }
    let _ = popup.set_opener(&JsValue::NULL);
    if let Some(doc) = popup.document() {
        doc.set_title(title);
        // Text only: an about:blank popup inherits this page's CSP, which may forbid inline styles.
        if let Some(body) = doc.body() {
            body.set_text_content(Some(message));
        }
    }
    Some(popup)
}

/// Sends an open popup to `url`.
pub fn navigate_popup(popup: &Window, url: &str) -> bool {
    !popup.closed().unwrap_or(true) && popup.location().set_href(url).is_ok()
}

/// Leaves the page for `url` (a full-page redirect).
pub fn redirect(url: &str) {
    let _ = window().location().assign(url);
}

/// Moves keyboard focus to the element with `id`, if it exists.
pub fn focus(id: &str) {
    use wasm_bindgen::JsCast;
    let element = document().get_element_by_id(id);
    if let Some(element) = element.and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
        let _ = element.focus();
    }
}
