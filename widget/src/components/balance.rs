//! A balance card: the available balance, large, and what is reserved.

use leptos::prelude::*;

use super::{balance_text, load_problem};
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, t};
use crate::options::Options;

/// The user's balance as the server reports it.
#[component]
pub fn BalanceCard(options: Options) -> impl IntoView {
    let Options { client, locale, theme, .. } = options;
    let feed = use_event_source(&client);
    let available = balance_text(feed, locale, |b| b.available);
    let reserved = balance_text(feed, locale, |b| b.reserved);
    let problem = load_problem(feed, locale);
    view! {
        <section class="pk pk-balance-card" data-pk-theme=theme.as_str() lang=locale.as_str()>
            <p class="pk-label">{t(locale, T::Balance)}</p>
            <p class="pk-big" data-testid="wallet-balance" aria-live="polite">{available}</p>
            <p class="pk-hint">
                {t(locale, T::Reserved)} ": " <span data-testid="wallet-reserved">{reserved}</span>
            </p>
            <p class="pk-error" role="alert">{problem}</p>
        </section>
    }
}
