//! The activity list: deposits and withdrawals, newest first.

use leptos::either::Either;
use leptos::prelude::*;
use pientegra_shared::Locale;

use crate::api::{Deposit, Withdrawal};
use crate::browser::format_ms;
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, intent_status, t, withdrawal_status};
use crate::options::Options;

/// One row of the list, in words.
struct Row {
    kind: &'static str,
    kind_label: &'static str,
    amount: String,
    status: &'static str,
    status_label: &'static str,
    reference: String,
    created_at_ms: i64,
}

impl Row {
    fn deposit(d: &Deposit, locale: Locale) -> Row {
        Row {
            kind: "deposit",
            kind_label: t(locale, T::KindDeposit),
            amount: format!("+{}", d.amount.format(locale)),
            status: d.status.as_str(),
            status_label: intent_status(locale, d.status),
            reference: d.reference_no.clone(),
            created_at_ms: d.created_at_ms,
        }
    }

    fn withdrawal(w: &Withdrawal, locale: Locale) -> Row {
        Row {
            kind: "withdrawal",
            kind_label: t(locale, T::KindWithdrawal),
            amount: format!("−{}", w.amount.format(locale)),
            status: w.status.as_str(),
            status_label: withdrawal_status(locale, w.status),
            reference: w.reference_no.clone(),
            created_at_ms: w.created_at_ms,
        }
    }
}

/// Every deposit and withdrawal of the user the page knows of.
#[component]
pub fn Activity(options: Options) -> impl IntoView {
    let Options { client, locale, theme, .. } = options;
    let feed = use_event_source(&client);
    let rows = move || {
        let mut rows: Vec<Row> = feed.with(|a| {
            let deposits = a.deposits.iter().map(|d| Row::deposit(d, locale));
            deposits.chain(a.withdrawals.iter().map(|w| Row::withdrawal(w, locale))).collect()
        });
        if rows.is_empty() {
            return Either::Left(view! { <li class="pk-empty">{t(locale, T::NoActivity)}</li> });
        }
        rows.sort_by_key(|row| std::cmp::Reverse(row.created_at_ms));
        Either::Right(rows.into_iter().map(|row| row_view(locale, row)).collect_view())
    };
    view! {
        <section class="pk pk-activity" data-pk-theme=theme.as_str() lang=locale.as_str()>
            <h2 class="pk-title">{t(locale, T::Activity)}</h2>
            <ul class="pk-list" data-testid="activity" aria-live="polite">{rows}</ul>
        </section>
    }
}

fn row_view(locale: Locale, row: Row) -> impl IntoView {
    let Row { kind, kind_label, amount, status, status_label, reference, created_at_ms } = row;
    view! {
        <li class=format!("pk-item pk-item-{kind}") data-testid="activity-item" data-kind=kind data-status=status>
            <span class="pk-item-kind">{kind_label}</span>
            <span class="pk-item-amount">{amount}</span>
            <span class=format!("pk-badge pk-badge-{}", status.to_ascii_lowercase())>{status_label}</span>
            <span class="pk-item-meta">{reference} " · " {format_ms(created_at_ms, locale)}</span>
        </li>
    }
}
