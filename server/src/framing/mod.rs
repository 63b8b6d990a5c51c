//! Whether a partner page may show the hosted deposit page in a frame
//! (the widget's iframe mode). The hosted page's own headers decide, so the
//! server asks it: one `HEAD` per hosted-page origin, remembered for a while,
//! then [`policy`] applies the browsers' rules to each page origin.
//!
//! The `HEAD` goes to the hosted page, not to the Pientegra API, so it takes
//! no slot of the call budget. It is short and never fails a deposit: when the
//! page cannot be asked the answer is "not allowed, unknown", remembered
//! briefly, and the widget opens a popup instead.

pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pientegra_shared::api::{Framing, FramingRefusal};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use url::Url;

use self::policy::{Blocker, FramePolicy, Origin};

/// How long an answer of the hosted page is used.
const FRESH_FOR: Duration = Duration::from_secs(10 * 60);
/// How long a failure to ask is remembered (so a down page costs one timeout, not one per deposit).
const FAILURE_FRESH_FOR: Duration = Duration::from_secs(30);
/// The whole `HEAD`, redirects included.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Redirects the `HEAD` follows.
const MAX_REDIRECTS: usize = 3;
/// Hosted-page origins remembered at once; beyond, the oldest is forgotten.
/// A site has one or two; the cap only bounds memory.
const MAX_ORIGINS: usize = 32;

/// The hosted pages' framing rules, asked once per origin and remembered.
pub struct FramingCheck {
    client: reqwest::Client,
    probes: Mutex<HashMap<String, Slot>>,
}

/// One origin's probe: set once by the first caller, awaited by the others.
#[derive(Clone)]
struct Slot {
    started: Instant,
    probe: Arc<OnceCell<Probe>>,
}

/// What one `HEAD` found: the rules, or `None` when the page could not be asked.
struct Probe {
    policy: Option<FramePolicy>,
    at: Instant,
}

impl Probe {
    fn is_fresh(&self, now: Instant) -> bool {
        let ttl = if self.policy.is_some() { FRESH_FOR } else { FAILURE_FRESH_FOR };
        now.duration_since(self.at) < ttl
    }
}

