//! The embedding options, `{endpoint, token, locale, mode, theme}`, read once
//! from the JavaScript object handed to a mount function.

use js_sys::Reflect;
use pientegra_shared::Locale;
use wasm_bindgen::JsValue;

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
}

impl OpenMode {
    fn parse(s: &str) -> Option<OpenMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "popup" => Some(OpenMode::Popup),
            "redirect" => Some(OpenMode::Redirect),
            "auto" => Some(OpenMode::Auto),
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
            "auto" | "system" => Some(Theme::Auto),
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
}

impl Options {
    /// Reads the options object. `token` is required; `endpoint` defaults to
    /// the page's origin, `locale` to the page's `<html lang>` (else Turkish),
    /// `mode` to `popup` and `theme` to `light`. Unknown values fall back to
    /// the defaults rather than failing, so a typo never breaks a payment page.
    pub fn from_js(value: &JsValue) -> Result<Options, JsValue> {
        let token =
            string_field(value, "token").ok_or_else(|| js_sys::Error::new("pientegra: options.token is required"))?;
        let endpoint = string_field(value, "endpoint")
            .or_else(|| leptos::prelude::window().location().origin().ok())
            .unwrap_or_default();
        let locale = string_field(value, "locale")
            .and_then(|tag| Locale::from_tag(&tag))
            .or_else(page_locale)
            .unwrap_or_default();
        let mode = string_field(value, "mode").and_then(|s| OpenMode::parse(&s)).unwrap_or_default();
        let theme = string_field(value, "theme").and_then(|s| Theme::parse(&s)).unwrap_or_default();
        Ok(Options { client: Client::new(&endpoint, &token), locale, mode, theme })
    }
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
