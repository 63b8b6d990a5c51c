//! The activity list: deposits and withdrawals, newest first.

use leptos::prelude::*;
use pientegra_shared::Locale;
use pientegra_shared::api::{Deposit, Withdrawal};

use crate::browser::format_time;
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, intent_status, t, withdrawal_status};
use crate::options::Options;

/// One row of the list.
#[derive(Clone, PartialEq)]
enum Item {
    Deposit(Deposit),
    Withdrawal(Withdrawal),
}

/// Every deposit and withdrawal of the user the page knows of.
#[component]
pub fn Activity(options: Options) -> impl IntoView {
    let Options { client, locale, theme, .. } = options;
    let feed = use_event_source(&client);
    let items = Memo::new(move |_| {
        let mut items: Vec<Item> = feed.deposits.get().into_iter().map(Item::Deposit).collect();
        items.extend(feed.withdrawals.get().into_iter().map(Item::Withdrawal));
        items.sort_by_key(|item| std::cmp::Reverse(created(item)));
        items
    });
    let rows = move || {
        let items = items.get();
        if items.is_empty() {
            return view! { <li class="pk-empty">{t(locale, T::NoActivity)}</li> }.into_any();
        }
        items.into_iter().map(|item| row(locale, item)).collect_view().into_any()
    };
    view! {
        <section class="pk pk-activity" data-pk-theme=theme.as_str() lang=locale.as_str()>
            <h2 class="pk-title">{t(locale, T::Activity)}</h2>
            <ul class="pk-list" data-testid="activity" aria-live="polite">{rows}</ul>
        </section>
    }
}

fn created(item: &Item) -> i64 {
    match item {
        Item::Deposit(d) => d.created_at.timestamp_millis(),
        Item::Withdrawal(w) => w.created_at.timestamp_millis(),
    }
}

fn row(locale: Locale, item: Item) -> impl IntoView {
    let (kind, kind_label, sign, amount, status, status_label, reference, at) = match &item {
        Item::Deposit(d) => (
            "deposit",
            t(locale, T::KindDeposit),
            "+",
            d.amount,
            d.status.as_str(),
            intent_status(locale, d.status),
            d.reference_no.clone(),
            format_time(&d.created_at, locale),
        ),
        Item::Withdrawal(w) => (
            "withdrawal",
            t(locale, T::KindWithdrawal),
            "−",
            w.amount,
            w.status.as_str(),
            withdrawal_status(locale, w.status),
            w.reference_no.clone(),
            format_time(&w.created_at, locale),
        ),
    };
    view! {
        <li class=format!("pk-item pk-item-{kind}") data-testid="activity-item" data-kind=kind data-status=status>
            <span class="pk-item-kind">{kind_label}</span>
            <span class="pk-item-amount">{format!("{sign}{}", amount.format(locale))}</span>
            <span class=format!("pk-badge pk-badge-{}", status.to_ascii_lowercase())>{status_label}</span>
            <span class="pk-item-meta">{reference} " · " {at}</span>
        </li>
    }
}
