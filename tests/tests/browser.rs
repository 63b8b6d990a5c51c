//! The widget and the demo page in a real headless Chromium (chromedriver):
//! popup and redirect deposits, a blocked popup, the withdrawal form, a
//! server restart mid-flow, and ten tabs of one user sharing one stream. A
//! screenshot of each final state is saved under `test-output/browser/`. (The
//! popup deposit through the reference deployment, with its servers as
//! processes behind nginx, is in the server's `tests/scaleout.rs`.)
//!
//! Without a browser (or the built widget) these tests say so and skip; with
//! `CI=true` they fail instead.

use std::time::Duration;

use fantoccini::Locator;
use pientegra_tests::browser::{
    APPROVAL_LOGGED, BUTTON_READY, Browser, LINK_LIVE, available, demo_stack, deposit_through_popup, newest,
    sse_connections, status_is, text_contains, type_into,
};
use pientegra_tests::{Stack, wait_for};
use serde_json::json;

/// Tabs the many-tabs test opens: more than the six connections to one
/// origin a browser allows over HTTP/1.1.
const TABS: usize = 10;

/// This tab holds the user's stream (its events are not relayed from another tab).
const HOLDS_STREAM: &str = "document.querySelector('[data-testid=link-state]')?.dataset.stream === 'own'";

/// A JS condition: the event log shows deposit `reference` approved.
fn approval_of(reference: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('[data-testid=event-item][data-event=\"deposit.updated\"]'))\
         .some(e => e.textContent.includes('{reference}') && e.textContent.includes('Onaylandı'))"
    )
}

