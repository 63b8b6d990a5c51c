//! A partner's web site for the embedding tests: another origin than the
//! companion server, with its own strict Content-Security-Policy, embedding
//! the widget the way the integration guide says: the loader from the kit's
//! `/widget/v1/`, the elements, and a script of its own (`tests/partner/partner.js`)
//! that records the widget's events, CSP violations and console messages.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use chrono::{TimeDelta, Utc};
use pientegra_shared::ids::ExternalUserId;
use pientegra_shared::token::TokenKey;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::TOKEN_SECRET;

const PARTNER_JS: &str = include_str!("../partner/partner.js");

/// What the partner page holds.
#[derive(Clone, Debug)]
pub struct Page {
    /// The companion server's origin (the kit).
    pub kit: String,
    /// Where the hosted deposit page lives (iframe mode needs it in `frame-src`).
    pub hosted: String,
    /// The `<body>` (the widget's elements, with their attributes).
    pub body: String,
    /// `<script type="module" src>` of loaders, in order (normally one).
    pub loaders: Vec<String>,
    /// `data-*` of `<body>` read by partner.js: `user`, `refresh`.
    pub user: String,
    pub refresh_tokens: bool,
}

impl Page {
    /// The minimum policy the integration guide tells partners to add for the
    /// widget, on top of a strict policy of their own: nothing inline.
    pub fn csp(&self) -> String {
        let Page { kit, hosted, .. } = self;
        format!(
            "default-src 'none'; script-src 'self' {kit} 'wasm-unsafe-eval'; style-src 'self' {kit}; \
             connect-src 'self' {kit}; frame-src {hosted}; img-src 'self'; base-uri 'none'; form-action 'self'"
        )
    }

    fn html(&self) -> String {
        let loaders: String =
            self.loaders.iter().map(|src| format!(r#"<script type="module" src="{src}"></script>"#)).collect();
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Partner shop</title>
<script type="module" src="/partner.js"></script>{loaders}</head>
<body data-user="{user}" data-refresh="{refresh}"><h1>Partner shop</h1>{body}</body></html>"#,
            user = self.user,
            refresh = if self.refresh_tokens { "yes" } else { "no" },
            body = self.body,
        )
    }
}

/// A partner site's address, taken before the page exists (the companion
/// server must list its origin, and the page must name the server).
pub struct Site {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl Site {
    pub async fn bind() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("partner port");
        let addr = listener.local_addr().expect("partner addr");
        Site { listener, addr }
    }

    /// The partner page's origin.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `page` at `/`, `partner.js`, and `/token?user=&seconds=` (what
    /// the partner's backend does for its logged-in user: a widget token).
    pub fn serve(self, page: Page) -> Partner {
        let app = Router::new()
            .route("/", get(index))
            .route("/partner.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], PARTNER_JS) }))
            .route("/token", get(token))
            .with_state(page);
        let Site { listener, addr } = self;
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("partner serves");
        });
        Partner { addr, task }
    }
}

/// A running partner site; stops when dropped.
pub struct Partner {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Partner {
    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Partner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn index(State(page): State<Page>) -> impl IntoResponse {
    ([(header::CONTENT_SECURITY_POLICY, page.csp())], Html(page.html()))
}

#[derive(Deserialize)]
struct TokenQuery {
    user: String,
    seconds: i64,
}

/// What a partner backend does for its logged-in user: a widget token.
async fn token(Query(query): Query<TokenQuery>) -> String {
    mint(&query.user, query.seconds)
}

/// A widget token for `user`, valid for `seconds`.
pub fn mint(user: &str, seconds: i64) -> String {
    let key = TokenKey::new(SecretString::from(TOKEN_SECRET.to_owned()));
    let user = ExternalUserId::parse(user).expect("user id");
    let now = Utc::now();
    key.mint(&user, None, now, now + TimeDelta::seconds(seconds))
}
