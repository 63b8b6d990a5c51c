//! Whether a page of one origin may show a response in a frame, decided from
//! that response's headers the way browsers decide it: the
//! `Content-Security-Policy` directive `frame-ancestors` (CSP Level 3 source
//! matching), else `X-Frame-Options` (the HTML standard's processing).
//! Pure: headers in, a verdict out.

use http::HeaderMap;
use http::header::{CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use url::Url;

/// A tuple origin (scheme, host, port): what framing rules compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    /// Lower case; IPv6 addresses in brackets.
    host: String,
    port: u16,
    /// A DNS name rather than an IP address: only names match `*.` wildcards.
    is_domain: bool,
}

impl Origin {
    /// The origin of an `http`/`https` URL; `None` for any other (an opaque origin).
    pub fn of(url: &Url) -> Option<Origin> {
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let host = url.host()?;
        Some(Origin {
            scheme: url.scheme().to_owned(),
            is_domain: matches!(host, url::Host::Domain(_)),
            host: host.to_string().to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    /// Parses a serialized origin such as an `Origin` header's value
    /// (`https://partner.example`); `None` for `null` and anything that is not
    /// an `http`/`https` origin.
    pub fn parse(serialized: &str) -> Option<Origin> {
        Origin::of(&Url::parse(serialized.trim()).ok()?)
    }

    fn has_default_port(&self) -> bool {
        default_port(&self.scheme) == Some(self.port)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Why framing is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// A `Content-Security-Policy` `frame-ancestors` directive.
    FrameAncestors,
    /// `X-Frame-Options`.
    XFrameOptions,
}

/// The framing rules of one response, ready to be asked about any page origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FramePolicy {
    /// The framed response's own origin: `'self'`, `SAMEORIGIN` and the scheme
    /// of a source without one refer to it.
    origin: Origin,
    /// One source list per enforced policy that has `frame-ancestors`; every one must allow.
    ancestors: Vec<Vec<Source>>,
    x_frame_options: XFrameOptions,
}

impl FramePolicy {
    /// The rules of a response from `origin` with `headers`.
    /// `Content-Security-Policy-Report-Only` enforces nothing and is not read.
    pub fn from_headers(origin: Origin, headers: &HeaderMap) -> FramePolicy {
        let ancestors = headers
            .get_all(CONTENT_SECURITY_POLICY)
            .iter()
            .flat_map(|value| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                value.split(',').filter_map(frame_ancestors).collect::<Vec<_>>()
            })
            .collect();
        let x_frame_options = XFrameOptions::parse(
            headers.get_all(X_FRAME_OPTIONS).iter().map(|value| String::from_utf8_lossy(value.as_bytes())),
        );
        FramePolicy { origin, ancestors, x_frame_options }
    }

    /// Whether a page of origin `page` (`None`: an opaque origin) may frame the
    /// response. `frame-ancestors` wins: with it, `X-Frame-Options` is ignored.
    pub fn verdict(&self, page: Option<&Origin>) -> Result<(), Blocker> {
        if !self.ancestors.is_empty() {
            let allowed = page.is_some_and(|page| {
                self.ancestors.iter().all(|list| list.iter().any(|source| source.matches(page, &self.origin)))
            });
            return if allowed { Ok(()) } else { Err(Blocker::FrameAncestors) };
        }
        match self.x_frame_options {
            XFrameOptions::Deny => Err(Blocker::XFrameOptions),
            XFrameOptions::SameOrigin if page != Some(&self.origin) => Err(Blocker::XFrameOptions),
            XFrameOptions::SameOrigin | XFrameOptions::Allow => Ok(()),
        }
    }
}

/// The source list of one serialized policy's `frame-ancestors` directive, if
/// it has one. Directive names are case-insensitive; the first of a name wins.
fn frame_ancestors(policy: &str) -> Option<Vec<Source>> {
    for directive in policy.split(';') {
        let mut tokens = directive.split_ascii_whitespace();
        let Some(name) = tokens.next() else { continue };
        if name.eq_ignore_ascii_case("frame-ancestors") {
            return Some(tokens.map(Source::parse).collect());
        }
    }
    None
}

/// What `X-Frame-Options` says, after the HTML standard's processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum XFrameOptions {
    /// Absent, `ALLOWALL`, or a value browsers do not know (`ALLOW-FROM` among them).
    Allow,
    Deny,
    SameOrigin,
}

impl XFrameOptions {
    /// Every header's comma-separated values, trimmed and lower-cased: one
    /// `deny` or `sameorigin` (repeated or not) is that; several different
    /// values, one of them known, block; several unknown ones allow.
    fn parse<S: AsRef<str>>(values: impl Iterator<Item = S>) -> XFrameOptions {
        let mut seen: Vec<String> = Vec::new();
        for header in values {
            for value in header.as_ref().split(',') {
                let value = value.trim_matches(|c| matches!(c, ' ' | '\t')).to_ascii_lowercase();
                if !seen.contains(&value) {
                    seen.push(value);
                }
            }
        }
        let known = |v: &String| matches!(v.as_str(), "deny" | "sameorigin" | "allowall");
        match seen.as_slice() {
            [] => XFrameOptions::Allow,
            [only] if only == "deny" => XFrameOptions::Deny,
            [only] if only == "sameorigin" => XFrameOptions::SameOrigin,
            [_] => XFrameOptions::Allow,
            several if several.iter().any(known) => XFrameOptions::Deny,
            _ => XFrameOptions::Allow,
        }
    }
}

/// One source expression of `frame-ancestors`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// `'self'`.
    SelfOrigin,
    /// `*`.
    Any,
    /// A scheme-source such as `https:` (lower case).
    Scheme(String),
    Host(HostSource),
    /// `'none'` (it only matters when alone, and an empty list matches nothing
    /// anyway), other keywords, and anything malformed: matches no page.
    Nothing,
}

