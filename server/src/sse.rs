//! The SSE hub: wakes each user's open streams after a commit touched them.
//!
//! The hub carries no event data. Events live in storage with per-user
//! sequence numbers; a woken stream reads what it has not sent yet. So a
//! missed wake-up can delay an event but never lose it, and `Last-Event-ID`
//! replay is the same code path as live delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Per-user wake-up channels.
#[derive(Clone, Default)]
pub struct Hub {
    users: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Hub {
    /// A receiver that changes whenever `user` has new events.
    pub fn subscribe(&self, user: &str) -> watch::Receiver<u64> {
        let mut users = self.users.lock().expect("hub lock");
        users.entry(user.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Wakes every open stream of each user.
    pub fn notify<S: AsRef<str>>(&self, touched: &[S]) {
        if touched.is_empty() {
            return;
        }
        let mut users = self.users.lock().expect("hub lock");
        for user in touched {
            if let Some(tx) = users.get(user.as_ref()) {
                if tx.receiver_count() == 0 {
                    users.remove(user.as_ref());
                } else {
                    tx.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
        }
    }

    /// Wakes every open stream of every user: after notifications from other
    /// instances may have been missed, each stream reads what it has not sent.
    pub fn notify_all(&self) {
        let mut users = self.users.lock().expect("hub lock");
        users.retain(|_, tx| tx.receiver_count() > 0);
        for tx in users.values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Whether `user` has an open stream on this instance.
    pub fn is_watching(&self, user: &str) -> bool {
        self.users.lock().expect("hub lock").get(user).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Open streams across all users (for metrics).
    pub fn connections(&self) -> usize {
        self.users.lock().expect("hub lock").values().map(watch::Sender::receiver_count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_up_reaches_only_the_users_streams() {
        let hub = Hub::default();
        let mut a = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.notify(&["a"]);
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.mark_unchanged();
        b.mark_unchanged();
        drop(b);
        hub.notify(&["b"]);
        assert_eq!(hub.connections(), 1);
    }

    #[tokio::test]
    async fn notify_all_wakes_every_open_stream() {
        let hub = Hub::default();
        let a = hub.subscribe("a");
        let b = hub.subscribe("b");
        drop(hub.subscribe("gone"));
        hub.notify_all();
        assert!(a.has_changed().unwrap());
        assert!(b.has_changed().unwrap());
        assert_eq!(hub.connections(), 2);
    }
}
