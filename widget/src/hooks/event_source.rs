//! `use_event_source`: the user's live [`Feed`], kept up to date by ONE
//! `EventSource` per browser and user, however many widgets and tabs show it.
//!
//! The first widget of a page to ask for a user's feed loads the account and
//! joins the user's stream; later widgets share both; the last one to unmount
//! leaves. Browsers allow a handful of HTTP/1.1 connections per origin, and a
//! stream holds one for as long as it is open, so the tabs of one user share
//! one stream: they queue for a Web Lock named after the server and the user
//! (the token's `sub`); the tab holding it (the leader) holds the stream and
//! relays each event, and how its stream is doing, over a `BroadcastChannel`
//! of the same name. The others follow, keeping the id of the last event
//! relayed: when the leader goes away (closed, frozen, unmounted, or its token
//! refused) the lock passes to the next tab, which opens the stream resuming
//! after that id, so no event is missed. A tab that joins asks the leader how
//! the stream is doing, and loads the account itself. Where the browser has no
//! Web Locks or no `BroadcastChannel` (or the token's `sub` cannot be read),
//! each page holds its own stream.
//!
//! Each (re)connection fetches a fresh stream ticket first: the URL carries
//! the ticket, never the widget token, and a ticket opens a stream for a
//! minute only. So the browser's own reconnect, which would reuse the old URL,
//! is not used: a dropped stream is closed and opened again with a new ticket
//! and `lastEventId` (the last event received), so the server replays what was
//! missed. When the stream keeps failing, or cannot exist at all, the feed
//! falls back to polling `GET /api/account` and tries the stream again now and
//! then. A token the server refuses stops both.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use leptos::prelude::*;
use leptos::reactive::owner::Owner;
use leptos::task::spawn_local;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Event, EventSource, MessageEvent};

use super::tabs::{self, Channel, DocumentListener, Relay};
use crate::api::{ApiFailure, Client, EVENT_NAMES, UserEvent};
use crate::browser::now_ms;
use crate::feed::{Feed, Link, LogEntry};

/// Consecutive stream errors, without a successful open between them, before falling back to polling.
const ERRORS_BEFORE_POLLING: u32 = 3;
/// Pause before reopening a dropped stream (the server's `retry:` hint).
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// How often the account is fetched while polling.
const POLL_EVERY: Duration = Duration::from_secs(3);
/// How long polling goes on before the stream is tried again.
const STREAM_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The user's feed, shared with every other widget of the same user and
/// server on the page. The page leaves the user's stream when the last of
/// them unmounts.
pub fn use_event_source(client: &Client) -> Feed {
    let feed = acquire(client);
    let client = client.clone();
    on_cleanup(move || release(&client));
    feed
}

thread_local! {
    /// The open hubs, one per (server, token). A page rarely has more than one.
    static HUBS: RefCell<Vec<Rc<Hub>>> = const { RefCell::new(Vec::new()) };
}

fn acquire(client: &Client) -> Feed {
    let existing = HUBS.with_borrow(|hubs| hubs.iter().find(|h| &h.client == client).cloned());
    if let Some(hub) = existing {
        hub.users.set(hub.users.get() + 1);
        return hub.feed;
    }
    // A root owner: the feed's signals must outlive the widget that happened to come first.
    let owner = Owner::new_root(None);
    let feed = owner.with(Feed::new);
    let hub = Rc::new_cyclic(|weak: &Weak<Hub>| Hub {
        share: Share::open(client, weak),
        client: client.clone(),
        owner,
        feed,
        users: Cell::new(1),
        stream: RefCell::new(None),
        opening: Cell::new(0),
        last_event_id: RefCell::new(None),
        errors: Cell::new(0),
        poll: Cell::new(None),
        poll_in_flight: Rc::new(Cell::new(false)),
        stream_retry: Cell::new(None),
        was_polling: Cell::new(false),
        given_up: Cell::new(false),
        page_show: Cell::new(None),
        page_hide: Cell::new(None),
        lifecycle: RefCell::new(Vec::new()),
    });
    hub.watch_page_show();
    hub.watch_lifecycle();
    HUBS.with_borrow_mut(|hubs| hubs.push(hub.clone()));
    hub.refresh();
    hub.join();
    feed
}

/// A fresh token was handed to `client`'s widgets: a page that stopped
/// because the server refused the old one loads the account again and
/// rejoins the stream. A live stream carries on; it ends when the old token
/// would have expired and reopens with the new one.
pub fn token_changed(client: &Client) {
    let hub = HUBS.with_borrow(|hubs| hubs.iter().find(|h| &h.client == client).cloned());
    if let Some(hub) = hub.filter(|h| h.given_up.replace(false)) {
        hub.errors.set(0);
        hub.refresh();
        hub.join();
    }
}