async fn open_demo(browser: &Browser, stack: &Stack, query: &str) {
    browser.client.goto(&format!("{}/?{query}", stack.server.url())).await.unwrap();
    browser.until("the deposit button", BUTTON_READY).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popup_deposit_in_turkish_is_approved_and_shown_without_a_reload() {
    if !available() {
        return;
    }
    let stack = demo_stack().await;
    let browser = Browser::start().await.unwrap();
    open_demo(&browser, &stack, "user=ayse&locale=tr&mode=popup").await;
    deposit_through_popup(&browser, "1.500,00", "1.500,00").await;
    // Pientegra sends no event for "I made the payment": the server looks the watched deposit up.
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest(&stack, "intents", "ayse").await;
    assert_eq!(intent["amount"], "150000", "typed 1.500,00 in tr is 150000 kuruş");
    // The balance must not move before the webhook says so.
    assert!(!browser.text("balance").await.unwrap().contains("1.500,00"));
    stack.control(&format!("intents/{}/approve", intent["intentId"].as_str().unwrap()), json!({})).await;
    browser.until("approved", &status_is("deposit-status", "APPROVED")).await.unwrap();
    browser.until("the new balance", &text_contains("balance", "1.500,00 ₺")).await.unwrap();
    browser.screenshot("popup-approved-tr").await.unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_deposit_comes_back_to_the_partner_page_with_its_live_status() {
    if !available() {
        return;
    }
    let stack = demo_stack().await;
    let browser = Browser::start().await.unwrap();
    let partner = format!("{}/?user=mehmet&locale=en&mode=redirect", stack.server.url());
    open_demo(&browser, &stack, "user=mehmet&locale=en&mode=redirect").await;
    type_into(&browser, "deposit-amount", "250.00").await;
    browser.find("[data-testid=deposit-submit]").await.unwrap().click().await.unwrap();
    browser
        .until(
            "the hosted page in this tab",
            "location.pathname.startsWith('/d/') && document.getElementById('confirm')",
        )
        .await
        .unwrap();
    browser.client.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    browser.until("submitted", "document.getElementById('state')?.dataset.status === 'PENDING_REVIEW'").await.unwrap();
    // Back to the partner page: the pending deposit is shown with its live status.
    browser.client.goto(&partner).await.unwrap();
    browser.until("under review after the return", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest(&stack, "intents", "mehmet").await;
    stack.control(&format!("intents/{}/approve", intent["intentId"].as_str().unwrap()), json!({})).await;
    browser.until("approved", &status_is("deposit-status", "APPROVED")).await.unwrap();
    browser.until("the new balance", &text_contains("balance", "₺250.00")).await.unwrap();
    browser.screenshot("redirect-approved-en").await.unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_popup_offers_to_continue_in_this_tab() {
    if !available() {
        return;
    }
    let stack = demo_stack().await;
    let browser = Browser::start().await.unwrap();
    open_demo(&browser, &stack, "user=zeynep&locale=en&mode=popup").await;
    // A popup blocker: window.open answers null.
    browser.client.execute("window.open = () => null;", vec![]).await.unwrap();
    type_into(&browser, "deposit-amount", "100").await;
    browser.find("[data-testid=deposit-submit]").await.unwrap().click().await.unwrap();
    browser.until("blocked", &status_is("deposit-status", "BLOCKED")).await.unwrap();
    browser.screenshot("popup-blocked").await.unwrap();
    browser.find("[data-testid=continue-here]").await.unwrap().click().await.unwrap();
    browser.until("the hosted page in this tab", "location.pathname.startsWith('/d/')").await.unwrap();
    let shown = browser.client.find(Locator::Css("#amount")).await.unwrap().text().await.unwrap();
    assert!(shown.contains("100,00"), "{shown}");
    browser.screenshot("popup-blocked-continued").await.unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_withdrawal_form_refuses_a_bad_iban_and_a_good_one_goes_through_to_sent() {
    if !available() {
        return;
    }
    let stack = demo_stack().await;
    let token = stack.token("ayse").await;
    stack.funded(&token, "50000").await;
    let browser = Browser::start().await.unwrap();
    open_demo(&browser, &stack, "user=ayse&locale=tr").await;
    browser.until("the balance", &text_contains("balance", "500,00")).await.unwrap();
    type_into(&browser, "withdraw-amount", "100,00").await;
    type_into(&browser, "withdraw-holder", "Ayşe Yılmaz").await;
    type_into(&browser, "withdraw-iban", "TR33 0006 1005 1978 6457 8413 27").await;
    browser.until("the IBAN error", "!!document.querySelector('[data-testid=iban-error]')").await.unwrap();
    browser.screenshot("withdrawal-invalid-iban").await.unwrap();
    let _ = browser.find("[data-testid=withdraw-submit]").await.unwrap().click().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = stack.sandbox_state().await;
    assert!(state["withdrawals"].as_array().unwrap().is_empty(), "an invalid IBAN reached Pientegra");

    type_into(&browser, "withdraw-iban", "TR330006100519786457841326").await;
    browser.until("no IBAN error", "!document.querySelector('[data-testid=iban-error]')").await.unwrap();
    let grouped = browser
        .client
        .execute("return document.querySelector('[data-testid=withdraw-iban]').value;", vec![])
        .await
        .unwrap();
    assert_eq!(grouped, json!("TR33 0006 1005 1978 6457 8413 26"), "grouped in fours");
    browser.find("[data-testid=withdraw-submit]").await.unwrap().click().await.unwrap();
    browser.until("under review", &status_is("withdraw-status", "PENDING_REVIEW")).await.unwrap();
    browser.until("reserved", &text_contains("reserved", "100,00")).await.unwrap();
    let withdrawal = newest(&stack, "withdrawals", "ayse").await;
    let id = withdrawal["withdrawalId"].as_str().unwrap();
    stack.control(&format!("withdrawals/{id}/approve"), json!({})).await;
    stack.control(&format!("withdrawals/{id}/send"), json!({})).await;
    browser.until("sent", &status_is("withdraw-status", "SENT")).await.unwrap();
    browser.until("the balance after", &text_contains("balance", "400,00")).await.unwrap();
    browser.screenshot("withdrawal-sent").await.unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_flow_still_ends_in_the_right_state() {
    if !available() {
        return;
    }
    let mut stack = demo_stack().await;
    let browser = Browser::start().await.unwrap();
    open_demo(&browser, &stack, "user=ayse&locale=tr&mode=popup").await;
    deposit_through_popup(&browser, "75", "75,00").await;
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest(&stack, "intents", "ayse").await;

    let addr = stack.server.addr;
    stack.stop_server().await;
    // Approved while the server is down: the sandbox retries the webhook.
    stack.control(&format!("intents/{}/approve", intent["intentId"].as_str().unwrap()), json!({})).await;
    stack.start_again(addr).await;

    browser.until("approved after the restart", &status_is("deposit-status", "APPROVED")).await.unwrap();
    browser.until("the new balance", &text_contains("balance", "75,00 ₺")).await.unwrap();
    // The stream came back on a fresh ticket and resumed after the last event
    // it had: the approval is in the event log, and no event id twice. (Polling
    // logs no events; a fresh stream would not replay the approval, and its
    // opening balance would repeat the last id.)
    browser.until("the stream live again", LINK_LIVE).await.unwrap();
    browser.until("the approval in the event log", APPROVAL_LOGGED).await.unwrap();
    let ids = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('[data-testid=event-item] .pk-item-meta'))\
             .map(e => e.textContent.split('·')[0].trim());",
            vec![],
        )
        .await
        .unwrap();
    let ids: Vec<String> = serde_json::from_value(ids).unwrap();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert!(ids.len() >= 3 && unique.len() == ids.len(), "events logged: {ids:?}");
    browser.screenshot("restart-approved").await.unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tabs_of_one_user_share_one_stream_and_lose_no_event_when_its_tab_closes() {
    if !available() {
        return;
    }
    let stack = demo_stack().await;
    let browser = Browser::start().await.unwrap();
    let url = format!("{}/?user=deniz&locale=tr&mode=popup", stack.server.url());
    // Each tab loads, its widgets work and its feed is live.
    let tabs = browser.open_tabs(&url, TABS, &format!("({BUTTON_READY}) && ({LINK_LIVE})")).await;
    wait_for(Duration::from_secs(20), || async { sse_connections(&stack).await == 1 })
        .await
        .expect("one stream for the ten tabs");

    // A deposit from the tenth tab reaches the hosted page, and its approval shows live in every tab.
    deposit_through_popup(&browser, "100", "100,00").await;
    browser.until("under review", &status_is("deposit-status", "PENDING_REVIEW")).await.unwrap();
    let intent = newest(&stack, "intents", "deniz").await;
    stack.control(&format!("intents/{}/approve", intent["intentId"].as_str().unwrap()), json!({})).await;
    browser.until("approved", &status_is("deposit-status", "APPROVED")).await.unwrap();
    let reference = intent["referenceNo"].as_str().unwrap();
    let mut leaders = Vec::new();
    for (n, tab) in tabs.iter().enumerate() {
        browser.client.switch_to_window(tab.clone()).await.unwrap();
        browser.until(&format!("the approval in tab {}", n + 1), &approval_of(reference)).await.unwrap();
        browser.until(&format!("the balance in tab {}", n + 1), &text_contains("balance", "100,00")).await.unwrap();
        if browser.client.execute(&format!("return {HOLDS_STREAM};"), vec![]).await.unwrap() == json!(true) {
            leaders.push(tab.clone());
        }
    }
    let [leader] = leaders.as_slice() else { panic!("{} tabs hold a stream", leaders.len()) };

    // The tab holding the stream closes, and a deposit is approved at once,
    // while another tab takes over: it reaches every tab left, by the stream.
    browser.client.switch_to_window(leader.clone()).await.unwrap();
    browser.client.close_window().await.unwrap();
    let token = stack.token("deniz").await;
    let second = stack.deposit(&token, "25000").await;
    stack.pay_and_approve(second.intent_id).await;
    let mut holders = 0;
    for (n, tab) in tabs.iter().enumerate().filter(|(_, tab)| *tab != leader) {
        browser.client.switch_to_window(tab.clone()).await.unwrap();
        browser
            .until(&format!("the second approval in tab {}", n + 1), &approval_of(&second.reference_no))
            .await
            .unwrap();
        browser.until(&format!("the new balance in tab {}", n + 1), &text_contains("balance", "350,00")).await.unwrap();
        browser.until(&format!("tab {} live", n + 1), LINK_LIVE).await.unwrap();
        if browser.client.execute(&format!("return {HOLDS_STREAM};"), vec![]).await.unwrap() == json!(true) {
            holders += 1;
        }
    }
    assert_eq!(holders, 1, "one of the tabs left holds the stream");
    wait_for(Duration::from_secs(20), || async { sse_connections(&stack).await == 1 }).await.expect("still one stream");
    browser.screenshot("many-tabs").await.unwrap();
    browser.close().await;
}
