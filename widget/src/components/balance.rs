//! A balance card: the available balance, large, and what is reserved.

use leptos::prelude::*;

use crate::hooks::use_event_source;
use crate::i18n::{Text as T, api_error, t};
use crate::options::Options;

/// The user's balance as the server reports it.
#[component]
pub fn BalanceCard(options: Options) -> impl IntoView {
    let Options { client, locale, theme, .. } = options;
    let feed = use_event_source(&client);
    let available =
        move || feed.balance.with(|b| b.as_ref().map(|b| b.available.format(locale))).unwrap_or_else(|| "—".to_owned());
    let reserved =
        move || feed.balance.with(|b| b.as_ref().map(|b| b.reserved.format(locale))).unwrap_or_else(|| "—".to_owned());
    let problem = move || feed.problem.get().map(|e| api_error(locale, &e));
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