fn release(client: &Client) {
    let hub = HUBS.with_borrow_mut(|hubs| {
        let i = hubs.iter().position(|h| &h.client == client)?;
        let hub = &hubs[i];
        hub.users.set(hub.users.get().saturating_sub(1));
        (hub.users.get() == 0).then(|| hubs.swap_remove(i))
    });
    if let Some(hub) = hub {
        hub.shut_down();
    }
}

/// What a stream listener does with the hub and the event.
type Handler = dyn Fn(&Rc<Hub>, Event);

/// An open `EventSource` and the listeners registered on it.
struct Stream {
    source: EventSource,
    _listeners: Vec<Closure<dyn FnMut(Event)>>,
}

/// This page's part in sharing the user's stream with the other tabs.
struct Share {
    /// The lock's and the channel's name: the server and the user.
    name: String,
    channel: Channel,
    lease: RefCell<Lease>,
    /// Counts the lock requests made; a grant for an older one is passed on.
    requests: Cell<u64>,
}

/// Where the page stands in the queue for the user's stream.
enum Lease {
    /// Not in it: the page is frozen or hidden in the back-forward cache, the
    /// server refused its token, or the widgets unmounted.
    Out,
    /// Waiting for the lock (request number): following the leader's relays.
    Waiting(u64),
    /// Holding the lock: the page's stream is the user's. Calling the
    /// function releases the lock.
    Held(Option<js_sys::Function>),
}

impl Share {
    /// Opens the user's channel, or `None` where the stream cannot be shared.
    fn open(client: &Client, hub: &Weak<Hub>) -> Option<Share> {
        if !tabs::supported() {
            return None;
        }
        let name = tabs::share_name(client.endpoint(), &client.subject()?);
        let hub = hub.clone();
        let channel = Channel::open(&name, move |relay| {
            if let Some(hub) = hub.upgrade() {
                hub.on_relay(relay);
            }
        })?;
        Some(Share { name, channel, lease: RefCell::new(Lease::Out), requests: Cell::new(0) })
    }

    fn is_held(&self) -> bool {
        matches!(*self.lease.borrow(), Lease::Held(_))
    }

    fn is_waiting(&self) -> bool {
        matches!(*self.lease.borrow(), Lease::Waiting(_))
    }
}

struct Hub {
    /// Sharing the stream with the user's other tabs; `None` where the
    /// browser cannot: the page then holds a stream of its own.
    share: Option<Share>,
    client: Client,
    owner: Owner,
    feed: Feed,
    users: Cell<usize>,
    stream: RefCell<Option<Stream>>,
    /// Counts the opens begun; a ticket that arrives after a newer open, a
    /// close or the shutdown is dropped.
    opening: Cell<u64>,
    /// The id of the last event received or relayed: where a reopened stream resumes.
    last_event_id: RefCell<Option<String>>,
    errors: Cell<u32>,
    poll: Cell<Option<IntervalHandle>>,
    poll_in_flight: Rc<Cell<bool>>,
    stream_retry: Cell<Option<TimeoutHandle>>,
    was_polling: Cell<bool>,
    /// The server refused the token: nothing is fetched until a new one comes.
    given_up: Cell<bool>,
    page_show: Cell<Option<WindowListenerHandle>>,
    page_hide: Cell<Option<WindowListenerHandle>>,
    /// The `freeze` and `resume` listeners of a page that shares the stream.
    lifecycle: RefCell<Vec<DocumentListener>>,
}

impl Hub {
    /// Whether this page's stream is the user's (it holds the lock).
    fn is_leader(&self) -> bool {
        self.share.as_ref().is_some_and(Share::is_held)
    }

    /// Whether this page may hold a stream: it shares none, or it leads.
    fn holds_stream(&self) -> bool {
        self.share.as_ref().is_none_or(Share::is_held)
    }

    /// Joins the user's stream: queues for the lock, following the leader
    /// meanwhile. A page that cannot share opens a stream of its own.
    fn join(self: &Rc<Self>) {
        let Some(share) = &self.share else {
            self.open_stream();
            return;
        };
        if !matches!(*share.lease.borrow(), Lease::Out) {
            return;
        }
        let request = share.requests.get() + 1;
        share.requests.set(request);
        *share.lease.borrow_mut() = Lease::Waiting(request);
        self.feed.set_relayed(true);
        share.channel.post(&Relay::Hello);
        let weak = Rc::downgrade(self);
        let requested = tabs::request_lock(&share.name, move || match weak.upgrade() {
            Some(hub) => hub.on_lock_granted(request),
            None => tabs::released(),
        });
        if !requested {
            // The browser refused the request: lead alone.
            *share.lease.borrow_mut() = Lease::Held(None);
            self.lead();
        }
    }

