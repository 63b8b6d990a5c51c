//! The deposit widget: amount entry, preset amounts, the deposit button, the
//! balance, and the status panel of the deposit in progress.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use pientegra_shared::status::IntentStatus;
use pientegra_shared::{Amount, Locale};

use super::amount_field::AmountField;
use super::deposit_status::DepositStatus;
use super::hosted_page::HostedPageModal;
use super::{FlowHandle, balance_text, load_problem, tell_host_about_account, to_flow, unique_id, yes_no};
use crate::flows::{DepositFlow, Offer, Web, check_amount};
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, t, tf};
use crate::options::{OpenMode, Options};

/// Preset amounts, in lira.
const PRESETS: [u64; 4] = [100, 250, 500, 1_000];

/// The deposit widget.
#[component]
pub fn DepositWidget(options: Options) -> impl IntoView {
    let Options { client, locale, mode, theme, host } = options;
    let feed = use_event_source(&client);
    tell_host_about_account(feed, host.clone());
    let input_id = unique_id("deposit-amount");
    let input = RwSignal::new(String::new());

    let flow = Rc::new(DepositFlow::new(Web::new(host, feed, client), locale, mode, input_id.clone()));
    // Back from a full-page redirect (or a reload): show the pending deposit's live status.
    spawn_local({
        let flow = flow.clone();
        async move { flow.resume().await }
    });
    let flow: FlowHandle<_> = StoredValue::new_local(flow);

    // Each status of the followed deposit, once.
    Effect::new(move |last: Option<Option<(String, IntentStatus)>>| {
        let deposit = flow.get_value().current();
        let now = deposit.as_ref().map(|d| (d.intent_id.clone(), d.status));
        if let Some(deposit) = deposit.as_ref().filter(|_| last.flatten() != now) {
            flow.get_value().status_changed(deposit);
        }
        now
    });

    let panel = Memo::new(move |_| flow.get_value().panel());
    let input_error = Signal::derive(move || flow.get_value().amount_problem(&input.read()));
    let creating = Signal::derive(move || flow.get_value().creating());
    let notice = Signal::derive(move || flow.get_value().notice());
    let modal = Memo::new(move |_| flow.get_value().modal());

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(flow) = flow.try_get_value() else { return };
        if let Some(attempt) = flow.start(&input.get_untracked()) {
            spawn_local(async move { flow.send(attempt).await });
        }
    };
    let on_offer = Callback::new(to_flow(flow, |f, offer: Offer| f.offer(offer)));

    // An array, not a Vec: a fixed set of buttons needs no list diffing.
    let presets = PRESETS.map(|lira| {
        let amount = Amount::from_minor(lira * 100);
        let pressed = Signal::derive(move || yes_no(check_amount(&input.read(), locale) == Ok(amount)));
        view! {
            <button
                type="button"
                class="pk-preset"
                aria-pressed=pressed
                on:click=move |_| input.set(preset_text(amount, locale))
            >
                {preset_label(amount, locale)}
            </button>
        }
    });

    let balance = balance_text(feed, locale, |b| b.available);
    let load_problem = load_problem(feed, locale);
    let button_text =
        Signal::derive(move || t(locale, if creating.get() { T::Preparing } else { T::DepositButton }).to_owned());
    let on_close = Callback::new(to_flow(flow, |f, ()| f.close_modal()));
    let open_window = Callback::new(to_flow(flow, |f, ()| f.open_in_window()));

    view! {
        <section class="pk pk-deposit" data-pk-theme=theme.as_str() lang=locale.as_str()>
            <header class="pk-head">
                <h2 class="pk-title">{t(locale, T::DepositTitle)}</h2>
                <p class="pk-balance">
                    <span class="pk-balance-label">{t(locale, T::Balance)}</span>
                    " "
                    <strong data-testid="balance" aria-live="polite">{balance}</strong>
                </p>
            </header>
            <p class="pk-error pk-load-error" role="alert">{load_problem}</p>
            <form class="pk-form" novalidate on:submit=submit>
                <AmountField
                    id=input_id.clone()
                    label=t(locale, T::AmountLabel)
                    hint=tf(locale, T::AmountHint, &[&Amount::MIN.format(locale), &Amount::MAX.format(locale)])
                    testid="deposit-amount"
                    value=input
                    error=input_error
                    disabled=creating
                    sign="₺"
                />
                <div class="pk-presets" role="group" aria-label=t(locale, T::Presets)>{presets}</div>
                <button type="submit" class="pk-button pk-primary" data-testid="deposit-submit" aria-disabled=Signal::derive(move || yes_no(creating.get()))>
                    {button_text}
                </button>
            </form>
            <p class="pk-notice" data-testid="deposit-notice" role="status">{notice}</p>
            <DepositStatus locale panel feed on_offer />
            {(mode == OpenMode::Iframe).then(|| view! {
                <HostedPageModal locale modal on_close open_window />
            })}
        </section>
    }
}

/// A preset's label: `"1.000 ₺"` / `"₺1,000"`, like [`Amount::format`] without the `,00`.
fn preset_label(amount: Amount, locale: Locale) -> String {
    let number = preset_text(amount, locale);
    match locale {
        Locale::Tr => format!("{number} ₺"),
        Locale::En => format!("₺{number}"),
    }
}

/// The text a preset puts in the field: `"1.000"` / `"1,000"`, no decimals.
fn preset_text(amount: Amount, locale: Locale) -> String {
    let number = amount.format_number(locale);
    number.strip_suffix(&format!("{}00", locale.decimal_separator())).map(str::to_owned).unwrap_or(number)
}
