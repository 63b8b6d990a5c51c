//! Hooks wrapping browser APIs; each cleans up when the component using it unmounts.

mod countdown;
mod event_source;
mod tabs;

pub use countdown::use_countdown;
pub use event_source::{token_changed, use_event_source};