    /// The lock came: this page leads, unless it stopped waiting for this request.
    fn on_lock_granted(self: &Rc<Self>, request: u64) -> js_sys::Promise {
        let Some(share) = &self.share else {
            return tabs::released();
        };
        if !matches!(*share.lease.borrow(), Lease::Waiting(r) if r == request) {
            return tabs::released();
        }
        let (held, release) = tabs::held_until_released();
        *share.lease.borrow_mut() = Lease::Held(release);
        self.lead();
        held
    }

    /// Opens the user's stream, resuming after the last event this page saw.
    fn lead(self: &Rc<Self>) {
        self.feed.set_relayed(false);
        self.errors.set(0);
        if self.last_event_id.borrow().is_none() {
            // No event to resume after: what happened since the page loaded the account is read again.
            self.refresh();
        }
        self.open_stream();
    }

    /// Leaves the queue for the user's stream; a leader closes its stream
    /// and releases the lock to the next page. The page still follows the
    /// relays if it joins again.
    fn step_down(&self) {
        let Some(share) = &self.share else { return };
        let lease = share.lease.replace(Lease::Out);
        if let Lease::Held(release) = lease {
            self.close_stream();
            self.stop_polling();
            if let Some(retry) = self.stream_retry.take() {
                retry.clear();
            }
            if let Some(release) = release {
                let _ = release.call0(&JsValue::NULL);
            }
        }
    }

    /// A message from another page of the user.
    fn on_relay(self: &Rc<Self>, relay: Relay) {
        let following = self.share.as_ref().is_some_and(Share::is_waiting) && !self.given_up.get();
        match relay {
            Relay::Hello if self.is_leader() => self.post_link(),
            Relay::Event { id, name, data } if following => self.take_event(&name, id, &data),
            Relay::Link { link, last_event_id } if following => self.follow_link(link, last_event_id),
            _ => {}
        }
    }

    /// The leader's stream changed: a follower polls while it does.
    fn follow_link(self: &Rc<Self>, link: Link, last_event_id: Option<String>) {
        if let Some(id) = last_event_id {
            *self.last_event_id.borrow_mut() = Some(id);
        }
        if link == Link::Polling {
            self.start_polling();
            return;
        }
        self.stop_polling();
        if self.was_polling.replace(false) {
            self.refresh();
        }
        self.feed.set_link(link);
    }

    /// Shows how the stream is doing; a leader tells its followers.
    fn set_link(&self, link: Link) {
        self.feed.set_link(link);
        if self.is_leader() {
            self.post_link();
        }
    }

    /// Tells the followers how the stream is doing, and the last event id.
    fn post_link(&self) {
        let (Some(share), Some(link)) = (&self.share, self.feed.with_untracked(|a| a.link)) else { return };
        share.channel.post(&Relay::Link { link, last_event_id: self.last_event_id.borrow().clone() });
    }

    /// Fetches a stream ticket, then opens the stream with it.
    fn open_stream(self: &Rc<Self>) {
        if !self.holds_stream() {
            return;
        }
        let supported = js_sys::Reflect::has(&window(), &"EventSource".into()).unwrap_or(false);
        if !supported {
            self.start_polling();
            return;
        }
        if let Some(retry) = self.stream_retry.take() {
            retry.clear();
        }
        if self.poll.get().is_none() {
            self.set_link(Link::Connecting);
        }
        let attempt = self.opening.get() + 1;
        self.opening.set(attempt);
        let (client, weak) = (self.client.clone(), Rc::downgrade(self));
        spawn_local(async move {
            let ticket = client.stream_ticket().await;
            let Some(hub) = weak.upgrade() else { return };
            if hub.opening.get() != attempt {
                return;
            }
            match ticket {
                Ok(ticket) => hub.connect(&ticket),
                Err(failure) if failure.is_auth() => hub.give_up(failure),
                Err(_) => hub.on_error(),
            }
        });
    }