impl FramingCheck {
    /// A check with its own HTTP client (not the Pientegra client, nor its budget).
    pub fn new() -> anyhow::Result<FramingCheck> {
        let client = reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            // Redirects stay on the hosted page's host: DEPOSIT_URL_HOSTS vetted it, not others.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_host = attempt.previous().first().and_then(Url::host_str) == attempt.url().host_str();
                match attempt.previous().len() {
                    n if n > MAX_REDIRECTS => attempt.error("too many redirects"),
                    _ if !same_host => attempt.error("a redirect to another host"),
                    _ => attempt.follow(),
                }
            }))
            .user_agent(concat!("pientegra-server/", env!("CARGO_PKG_VERSION"), " (framing check)"))
            .build()?;
        Ok(FramingCheck { client, probes: Mutex::new(HashMap::new()) })
    }

    /// Whether a page of `page_origin` (a serialized origin, or `null`) may
    /// frame `hosted_page`.
    pub async fn framing(&self, hosted_page: &str, page_origin: &str) -> Framing {
        let Some(url) = Url::parse(hosted_page).ok().filter(|url| Origin::of(url).is_some()) else {
            return Framing::refused(FramingRefusal::Unknown);
        };
        let slot = self.slot(url.origin().ascii_serialization());
        let probe = slot.probe.get_or_init(|| self.probe(url)).await;
        let Some(policy) = &probe.policy else { return Framing::refused(FramingRefusal::Unknown) };
        match policy.verdict(Origin::parse(page_origin).as_ref()) {
            Ok(()) => Framing::ALLOWED,
            Err(Blocker::FrameAncestors) => Framing::refused(FramingRefusal::FrameAncestors),
            Err(Blocker::XFrameOptions) => Framing::refused(FramingRefusal::XFrameOptions),
        }
    }

    /// The origin's slot: its fresh or running probe, or a new one.
    fn slot(&self, key: String) -> Slot {
        let now = Instant::now();
        let mut probes = self.probes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let usable = |slot: &Slot| slot.probe.get().is_none_or(|probe| probe.is_fresh(now));
        if let Some(slot) = probes.get(&key).filter(|slot| usable(slot)) {
            return slot.clone();
        }
        probes.retain(|_, slot| usable(slot));
        while probes.len() >= MAX_ORIGINS {
            if let Some(oldest) = probes.iter().min_by_key(|(_, slot)| slot.started).map(|(key, _)| key.clone()) {
                probes.remove(&oldest);
            }
        }
        let slot = Slot { started: now, probe: Arc::new(OnceCell::new()) };
        probes.insert(key, slot.clone());
        slot
    }

    /// One `HEAD` of the hosted page; the rules are those of the page it ends
    /// on after redirects. Its URL carries the deposit's token, so neither it
    /// nor an error naming it is logged.
    async fn probe(&self, url: Url) -> Probe {
        let answer = self.client.head(url).send().await;
        let policy = match answer {
            Ok(response) => {
                let status = response.status();
                let origin = Origin::of(response.url());
                let answered = !(status.is_server_error() || status == reqwest::StatusCode::METHOD_NOT_ALLOWED);
                if !answered {
                    tracing::warn!(origin = %response.url().origin().ascii_serialization(), %status,
                        "the hosted deposit page answered the framing check with an error");
                }
                origin.filter(|_| answered).map(|origin| FramePolicy::from_headers(origin, response.headers()))
            }
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "the hosted deposit page could not be asked whether it may be framed");
                None
            }
        };
        Probe { policy, at: Instant::now() }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::head;

    use super::*;

    /// Serves `app` on a loopback port; answers its base URL.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// A hosted page answering `HEAD /d/{token}` with `status` and `headers`, counting the `HEAD`s.
    async fn hosted_page(
        status: StatusCode,
        headers: &'static [(&'static str, &'static str)],
    ) -> (String, Arc<AtomicUsize>) {
        let heads = Arc::new(AtomicUsize::new(0));
        let counter = heads.clone();
        let app = Router::new().route(
            "/d/{token}",
            head(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut map = HeaderMap::new();
                for (name, value) in headers {
                    map.append(*name, value.parse().unwrap());
                }
                async move { (status, map) }
            }),
        );
        (serve(app).await, heads)
    }

    const ALLOWED: Framing = Framing::ALLOWED;

    #[tokio::test]
    async fn deposits_at_once_share_one_head_and_each_page_gets_its_own_verdict() {
        let (url, heads) =
            hosted_page(StatusCode::OK, &[("content-security-policy", "frame-ancestors https://partner.example")])
                .await;
        let check = FramingCheck::new().unwrap();
        let answers = futures::future::join_all((0..20).map(|i| {
            let (check, page) = (&check, format!("{url}/d/token-{i}"));
            async move {
                let origin = if i % 2 == 0 { "https://partner.example" } else { "https://other.example" };
                (i, check.framing(&page, origin).await)
            }
        }))
        .await;
        for (i, framing) in answers {
            let want = if i % 2 == 0 { ALLOWED } else { Framing::refused(FramingRefusal::FrameAncestors) };
            assert_eq!(framing, want, "deposit {i}");
        }
        assert_eq!(heads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn x_frame_options_decides_without_frame_ancestors() {
        let (url, _) = hosted_page(StatusCode::OK, &[("x-frame-options", "SAMEORIGIN")]).await;
        let check = FramingCheck::new().unwrap();
        let page = format!("{url}/d/t");
        assert_eq!(
            check.framing(&page, "https://partner.example").await,
            Framing::refused(FramingRefusal::XFrameOptions)
        );
        assert_eq!(check.framing(&page, &url).await, ALLOWED);
    }

    #[tokio::test]
    async fn a_page_that_cannot_be_asked_is_unknown_and_asked_again_only_later() {
        let check = FramingCheck::new().unwrap();
        for status in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::METHOD_NOT_ALLOWED] {
            let (url, heads) = hosted_page(status, &[]).await;
            for _ in 0..3 {
                let framing = check.framing(&format!("{url}/d/t"), "https://partner.example").await;
                assert_eq!(framing, Framing::refused(FramingRefusal::Unknown), "{status}");
            }
            assert_eq!(heads.load(Ordering::SeqCst), 1, "{status}: the failure is remembered");
        }
        // Nobody listening.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let framing = check.framing(&format!("http://{closed}/d/t"), "https://partner.example").await;
        assert_eq!(framing, Framing::refused(FramingRefusal::Unknown));
        for not_a_page in ["not a url", "ftp://pay.example/d/t"] {
            assert_eq!(
                check.framing(not_a_page, "https://partner.example").await,
                Framing::refused(FramingRefusal::Unknown)
            );
        }
    }

    #[tokio::test]
    async fn after_a_redirect_the_final_page_decides_and_is_self() {
        let (target, _) = hosted_page(StatusCode::OK, &[("content-security-policy", "frame-ancestors 'self'")]).await;
        let location = format!("{target}/d/moved");
        let start = serve(Router::new().route(
            "/d/{token}",
            head(move || {
                let location = location.clone();
                async move { (StatusCode::FOUND, [("location", location), ("x-frame-options", "DENY".to_owned())]) }
            }),
        ))
        .await;
        let check = FramingCheck::new().unwrap();
        assert_eq!(check.framing(&format!("{start}/d/t"), &target).await, ALLOWED);
        let refused = check.framing(&format!("{start}/d/t"), &start).await;
        assert_eq!(refused, Framing::refused(FramingRefusal::FrameAncestors));
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_not_followed() {
        let start = serve(Router::new().route(
            "/d/{token}",
            head(|| async { (StatusCode::FOUND, [("location", "http://localhost:9/d/elsewhere")]) }),
        ))
        .await;
        let check = FramingCheck::new().unwrap();
        let framing = check.framing(&format!("{start}/d/t"), "https://partner.example").await;
        assert_eq!(framing, Framing::refused(FramingRefusal::Unknown));
    }

    #[tokio::test]
    async fn the_cache_holds_a_bounded_number_of_origins() {
        let check = FramingCheck::new().unwrap();
        for port in 0..(MAX_ORIGINS + 10) {
            let slot = check.slot(format!("https://pay{port}.example"));
            slot.probe.set(Probe { policy: None, at: Instant::now() }).ok().unwrap();
        }
        assert_eq!(check.probes.lock().unwrap().len(), MAX_ORIGINS);
        assert!(check.probes.lock().unwrap().contains_key(&format!("https://pay{}.example", MAX_ORIGINS + 9)));
    }

    #[test]
    fn answers_are_used_ten_minutes_and_failures_thirty_seconds() {
        let at = Instant::now();
        let answered = Probe {
            policy: Some(FramePolicy::from_headers(
                Origin::parse("https://pay.example").unwrap(),
                &http::HeaderMap::new(),
            )),
            at,
        };
        let failed = Probe { policy: None, at };
        assert!(answered.is_fresh(at + Duration::from_secs(599)));
        assert!(!answered.is_fresh(at + Duration::from_secs(600)));
        assert!(failed.is_fresh(at + Duration::from_secs(29)));
        assert!(!failed.is_fresh(at + Duration::from_secs(30)));
    }
}
