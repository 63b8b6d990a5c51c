//! The status panel of a deposit: what the user should do or expect next.

use leptos::prelude::*;
use pientegra_shared::status::IntentStatus;
use pientegra_shared::{Amount, Locale};

use crate::api::Deposit;
use crate::feed::Feed;
use crate::flows::{Offer, Panel};
use crate::hooks::use_countdown;
use crate::i18n::{Text as T, t, tf};

/// A panel state in words. One shape for every state keeps the view (and the
/// wasm) small: the states differ in text, not in structure.
#[derive(Clone, Debug, PartialEq)]
struct Words {
    title: String,
    text: String,
    offer: Option<Offer>,
}

fn words(panel: &Panel, locale: Locale, balance: Option<Amount>) -> Words {
    let w = |title: T, text: String, offer| Words { title: t(locale, title).to_owned(), text, offer };
    let reference = |d: &Deposit| tf(locale, T::ReferenceIs, &[&d.reference_no]);
    match panel {
        Panel::Idle => Words { title: String::new(), text: t(locale, T::IdleHint).into(), offer: None },
        Panel::Creating => w(T::Creating, String::new(), None),
        Panel::Blocked => w(T::PopupBlocked, t(locale, T::PopupBlockedHelp).into(), Some(Offer::ContinueHere)),
        Panel::Failed(message) => Words { title: message.clone(), text: String::new(), offer: None },
        Panel::Deposit(d) => match d.status {
            IntentStatus::Reserved => w(
                T::WaitingTransfer,
                tf(locale, T::WaitingTransferHelp, &[&d.amount.format(locale), &d.reference_no]),
                Some(Offer::Reopen),
            ),
            IntentStatus::PendingReview => {
                w(T::UnderReview, format!("{} {}", t(locale, T::UnderReviewHelp), reference(d)), None)
            }
            IntentStatus::Approved => Words {
                title: tf(locale, T::Approved, &[&format!("+{}", d.amount.format(locale))]),
                text: balance.map(|b| format!("{} {}", t(locale, T::NewBalance), b.format(locale))).unwrap_or_default(),
                offer: Some(Offer::NewDeposit),
            },
            IntentStatus::Rejected => w(
                T::Rejected,
                format!(
                    "{} {} {}",
                    t(locale, T::Reason),
                    d.rejected_reason.as_deref().unwrap_or(t(locale, T::NoReason)),
                    reference(d)
                ),
                Some(Offer::NewDeposit),
            ),
            IntentStatus::AutoCancelled => {
                w(T::Expired, format!("{} {}", t(locale, T::ExpiredHelp), reference(d)), Some(Offer::StartAgain))
            }
            IntentStatus::LateArrival => {
                w(T::LateArrival, format!("{} {}", t(locale, T::LateArrivalHelp), reference(d)), None)
            }
        },
    }
}

/// The status panel, an `aria-live` region; the countdown inside it is a
/// `timer` with `aria-live="off"`, so it is not announced every second.
/// `on_offer` runs when the user takes the button the panel offers.
#[component]
pub fn DepositStatus(locale: Locale, panel: Memo<Panel>, feed: Feed, on_offer: Callback<Offer>) -> impl IntoView {
    let left = use_countdown(move || {
        panel.with(|p| match p {
            Panel::Deposit(d) if d.status == IntentStatus::Reserved => Some(d.expires_at_ms),
            _ => None,
        })
    });
    let words = move || {
        let balance = feed.with(|a| a.balance.as_ref().map(|b| b.available));
        panel.with(|p| words(p, locale, balance))
    };
    let title = Signal::derive(move || words().title);
    let text = Signal::derive(move || words().text);
    let status = Signal::derive(move || panel.with(Panel::data_status).to_owned());
    let no_deadline = Signal::derive(move || left.with(String::is_empty));

    let offer = move || {
        words().offer.map(|offer| {
            let (label, testid, class) = match offer {
                Offer::ContinueHere => (T::ContinueHere, "continue-here", "pk-button pk-primary"),
                Offer::Reopen => (T::OpenPaymentPage, "reopen", "pk-button pk-secondary"),
                Offer::NewDeposit => (T::NewDeposit, "restart", "pk-button pk-secondary"),
                Offer::StartAgain => (T::StartAgain, "restart", "pk-button pk-secondary"),
            };
            view! {
                <button type="button" class=class data-testid=testid on:click=move |_| on_offer.run(offer)>
                    {t(locale, label)}
                </button>
            }
        })
    };

    view! {
        <div class="pk-status" data-testid="deposit-status" data-status=status aria-live="polite">
            <p class="pk-status-title">{title}</p>
            <p class="pk-status-text">{text}</p>
            <p class="pk-countdown" hidden=no_deadline>
                {t(locale, T::TimeLeft)} " "
                <span role="timer" aria-live="off" data-testid="countdown">
                    {left}
                </span>
            </p>
            {offer}
        </div>
    }
}
