//! The withdrawal form: amount, IBAN and holder name, the available and
//! reserved balance, and the progress of the last request.

use leptos::prelude::*;
use leptos::task::spawn_local;
use pientegra_shared::api::codes;
use pientegra_shared::iban::{Iban, IbanError, group_for_display};
use pientegra_shared::ids::HolderName;
use pientegra_shared::status::WithdrawalStatus;
use pientegra_shared::{Amount, Locale};
use web_sys::HtmlInputElement;

use super::amount_field::AmountField;
use super::{amount_problem, balance_text, check_amount, invalid, shown, tell_host_about_account, unique_id, yes_no};
use crate::api::NewWithdrawal;
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, amount_error, api_error, holder_error, iban_error, t, tf};
use crate::options::Options;
use crate::{browser, host_events};

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
    let attempted = RwSignal::new(false);
    let iban_left = RwSignal::new(false);
    let holder_left = RwSignal::new(false);

    let amount_problem = amount_problem(amount_input, attempted, locale);
    let iban_problem = Signal::derive(move || {
        let Err(err) = Iban::parse(&iban_input.read()) else {
            return String::new();
        };
        // While the IBAN is still being typed, only a wrong character is worth interrupting for.
        let typing = !(attempted.get() || iban_left.get());
        let unfinished = match &err {
            IbanError::Empty => true,
            IbanError::UnknownCountry(cc) => cc.len() < 2,
            IbanError::WrongLength { expected, actual, .. } => actual < expected,
            _ => false,
        };
        if typing && unfinished { String::new() } else { iban_error(locale, &err) }
    });
    let holder_problem = Signal::derive(move || match HolderName::parse(&holder_input.read()) {
        Err(err) if attempted.get() || holder_left.get() => holder_error(locale, &err),
        _ => String::new(),
    });

    // The withdrawal this form follows, the request in flight, and why the last one failed.
    let tracked = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let failure = RwSignal::new(None::<String>);

    let on_submit = {
        let host = host.clone();
        let (amount_id, iban_id, holder_id) = (amount_id.clone(), iban_id.clone(), holder_id.clone());
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            attempted.set(true);
            if pending.get_untracked() {
                return;
            }
            let checked = (
                check_amount(&amount_input.get_untracked(), locale),
                Iban::parse(&iban_input.get_untracked()),
                HolderName::parse(&holder_input.get_untracked()),
            );
            let request = match checked {
                (Ok(amount), Ok(iban), Ok(holder)) => {
                    NewWithdrawal { amount, iban: iban.as_str().to_owned(), holder_name: holder.as_str().to_owned() }
                }
                (a, i, h) => {
                    // Focus the first field that needs fixing, and tell the host page why.
                    let (first, code, message) = match (a, i, h) {
                        (Err(code), ..) => (&amount_id, code, amount_error(locale, code)),
                        (_, Err(err), _) => (&iban_id, err.code(), iban_error(locale, &err)),
                        (.., Err(err)) => (&holder_id, codes::VALIDATION_FAILED, holder_error(locale, &err)),
                        _ => unreachable!("one of the fields failed"),
                    };
                    host_events::error(&host, code, &message);
                    browser::focus(first);
                    return;
                }
            };
            failure.set(None);
            tracked.set(None);
            pending.set(true);
            let (client, host) = (client.clone(), host.clone());
            spawn_local(async move {
                let user = feed.with_untracked(|a| a.user.clone()).flatten().unwrap_or_default();
                let NewWithdrawal { amount, iban, holder_name } = &request;
                let key = browser::idempotency_key("withdrawal", &format!("{user}|{amount}|{iban}|{holder_name}"));
                match client.create_withdrawal(&request, &key).await {
                    Ok(withdrawal) => {
                        browser::forget_idempotency_key("withdrawal");
                        tracked.set(Some(withdrawal.withdrawal_id.clone()));
                        feed.upsert_withdrawal(withdrawal);
                        amount_input.set(String::new());
                        attempted.set(false);
                    }
                    Err(e) => {
                        if !e.is_transient() {
                            browser::forget_idempotency_key("withdrawal");
                        }
                        if e.is_auth() {
                            feed.set_problem(e.clone());
                        }
                        let message = if e.code() == codes::INSUFFICIENT_FUNDS {
                            let available = feed.with_untracked(|a| a.balance.as_ref().map(|b| b.available)).flatten();
                            tf(locale, T::InsufficientFunds, &[&shown(available, locale)])
                        } else {
                            api_error(locale, &e)
                        };
                        host_events::error(&host, e.code(), &message);
                        failure.set(Some(message));
                    }
                }
                pending.set(false);
            });
        }
    };

    // The tracked withdrawal as the feed knows it.
    let current = move || {
        tracked.with(|id| {
            let id = id.as_deref()?;
            feed.with(|a| a.withdrawals.iter().find(|w| w.withdrawal_id == id).cloned())
        })
    };
    // Each status of the followed withdrawal, once, for the host page.
    Effect::new(move |last: Option<Option<(String, WithdrawalStatus)>>| {
        let withdrawal = current();
        let now = withdrawal.as_ref().map(|w| (w.withdrawal_id.clone(), w.status));
        if let Some(withdrawal) = withdrawal.as_ref().filter(|_| last.flatten() != now) {
            host_events::withdrawal_status(&host, withdrawal);
        }
        now
    });
    let data_status = Signal::derive(move || {
        String::from(if failure.with(Option::is_some) {
            "ERROR"
        } else if let Some(w) = current() {
            w.status.as_str()
        } else if pending.get() {
            "CREATING"
        } else {
            "IDLE"
        })
    });
    let status = move || {
        if let Some(message) = failure.get() {
            return StatusWords { steps: None, title: message, text: String::new() };
        }
        match current() {
            Some(w) => {
                let (title, detail) = withdrawal_words(locale, w.status, &w.iban_masked, w.rejected_reason.as_deref());
                StatusWords {
                    steps: Some(steps(locale, w.status)),
                    title,
                    text: format!(
                        "{detail} {}",
                        tf(locale, T::WithdrawalSummary, &[&w.amount.format(locale), &w.reference_no])
                    ),
                }
            }
            None => StatusWords {
                steps: None,
                title: String::new(),
                text: t(locale, if pending.get() { T::Sending } else { T::WithdrawIdle }).into(),
            },
        }
    };
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
                    disabled=Signal::from(pending)
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
                        on:blur=move |_| iban_left.set(true)
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
                        on:blur=move |_| holder_left.set(true)
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

