//! `use_countdown`: whole seconds left until a deadline, ticking once a second.

use std::time::Duration;

use leptos::prelude::*;

use crate::browser::now_ms;

/// Seconds left until `deadline_ms` (epoch milliseconds), never below zero;
/// `None` while there is no deadline. The timer stops on unmount.
pub fn use_countdown(deadline_ms: Signal<Option<i64>>) -> Signal<Option<i64>> {
    let now = RwSignal::new(now_ms());
    let timer = set_interval_with_handle(move || now.set(now_ms()), Duration::from_secs(1)).ok();
    on_cleanup(move || {
        if let Some(timer) = timer {
            timer.clear();
        }
    });
    Signal::derive(move || {
        let left_ms = deadline_ms.get()? - now.get();
        // Round up: "0:01" is shown until the very last moment.
        Some((left_ms.max(0) + 999) / 1000)
    })
}

/// `m:ss` (or `h:mm:ss` past an hour).
pub fn clock(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}
