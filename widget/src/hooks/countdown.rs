//! `use_countdown`: the time left until a deadline, ticking once a second.

use std::time::Duration;

use leptos::prelude::*;

use crate::browser::now_ms;

/// `m:ss` left until `deadline_ms()` (epoch milliseconds), never below
/// `0:00`; empty while there is no deadline. The timer stops on unmount.
pub fn use_countdown(deadline_ms: impl Fn() -> Option<i64> + Send + Sync + 'static) -> Signal<String> {
    // A trigger, not a signal holding the time: the clock is read where it is needed.
    let tick = Trigger::new();
    let timer = set_interval_with_handle(move || tick.notify(), Duration::from_secs(1)).ok();
    on_cleanup(move || {
        if let Some(timer) = timer {
            timer.clear();
        }
    });
    Signal::derive(move || {
        tick.track();
        let Some(deadline_ms) = deadline_ms() else {
            return String::new();
        };
        // Round up: "0:01" is shown until the very last moment.
        clock(((deadline_ms - now_ms()).max(0) + 999) / 1000)
    })
}

/// `m:ss` (or `h:mm:ss` past an hour).
fn clock(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}
