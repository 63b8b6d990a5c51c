//! The deposit widget: amount entry, preset amounts, the deposit button, the
//! balance, and the status panel of the deposit in progress.

use leptos::prelude::*;
use leptos::task::spawn_local;
use pientegra_shared::api::codes;
use pientegra_shared::status::IntentStatus;
use pientegra_shared::{Amount, Locale};
use web_sys::Window;

use super::amount_field::AmountField;
use super::deposit_status::{DepositStatus, Offer, Panel};
use super::hosted_page::{HostedPageModal, Modal};
use super::{amount_problem, balance_text, check_amount, load_problem, tell_host_about_account, unique_id, yes_no};
use crate::api::Framing;
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, amount_error, api_error, t, tf};
use crate::options::{OpenMode, Options};
use crate::{browser, host_events};

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
    /// The in-page modal (iframe mode), showing that the deposit is being prepared.
    Modal,
}

/// The deposit widget.
#[component]
pub fn DepositWidget(options: Options) -> impl IntoView {
    let Options { client, locale, mode, theme, host } = options;
    let feed = use_event_source(&client);
    tell_host_about_account(feed, host.clone());
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
    // Iframe mode: the modal, whether the last deposit's page may be framed, and why it was not.
    let modal = RwSignal::new(Modal::Closed);
    let framing = StoredValue::new(None::<Framing>);
    let notice = RwSignal::new(String::new());
    let report = {
        let host = host.clone();
        move |code: &str, message: String| {
            host_events::error(&host, code, &message);
            failure.set(Some(message));
        }
    };

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

    let status_host = host.clone();
    // Each status of the followed deposit, once, for the host page. Once the
    // outcome is known there is nothing to come back for; once the transfer
    // is reported, the hosted page's modal has done its job.
    Effect::new(move |last: Option<Option<(String, IntentStatus)>>| {
        let deposit = current();
        let now = deposit.as_ref().map(|d| (d.intent_id.clone(), d.status));
        if let Some(deposit) = deposit.as_ref().filter(|_| last.flatten() != now) {
            host_events::deposit_status(&status_host, deposit);
            if deposit.status != IntentStatus::Reserved {
                modal.set(Modal::Closed);
            }
            if deposit.status.is_final() {
                browser::forget_pending_deposit(Some(&deposit.intent_id));
            }
        }
        now
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
            let amount = match check_amount(&input.get_untracked(), locale) {
                Ok(amount) => amount,
                Err(code) => {
                    host_events::error(&host, code, &amount_error(locale, code));
                    browser::focus(&input_id);
                    return;
                }
            };
            // The popup must open now, inside the click, before anything awaits.
            let target = match mode {
                OpenMode::Redirect => Target::ThisTab,
                OpenMode::Iframe => {
                    modal.set(Modal::Loading);
                    Target::Modal
                }
                OpenMode::Popup | OpenMode::Auto => {
                    match browser::open_blank_popup(t(locale, T::PopupTitle), t(locale, T::PopupLoading)) {
                        Some(popup) => Target::Popup(popup),
                        None if mode == OpenMode::Auto => Target::ThisTab,
                        None => Target::Blocked,
                    }
                }
            };
            failure.set(None);
            notice.set(String::new());
            tracked.set(None);
            continue_requested.set(false);
            blocked.set(matches!(target, Target::Blocked));
            creating.set(true);
            let (client, report) = (client.clone(), report.clone());
            spawn_local(async move {
                let user = feed.with_untracked(|a| a.user.clone()).flatten().unwrap_or_default();
                let key = browser::idempotency_key("deposit", &format!("{user}|{amount}"));
                let result = client.create_deposit(amount, &key).await;
                creating.set(false);
                match result {
                    Ok((deposit, frame)) => {
                        browser::forget_idempotency_key("deposit");
                        framing.set_value(Some(frame.clone()));
                        let url = deposit.deposit_url.clone();
                        let intent_id = deposit.intent_id.clone();
                        feed.upsert_deposit(deposit);
                        browser::remember_pending_deposit(&intent_id);
                        tracked.set(Some(intent_id));
                        if !browser::is_safe_deposit_url(&url) {
                            if let Target::Popup(popup) = &target {
                                let _ = popup.close();
                            }
                            modal.set(Modal::Closed);
                            blocked.set(false);
                            report(codes::DEPOSIT_URL_NOT_ALLOWED, t(locale, T::UnsafeUrl).to_owned());
                            return;
                        }
                        match target {
                            Target::Popup(popup) => {
                                browser::navigate_popup(&popup, &url);
                            }
                            Target::ThisTab => browser::redirect(&url),
                            Target::Modal => show_framed(modal, notice, &frame, url, locale),
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
                        modal.set(Modal::Closed);
                        if e.is_auth() {
                            feed.set_problem(e.clone());
                        }
                        if !e.is_transient() {
                            // The server's answer is final for this key; the next try gets a new one.
                            browser::forget_idempotency_key("deposit");
                        }
                        blocked.set(false);
                        report(e.code(), api_error(locale, &e));
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
                        OpenMode::Iframe => match framing.get_value() {
                            Some(frame) => show_framed(modal, notice, &frame, deposit.deposit_url, locale),
                            None => browser::open_or_redirect(&deposit.deposit_url),
                        },
                    }
                }
            }
            Offer::NewDeposit | Offer::StartAgain => {
                browser::forget_pending_deposit(tracked.get_untracked().as_deref());
                tracked.set(None);
                failure.set(None);
                notice.set(String::new());
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
            <p class="pk-notice" data-testid="deposit-notice" role="status">{notice}</p>
            <DepositStatus locale panel feed on_offer />
            {(mode == OpenMode::Iframe).then(|| view! {
                <HostedPageModal locale modal open_popup=Callback::new(|url: String| browser::open_or_redirect(&url)) />
            })}
        </section>
    }
}

/// Iframe mode, once the address is known: the hosted page in the modal
/// where it may be framed here; otherwise in a popup (the click's activation
/// may still allow one), with a word on why, or, when the popup is blocked
/// too, the reason and a button in the modal that opens it from a new click.
fn show_framed(modal: RwSignal<Modal>, notice: RwSignal<String>, framing: &Framing, url: String, locale: Locale) {
    if framing.allowed {
        modal.set(Modal::Frame(url));
        return;
    }
    let why = t(locale, if framing.reason.as_deref() == Some("unknown") { T::FrameUnknown } else { T::FrameForbidden });
    match browser::open_blank_popup(t(locale, T::PopupTitle), t(locale, T::PopupLoading)) {
        Some(popup) if browser::navigate_popup(&popup, &url) => {
            modal.set(Modal::Closed);
            notice.set(format!("{why} {}", t(locale, T::OpenedInWindow)));
        }
        _ => modal.set(Modal::CannotFrame { url, reason: why.to_owned() }),
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
