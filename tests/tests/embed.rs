//! The widget embedded the way partners embed it, in a real headless
//! Chromium: a page on another origin, with its own strict
//! Content-Security-Policy, that loads `/widget/v1/pientegra.js` from the
//! companion server and places the elements. It must take a deposit and a
//! withdrawal all the way with no CSP violation and no console error, tell
//! the page what happens through DOM events, survive a token refresh, show
//! the iframe mode's modal where the hosted page may be framed and fall back
//! to a popup where it may not, and meet every bad input with a message in
//! the element and nothing sent.
//!
//! Without a browser (or the built widget) these tests say so and skip; with
//! `CI=true` they fail instead.

use std::time::Duration;

use fantoccini::Locator;
use pientegra_tests::browser::{
    BUTTON_READY, Browser, available, dist, newest, sse_connections, status_is, text_contains, type_into, widget_dist,
};
use pientegra_tests::partner::{Page, Partner, Site, mint};
use pientegra_tests::{Options, Stack, wait_for};
use serde_json::{Value, json};

/// The iframe mode's frame shows a page.
const FRAME_SHOWN: &str =
    "(f => !!f && !f.hidden && !!f.getAttribute('src'))(document.querySelector('[data-testid=deposit-frame]'))";

/// A stack whose server lists `site`'s origin and serves the partner bundle,
/// and whose hosted page may be framed by `frame_ancestors` (the sandbox's
/// default `'none'` when `None`).
async fn stack_for(site: &Site, frame_ancestors: Option<&str>) -> Stack {
    Stack::with(Options {
        allowed_origins: vec![site.origin()],
        static_dir: Some(dist()),
        widget_dir: Some(widget_dist()),
        frame_ancestors: frame_ancestors.map(str::to_owned),
        ..Options::default()
    })
    .await
}

/// The partner page: the loader from the kit, then `body`.
fn page(stack: &Stack, user: &str, body: &str) -> Page {
    Page {
        kit: stack.server.url(),
        hosted: stack.sandbox.base_url(),
        body: body.to_owned(),
        loaders: vec![format!("{}/widget/v1/pientegra.js", stack.server.url())],
        user: user.to_owned(),
        refresh_tokens: false,
    }
}

/// A partner page on its own origin, a stack that lists it (whose hosted
/// page it may frame when `framing`), and a browser on the page. `body` gets
/// a token of `user`'s; `adjust` may change the page before it is served.
async fn embedded(
    user: &str,
    framing: bool,
    body: impl FnOnce(&str) -> String,
    adjust: impl FnOnce(&mut Page),
) -> (Stack, Partner, Browser) {
    let site = Site::bind().await;
    let origin = site.origin();
    let stack = stack_for(&site, framing.then_some(origin.as_str())).await;
    let token = stack.token(user).await;
    let mut page = page(&stack, user, &body(&token));
    adjust(&mut page);
    let partner = site.serve(page);
    let browser = Browser::start().await.unwrap();
    open(&browser, &partner).await;
    (stack, partner, browser)
}

/// What partner.js recorded: `events`, `violations`, `errors`, `warnings`.
async fn seen(browser: &Browser) -> Value {
    browser.client.execute("return window.partner;", vec![]).await.unwrap()
}

/// The details of the recorded events named `name`, in order.
async fn events(browser: &Browser, name: &str) -> Vec<Value> {
    let seen = seen(browser).await;
    seen["events"].as_array().unwrap().iter().filter(|e| e["type"] == name).map(|e| e["detail"].clone()).collect()
}

/// A JS condition: an event `name` was recorded whose detail's `field` is `value`.
fn event_seen(name: &str, field: &str, value: &str) -> String {
    format!("window.partner.events.some(e => e.type === '{name}' && e.detail.{field} === '{value}')")
}