    /// Opens the `EventSource` with a fresh ticket, resuming after the last
    /// event received unless polling has caught the feed up since.
    fn connect(self: &Rc<Self>, ticket: &str) {
        let resume = if self.was_polling.get() { None } else { self.last_event_id.borrow().clone() };
        let Ok(source) = EventSource::new(&self.client.events_url(ticket, resume.as_deref())) else {
            self.start_polling();
            return;
        };
        self.drop_stream();

        let mut listeners = Vec::new();
        let mut listen = |name: &'static str, handler: Box<Handler>| {
            let weak = Rc::downgrade(self);
            let closure = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
                if let Some(hub) = weak.upgrade() {
                    handler(&hub, event);
                }
            });
            let _ = source.add_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
            listeners.push(closure);
        };
        listen("open", Box::new(|hub, _| hub.on_open()));
        listen("error", Box::new(|hub, _| hub.on_error()));
        for name in EVENT_NAMES {
            listen(name, Box::new(move |hub, event| hub.on_message(name, event)));
        }
        *self.stream.borrow_mut() = Some(Stream { source, _listeners: listeners });
    }

    /// A page restored from the back-forward cache (the way back from a
    /// full-page redirect) kept its old state and may have lost its stream:
    /// catch up and reconnect.
    fn watch_page_show(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let handle = window_event_listener_untyped("pageshow", move |event| {
            let persisted =
                event.dyn_ref::<web_sys::PageTransitionEvent>().is_some_and(web_sys::PageTransitionEvent::persisted);
            let Some(hub) = weak.upgrade() else { return };
            if !persisted {
                return;
            }
            hub.refresh();
            if hub.share.is_some() {
                if !hub.given_up.get() {
                    hub.join();
                }
                return;
            }
            let closed = hub.stream.borrow().as_ref().is_none_or(|s| s.source.ready_state() == EventSource::CLOSED);
            if closed && hub.poll.get().is_none() {
                hub.close_stream();
                hub.errors.set(0);
                hub.open_stream();
            }
        });
        self.page_show.set(Some(handle));
    }

    /// A page that shares the stream leaves the queue while it is hidden or
    /// frozen (a frozen leader would hold the lock and relay nothing), and
    /// joins again when it comes back.
    fn watch_lifecycle(self: &Rc<Self>) {
        if self.share.is_none() {
            return;
        }
        let weak = Rc::downgrade(self);
        let hide = window_event_listener_untyped("pagehide", move |_| {
            if let Some(hub) = weak.upgrade() {
                hub.step_down();
            }
        });
        self.page_hide.set(Some(hide));
        let weak = Rc::downgrade(self);
        let freeze = DocumentListener::new("freeze", move || {
            if let Some(hub) = weak.upgrade() {
                hub.step_down();
            }
        });
        let weak = Rc::downgrade(self);
        let resume = DocumentListener::new("resume", move || {
            if let Some(hub) = weak.upgrade().filter(|hub| !hub.given_up.get()) {
                hub.refresh();
                hub.join();
            }
        });
        *self.lifecycle.borrow_mut() = vec![freeze, resume];
    }

    fn on_open(self: &Rc<Self>) {
        self.errors.set(0);
        self.set_link(Link::Live);
        self.stop_polling();
        if self.was_polling.replace(false) {
            // A fresh stream carries no Last-Event-ID: catch up once by hand.
            self.refresh();
        }
    }

    /// The stream dropped or could not open. The browser's own reconnect would
    /// reuse the URL, whose ticket is soon stale: close it and open again with
    /// a new one, a few times, then fall back to polling for a while.
    fn on_error(self: &Rc<Self>) {
        self.close_stream();
        self.errors.set(self.errors.get() + 1);
        if self.errors.get() < ERRORS_BEFORE_POLLING {
            if self.poll.get().is_none() {
                self.set_link(Link::Connecting);
            }
            self.retry_stream_in(RECONNECT_AFTER);
            return;
        }
        self.start_polling();
        self.retry_stream_in(STREAM_RETRY_AFTER);
    }

    fn retry_stream_in(self: &Rc<Self>, delay: Duration) {
        let weak = Rc::downgrade(self);
        let retry = set_timeout_with_handle(
            move || {
                if let Some(hub) = weak.upgrade() {
                    hub.stream_retry.set(None);
                    if hub.errors.get() >= ERRORS_BEFORE_POLLING {
                        hub.errors.set(0);
                    }
                    hub.open_stream();
                }
            },
            delay,
        );
        if let Some(old) = self.stream_retry.replace(retry.ok()) {
            old.clear();
        }
    }

    /// The server refuses the token: neither the stream nor polling will get
    /// anywhere with it. A leader hands the stream to the next page of the
    /// user, whose token may still be good.
    fn give_up(&self, failure: ApiFailure) {
        self.given_up.set(true);
        self.step_down();
        self.close_stream();
        self.stop_polling();
        if let Some(retry) = self.stream_retry.take() {
            retry.clear();
        }
        self.feed.set_problem(failure);
    }

    /// An event of this page's stream; a leader relays it to its followers.
    fn on_message(&self, name: &str, event: Event) {
        let Some(message) = event.dyn_ref::<MessageEvent>() else {
            return;
        };
        let data = message.data().as_string().unwrap_or_default();
        let id = message.last_event_id();
        if let Some(share) = self.share.as_ref().filter(|share| share.is_held()) {
            share.channel.post(&Relay::Event { id: id.clone(), name: name.to_owned(), data: data.clone() });
        }
        self.take_event(name, id, &data);
    }

    /// Applies an event of the user's stream, received or relayed.
    fn take_event(&self, name: &str, id: String, data: &str) {
        if !id.is_empty() {
            *self.last_event_id.borrow_mut() = Some(id.clone());
        }
        match UserEvent::from_sse(name, data) {
            Some(Some(event)) => {
                self.feed.apply(&event);
                self.feed.log_event(LogEntry { id, received_ms: now_ms(), event });
            }
            Some(None) => {
                web_sys::console::warn_1(&format!("pientegra: unreadable {name} event").into());
            }
            None => {}
        }
    }

    /// Closes the stream, and forgets any open still waiting for its ticket.
    fn close_stream(&self) {
        self.opening.set(self.opening.get() + 1);
        self.drop_stream();
    }

    /// Closes the `EventSource`. Its listeners are dropped a tick later: this
    /// may run inside one of them, and a closure must not be freed while it runs.
    fn drop_stream(&self) {
        let stream = self.stream.borrow_mut().take();
        if let Some(stream) = stream {
            stream.source.close();
            set_timeout(move || drop(stream), Duration::ZERO);
        }
    }

    fn start_polling(self: &Rc<Self>) {
        self.was_polling.set(true);
        self.set_link(Link::Polling);
        if self.poll.get().is_some() {
            return;
        }
        let weak = Rc::downgrade(self);
        let timer = set_interval_with_handle(
            move || {
                if let Some(hub) = weak.upgrade() {
                    hub.refresh();
                }
            },
            POLL_EVERY,
        );
        self.poll.set(timer.ok());
        self.refresh();
    }

    fn stop_polling(&self) {
        if let Some(timer) = self.poll.take() {
            timer.clear();
        }
    }

    /// Loads the account, then looks up any unfinished record the account
    /// listing did not include (the per-record polling fallback).
    fn refresh(self: &Rc<Self>) {
        if self.poll_in_flight.replace(true) {
            return;
        }
        let (client, feed, in_flight) = (self.client.clone(), self.feed, self.poll_in_flight.clone());
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            match client.account().await {
                Ok(account) => {
                    let listed_deposits: Vec<_> = account.deposits.iter().map(|d| d.intent_id.clone()).collect();
                    let listed_withdrawals: Vec<_> =
                        account.withdrawals.iter().map(|w| w.withdrawal_id.clone()).collect();
                    feed.apply_account(account);
                    let unlisted_deposits: Vec<_> = feed
                        .with_untracked(|known| {
                            known
                                .deposits
                                .iter()
                                .filter(|d| !d.status.is_final() && !listed_deposits.contains(&d.intent_id))
                                .map(|d| d.intent_id.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    for id in unlisted_deposits {
                        if let Ok(deposit) = client.deposit(&id).await {
                            feed.upsert_deposit(deposit);
                        }
                    }
                    let unlisted_withdrawals: Vec<_> = feed
                        .with_untracked(|known| {
                            known
                                .withdrawals
                                .iter()
                                .filter(|w| !w.status.is_final() && !listed_withdrawals.contains(&w.withdrawal_id))
                                .map(|w| w.withdrawal_id.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    for id in unlisted_withdrawals {
                        if let Ok(withdrawal) = client.withdrawal(&id).await {
                            feed.upsert_withdrawal(withdrawal);
                        }
                    }
                }
                // A token the server refuses will not get better by asking again.
                Err(failure) if failure.is_auth() => match weak.upgrade() {
                    Some(hub) => hub.give_up(failure),
                    None => feed.set_problem(failure),
                },
                Err(failure) => feed.set_problem(failure),
            }
            in_flight.set(false);
        });
    }

    fn shut_down(&self) {
        self.step_down();
        self.close_stream();
        self.stop_polling();
        if let Some(retry) = self.stream_retry.take() {
            retry.clear();
        }
        if let Some(listener) = self.page_show.take() {
            listener.remove();
        }
        if let Some(listener) = self.page_hide.take() {
            listener.remove();
        }
        self.lifecycle.borrow_mut().clear();
        self.owner.cleanup();
    }
}
