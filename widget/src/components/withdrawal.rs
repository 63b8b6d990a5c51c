//! The withdrawal form: amount, IBAN and holder name, the available and
//! reserved balance, and the progress of the last request.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use pientegra_shared::Amount;
use pientegra_shared::iban::{Iban, group_for_display};
use pientegra_shared::status::WithdrawalStatus;
use web_sys::HtmlInputElement;

use super::amount_field::AmountField;
use super::{FlowHandle, balance_text, invalid, tell_host_about_account, to_flow, unique_id, yes_no};
use crate::flows::{FieldIds, Form, Web, WithdrawalFlow};
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, t, tf};
use crate::options::Options;

/// The withdrawal form.
#[component]
pub fn WithdrawalForm(options: Options) -> impl IntoView {
    let Options { client, locale, theme, host, .. } = options;
    let feed = use_event_source(&client);
    tell_host_about_account(feed, host.clone());
    let (amount_id, iban_id, holder_id) =
        (unique_id("withdraw-amount"), unique_id("withdraw-iban"), unique_id("withdraw-holder"));

    let amount_input = RwSignal::new(String::new());
    let iban_input = RwSignal::new(String::new());
    let holder_input = RwSignal::new(String::new());

    let ids = FieldIds { amount: amount_id.clone(), iban: iban_id.clone(), holder: holder_id.clone() };
    let flow: FlowHandle<_> =
        StoredValue::new_local(Rc::new(WithdrawalFlow::new(Web::new(host, feed, client), locale, ids)));

    let amount_problem = Signal::derive(move || flow.get_value().amount_problem(&amount_input.read()));
    let iban_problem = Signal::derive(move || flow.get_value().iban_problem(&iban_input.read()));
    let holder_problem = Signal::derive(move || flow.get_value().holder_problem(&holder_input.read()));
    let pending = Signal::derive(move || flow.get_value().sending());

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(flow) = flow.try_get_value() else { return };
        let (amount, iban, holder) =
            (amount_input.get_untracked(), iban_input.get_untracked(), holder_input.get_untracked());
        if let Some(attempt) = flow.start(Form { amount: &amount, iban: &iban, holder: &holder }) {
            spawn_local(async move {
                if flow.send(attempt).await {
                    amount_input.set(String::new());
                }
            });
        }
    };

    // Each status of the followed withdrawal, once, for the host page.
    Effect::new(move |last: Option<Option<(String, WithdrawalStatus)>>| {
        let withdrawal = flow.get_value().current();
        let now = withdrawal.as_ref().map(|w| (w.withdrawal_id.clone(), w.status));
        if let Some(withdrawal) = withdrawal.as_ref().filter(|_| last.flatten() != now) {
            flow.get_value().status_changed(withdrawal);
        }
        now
    });
    let data_status = Signal::derive(move || flow.get_value().data_status());
    let status = move || flow.get_value().status();
    let status_title = Signal::derive(move || status().title);
    let status_text = Signal::derive(move || status().text);
    let step_items = move || {
        status().steps.map(|steps| {
            steps.map(|(label, state)| view! { <li class=format!("pk-step pk-step-{state}")>{label}</li> })
        })
    };

    let iban_hint = Signal::derive(move || {
        t(locale, if Iban::parse(&iban_input.read()).is_ok() { T::IbanValid } else { T::IbanHint }).to_owned()
    });
    let iban_error_span = move || {
        let message = iban_problem.get();
        (!message.is_empty()).then(|| view! { <span data-testid="iban-error">{message}</span> })
    };
    let on_iban_input = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        iban_input.set(regroup_iban(&input));
    };
    let button_text =
        Signal::derive(move || t(locale, if pending.get() { T::Sending } else { T::WithdrawButton }).to_owned());

    view! {
        <section class="pk pk-withdrawal" data-pk-theme=theme.as_str() lang=locale.as_str()>
            <header class="pk-head">
                <h2 class="pk-title">{t(locale, T::WithdrawTitle)}</h2>
                <dl class="pk-amounts">
                    <div>
                        <dt>{t(locale, T::Available)}</dt>
                        <dd data-testid="available" aria-live="polite">{balance_text(feed, locale, |b| b.available)}</dd>
                    </div>
                    <div>
                        <dt>{t(locale, T::Reserved)}</dt>
                        <dd data-testid="reserved" aria-live="polite">{balance_text(feed, locale, |b| b.reserved)}</dd>
                    </div>
                </dl>
            </header>
            <form class="pk-form" novalidate on:submit=on_submit>
                <AmountField
                    id=amount_id.clone()
                    label=t(locale, T::AmountLabel)
                    hint=tf(locale, T::AmountHint, &[&Amount::MIN.format(locale), &Amount::MAX.format(locale)])
                    testid="withdraw-amount"
                    value=amount_input
                    error=amount_problem
                    disabled=pending
                    sign="₺"
                />
                <div class="pk-field">
                    <label class="pk-label" for=iban_id.clone()>{t(locale, T::IbanLabel)}</label>
                    <input
                        id=iban_id.clone()
                        class="pk-input pk-iban"
                        type="text"
                        inputmode="text"
                        autocomplete="off"
                        autocapitalize="characters"
                        spellcheck="false"
                        placeholder="TR00 0000 0000 0000 0000 0000 00"
                        data-testid="withdraw-iban"
                        aria-invalid=invalid(iban_problem)
                        aria-describedby=format!("{iban_id}-error {iban_id}-hint")
                        prop:value=iban_input
                        on:input=on_iban_input
                        on:blur=to_flow(flow, |f, _| f.left_iban())
                    />
                    <p class="pk-hint" id=format!("{iban_id}-hint")>{iban_hint}</p>
                    <p class="pk-error" id=format!("{iban_id}-error") aria-live="polite">{iban_error_span}</p>
                </div>
                <div class="pk-field">
                    <label class="pk-label" for=holder_id.clone()>{t(locale, T::HolderLabel)}</label>
                    <input
                        id=holder_id.clone()
                        class="pk-input"
                        type="text"
                        autocomplete="name"
                        maxlength="140"
                        data-testid="withdraw-holder"
                        aria-invalid=invalid(holder_problem)
                        aria-describedby=format!("{holder_id}-error")
                        prop:value=holder_input
                        on:input:target=move |ev| holder_input.set(ev.target().value())
                        on:blur=to_flow(flow, |f, _| f.left_holder())
                    />
                    <p class="pk-error" id=format!("{holder_id}-error") aria-live="polite">{holder_problem}</p>
                </div>
                <button type="submit" class="pk-button pk-primary" data-testid="withdraw-submit" aria-disabled=Signal::derive(move || yes_no(pending.get()))>
                    {button_text}
                </button>
            </form>
            <div class="pk-status" data-testid="withdraw-status" data-status=data_status aria-live="polite">
                <ol class="pk-steps">{step_items}</ol>
                <p class="pk-status-title">{status_title}</p>
                <p class="pk-status-text">{status_text}</p>
            </div>
        </section>
    }
}

/// Regroups the IBAN field in fours as it is typed, keeping the caret after
/// the same character. Digits typed first are taken as a Turkish IBAN.
fn regroup_iban(input: &HtmlInputElement) -> String {
    let raw = input.value();
    let caret = input.selection_start().ok().flatten().map_or(usize::MAX, |c| c as usize);
    let mut before: usize = raw.chars().take(caret).filter(|c| !c.is_whitespace()).count();
    let mut compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.chars().take(2).all(|c| c.is_ascii_digit()) && compact.len() >= 2 {
        compact.insert_str(0, "TR");
        before += 2;
    }
    let grouped = group_for_display(&compact);
    if grouped != raw {
        input.set_value(&grouped);
        let mut seen = 0;
        let mut position = grouped.chars().count();
        for (i, c) in grouped.chars().enumerate() {
            if seen == before {
                position = i;
                break;
            }
            if !c.is_whitespace() {
                seen += 1;
            }
        }
        let position = u32::try_from(position).unwrap_or(u32::MAX);
        let _ = input.set_selection_range(position, position);
    }
    grouped
}
