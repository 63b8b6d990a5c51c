//! The deposit widget: amount entry, preset amounts, the deposit button, the
//! balance, and the status panel of the deposit in progress.

use leptos::prelude::*;
use leptos::task::spawn_local;
use pientegra_shared::status::IntentStatus;
use pientegra_shared::{Amount, Locale};
use web_sys::Window;

use super::amount_field::AmountField;
use super::deposit_status::{DepositStatus, Offer, Panel};
use super::{amount_problem, balance_text, check_amount, load_problem, unique_id, yes_no};
use crate::browser;
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, api_error, t, tf};
use crate::options::{OpenMode, Options};

/// Preset amounts, in lira.
const PRESETS: [u64; 4] = [100, 250, 500, 1_000];

/// Where the hosted page goes once the server hands out its address.
enum Target {
    /// The popup opened in the click handler.
    Popup(Window),
    /// A full-page redirect.
    ThisTab,
    /// The popup was blocked; wait for "continue in this tab".
    Blocked,
}

/// The deposit widget.
#[component]
pub fn DepositWidget(options: Options) -> impl IntoView {
    let Options { client, locale, mode, theme } = options;
    let feed = use_event_source(&client);
    let input_id = unique_id("deposit-amount");

    let input = RwSignal::new(String::new());
    let attempted = RwSignal::new(false);
    let input_error = amount_problem(input, attempted, locale);

    // The deposit this widget follows, and the stages before the server knows it.
    let tracked = RwSignal::new(browser::pending_deposit());
    let creating = RwSignal::new(false);
    let blocked = RwSignal::new(false);
    let continue_requested = RwSignal::new(false);
    let failure = RwSignal::new(None::<String>);

    // Back from a full-page redirect (or a reload): show the pending deposit's live status.
    if let Some(intent_id) = tracked.get_untracked() {
        let client = client.clone();
        spawn_local(async move {
            match client.deposit(&intent_id).await {
                Ok(deposit) => feed.upsert_deposit(deposit),
                Err(e) if e.is_not_found() => tracked.set(None),
                Err(_) => {}
            }
        });
    }

    // The tracked deposit as the feed knows it.
    let current = move || {
        tracked.with(|id| {
            let id = id.as_deref()?;
            feed.with(|a| a.deposits.iter().find(|d| d.intent_id == id).cloned())
        })
    };

    // Once the outcome is known there is nothing to come back for.
    Effect::new(move |_| {
        if let Some(deposit) = current() {
            if deposit.status.is_final() {
                browser::forget_pending_deposit(Some(&deposit.intent_id));
            }
        }
    });

    let panel = Memo::new(move |_| {
        if let Some(message) = failure.get() {
            return Panel::Failed(message);
        }
        let deposit = current();
        let still_waiting = deposit.as_ref().is_none_or(|d| d.status == IntentStatus::Reserved);
        if blocked.get() && still_waiting {
            return Panel::Blocked;
        }
        match deposit {
            Some(deposit) => Panel::Deposit(Box::new(deposit)),
            None if creating.get() => Panel::Creating,
            None => Panel::Idle,
        }
    });

    let submit = {
        let client = client.clone();
        let input_id = input_id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            attempted.set(true);
            if creating.get_untracked() {
                return;
            }
            let Ok(amount) = check_amount(&input.get_untracked(), locale) else {
                browser::focus(&input_id);
                return;
            };
            // The popup must open now, inside the click, before anything awaits.
            let target = match mode {
                OpenMode::Redirect => Target::ThisTab,
                OpenMode::Popup | OpenMode::Auto => {
                    match browser::open_blank_popup(t(locale, T::PopupTitle), t(locale, T::PopupLoading)) {
                        Some(popup) => Target::Popup(popup),
                        None if mode == OpenMode::Auto => Target::ThisTab,
                        None => Target::Blocked,
                    }
                }
            };
            failure.set(None);
            tracked.set(None);
            continue_requested.set(false);
            blocked.set(matches!(target, Target::Blocked));
            creating.set(true);
            let client = client.clone();
            spawn_local(async move {
                let user = feed.with_untracked(|a| a.user.clone()).flatten().unwrap_or_default();
                let key = browser::idempotency_key("deposit", &format!("{user}|{amount}"));
                let result = client.create_deposit(amount, &key).await;
                creating.set(false);
                match result {
                    Ok(deposit) => {
                        browser::forget_idempotency_key("deposit");
                        let url = deposit.deposit_url.clone();
                        let intent_id = deposit.intent_id.clone();
                        feed.upsert_deposit(deposit);
                        browser::remember_pending_deposit(&intent_id);
                        tracked.set(Some(intent_id));
                        if !browser::is_safe_deposit_url(&url) {
                            if let Target::Popup(popup) = &target {
                                let _ = popup.close();
                            }
                            blocked.set(false);
                            failure.set(Some(t(locale, T::UnsafeUrl).to_owned()));
                            return;
                        }
                        match target {
                            Target::Popup(popup) => {
                                browser::navigate_popup(&popup, &url);
                            }
                            Target::ThisTab => browser::redirect(&url),
                            Target::Blocked => {
                                if continue_requested.get_untracked() {
                                    blocked.set(false);
                                    browser::redirect(&url);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if let Target::Popup(popup) = &target {
                            let _ = popup.close();
                        }
                        if !e.is_transient() {
                            // The server's answer is final for this key; the next try gets a new one.
                            browser::forget_idempotency_key("deposit");
                        }
                        blocked.set(false);
                        failure.set(Some(api_error(locale, &e)));
                    }
                }
            });
        }
    };

    // The button the status panel offers.
    let focus_id = input_id.clone();
    let on_offer = Callback::new(move |offer: Offer| {
        let deposit = untrack(current);
        match offer {
            // "Continue in this tab" after a blocked popup.
            Offer::ContinueHere => match deposit {
                Some(deposit) if browser::is_safe_deposit_url(&deposit.deposit_url) => {
                    // Coming back (possibly from the back-forward cache) shows the live status, not the warning.
                    blocked.set(false);
                    browser::remember_pending_deposit(&deposit.intent_id);
                    browser::redirect(&deposit.deposit_url);
                }
                _ => continue_requested.set(true),
            },
            Offer::Reopen => {
                if let Some(deposit) = deposit.filter(|d| browser::is_safe_deposit_url(&d.deposit_url)) {
                    browser::remember_pending_deposit(&deposit.intent_id);
                    match mode {
                        OpenMode::Redirect => browser::redirect(&deposit.deposit_url),
                        OpenMode::Popup | OpenMode::Auto => browser::open_or_redirect(&deposit.deposit_url),
                    }
                }
            }
            Offer::NewDeposit | Offer::StartAgain => {
                browser::forget_pending_deposit(tracked.get_untracked().as_deref());
                tracked.set(None);
                failure.set(None);
                blocked.set(false);
                browser::focus(&focus_id);
            }
        }
    });

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
                    disabled=Signal::from(creating)
                    sign="₺"
                />
                <div class="pk-presets" role="group" aria-label=t(locale, T::Presets)>{presets}</div>
                <button type="submit" class="pk-button pk-primary" data-testid="deposit-submit" aria-disabled=Signal::derive(move || yes_no(creating.get()))>
                    {button_text}
                </button>
            </form>
            <DepositStatus locale panel feed on_offer />
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