/// No CSP violation, no console error, no uncaught exception on the page.
async fn assert_clean(browser: &Browser) {
    let seen = seen(browser).await;
    assert_eq!(seen["violations"], json!([]), "CSP violations");
    assert_eq!(seen["errors"], json!([]), "console errors");
}

async fn open(browser: &Browser, partner: &Partner) {
    browser.client.goto(&partner.url()).await.unwrap();
}

/// Clicks deposit and confirms the transfer on the hosted page in the popup.
async fn pay_in_popup(browser: &Browser) {
    let main = browser.client.window().await.unwrap();
    let before = browser.client.windows().await.unwrap();
    browser.find("[data-testid=deposit-submit]").await.unwrap().click().await.unwrap();
    let popup = browser.new_window_since(&before).await;
    browser.client.switch_to_window(popup).await.unwrap();
    browser.until("the hosted page", "document.getElementById('confirm')").await.unwrap();
    browser.client.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    browser.until("submitted", "document.getElementById('state')?.dataset.status === 'PENDING_REVIEW'").await.unwrap();
    browser.client.close_window().await.unwrap();
    browser.client.switch_to_window(main).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_with_a_strict_csp_takes_a_deposit_and_a_withdrawal_and_hears_every_step() {
    if !available() {
        return;
    }
    let body = |token: &str| {
        format!(
            r#"<pientegra-deposit id="deposit" token="{token}" locale="en" mode="popup"></pientegra-deposit>
               <pientegra-withdrawal id="withdrawal" token="{token}" locale="en"></pientegra-withdrawal>"#
        )
    };
    let (stack, _partner, browser) = embedded("ayse", false, body, |_| {}).await;
    browser.until("the deposit button", BUTTON_READY).await.unwrap();
    browser.until("the first balance event", &event_seen("pientegra:balance", "available", "0")).await.unwrap();

    // An amount the widget refuses is an error the page hears, and nothing is sent.
    type_into(&browser, "deposit-amount", "0.50").await;
    browser.find("[data-testid=deposit-submit]").await.unwrap().click().await.unwrap();
    browser.until("the error event", &event_seen("pientegra:error", "code", "amount_below_min")).await.unwrap();
    let refused = events(&browser, "pientegra:error").await;
    assert_eq!(
        refused[0]["message"],
        browser.text_of(".pk-deposit .pk-field .pk-error").await.as_str(),
        "the words shown"
    );
    assert_eq!(browser.client.windows().await.unwrap().len(), 1, "no popup for a refused amount");

    type_into(&browser, "deposit-amount", "250.00").await;
    pay_in_popup(&browser).await;
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest(&stack, "intents", "ayse").await;
    let intent_id = intent["intentId"].as_str().unwrap().to_owned();
    stack.control(&format!("intents/{intent_id}/approve"), json!({})).await;
    browser.until("approved", &status_is("deposit-status", "APPROVED")).await.unwrap();
    browser.until("the balance event", &event_seen("pientegra:balance", "available", "25000")).await.unwrap();
    let statuses: Vec<Value> = events(&browser, "pientegra:deposit-status").await;
    let steps: Vec<&str> = statuses.iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(steps, ["RESERVED", "PENDING_REVIEW", "APPROVED"], "each status once, in order");
    let approved = statuses.last().unwrap();
    assert_eq!(approved["intentId"], intent_id.as_str());
    assert_eq!(approved["amount"], "25000", "minor units, as a string");
    assert_eq!(approved["currency"], "TRY");
    assert_eq!(approved["rejectedReason"], Value::Null);
    let recorded = seen(&browser).await;
    let first = &recorded["events"][0];
    assert_eq!((first["bubbles"].as_bool(), first["composed"].as_bool()), (Some(true), Some(true)));

    type_into(&browser, "withdraw-amount", "100.00").await;
    type_into(&browser, "withdraw-holder", "Ayşe Yılmaz").await;
    type_into(&browser, "withdraw-iban", "TR330006100519786457841326").await;
    browser.find("[data-testid=withdraw-submit]").await.unwrap().click().await.unwrap();
    browser.until("withdrawal under review", &status_is("withdraw-status", "PENDING_REVIEW")).await.unwrap();
    let withdrawal = newest(&stack, "withdrawals", "ayse").await;
    let id = withdrawal["withdrawalId"].as_str().unwrap();
    stack.control(&format!("withdrawals/{id}/approve"), json!({})).await;
    stack.control(&format!("withdrawals/{id}/send"), json!({})).await;
    browser.until("sent", &status_is("withdraw-status", "SENT")).await.unwrap();
    browser.until("the SENT event", &event_seen("pientegra:withdrawal-status", "status", "SENT")).await.unwrap();
    browser.until("the balance after", &event_seen("pientegra:balance", "available", "15000")).await.unwrap();
    let sent = events(&browser, "pientegra:withdrawal-status").await.last().cloned().unwrap();
    assert_eq!(sent["withdrawalId"], id);
    assert_eq!(sent["amount"], "10000");
    assert!(sent["ibanMasked"].as_str().unwrap().replace(' ', "").ends_with("1326"), "{sent}");
    browser.screenshot("embed-cross-origin-sent").await.unwrap();
    assert_clean(&browser).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tabs_of_a_partner_page_share_one_stream_and_the_tenth_takes_a_deposit() {
    if !available() {
        return;
    }
    let body = |token: &str| {
        format!(r#"<pientegra-deposit id="deposit" token="{token}" locale="en" mode="popup"></pientegra-deposit>"#)
    };
    let (stack, partner, browser) = embedded("deniz", false, body, |_| {}).await;
    let ready = format!("({BUTTON_READY}) && {}", event_seen("pientegra:balance", "available", "0"));
    let tabs = browser.open_tabs(&partner.url(), 10, &ready).await;
    wait_for(Duration::from_secs(20), || async { sse_connections(&stack).await == 1 })
        .await
        .expect("one stream for the ten tabs");

    // The tenth tab's deposit reaches the hosted page; its approval, and the
    // balance it brings, reach every tab.
    type_into(&browser, "deposit-amount", "250.00").await;
    pay_in_popup(&browser).await;
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest(&stack, "intents", "deniz").await;
    stack.control(&format!("intents/{}/approve", intent["intentId"].as_str().unwrap()), json!({})).await;
    browser.until("approved", &status_is("deposit-status", "APPROVED")).await.unwrap();
    for (n, tab) in tabs.iter().enumerate() {
        browser.client.switch_to_window(tab.clone()).await.unwrap();
        let balance = event_seen("pientegra:balance", "available", "25000");
        browser.until(&format!("the balance in tab {}", n + 1), &balance).await.unwrap();
        assert_clean(&browser).await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_announced_and_a_fresh_one_keeps_what_the_user_typed() {
    if !available() {
        return;
    }
    let short = mint("mehmet", 4);
    let body = |_: &str| format!(r#"<pientegra-deposit id="deposit" token="{short}" locale="en"></pientegra-deposit>"#);
    let (stack, _partner, browser) = embedded("mehmet", false, body, |page| page.refresh_tokens = true).await;
    browser.until("the deposit button", BUTTON_READY).await.unwrap();
    type_into(&browser, "deposit-amount", "123.45").await;
    browser
        .until("the token-expired event", "window.partner.events.some(e => e.type === 'pientegra:token-expired')")
        .await
        .unwrap();
    let expired = events(&browser, "pientegra:token-expired").await;
    assert_eq!(expired[0]["code"], "token_expired");
    // partner.js fetched a fresh token and set the attribute: same widget, same input.
    browser.until("a fresh token", "window.partner.tokensFetched === 1").await.unwrap();
    let typed = browser
        .client
        .execute("return document.querySelector('[data-testid=deposit-amount]').value;", vec![])
        .await
        .unwrap();
    assert_eq!(typed, json!("123.45"), "the widget kept its state");
    // And it works with the fresh token: a deposit goes through.
    pay_in_popup(&browser).await;
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest(&stack, "intents", "mehmet").await;
    assert_eq!(intent["amount"], "12345");
    assert_clean(&browser).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_a_message_in_the_element_and_sends_nothing() {
    if !available() {
        return;
    }
    let body = |token: &str| {
        format!(
            r#"<pientegra-deposit id="mode" token="{token}" mode="modal"></pientegra-deposit>
               <pientegra-deposit id="locale" token="{token}" locale="de"></pientegra-deposit>
               <pientegra-deposit id="malformed" token="not a token"></pientegra-deposit>
               <pientegra-withdrawal id="missing"></pientegra-withdrawal>"#
        )
    };
    let (stack, _partner, browser) = embedded("zeynep", false, body, |_| {}).await;
    browser
        .until("four problems", "document.querySelectorAll('[data-testid=widget-problem]').length === 4")
        .await
        .unwrap();
    let recorded = seen(&browser).await;
    let problem = |id: &str| {
        let found =
            recorded["events"].as_array().unwrap().iter().find(|e| e["type"] == "pientegra:error" && e["target"] == id);
        let detail = &found.unwrap_or_else(|| panic!("no pientegra:error from #{id}"))["detail"];
        (detail["code"].as_str().unwrap().to_owned(), detail["message"].as_str().unwrap().to_owned())
    };
    assert_eq!(problem("mode").0, "invalid_option");
    assert!(problem("mode").1.contains("unknown mode \"modal\""), "{:?}", problem("mode"));
    assert_eq!(problem("locale").0, "invalid_option");
    assert!(problem("locale").1.contains("unknown locale \"de\""), "{:?}", problem("locale"));
    assert_eq!(problem("malformed").0, "token_malformed");
    assert_eq!(problem("missing").0, "token_missing");
    for id in ["mode", "locale", "malformed", "missing"] {
        let text = browser.text_of(&format!("#{id} [data-testid=widget-problem]")).await;
        assert!(text.starts_with("pientegra: "), "#{id} shows {text}");
    }
    assert_eq!(recorded["errors"].as_array().unwrap().len(), 3, "each refusal in the console: {recorded}");
    assert_eq!(recorded["warnings"].as_array().unwrap().len(), 1, "a missing token is a warning: {recorded}");
    assert_eq!(recorded["violations"], json!([]));
    assert_no_api_calls(&browser).await;
    browser.close().await;

    // A page whose origin the server does not list.
    let stranger = Site::bind().await;
    let partner = stranger.serve(page(
        &stack,
        "zeynep",
        &format!(r#"<pientegra-deposit id="deposit" token="{}"></pientegra-deposit>"#, stack.token("zeynep").await),
    ));
    let browser = Browser::start().await.unwrap();
    open(&browser, &partner).await;
    browser.until("the problem", "!!document.querySelector('[data-testid=widget-problem]')").await.unwrap();
    let problem = events(&browser, "pientegra:error").await;
    assert_eq!(problem[0]["code"], "origin_not_allowed");
    assert!(problem[0]["message"].as_str().unwrap().contains("ALLOWED_ORIGINS"));
    assert_no_api_calls(&browser).await;
    browser.close().await;
}

/// The page fetched nothing from the API but the embed check.
async fn assert_no_api_calls(browser: &Browser) {
    let calls = browser
        .client
        .execute(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)\
             .filter(p => p.startsWith('/api/') && p !== '/api/embed-check');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(calls, json!([]), "API calls were made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_loader_on_the_page_is_ignored_with_a_warning() {
    if !available() {
        return;
    }
    let body =
        |token: &str| format!(r#"<pientegra-deposit id="deposit" token="{token}" locale="en"></pientegra-deposit>"#);
    let again = |page: &mut Page| page.loaders.push(format!("{}?again", page.loaders[0]));
    let (_stack, _partner, browser) = embedded("ayse", false, body, again).await;
    browser.until("the deposit button", BUTTON_READY).await.unwrap();
    let count =
        browser.client.execute("return document.querySelectorAll('.pk-deposit').length;", vec![]).await.unwrap();
    assert_eq!(count, json!(1), "one widget");
    let recorded = seen(&browser).await;
    let warnings = recorded["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("the loader is on this page twice")), "{recorded}");
    assert_clean(&browser).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframe_mode_shows_the_hosted_page_in_a_modal_where_it_may_be_framed() {
    if !available() {
        return;
    }
    let body = |token: &str| {
        format!(r#"<pientegra-deposit id="deposit" token="{token}" locale="en" mode="iframe"></pientegra-deposit>"#)
    };
    let (stack, _partner, browser) = embedded("ayse", true, body, |_| {}).await;
    browser.until("the deposit button", BUTTON_READY).await.unwrap();

    // Escape closes the modal; focus is inside it while it is open.
    type_into(&browser, "deposit-amount", "300.00").await;
    browser.find("[data-testid=deposit-submit]").await.unwrap().click().await.unwrap();
    browser.until("the framed page", FRAME_SHOWN).await.unwrap();
    let focus_inside = browser
        .client
        .execute(
            "return document.querySelector('[data-testid=deposit-modal]').contains(document.activeElement);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focus_inside, json!(true), "focus is in the modal");
    let close_visible = browser.find("[data-testid=modal-close]").await.unwrap().is_displayed().await.unwrap();
    assert!(close_visible, "a visible close button");
    browser.screenshot("embed-iframe-modal").await.unwrap();
    let close = browser.client.find(Locator::Css("[data-testid=modal-close]")).await.unwrap();
    close.send_keys("\u{e00c}").await.unwrap(); // WebDriver's Escape key
    browser.until("the modal closed", "!document.querySelector('[data-testid=deposit-modal]').open").await.unwrap();

    // Reopened from the status panel, the hosted page is paid inside the frame.
    browser.find("[data-testid=reopen]").await.unwrap().click().await.unwrap();
    let frame = browser.find("[data-testid=deposit-frame]").await.unwrap();
    frame.enter_frame().await.unwrap();
    browser.until("the hosted page", "document.getElementById('confirm')").await.unwrap();
    browser.client.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    browser.client.enter_parent_frame().await.unwrap();
    browser
        .until("the modal closed by the status", "!document.querySelector('[data-testid=deposit-modal]').open")
        .await
        .unwrap();
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest(&stack, "intents", "ayse").await;
    stack.control(&format!("intents/{}/approve", intent["intentId"].as_str().unwrap()), json!({})).await;
    browser.until("approved", &status_is("deposit-status", "APPROVED")).await.unwrap();
    assert_clean(&browser).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframe_mode_falls_back_to_a_popup_and_says_why_where_framing_is_forbidden() {
    if !available() {
        return;
    }
    let body = |token: &str| {
        format!(r#"<pientegra-deposit id="deposit" token="{token}" locale="en" mode="iframe"></pientegra-deposit>"#)
    };
    // The sandbox's default: frame-ancestors 'none'.
    let (_stack, _partner, browser) = embedded("ayse", false, body, |_| {}).await;
    browser.until("the deposit button", BUTTON_READY).await.unwrap();
    type_into(&browser, "deposit-amount", "200.00").await;
    pay_in_popup(&browser).await;
    browser.until("the reason", &text_contains("deposit-notice", "its own security settings forbid it")).await.unwrap();
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let framed = browser.client.execute(&format!("return {FRAME_SHOWN};"), vec![]).await.unwrap();
    assert_eq!(framed, json!(false), "never framed");
    assert_clean(&browser).await;
    browser.close().await;
}
