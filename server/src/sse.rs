//! The SSE hub: wakes each user's open streams after a commit touched them.
//!
//! The hub carries no event data. Events live in storage with per-user
//! sequence numbers; a woken stream reads what it has not sent yet. So a
//! missed wake-up can delay an event but never lose it, and `Last-Event-ID`
//! replay is the same code path as live delivery.
//!
//! It also keeps count of each user's open streams on this instance: one
//! more than `MAX_STREAMS_PER_USER` closes that user's oldest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

/// Per-user wake-up channels, and each user's open streams, oldest first.
#[derive(Clone)]
pub struct Hub {
    users: Arc<Mutex<HashMap<String, UserStreams>>>,
    next_id: Arc<AtomicU64>,
    max_streams_per_user: usize,
}

struct UserStreams {
    wake: watch::Sender<u64>,
    /// Each open stream's id and the sender that closes it, oldest first
    /// (a few at most: a `Vec` is the smallest for one).
    open: Vec<(u64, oneshot::Sender<()>)>,
}

/// One open stream of a user, registered with the hub until dropped.
pub struct Subscription {
    /// Changes whenever the user has new events.
    pub wake: watch::Receiver<u64>,
    /// Resolves when a newer stream of the same user took this one's place.
    pub replaced: oneshot::Receiver<()>,
    hub: Hub,
    user: String,
    id: u64,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new(crate::settings::ConnectionLimits::default().max_streams_per_user)
    }
}

impl Hub {
    /// A hub that keeps at most `max_streams_per_user` streams of one user open.
    pub fn new(max_streams_per_user: usize) -> Hub {
        Hub { users: Arc::default(), next_id: Arc::default(), max_streams_per_user: max_streams_per_user.max(1) }
    }

    /// Registers a new stream of `user`. If the user already has the most
    /// streams allowed, the oldest is told to close: a page that went away
    /// without its stream noticing must not lock the user out.
    pub fn subscribe(&self, user: &str) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (close, replaced) = oneshot::channel();
        let mut users = self.users.lock().expect("hub lock");
        let streams = users
            .entry(user.to_owned())
            .or_insert_with(|| UserStreams { wake: watch::channel(0).0, open: Vec::with_capacity(1) });
        while streams.open.len() >= self.max_streams_per_user {
            let (_, oldest) = streams.open.remove(0);
            let _ = oldest.send(());
        }
        streams.open.push((id, close));
        Subscription { wake: streams.wake.subscribe(), replaced, hub: self.clone(), user: user.to_owned(), id }
    }

    /// Wakes every open stream of each user.
    pub fn notify<S: AsRef<str>>(&self, touched: &[S]) {
        if touched.is_empty() {
            return;
        }
        let users = self.users.lock().expect("hub lock");
        for user in touched {
            if let Some(streams) = users.get(user.as_ref()) {
                streams.wake.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// Wakes every open stream of every user: after notifications from other
    /// instances may have been missed, each stream reads what it has not sent.
    pub fn notify_all(&self) {
        let users = self.users.lock().expect("hub lock");
        for streams in users.values() {
            streams.wake.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Whether `user` has an open stream on this instance.
    pub fn is_watching(&self, user: &str) -> bool {
        self.users.lock().expect("hub lock").contains_key(user)
    }

    /// Open streams across all users (for metrics).
    pub fn connections(&self) -> usize {
        self.users.lock().expect("hub lock").values().map(|streams| streams.open.len()).sum()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut users = self.hub.users.lock().expect("hub lock");
        if let Some(streams) = users.get_mut(&self.user) {
            streams.open.retain(|(id, _)| *id != self.id);
            if streams.open.is_empty() {
                users.remove(&self.user);
            }
        }
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
        assert!(a.wake.has_changed().unwrap());
        assert!(!b.wake.has_changed().unwrap());
        a.wake.mark_unchanged();
        b.wake.mark_unchanged();
        drop(b);
        hub.notify(&["b"]);
        assert_eq!(hub.connections(), 1);
        assert!(hub.is_watching("a") && !hub.is_watching("b"));
    }

    #[tokio::test]
    async fn notify_all_wakes_every_open_stream() {
        let hub = Hub::default();
        let a = hub.subscribe("a");
        let b = hub.subscribe("b");
        drop(hub.subscribe("gone"));
        hub.notify_all();
        assert!(a.wake.has_changed().unwrap());
        assert!(b.wake.has_changed().unwrap());
        assert_eq!(hub.connections(), 2);
    }

    #[tokio::test]
    async fn one_stream_more_than_allowed_replaces_the_users_oldest() {
        let hub = Hub::new(3);
        let mut streams: Vec<Subscription> = (0..3).map(|_| hub.subscribe("u")).collect();
        let other = hub.subscribe("other");
        let newest = hub.subscribe("u");
        assert_eq!(streams[0].replaced.try_recv(), Ok(()), "the oldest is told to close");
        for stream in &mut streams[1..] {
            assert!(stream.replaced.try_recv().is_err(), "the others stay open");
        }
        assert_eq!(hub.connections(), 4, "three of u's and the other user's");
        // The replaced stream leaving changes nothing for the others.
        streams.remove(0);
        assert_eq!(hub.connections(), 4);
        drop(newest);
        drop(other);
        drop(streams);
        assert_eq!(hub.connections(), 0);
        assert!(!hub.is_watching("u"));
    }
}
