//! The live event log: every SSE event the page received, newest first.

use leptos::either::Either;
use leptos::prelude::*;
use pientegra_shared::Locale;

use crate::api::UserEvent;
use crate::browser::format_ms;
use crate::feed::{Link, LogEntry};
use crate::hooks::use_event_source;
use crate::i18n::{Text as T, intent_status, t, withdrawal_status};
use crate::options::Options;

/// The received events and the state of the connection.
#[component]
pub fn EventLog(options: Options) -> impl IntoView {
    let Options { client, locale, theme, .. } = options;
    let feed = use_event_source(&client);
    let link = Signal::derive(move || feed.with(|a| a.link.as_str().to_owned()));
    // Whether this tab holds the user's stream or follows the tab that does.
    let stream = Signal::derive(move || if feed.with(|a| a.relayed) { "relayed" } else { "own" });
    let link_text = Signal::derive(move || {
        let text = match feed.with(|a| a.link) {
            Link::Connecting => T::LinkConnecting,
            Link::Live => T::LinkLive,
            Link::Polling => T::LinkPolling,
        };
        t(locale, text).to_owned()
    });
    let rows = move || {
        feed.with(|a| {
            if a.log.is_empty() {
                return Either::Left(view! { <li class="pk-empty">{t(locale, T::NoEvents)}</li> });
            }
            Either::Right(a.log.iter().map(|entry| row(locale, entry)).collect_view())
        })
    };
    view! {
        <section class="pk pk-events" data-pk-theme=theme.as_str() lang=locale.as_str()>
            <h2 class="pk-title">
                {t(locale, T::LiveEvents)}
                <span class="pk-link" data-testid="link-state" data-state=link data-stream=stream>
                    {link_text}
                </span>
            </h2>
            <ol class="pk-list pk-log" data-testid="event-log">{rows}</ol>
        </section>
    }
}

fn row(locale: Locale, entry: &LogEntry) -> impl IntoView + use<> {
    let summary = match &entry.event {
        UserEvent::Deposit(d) => {
            format!("{} · {} · {}", d.reference_no, d.amount.format(locale), intent_status(locale, d.status))
        }
        UserEvent::Withdrawal(w) => {
            format!("{} · {} · {}", w.reference_no, w.amount.format(locale), withdrawal_status(locale, w.status))
        }
        UserEvent::Balance(b) => format!(
            "{} {} · {} {}",
            t(locale, T::Available),
            b.available.format(locale),
            t(locale, T::Reserved),
            b.reserved.format(locale)
        ),
    };
    let name = entry.event.name();
    view! {
        <li class="pk-log-item" data-testid="event-item" data-event=name>
            <code class="pk-log-name">{name}</code>
            <span class="pk-log-summary">{summary}</span>
            <span class="pk-item-meta">"#" {entry.id.clone()} " · " {format_ms(entry.received_ms, locale)}</span>
        </li>
    }
}
