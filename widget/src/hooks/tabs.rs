//! The browser pieces that let the tabs of one browser share one user's
//! event stream: a Web Lock that one tab at a time holds (the leader, which
//! holds the stream), and a `BroadcastChannel` over which the leader relays
//! what the stream says to the other tabs of the same user.
//!
//! Both APIs are reached through `js_sys::Reflect` where web-sys has them
//! only as unstable bindings (the Web Locks API), so the crate builds
//! without `--cfg=web_sys_unstable_apis`.

use std::time::Duration;

use js_sys::{Function, Object, Promise, Reflect};
use leptos::prelude::{document, set_timeout, window};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent};

use crate::feed::Link;

/// The name of the lock and of the channel shared by every tab of `user`
/// on the server at `endpoint`: tabs of another user, or for another
/// server, never meet.
pub fn share_name(endpoint: &str, user: &str) -> String {
    format!("pientegra:stream:{endpoint}:{user}")
}

/// Whether this browser has both the Web Locks API and `BroadcastChannel`
/// (Web Locks need a secure context: https, or http on this machine).
pub fn supported() -> bool {
    let window = window();
    let has_channel = Reflect::has(&window, &"BroadcastChannel".into()).unwrap_or(false);
    has_channel && lock_request().is_some()
}

/// `navigator.locks` and its `request` method.
fn lock_request() -> Option<(JsValue, Function)> {
    let navigator = Reflect::get(&window(), &"navigator".into()).ok()?;
    let locks = Reflect::get(&navigator, &"locks".into()).ok().filter(JsValue::is_object)?;
    let request = Reflect::get(&locks, &"request".into()).ok()?.dyn_into::<Function>().ok()?;
    Some((locks, request))
}

/// Asks for the lock `name`. Once this tab is granted it, `granted` runs and
/// returns a promise: the tab holds the lock until that promise settles (or
/// the tab goes away). `false` when the request could not be made.
pub fn request_lock(name: &str, granted: impl FnOnce() -> Promise + 'static) -> bool {
    let Some((locks, request)) = lock_request() else {
        return false;
    };
    let callback = Closure::once_into_js(move |_lock: JsValue| granted());
    let Ok(pending) = request.call2(&locks, &JsValue::from_str(name), &callback) else {
        return false;
    };
    // The promise settles when the lock is released; awaiting it here also
    // keeps a rejection (the page going away) from being reported as unhandled.
    if let Ok(pending) = pending.dyn_into::<Promise>() {
        wasm_bindgen_futures::spawn_local(async move {
            let _ = wasm_bindgen_futures::JsFuture::from(pending).await;
        });
    }
    true
}

/// A promise that settles when the returned function is called: what a
/// leader returns from [`request_lock`]'s `granted` to keep the lock. (The
/// promise's executor runs at once, so the function is always there.)
pub fn held_until_released() -> (Promise, Option<Function>) {
    let mut release = None;
    let promise = Promise::new(&mut |resolve, _reject| release = Some(resolve));
    (promise, release)
}

/// A promise already settled: what a tab that no longer wants the lock
/// returns when it is granted, passing the lock on at once.
pub fn released() -> Promise {
    Promise::resolve(&JsValue::UNDEFINED)
}

/// A listener for a page lifecycle event fired at the document (`freeze`,
/// `resume`); removed when dropped.
pub struct DocumentListener {
    name: &'static str,
    closure: Option<Closure<dyn FnMut(web_sys::Event)>>,
}

impl DocumentListener {
    /// Calls `handler` on each `name` event at the document.
    pub fn new(name: &'static str, handler: impl Fn() + 'static) -> DocumentListener {
        let closure = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| handler());
        let _ = document().add_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
        DocumentListener { name, closure: Some(closure) }
    }
}

impl Drop for DocumentListener {
    fn drop(&mut self) {
        if let Some(closure) = self.closure.take() {
            let _ = document().remove_event_listener_with_callback(self.name, closure.as_ref().unchecked_ref());
            set_timeout(move || drop(closure), Duration::ZERO);
        }
    }
}

/// A message between the tabs of one user.
#[derive(Clone, Debug, PartialEq)]
pub enum Relay {
    /// One event of the leader's stream, as it came: the SSE `id:`, `event:` and `data:`.
    Event { id: String, name: String, data: String },
    /// How the leader's stream is doing, and the id of the last event it received.
    Link { link: Link, last_event_id: Option<String> },
    /// A tab joined and asks the leader for its [`Relay::Link`].
    Hello,
}

impl Relay {
    fn to_js(&self) -> JsValue {
        let object = Object::new();
        let set = |name: &str, value: &str| {
            let _ = Reflect::set(&object, &JsValue::from_str(name), &JsValue::from_str(value));
        };
        match self {
            Relay::Event { id, name, data } => {
                set("kind", "event");
                set("id", id);
                set("name", name);
                set("data", data);
            }
            Relay::Link { link, last_event_id } => {
                set("kind", "link");
                set("link", link.as_str());
                if let Some(id) = last_event_id {
                    set("id", id);
                }
            }
            Relay::Hello => set("kind", "hello"),
        }
        object.into()
    }

    fn from_js(value: &JsValue) -> Option<Relay> {
        let get = |name: &str| Reflect::get(value, &JsValue::from_str(name)).ok().and_then(|v| v.as_string());
        Some(match get("kind")?.as_str() {
            "event" => Relay::Event { id: get("id")?, name: get("name")?, data: get("data")? },
            "link" => Relay::Link { link: Link::parse(&get("link")?)?, last_event_id: get("id") },
            "hello" => Relay::Hello,
            _ => return None,
        })
    }
}

/// An open `BroadcastChannel` and its message listener; closed when dropped.
pub struct Channel {
    channel: BroadcastChannel,
    listener: Option<Closure<dyn FnMut(MessageEvent)>>,
}

impl Channel {
    /// Opens the channel `name`; `on_relay` gets every message another tab
    /// (or another widget of this page) posts on it.
    pub fn open(name: &str, on_relay: impl Fn(Relay) + 'static) -> Option<Channel> {
        let channel = BroadcastChannel::new(name).ok()?;
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            if let Some(relay) = Relay::from_js(&message.data()) {
                on_relay(relay);
            }
        });
        channel.set_onmessage(Some(listener.as_ref().unchecked_ref()));
        Some(Channel { channel, listener: Some(listener) })
    }

    /// Posts `relay` to every other listener of the channel.
    pub fn post(&self, relay: &Relay) {
        let _ = self.channel.post_message(&relay.to_js());
    }
}

impl Drop for Channel {
    /// Closes the channel. The listener is dropped a tick later: this may
    /// run inside it, and a closure must not be freed while it runs.
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
        if let Some(listener) = self.listener.take() {
            set_timeout(move || drop(listener), Duration::ZERO);
        }
    }
}