/// `[scheme://]host[:port][/path]`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostSource {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
    /// A path other than `/`: an ancestor is compared as its origin's URL,
    /// whose path is `/`, so only `/` (or none) can match.
    path_is_root: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `*`.
    Any,
    /// `*.example.com`, kept as `.example.com`: subdomains only.
    Subdomains(String),
    /// `example.com` or an IP address, lower case.
    Exact(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortPattern {
    /// No port: the default port of the page's scheme.
    Default,
    /// `:*`.
    Any,
    Number(u16),
}

impl Source {
    fn parse(token: &str) -> Source {
        let lower = token.to_ascii_lowercase();
        match lower.as_str() {
            "'self'" => return Source::SelfOrigin,
            "*" => return Source::Any,
            _ if lower.starts_with('\'') => return Source::Nothing,
            _ => {}
        }
        if let Some(scheme) = lower.strip_suffix(':').filter(|s| is_scheme(s)) {
            return Source::Scheme(scheme.to_owned());
        }
        HostSource::parse(&lower).map_or(Source::Nothing, Source::Host)
    }

    /// CSP Level 3, "Does url match expression in origin": `page` is the
    /// ancestor's origin, `framed` the framed response's.
    fn matches(&self, page: &Origin, framed: &Origin) -> bool {
        match self {
            // The page is an http(s) origin, which `*` always matches.
            Source::Any => true,
            Source::Scheme(scheme) => scheme_matches(scheme, &page.scheme),
            Source::SelfOrigin => {
                page == framed
                    || (page.host == framed.host
                        && (page.port == framed.port || (page.has_default_port() && framed.has_default_port()))
                        && (page.scheme == "https" || (framed.scheme == "http" && page.scheme == "http")))
            }
            Source::Host(source) => source.matches(page, framed),
            Source::Nothing => false,
        }
    }
}

impl HostSource {
    fn parse(lower: &str) -> Option<HostSource> {
        let (scheme, rest) = match lower.split_once("://") {
            Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme.to_owned()), rest),
            Some(_) => return None,
            None => (None, lower),
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, "*")) => (host, PortPattern::Any),
            Some((host, digits)) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                (host, PortPattern::Number(digits.parse().ok()?))
            }
            Some(_) => return None,
            None => (authority, PortPattern::Default),
        };
        let host = match host {
            "*" => HostPattern::Any,
            _ => match host.strip_prefix("*.") {
                Some(domain) if is_host(domain) => HostPattern::Subdomains(format!(".{domain}")),
                Some(_) => return None,
                None if is_host(host) => HostPattern::Exact(host.to_owned()),
                None => return None,
            },
        };
        Some(HostSource { scheme, host, port, path_is_root: path.is_empty() || path == "/" })
    }

    fn matches(&self, page: &Origin, framed: &Origin) -> bool {
        // Without a scheme the source takes the framed response's (http also lets https in).
        let scheme = self.scheme.as_deref().unwrap_or(&framed.scheme);
        if !scheme_matches(scheme, &page.scheme) || !self.path_is_root {
            return false;
        }
        let host = match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomains(suffix) => page.is_domain && page.host.ends_with(suffix.as_str()),
            HostPattern::Exact(host) => *host == page.host,
        };
        let port = match self.port {
            PortPattern::Any => true,
            PortPattern::Default => page.has_default_port(),
            // Browsers let `:80` match the https upgrade of the same host.
            PortPattern::Number(port) => {
                port == page.port || (port == 80 && page.port == 443 && page.scheme == "https")
            }
        };
        host && port
    }
}