/// The withdrawal status panel in words.
struct StatusWords {
    steps: Option<[(&'static str, &'static str); 3]>,
    title: String,
    text: String,
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

/// The three steps, each with its label and `done` / `current` / `todo` / `bad`.
fn steps(locale: Locale, status: WithdrawalStatus) -> [(&'static str, &'static str); 3] {
    use WithdrawalStatus::*;
    let last = match status {
        Rejected => (t(locale, T::StepRejected), "bad"),
        Returned => (t(locale, T::StepReturned), "bad"),
        Sent => (t(locale, T::StepSent), "done"),
        Approved => (t(locale, T::StepSent), "current"),
        PendingReview => (t(locale, T::StepSent), "todo"),
    };
    let review = match status {
        PendingReview => "current",
        _ => "done",
    };
    [(t(locale, T::StepReceived), "done"), (t(locale, T::StepReview), review), last]
}

/// Headline and detail for a withdrawal status.
fn withdrawal_words(
    locale: Locale,
    status: WithdrawalStatus,
    iban_masked: &str,
    reason: Option<&str>,
) -> (String, String) {
    use WithdrawalStatus::*;
    match status {
        PendingReview => (t(locale, T::WithdrawReceived).into(), t(locale, T::WithdrawReceivedHelp).into()),
        Approved => (t(locale, T::WithdrawApproved).into(), t(locale, T::WithdrawApprovedHelp).into()),
        Sent => (t(locale, T::WithdrawSent).into(), tf(locale, T::WithdrawSentHelp, &[iban_masked])),
        Rejected => (
            t(locale, T::WithdrawRejected).into(),
            format!(
                "{} {} {}",
                t(locale, T::Reason),
                reason.unwrap_or(t(locale, T::NoReason)),
                t(locale, T::WithdrawRejectedHelp)
            ),
        ),
        Returned => (t(locale, T::WithdrawReturned).into(), t(locale, T::WithdrawReturnedHelp).into()),
    }
}
