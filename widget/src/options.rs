//! The embedding options, `{endpoint, token, locale, mode, theme}`, read once
//! from the JavaScript object handed to a mount function. A value the widget
//! does not know is refused with a message naming it (and a stable `code` on
//! the thrown error), never guessed at: the loader shows it in the element.

use js_sys::Reflect;
use pientegra_shared::Locale;
use wasm_bindgen::JsValue;
use web_sys::HtmlElement;

use crate::api::Client;

/// How the hosted deposit page is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OpenMode {
    /// A popup opened inside the click handler; if the browser blocks it, the
    /// user is offered to continue in this tab.
    #[default]
    Popup,
    /// A full-page redirect; the pending deposit is remembered for the way back.
    Redirect,
    /// A popup, silently falling back to a redirect when it is blocked.
    Auto,
    /// An in-page modal holding the hosted page in an iframe, where the hosted
    /// page lets this page frame it; a popup where it does not.
    Iframe,
}

impl OpenMode {
    fn parse(s: &str) -> Option<OpenMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "popup" => Some(OpenMode::Popup),
            "redirect" => Some(OpenMode::Redirect),
            "auto" => Some(OpenMode::Auto),
            "iframe" => Some(OpenMode::Iframe),
            _ => None,
        }
    }
}

/// The colour scheme; partners fine-tune it through the `--pk-*` CSS custom properties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Theme {
    #[default]
    Light,
    Dark,
    /// Follows the user's `prefers-color-scheme`.
    Auto,
}

impl Theme {
    fn parse(s: &str) -> Option<Theme> {
        match s.trim().to_ascii_lowercase().as_str() {
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            "auto" => Some(Theme::Auto),
            _ => None,
        }
    }

    /// The value of the root element's `data-pk-theme` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
            Theme::Auto => "auto",
        }
    }
}

/// Everything a mounted widget is configured with. Holds no secret: the
/// widget token is the only credential a browser ever sees.
#[derive(Clone, Debug)]
pub struct Options {
    pub client: Client,
    pub locale: Locale,
    pub mode: OpenMode,
    pub theme: Theme,
    /// The element the widget is mounted in: where its events are dispatched.
    pub host: HtmlElement,
}

impl Options {
    /// Reads the options object. `token` is required; `endpoint` defaults to
    /// the page's origin, `locale` to the page's `<html lang>` (else Turkish),
    /// `mode` to `popup` and `theme` to `light`.
    pub fn from_js(value: &JsValue, host: HtmlElement) -> Result<Options, JsValue> {
        let token = string_field(value, "token")
            .ok_or_else(|| refusal("token_missing", "the token is missing: set the `token` attribute or option"))?;
        if !is_well_formed_token(&token) {
            return Err(refusal("token_malformed", "the token is not a widget token (three base64url parts)"));
        }
        let endpoint = string_field(value, "endpoint")
            .or_else(|| leptos::prelude::window().location().origin().ok())
            .unwrap_or_default();
        let locale = match string_field(value, "locale") {
            Some(tag) => Locale::from_tag(&tag).ok_or_else(|| unknown("locale", &tag, "tr, en"))?,
            None => page_locale().unwrap_or_default(),
        };
        let mode = choice(value, "mode", OpenMode::parse, "popup, redirect, auto, iframe")?;
        let theme = choice(value, "theme", Theme::parse, "light, dark, auto")?;
        Ok(Options { client: Client::new(&endpoint, &token), locale, mode, theme, host })
    }
}

/// Whether `token` has the shape of a widget token: three non-empty base64url
/// parts separated by dots. Only the server can tell whether it is valid.
pub fn is_well_formed_token(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// An optional option with a fixed set of values: the default when absent, a refusal when unknown.
fn choice<T: Default>(value: &JsValue, name: &str, parse: fn(&str) -> Option<T>, known: &str) -> Result<T, JsValue> {
    match string_field(value, name) {
        Some(given) => parse(&given).ok_or_else(|| unknown(name, &given, known)),
        None => Ok(T::default()),
    }
}

fn unknown(name: &str, given: &str, known: &str) -> JsValue {
    refusal("invalid_option", &format!("unknown {name} \"{given}\" (known: {known})"))
}

/// A thrown `Error` whose message says what is wrong and whose `code` is stable.
pub fn refusal(code: &str, message: &str) -> JsValue {
    let error = js_sys::Error::new(&format!("pientegra: {message}"));
    let _ = Reflect::set(&error, &JsValue::from_str("code"), &JsValue::from_str(code));
    error.into()
}

/// A non-empty string property of a JS object.
fn string_field(object: &JsValue, name: &str) -> Option<String> {
    if !object.is_object() {
        return None;
    }
    Reflect::get(object, &JsValue::from_str(name))
        .ok()?
        .as_string()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The language of the embedding page, from `<html lang>`.
fn page_locale() -> Option<Locale> {
    let lang = leptos::prelude::document().document_element()?.get_attribute("lang")?;
    Locale::from_tag(&lang)
}