/// CSP's "scheme-part match": the same scheme, or the secure upgrade of it.
fn scheme_matches(source: &str, page: &str) -> bool {
    source == page
        || (source == "http" && page == "https")
        || (source == "ws" && matches!(page, "wss" | "http" | "https"))
        || (source == "wss" && page == "https")
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Dot-separated labels of letters, digits and `-` (an IPv4 address is such a name too).
fn is_host(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.split('.').all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    const HOSTED: &str = "https://pay.pientegra.example";

    fn policy(csp: &[&str], xfo: &[&str]) -> FramePolicy {
        policy_of(HOSTED, csp, xfo)
    }

    fn policy_of(hosted: &str, csp: &[&str], xfo: &[&str]) -> FramePolicy {
        let mut headers = HeaderMap::new();
        for value in csp {
            headers.append(CONTENT_SECURITY_POLICY, HeaderValue::from_str(value).unwrap());
        }
        for value in xfo {
            headers.append(X_FRAME_OPTIONS, HeaderValue::from_str(value).unwrap());
        }
        FramePolicy::from_headers(Origin::parse(hosted).unwrap(), &headers)
    }

    fn verdict(policy: &FramePolicy, page: &str) -> Result<(), Blocker> {
        policy.verdict(Origin::parse(page).as_ref())
    }

    fn allows(ancestors: &str, page: &str) -> bool {
        verdict(&policy(&[&format!("frame-ancestors {ancestors}")], &[]), page).is_ok()
    }

    #[test]
    fn no_header_allows_every_page() {
        let open = policy(&[], &[]);
        assert_eq!(verdict(&open, "https://partner.example"), Ok(()));
        assert_eq!(open.verdict(None), Ok(()), "an opaque origin too");
        let other = policy(&["default-src 'self'; script-src 'none'"], &[]);
        assert_eq!(verdict(&other, "https://partner.example"), Ok(()), "default-src does not cover frame-ancestors");
    }

    #[test]
    fn none_blocks_every_page_even_the_same_origin() {
        for page in ["https://partner.example", HOSTED] {
            assert!(!allows("'none'", page), "{page}");
            assert!(!allows("'NONE'", page), "{page}");
        }
        assert!(!allows("", "https://partner.example"), "an empty list matches nothing");
        assert!(allows("'none' https://partner.example", "https://partner.example"), "'none' with others is ignored");
    }

    #[test]
    fn self_is_the_framed_pages_origin_and_its_https_upgrade() {
        assert!(allows("'self'", HOSTED));
        assert!(allows("'SELF'", HOSTED));
        assert!(!allows("'self'", "https://partner.example"));
        assert!(!allows("'self'", "http://pay.pientegra.example"), "no downgrade");
        assert!(!allows("'self'", "https://pay.pientegra.example:8443"));
        let plain = policy_of("http://kit.example", &["frame-ancestors 'self'"], &[]);
        assert_eq!(verdict(&plain, "https://kit.example"), Ok(()), "an upgrade of an http page");
        assert_eq!(verdict(&plain, "http://kit.example"), Ok(()));
    }

    #[test]
    fn star_and_scheme_sources() {
        assert!(allows("*", "https://anyone.example"));
        assert!(allows("*", "http://127.0.0.1:9000"));
        assert!(allows("https:", "https://partner.example:8443"));
        assert!(allows("HTTPS:", "https://partner.example"));
        assert!(!allows("https:", "http://partner.example"));
        assert!(allows("http:", "https://partner.example"), "http: lets the https upgrade in");
        assert!(!allows("data:", "https://partner.example"));
    }

    #[test]
    fn host_sources_compare_scheme_host_and_port() {
        assert!(allows("https://partner.example", "https://partner.example"));
        assert!(allows("HTTPS://Partner.Example", "https://partner.example"));
        assert!(allows("https://partner.example/", "https://partner.example"));
        assert!(!allows("https://partner.example", "https://partner.example:8443"));
        assert!(!allows("https://partner.example", "https://www.partner.example"));
        assert!(!allows("https://partner.example", "http://partner.example"));
        assert!(allows("http://partner.example", "https://partner.example"), "the secure upgrade");
        assert!(allows("http://partner.example:80", "https://partner.example"), "port 80 upgrades to 443");
        assert!(allows("https://partner.example:8443", "https://partner.example:8443"));
        assert!(allows("https://partner.example:*", "https://partner.example:8443"));
        assert!(allows("https://partner.example:443", "https://partner.example"));
        assert!(!allows("https://partner.example/shop/", "https://partner.example"), "a path no origin has");
        assert!(allows("http://127.0.0.1:5173", "http://127.0.0.1:5173"));
        assert!(!allows("http://127.0.0.1:5173", "http://127.0.0.1:5174"));
    }

    #[test]
    fn a_host_source_without_a_scheme_takes_the_framed_pages_scheme() {
        assert!(allows("partner.example", "https://partner.example"));
        assert!(!allows("partner.example", "http://partner.example"), "the framed page is https");
        let plain = policy_of("http://127.0.0.1:8081", &["frame-ancestors 127.0.0.1:5173"], &[]);
        assert_eq!(verdict(&plain, "http://127.0.0.1:5173"), Ok(()));
        assert_eq!(verdict(&plain, "https://127.0.0.1:5173"), Ok(()));
    }

    #[test]
    fn wildcard_hosts_match_subdomains_only() {
        assert!(allows("https://*.partner.example", "https://shop.partner.example"));
        assert!(allows("https://*.partner.example", "https://a.b.partner.example"));
        assert!(!allows("https://*.partner.example", "https://partner.example"));
        assert!(!allows("https://*.partner.example", "https://evilpartner.example"));
        assert!(allows("https://*", "https://anyone.example"));
        assert!(!allows("https://*.0.1", "https://127.0.0.1"), "an IP address has no subdomains");
    }

    #[test]
    fn malformed_sources_and_other_keywords_match_nothing() {
        for source in [
            "'unsafe-inline'",
            "'nonce-abc'",
            "'sha256-abc'",
            "https://partner.example:port",
            "https://partner.example:99999",
            "ht^tp://partner.example",
            "https://*partner.example",
            "https://part ner.example",
            "https://[::1]",
            "partner..example",
        ] {
            assert!(!allows(source, "https://partner.example"), "{source}");
        }
        assert!(
            allows("gar^bage 'unsafe-inline' https://partner.example", "https://partner.example"),
            "skipped, not fatal"
        );
    }

    #[test]
    fn directive_names_are_case_insensitive_and_the_first_one_wins() {
        let p = policy(&["FRAME-ANCESTORS https://partner.example"], &[]);
        assert_eq!(verdict(&p, "https://partner.example"), Ok(()));
        let p = policy(&["frame-ancestors https://partner.example; frame-ancestors 'none'"], &[]);
        assert_eq!(verdict(&p, "https://partner.example"), Ok(()));
        let p = policy(&["frame-ancestors 'none'; frame-ancestors https://partner.example"], &[]);
        assert_eq!(verdict(&p, "https://partner.example"), Err(Blocker::FrameAncestors));
        let p = policy(&["default-src 'self' ;  frame-ancestors\thttps://partner.example  ; img-src *"], &[]);
        assert_eq!(verdict(&p, "https://partner.example"), Ok(()));
    }

    #[test]
    fn every_policy_must_allow_whether_in_one_header_or_several() {
        let loose = "frame-ancestors https://partner.example https://other.example";
        let strict = "frame-ancestors https://other.example";
        for p in [policy(&[loose, strict], &[]), policy(&[&format!("{loose}, {strict}")], &[])] {
            assert_eq!(verdict(&p, "https://partner.example"), Err(Blocker::FrameAncestors));
            assert_eq!(verdict(&p, "https://other.example"), Ok(()));
        }
        let p = policy(&[loose, "script-src 'self'"], &[]);
        assert_eq!(verdict(&p, "https://partner.example"), Ok(()), "a policy without the directive says nothing");
    }

    #[test]
    fn frame_ancestors_wins_over_x_frame_options() {
        let p = policy(&["frame-ancestors https://partner.example"], &["DENY"]);
        assert_eq!(verdict(&p, "https://partner.example"), Ok(()));
        let p = policy(&["frame-ancestors 'none'"], &["SAMEORIGIN"]);
        assert_eq!(verdict(&p, HOSTED), Err(Blocker::FrameAncestors));
    }

    #[test]
    fn report_only_policies_enforce_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert("content-security-policy-report-only", HeaderValue::from_static("frame-ancestors 'none'"));
        let p = FramePolicy::from_headers(Origin::parse(HOSTED).unwrap(), &headers);
        assert_eq!(verdict(&p, "https://partner.example"), Ok(()));
    }

    #[test]
    fn x_frame_options_deny_and_sameorigin() {
        for deny in ["DENY", "deny", " Deny "] {
            assert_eq!(verdict(&policy(&[], &[deny]), HOSTED), Err(Blocker::XFrameOptions), "{deny}");
        }
        let same = policy(&[], &["SAMEORIGIN"]);
        assert_eq!(verdict(&same, HOSTED), Ok(()));
        assert_eq!(verdict(&same, "https://partner.example"), Err(Blocker::XFrameOptions));
        assert_eq!(same.verdict(None), Err(Blocker::XFrameOptions));
        assert_eq!(verdict(&policy(&[], &["sameorigin, SAMEORIGIN"]), HOSTED), Ok(()), "a repeated value is one");
    }

    #[test]
    fn x_frame_options_conflicts_block_and_unknown_values_allow() {
        let page = "https://partner.example";
        assert_eq!(verdict(&policy(&[], &["SAMEORIGIN", "DENY"]), HOSTED), Err(Blocker::XFrameOptions));
        assert_eq!(verdict(&policy(&[], &["ALLOWALL, DENY"]), page), Err(Blocker::XFrameOptions));
        assert_eq!(verdict(&policy(&[], &["ALLOW-FROM https://partner.example"]), page), Ok(()));
        assert_eq!(verdict(&policy(&[], &["ALLOWALL"]), page), Ok(()));
        assert_eq!(verdict(&policy(&[], &["foo, bar"]), page), Ok(()));
    }

    #[test]
    fn an_opaque_page_matches_no_source() {
        assert_eq!(policy(&["frame-ancestors *"], &[]).verdict(None), Err(Blocker::FrameAncestors));
        assert!(Origin::parse("null").is_none());
        assert!(Origin::parse("file:///tmp/x.html").is_none());
    }

    fn hostname() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-z][a-z0-9]{0,8}", 1..4).prop_map(|labels| labels.join(".") + ".example")
    }

    fn page_origin() -> impl Strategy<Value = String> {
        (prop_oneof!["http", "https"], hostname(), prop::option::of(1u16..)).prop_map(|(scheme, host, port)| {
            port.map_or_else(|| format!("{scheme}://{host}"), |port| format!("{scheme}://{host}:{port}"))
        })
    }

    proptest! {
        #[test]
        fn parsing_any_header_never_panics(csp in "\\PC{0,80}", xfo in "\\PC{0,20}", page in "\\PC{0,30}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&csp) {
                headers.insert(CONTENT_SECURITY_POLICY, value);
            }
            if let Ok(value) = HeaderValue::from_str(&xfo) {
                headers.insert(X_FRAME_OPTIONS, value);
            }
            let p = FramePolicy::from_headers(Origin::parse(HOSTED).unwrap(), &headers);
            let _ = p.verdict(Origin::parse(&page).as_ref());
        }

        #[test]
        fn a_page_listed_by_its_exact_origin_is_allowed(page in page_origin(), others in prop::collection::vec(page_origin(), 0..3)) {
            let mut list = others.clone();
            list.push(page.clone());
            prop_assert!(allows(&list.join(" "), &page));
            prop_assert!(allows(&list.join(" ").to_uppercase(), &page));
        }

        #[test]
        fn a_page_no_source_names_is_blocked(page in page_origin(), others in prop::collection::vec(page_origin(), 0..3)) {
            let host = Url::parse(&page).unwrap().host_str().unwrap().to_owned();
            let others: Vec<String> =
                others.into_iter().filter(|o| Url::parse(o).unwrap().host_str() != Some(host.as_str())).collect();
            prop_assert!(!allows(&others.join(" "), &page));
        }

        #[test]
        fn another_policy_never_turns_a_refusal_into_an_allowance(
            page in page_origin(),
            first in prop::collection::vec(page_origin(), 0..3),
            second in prop::collection::vec(page_origin(), 0..3),
        ) {
            let one = policy(&[&format!("frame-ancestors {}", first.join(" "))], &[]);
            let both = policy(&[&format!("frame-ancestors {}", first.join(" ")), &format!("frame-ancestors {}", second.join(" "))], &[]);
            if verdict(&one, &page).is_err() {
                prop_assert!(verdict(&both, &page).is_err());
            }
        }
    }
}
