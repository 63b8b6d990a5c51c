//! The Mia-Platform Payment Gateway Manager facade (`/v3/pientegra`) end to
//! end: PGM's calls over real HTTP, the sandbox as Pientegra, and a fake shop
//! callback receiver (PGM's `PAYMENT_CALLBACK_URL`) that verifies the
//! `Pientegra-Kit-Signature` of every POST with `shared`'s `verify` and records
//! it; each test runs on SQLite and on PostgreSQL (when
//! `PIENTEGRA_TEST_POSTGRES_URL` is set).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use pientegra_server::ledger;
use pientegra_server::pgm::SIGNATURE_HEADER;
use pientegra_server::pientegra::{HttpClient, PientegraApi, RetryPolicy};
use pientegra_server::reconcile::{Category, Reconciler, Report};
use pientegra_server::settings::PgmSettings;
use pientegra_server::sse::Hub;
use pientegra_server::storage::{Audit, Audited};
use pientegra_shared::signature::{self, SignatureError};
use pientegra_tests::{Options, Stack, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const PGM_TOKEN: &str = "pgm-facade-test-token-0123456789abcdef";
const CALLBACK_SECRET: &str = "shop-callback-test-secret-0123456789abcdef";
const IBAN: &str = "TR33 0006 1005 1978 6457 8413 26";

/// One POST the fake shop received, as it arrived.
#[derive(Clone, Debug)]
struct Delivery {
    signature: Option<String>,
    body: String,
}

/// What the fake shop received.
#[derive(Default)]
struct Received {
    /// POSTs still to refuse with a 500.
    fail_next: u32,
    /// Every correctly signed POST, refused ones included.
    attempts: Vec<Delivery>,
    /// Bodies of the POSTs answered 200.
    accepted: Vec<Value>,
    /// POSTs whose signature did not verify, with the reason.
    forged: Vec<(Delivery, String)>,
}

/// The fake shop: `POST /callback` verifies the signature (401 without a
/// valid one), then answers 500 while `fail_next` lasts, then 200.
#[derive(Clone, Default)]
struct Shop(Arc<Mutex<Received>>);

/// The shop's check, as `docs/pgm.md` tells shops to do it: the header, over
/// the raw body, with the shared secret, within the tolerance.
fn verify(signature: Option<&str>, body: &str) -> Result<(), SignatureError> {
    let header = signature.ok_or(SignatureError::MissingSignature)?;
    let now = chrono::Utc::now().timestamp_millis();
    signature::verify(header, body.as_bytes(), &[CALLBACK_SECRET], now).map(|_| ())
}

impl Shop {
    async fn start(fail_first: u32) -> (Shop, url::Url) {
        let shop = Shop::default();
        shop.0.lock().unwrap().fail_next = fail_first;
        let app = Router::new().route("/callback", post(receive)).with_state(shop.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap()).parse().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (shop, url)
    }

    /// Fails the test if any POST so far was unsigned or badly signed.
    fn assert_every_post_was_signed(&self) {
        let forged = &self.0.lock().unwrap().forged;
        assert!(forged.is_empty(), "the shop received notifications without a valid signature: {forged:?}");
    }

    fn attempts(&self) -> Vec<Delivery> {
        self.assert_every_post_was_signed();
        self.0.lock().unwrap().attempts.clone()
    }

    fn set_fail_next(&self, n: u32) {
        self.0.lock().unwrap().fail_next = n;
    }

    /// Acknowledged notifications about `payment_id` with `status`.
    fn count(&self, payment_id: &str, status: &str) -> usize {
        self.notifications(payment_id).iter().filter(|b| b["status"] == status).count()
    }

    fn notifications(&self, payment_id: &str) -> Vec<Value> {
        self.assert_every_post_was_signed();
        self.0.lock().unwrap().accepted.iter().filter(|b| b["paymentId"] == payment_id).cloned().collect()
    }

    /// The refused POSTs so far, forgotten (a test that forges them on purpose).
    fn take_forged(&self) -> Vec<(Delivery, String)> {
        std::mem::take(&mut self.0.lock().unwrap().forged)
    }

    async fn until(&self, payment_id: &str, status: &str) {
        wait_for(WAIT, || async { self.count(payment_id, status) >= 1 })
            .await
            .unwrap_or_else(|_| panic!("the shop was not notified {status} for {payment_id}"));
    }
}

async fn receive(State(shop): State<Shop>, headers: HeaderMap, body: String) -> AxumStatus {
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.to_str().unwrap_or_default().to_owned());
    let delivery = Delivery { signature, body };
    let mut received = shop.0.lock().unwrap();
    if let Err(err) = verify(delivery.signature.as_deref(), &delivery.body) {
        received.forged.push((delivery, err.code().to_owned()));
        return AxumStatus::UNAUTHORIZED;
    }
    received.attempts.push(delivery.clone());
    if received.fail_next > 0 {
        received.fail_next -= 1;
        return AxumStatus::INTERNAL_SERVER_ERROR;
    }
    received.accepted.push(serde_json::from_str(&delivery.body).expect("the notification is JSON"));
    AxumStatus::OK
}

/// A stack with the facade on, notifying `shop`.
struct Pgm {
    stack: Stack,
    shop: Shop,
}

impl Drop for Pgm {
    fn drop(&mut self) {
        // Every test checks, at its end, that the shop never saw a bad signature.
        if !std::thread::panicking() {
            self.shop.assert_every_post_was_signed();
        }
    }
}

impl Pgm {
    async fn start(options: Options) -> Pgm {
        Pgm::failing_first(options, 0).await
    }

    async fn failing_first(options: Options, fail_first: u32) -> Pgm {
        let (shop, callback_url) = Shop::start(fail_first).await;
        let mut pgm = PgmSettings::new(PGM_TOKEN, Some(callback_url.as_str()), Some(CALLBACK_SECRET))
            .expect("the test's facade settings are valid");
        // Backoff in milliseconds, so retries happen within a test.
        pgm.notify_backoff_base = Duration::from_millis(20);
        let stack = Stack::with(Options { pgm: Some(pgm), ..options }).await;
        Pgm { stack, shop }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v3/pientegra{path}", self.stack.server.url())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.bearer_auth(PGM_TOKEN).send().await.expect("facade answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.stack.http.post(self.url(path)).json(&body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.stack.http.get(self.url(path))).await
    }

    /// `POST /pay` for `amount` kuruş; answers the paymentId and the redirect URL.
    async fn pay(&self, shop_tx: &str, user: &str, amount: u64) -> (String, String) {
        let (status, body) = self.post("/pay", pay_body(shop_tx, user, amount)).await;
        assert_eq!(status, StatusCode::OK, "pay: {body}");
        assert_eq!(body["result"], "REDIRECT_TO_URL", "{body}");
        assert_eq!(body["redirectToUrl"], body["redirectToUrlMobile"]);
        (body["paymentId"].as_str().unwrap().to_owned(), body["redirectToUrl"].as_str().unwrap().to_owned())
    }

    async fn status_of(&self, payment_id: &str) -> Value {
        let (status, body) = self.get(&format!("/status?paymentId={payment_id}")).await;
        assert_eq!(status, StatusCode::OK, "status: {body}");
        body
    }

    /// A payment the customer paid and Pientegra approved, with the shop told.
    async fn paid(&self, shop_tx: &str, user: &str, amount: u64) -> String {
        let (payment_id, _) = self.pay(shop_tx, user, amount).await;
        self.stack.pay_and_approve(payment_id.parse().unwrap()).await;
        self.shop.until(&payment_id, "ACCEPTED").await;
        payment_id
    }

    async fn refund(&self, payment_id: &str, amount: u64) -> (StatusCode, Value) {
        self.post(
            "/refund",
            json!({"paymentId": payment_id, "amount": amount, "currency": "TRY",
                   "providerData": {"targetIban": IBAN, "targetHolderName": "Ayşe Yılmaz"}}),
        )
        .await
    }

    async fn sandbox_intents_of(&self, user: &str) -> usize {
        let state = self.stack.sandbox_state().await;
        state["intents"].as_array().unwrap().iter().filter(|i| i["externalUserId"] == user).count()
    }

    async fn sandbox_withdrawals(&self) -> usize {
        self.stack.sandbox_state().await["withdrawals"].as_array().unwrap().len()
    }

    /// `(available, reserved)` of the ledger account that holds an order's
    /// money, and that its ledger entries sum to it.
    async fn order_balance(&self, payment_id: &str, customer: &str) -> (u64, u64) {
        let storage = Audited::connect(&self.stack.settings.database_url).await.unwrap();
        let account = ledger::order_account(payment_id.parse().unwrap(), customer);
        let balance = storage.balance(&account).await.unwrap();
        let (available, reserved) = (balance.available.minor(), balance.reserved.minor());
        let sum = storage.ledger_sum(&account).await.unwrap();
        assert_eq!(sum, (i64::try_from(available).unwrap(), i64::try_from(reserved).unwrap()));
        (available, reserved)
    }

    /// One reconciliation pass over the last hour.
    async fn reconcile(&self) -> Report {
        let settings = &self.stack.settings;
        let storage = pientegra_server::storage::connect(&settings.database_url).await.unwrap();
        let client = pientegra_client(&self.stack);
        let hub = Hub::default();
        let now = chrono::Utc::now();
        let reconciler = Reconciler { storage: storage.as_ref(), pientegra: &client, hub: &hub };
        reconciler.run(now - chrono::Duration::hours(1), now + chrono::Duration::minutes(1), true).await.unwrap()
    }
}

fn pientegra_client(stack: &Stack) -> HttpClient {
    let settings = &stack.settings;
    HttpClient::new(settings.api_base.as_str(), settings.api_key.clone(), RetryPolicy::scaled_for_tests()).unwrap()
}

fn pay_body(shop_tx: &str, user: &str, amount: u64) -> Value {
    json!({
        "amount": amount, "currency": "TRY", "shopTransactionId": shop_tx,
        "successRedirectUrl": "https://shop.test/ok", "failureRedirectUrl": "https://shop.test/ko",
        "providerData": {"externalUserId": user, "externalUserLabel": "Ayşe Yılmaz"},
    })
}

fn assert_ko(status: StatusCode, body: &Value, want: StatusCode, mentions: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["result"], "KO", "{body}");
    let description = body["resultDescription"].as_str().unwrap_or_default();
    assert!(description.contains(mentions), "{description:?} should mention {mentions:?}");
}

async fn a_paid_payment_notifies_the_shop_accepted_exactly_once_despite_duplicate_webhooks(options: Options) {
    let pgm = Pgm::start(options).await;
    pgm.stack.sandbox_config(json!({"faults": {"duplicateDeliveries": 2}})).await;
    let (payment_id, redirect) = pgm.pay("order-1001", "ayse", 150_000).await;

    let page = pgm.stack.http.get(&redirect).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the hosted payment page opens");
    let pending = pgm.status_of(&payment_id).await;
    assert_eq!(pending["status"], "PENDING");
    assert_eq!(pending["metadata"]["pientegraStatus"], "RESERVED");

    pgm.stack.pay_and_approve(payment_id.parse().unwrap()).await;
    pgm.shop.until(&payment_id, "ACCEPTED").await;
    // The duplicate deliveries land and are applied (as no-ops) meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(pgm.shop.notifications(&payment_id).len(), 1, "{:?}", pgm.shop.notifications(&payment_id));

    let notified = &pgm.shop.notifications(&payment_id)[0];
    assert_eq!(notified["shopTransactionId"], "order-1001");
    assert_eq!(notified["providerName"], "pientegra");
    assert_eq!(notified["paymentMethod"], "bank_transfer");
    assert_eq!(notified["action"], "PAYMENT");
    assert_eq!(notified["metadata"]["pientegraStatus"], "APPROVED");
    assert!(notified["metadata"]["referenceNo"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(pgm.status_of(&payment_id).await["status"], "ACCEPTED");
    // The ledger credited the order once, and the customer's wallet not at all.
    assert_eq!(pgm.order_balance(&payment_id, "ayse").await, (150_000, 0));
    let token = pgm.stack.token("ayse").await;
    let account = pgm.stack.account(&token).await;
    assert_eq!((account.balance.available.minor(), account.balance.reserved.minor()), (0, 0));
    assert!(account.deposits.is_empty(), "the order's deposit is not the customer's: {:?}", account.deposits);
}

async fn a_rejected_payment_notifies_the_shop_failed(options: Options) {
    let pgm = Pgm::start(options).await;
    let (payment_id, _) = pgm.pay("order-2001", "mehmet", 50_000).await;
    pgm.stack.control(&format!("intents/{payment_id}/confirm"), json!({})).await;
    pgm.stack.control(&format!("intents/{payment_id}/reject"), json!({"reason": "no transfer found"})).await;
    pgm.shop.until(&payment_id, "FAILED").await;
    let status = pgm.status_of(&payment_id).await;
    assert_eq!(status["status"], "FAILED");
    assert_eq!(status["metadata"]["pientegraStatus"], "REJECTED");
    assert_eq!(pgm.shop.count(&payment_id, "ACCEPTED"), 0);
}

async fn status_refreshes_from_pientegra_when_the_webhook_is_late(options: Options) {
    let pgm = Pgm::start(options).await;
    pgm.stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let (payment_id, _) = pgm.pay("order-2501", "selin", 40_000).await;
    pgm.stack.pay_and_approve(payment_id.parse().unwrap()).await;
    let status = pgm.status_of(&payment_id).await;
    assert_eq!(status["status"], "ACCEPTED", "{status}");
    assert_eq!(status["metadata"]["pientegraStatus"], "APPROVED");
    // Nothing moved locally: no webhook, no credit, no unasked notification.
    assert_eq!(pgm.order_balance(&payment_id, "selin").await, (0, 0));
    assert_eq!(pgm.shop.notifications(&payment_id).len(), 0);
}

async fn a_refund_with_an_iban_is_paid_out_and_becomes_accepted(options: Options) {
    let pgm = Pgm::start(options).await;
    let payment_id = pgm.paid("order-3001", "ayse", 100_000).await;

    let (status, body) = pgm.refund(&payment_id, 40_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "PENDING", "{body}");
    let refund_id = body["paymentId"].as_str().unwrap().to_owned();
    assert!(body["resultDescription"].as_str().unwrap().contains(&refund_id));
    assert_eq!(pgm.order_balance(&payment_id, "ayse").await, (60_000, 40_000), "reserved from the order's money");

    // The same refund again is the same withdrawal.
    let (_, again) = pgm.refund(&payment_id, 40_000).await;
    assert_eq!(again["paymentId"], refund_id.as_str());

    let pending = pgm.status_of(&refund_id).await;
    assert_eq!(pending["status"], "PENDING");
    assert_eq!(pending["action"], "REFUND");
    assert_eq!(pending["shopTransactionId"], "order-3001");
    assert_eq!(pending["metadata"]["refundOf"], payment_id.as_str());

    pgm.stack.control(&format!("withdrawals/{refund_id}/approve"), json!({})).await;
    pgm.stack.control(&format!("withdrawals/{refund_id}/send"), json!({})).await;
    pgm.shop.until(&refund_id, "ACCEPTED").await;
    assert_eq!(pgm.status_of(&refund_id).await["status"], "ACCEPTED");
    assert_eq!(pgm.order_balance(&payment_id, "ayse").await, (60_000, 0));
    let token = pgm.stack.token("ayse").await;
    assert_eq!(pgm.stack.balance(&token).await, (0, 0), "the customer's wallet never held any of it");
    assert_eq!(pgm.shop.notifications(&refund_id)[0]["action"], "REFUND");

    // What is left to refund is 60,000.
    let (status, body) = pgm.refund(&payment_id, 70_000).await;
    assert_ko(status, &body, StatusCode::OK, "left to refund");
}

async fn a_refund_without_an_iban_is_ko(options: Options) {
    let pgm = Pgm::start(options).await;
    let payment_id = pgm.paid("order-4001", "can", 30_000).await;
    let (status, body) =
        pgm.post("/refund", json!({"paymentId": payment_id, "amount": 30_000, "currency": "TRY"})).await;
    assert_ko(status, &body, StatusCode::OK, "targetIban");
    let (status, body) =
        pgm.post("/refund", json!({"paymentId": payment_id, "providerData": {"targetIban": IBAN}})).await;
    assert_ko(status, &body, StatusCode::OK, "targetHolderName");
}

async fn a_refund_of_an_unpaid_payment_is_ko(options: Options) {
    let pgm = Pgm::start(options).await;
    let (unpaid, _) = pgm.pay("order-5001", "deniz", 30_000).await;
    let (status, body) = pgm.refund(&unpaid, 30_000).await;
    assert_ko(status, &body, StatusCode::OK, "ACCEPTED");
    assert_eq!(pgm.sandbox_withdrawals().await, 0);
}

async fn money_paid_for_an_order_is_never_the_customers_to_withdraw_and_is_refunded_in_full(options: Options) {
    let pgm = Pgm::start(options).await;
    // The customer also has a wallet of their own through the widget.
    let token = pgm.stack.token("deniz").await;
    pgm.stack.funded(&token, "10000").await;
    let payment_id = pgm.paid("order-5002", "deniz", 30_000).await;
    assert_eq!(pgm.status_of(&payment_id).await["status"], "ACCEPTED");
    assert_eq!(pgm.stack.balance(&token).await, (10_000, 0), "the payment is not added to the wallet");
    assert_eq!(pgm.order_balance(&payment_id, "deniz").await, (30_000, 0));

    // The widget cannot pay the order's money out.
    let key = uuid::Uuid::new_v4().to_string();
    let (status, refused) = pgm
        .stack
        .post_json(
            &token,
            "/api/withdrawals",
            &key,
            json!({"amount": "30000", "iban": IBAN, "holderName": "Deniz Kaya"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "insufficient_funds", "{refused}");
    let account = pgm.stack.account(&token).await;
    assert_eq!((account.balance.available.minor(), account.balance.reserved.minor()), (10_000, 0));
    assert!(account.withdrawals.is_empty(), "{:?}", account.withdrawals);
    assert!(account.deposits.iter().all(|d| d.intent_id.to_string() != payment_id), "{:?}", account.deposits);
    assert_eq!(pgm.order_balance(&payment_id, "deniz").await, (30_000, 0));
    assert_eq!(pgm.sandbox_withdrawals().await, 0, "nothing reached Pientegra");

    // The shop refunds the whole payment from it.
    let (status, body) = pgm.refund(&payment_id, 30_000).await;
    assert_eq!((status, body["result"].as_str()), (StatusCode::OK, Some("PENDING")), "{body}");
    let refund_id = body["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(pgm.order_balance(&payment_id, "deniz").await, (0, 30_000));
    pgm.stack.control(&format!("withdrawals/{refund_id}/approve"), json!({})).await;
    pgm.stack.control(&format!("withdrawals/{refund_id}/send"), json!({})).await;
    pgm.shop.until(&refund_id, "ACCEPTED").await;
    assert_eq!(pgm.status_of(&refund_id).await["status"], "ACCEPTED");
    let sent = &pgm.stack.sandbox_state().await["withdrawals"][0];
    assert_eq!(sent["externalUserId"], "deniz", "Pientegra knows the refund by the customer: {sent}");

    // Nothing is left to refund, and the wallet was never touched.
    let (status, body) = pgm.refund(&payment_id, 100).await;
    assert_ko(status, &body, StatusCode::OK, "left to refund");
    assert_eq!(pgm.order_balance(&payment_id, "deniz").await, (0, 0));
    assert_eq!(pgm.stack.balance(&token).await, (10_000, 0));
    assert_eq!(pgm.sandbox_withdrawals().await, 1);
}

async fn subscriptions_answer_501_ko(options: Options) {
    let pgm = Pgm::start(options).await;
    let http = &pgm.stack.http;
    let requests = [
        http.post(pgm.url("/subscription/schedule")).json(&json!({})),
        http.post(pgm.url("/subscription/start")).json(&json!({})),
        http.post(pgm.url("/subscription/pay")).json(&json!({})),
        http.post(pgm.url("/subscription/update/tok_1")).json(&json!({})),
        http.get(pgm.url("/subscription/status/tok_1")),
        http.delete(pgm.url("/subscription/expire/tok_1")),
    ];
    for request in requests {
        let (status, body) = pgm.send(request).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
        assert_eq!(body, json!({"result": "KO", "resultDescription": "subscriptions are not supported by Pientegra"}));
    }
}

/// No receiving account free: a 503 `KO` with `Retry-After`, and the same
/// request once one is free is the payment.
async fn a_payment_with_no_free_receiving_account_is_503_ko_and_the_same_request_retries(options: Options) {
    let pgm = Pgm::start(Options { sandbox_accounts: Some(1), ..options }).await;
    let (first, _) = pgm.pay("order-9001", "deniz", 20_000).await;
    let request =
        || pgm.stack.http.post(pgm.url("/pay")).bearer_auth(PGM_TOKEN).json(&pay_body("order-9002", "can", 20_000));
    let busy = request().send().await.unwrap();
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.headers()["retry-after"], "5");
    let body: Value = busy.json().await.unwrap();
    assert_ko(StatusCode::SERVICE_UNAVAILABLE, &body, StatusCode::SERVICE_UNAVAILABLE, "busy");
    pgm.stack.control(&format!("intents/{first}/expire"), json!({})).await;
    let (_, url) = pgm.pay("order-9002", "can", 20_000).await;
    assert!(url.starts_with("http"), "{url}");
}

async fn a_repeated_shop_transaction_id_returns_the_same_payment_and_creates_one_intent(options: Options) {
    let pgm = Pgm::start(options).await;
    let (first, url) = pgm.pay("order-6001", "zeynep", 20_000).await;
    let (second, url_again) = pgm.pay("order-6001", "zeynep", 20_000).await;
    assert_eq!(first, second);
    assert_eq!(url, url_again);
    // Concurrent repeats too.
    let repeats = (0..3).map(|_| pgm.post("/pay", pay_body("order-6001", "zeynep", 20_000)));
    for (status, body) in futures::future::join_all(repeats).await {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["paymentId"], first.as_str());
    }
    assert_eq!(pgm.sandbox_intents_of("zeynep").await, 1);

    // The same shop transaction with another amount is refused.
    let (status, body) = pgm.post("/pay", pay_body("order-6001", "zeynep", 30_000)).await;
    assert_ko(status, &body, StatusCode::CONFLICT, "shopTransactionId");
    assert_eq!(pgm.sandbox_intents_of("zeynep").await, 1);

    // Once paid, a repeat says so.
    pgm.stack.pay_and_approve(first.parse().unwrap()).await;
    pgm.shop.until(&first, "ACCEPTED").await;
    let (_, body) = pgm.post("/pay", pay_body("order-6001", "zeynep", 20_000)).await;
    assert_eq!(body["result"], "OK", "{body}");
    assert_eq!(body["paymentId"], first.as_str());
}

async fn a_missing_or_wrong_token_is_401_ko(options: Options) {
    let pgm = Pgm::start(options).await;
    let body = pay_body("order-7001", "ali", 20_000);
    let anonymous = pgm.stack.http.post(pgm.url("/pay")).json(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json::<Value>().await.unwrap()["result"], "KO");
    let (shorter, longer) = (&PGM_TOKEN[..PGM_TOKEN.len() - 1], format!("{PGM_TOKEN}-and-more"));
    for wrong in ["wrong", shorter, &longer] {
        let response = pgm.stack.http.post(pgm.url("/pay")).bearer_auth(wrong).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    let status = pgm.stack.http.get(pgm.url("/status?paymentId=x")).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::UNAUTHORIZED);
    let subscription = pgm.stack.http.post(pgm.url("/subscription/start")).send().await.unwrap();
    assert_eq!(subscription.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(pgm.sandbox_intents_of("ali").await, 0);
}

async fn bad_input_is_400_ko_naming_the_problem(options: Options) {
    let pgm = Pgm::start(options).await;
    let with = |patch: Value| {
        let mut body = pay_body("order-8001", "ece", 20_000);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases = [
        (with(json!({"amount": null})), "amount"),
        (with(json!({"amount": 99})), "amount"),
        (with(json!({"amount": 100_000_001})), "amount"),
        (with(json!({"amount": 150.5})), "amount"),
        (with(json!({"currency": "EUR"})), "EUR"),
        (with(json!({"currency": null})), "currency"),
        (with(json!({"shopTransactionId": null})), "shopTransactionId"),
        (with(json!({"providerData": null})), "externalUserId"),
        (with(json!({"providerData": {"externalUserLabel": "x"}})), "externalUserId"),
        (with(json!({"providerData": "ece"})), "providerData"),
    ];
    for (body, mentions) in cases {
        let (status, answer) = pgm.post("/pay", body).await;
        assert_ko(status, &answer, StatusCode::BAD_REQUEST, mentions);
    }
    let (status, answer) =
        pgm.send(pgm.stack.http.post(pgm.url("/pay")).header("Content-Type", "application/json").body("{")).await;
    assert_ko(status, &answer, StatusCode::BAD_REQUEST, "JSON");
    let huge = pgm.stack.http.post(pgm.url("/pay")).header("Content-Type", "application/json");
    let (status, answer) = pgm.send(huge.body(vec![b' '; 100 * 1024])).await;
    assert_ko(status, &answer, StatusCode::PAYLOAD_TOO_LARGE, "larger");
    let (status, answer) = pgm.send(pgm.stack.http.put(pgm.url("/pay"))).await;
    assert_ko(status, &answer, StatusCode::METHOD_NOT_ALLOWED, "method");
    let (status, answer) = pgm.get("/status").await;
    assert_ko(status, &answer, StatusCode::BAD_REQUEST, "paymentId");
    let (status, answer) = pgm.post("/refund", json!({"amount": 100})).await;
    assert_ko(status, &answer, StatusCode::BAD_REQUEST, "paymentId");
    let payment_id = pgm.paid("order-8002", "ece", 20_000).await;
    let (status, answer) = pgm
        .post(
            "/refund",
            json!({"paymentId": payment_id, "providerData": {"targetIban": "TR00", "targetHolderName": "E"}}),
        )
        .await;
    assert_ko(status, &answer, StatusCode::BAD_REQUEST, "targetIban");
    assert_eq!(pgm.sandbox_intents_of("ece").await, 1, "only the valid payment reached Pientegra");
}

async fn an_unknown_payment_id_is_404_ko(options: Options) {
    let pgm = Pgm::start(options).await;
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/status?paymentId={unknown}"),
        format!("/check?paymentId={unknown}"),
        format!("/callback?paymentId={unknown}"),
        "/status?paymentId=not-a-uuid".to_owned(),
    ] {
        let (status, body) = pgm.get(&path).await;
        assert_ko(status, &body, StatusCode::NOT_FOUND, "paymentId");
    }
    // An intent of the widget's, not PGM's, is unknown to the facade too.
    let token = pgm.stack.token("bora").await;
    let deposit = pgm.stack.deposit(&token, "20000").await;
    let (status, body) = pgm.get(&format!("/status?paymentId={}", deposit.intent_id)).await;
    assert_ko(status, &body, StatusCode::NOT_FOUND, "paymentId");
    let (status, body) = pgm.refund(&unknown.to_string(), 100).await;
    assert_ko(status, &body, StatusCode::NOT_FOUND, "paymentId");
}

async fn check_notifies_the_current_status_and_callback_answers_it(options: Options) {
    let pgm = Pgm::start(options).await;
    let (payment_id, _) = pgm.pay("order-9001", "kerem", 25_000).await;
    let (status, body) = pgm.get(&format!("/check?paymentId={payment_id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "PENDING");
    pgm.shop.until(&payment_id, "PENDING").await;
    assert_eq!(pgm.shop.notifications(&payment_id)[0], body);

    let (status, body) = pgm.get(&format!("/callback?paymentId={payment_id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "PENDING");

    // The final status still reaches the shop on its own, once.
    pgm.stack.pay_and_approve(payment_id.parse().unwrap()).await;
    pgm.shop.until(&payment_id, "ACCEPTED").await;
    assert_eq!(pgm.shop.count(&payment_id, "PENDING"), 1, "the callback route does not notify");
}

async fn a_failing_shop_callback_is_retried_until_one_accepted_arrives(options: Options) {
    let pgm = Pgm::failing_first(options, 2).await;
    let (payment_id, _) = pgm.pay("order-10001", "lale", 60_000).await;
    pgm.stack.pay_and_approve(payment_id.parse().unwrap()).await;
    pgm.shop.until(&payment_id, "ACCEPTED").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pgm.shop.count(&payment_id, "ACCEPTED"), 1);
    let attempts = pgm.shop.attempts();
    assert_eq!(attempts.len(), 3, "two refused POSTs, then the acknowledged one");
    // Each attempt signed afresh over the same bytes.
    assert!(attempts.iter().all(|a| a.body == attempts[0].body));
    let times: Vec<i64> = attempts
        .iter()
        .map(|a| {
            a.signature.as_deref().unwrap().strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|t| t[0] < t[1]), "fresh timestamps: {times:?}");
}

async fn a_queued_notification_survives_a_restart(options: Options) {
    let mut pgm = Pgm::failing_first(options, u32::MAX).await;
    let (payment_id, _) = pgm.pay("order-11001", "nehir", 70_000).await;
    pgm.stack.pay_and_approve(payment_id.parse().unwrap()).await;
    wait_for(WAIT, || async { !pgm.shop.attempts().is_empty() }).await.expect("a first attempt");
    let addr = pgm.stack.server.addr;
    pgm.stack.stop_server().await;
    pgm.shop.set_fail_next(0);
    pgm.stack.start_again(addr).await;
    pgm.shop.until(&payment_id, "ACCEPTED").await;
    assert_eq!(pgm.shop.count(&payment_id, "ACCEPTED"), 1);
}

async fn the_facade_does_not_exist_without_its_token(options: Options) {
    let stack = Stack::with(options).await;
    let response = stack
        .http
        .post(format!("{}/v3/pientegra/pay", stack.server.url()))
        .bearer_auth(PGM_TOKEN)
        .json(&pay_body("order-12001", "umut", 20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

async fn no_widget_token_can_name_the_account_of_an_order(options: Options) {
    let pgm = Pgm::start(options).await;
    let payment_id = pgm.paid("order-5101", "emre", 25_000).await;
    let account = ledger::order_account(payment_id.parse().unwrap(), "emre");
    // A token signed with the right secret for the order's account is refused everywhere.
    let key = pientegra_server::token::TokenKey::new(pientegra_tests::TOKEN_SECRET.to_owned().into());
    let user = pientegra_shared::ids::ExternalUserId::parse(&account).unwrap();
    let token = key.mint(&user, None, chrono::Utc::now(), chrono::Utc::now() + chrono::Duration::hours(1));
    let (status, body) = pgm.stack.get_json(&token, "/api/account").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = pgm
        .stack
        .post_json(
            &token,
            "/api/withdrawals",
            &uuid::Uuid::new_v4().to_string(),
            json!({"amount": "25000", "iban": IBAN, "holderName": "Emre"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Nor does the demo session hand one out.
    let session = pgm
        .stack
        .http
        .post(format!("{}/api/session", pgm.stack.server.url()))
        .json(&json!({"externalUserId": account}))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::BAD_REQUEST);
    assert_eq!(pgm.order_balance(&payment_id, "emre").await, (25_000, 0));
    assert_eq!(pgm.sandbox_withdrawals().await, 0);
}

async fn a_forged_shop_notification_is_detectable(options: Options) {
    let pgm = Pgm::start(options).await;
    let payment_id = pgm.paid("order-13001", "irem", 20_000).await;
    let genuine = pgm.shop.attempts().into_iter().find(|a| a.body.contains(&payment_id)).expect("a notification");
    let header = genuine.signature.clone().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let tampered = genuine.body.replace(&payment_id, &uuid::Uuid::new_v4().to_string());
    assert_ne!(tampered, genuine.body);
    let forgeries = [
        ("unsigned", None, genuine.body.clone(), SignatureError::MissingSignature),
        (
            "signed with another secret",
            Some(signature::sign("not-the-shop-secret-0123456789abcdef", now, genuine.body.as_bytes())),
            genuine.body.clone(),
            SignatureError::NoMatch,
        ),
        ("a genuine signature over a tampered body", Some(header.clone()), tampered, SignatureError::NoMatch),
        (
            "signed six minutes ago",
            Some(signature::sign(CALLBACK_SECRET, now - 6 * 60 * 1000, genuine.body.as_bytes())),
            genuine.body.clone(),
            SignatureError::TooOld,
        ),
    ];
    let callback = pgm.stack.settings.pgm.as_ref().unwrap().callback.as_ref().unwrap().url.clone();
    for (what, signature, body, why) in &forgeries {
        assert_eq!(verify(signature.as_deref(), body), Err(*why), "{what}");
        let mut request = pgm.stack.http.post(callback.clone()).header("Content-Type", "application/json");
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let answer = request.body(body.clone()).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
    let refused: Vec<String> = pgm.shop.take_forged().into_iter().map(|(_, code)| code).collect();
    let expected: Vec<&str> = forgeries.iter().map(|(.., why)| why.code()).collect();
    assert_eq!(refused, expected);
    assert_eq!(pgm.shop.notifications(&payment_id).len(), 1, "no forgery was taken for a notification");
    // The genuine notification itself verifies (within the tolerance).
    assert_eq!(verify(Some(&header), &genuine.body), Ok(()));
}

async fn reconciliation_credits_a_paid_order_and_never_the_customers_wallet(options: Options) {
    let pgm = Pgm::start(options).await;
    let token = pgm.stack.token("ozan").await;
    pgm.stack.funded(&token, "5000").await;
    pgm.stack.sandbox_config(json!({"webhooksEnabled": false})).await;
    let (payment_id, _) = pgm.pay("order-14001", "ozan", 45_000).await;
    pgm.stack.pay_and_approve(payment_id.parse().unwrap()).await;

    let report = pgm.reconcile().await;
    let found: Vec<_> = report.findings.iter().filter(|f| f.id.to_string() == payment_id).collect();
    assert_eq!(found.len(), 1, "{}", report.table());
    assert_eq!((found[0].category, found[0].applied), (Category::StatusBehind, true), "{}", report.table());
    assert_eq!(report.count(Category::AmountMismatch), 0, "{}", report.table());
    assert_eq!(pgm.order_balance(&payment_id, "ozan").await, (45_000, 0));
    assert_eq!(pgm.stack.balance(&token).await, (5_000, 0), "the wallet is not repaired with the order's money");
    pgm.shop.until(&payment_id, "ACCEPTED").await;
    assert_eq!(pgm.reconcile().await.applied(), 0, "a second pass applies nothing");

    // The late webhooks change nothing; the refund draws on the order.
    pgm.stack.sandbox_config(json!({"webhooksEnabled": true})).await;
    let (status, body) = pgm.refund(&payment_id, 45_000).await;
    assert_eq!((status, body["result"].as_str()), (StatusCode::OK, Some("PENDING")), "{body}");
    assert_eq!(pgm.order_balance(&payment_id, "ozan").await, (0, 45_000));
    assert_eq!(pgm.stack.balance(&token).await, (5_000, 0));
}

async fn an_intent_reconciliation_recorded_first_is_never_offered_for_payment(options: Options) {
    let pgm = Pgm::start(options).await;
    // The facade's own request to Pientegra, as if the server stopped before
    // recording its answer, and reconciliation then found the intent.
    let body = pay_body("order-15001", "pinar", 20_000);
    let request = pientegra_shared::wire::CreateDepositRequest {
        external_user_id: pientegra_shared::ids::ExternalUserId::parse("pinar").unwrap(),
        external_user_label: Some(pientegra_shared::ids::UserLabel::parse("Ayşe Yılmaz").unwrap()),
        amount: pientegra_shared::Amount::from_minor(20_000),
        currency: Some("TRY".into()),
    };
    let client = pientegra_client(&pgm.stack);
    let created = client.create_deposit(pientegra_server::pgm::pay_key("order-15001"), &request).await.unwrap();
    let report = pgm.reconcile().await;
    assert_eq!(report.count(Category::MissingLocally), 1, "{}", report.table());

    let (status, answer) = pgm.post("/pay", body).await;
    assert_ko(status, &answer, StatusCode::CONFLICT, "new shopTransactionId");
    assert!(answer.get("redirectToUrl").is_none(), "{answer}");
    assert_eq!(pgm.sandbox_intents_of("pinar").await, 1, "Pientegra answered the same intent");
    let (status, answer) = pgm.get(&format!("/status?paymentId={}", created.intent_id)).await;
    assert_ko(status, &answer, StatusCode::NOT_FOUND, "paymentId");
}

pientegra_tests::on_each_database!(
    a_paid_payment_notifies_the_shop_accepted_exactly_once_despite_duplicate_webhooks,
    a_rejected_payment_notifies_the_shop_failed,
    status_refreshes_from_pientegra_when_the_webhook_is_late,
    a_refund_with_an_iban_is_paid_out_and_becomes_accepted,
    a_refund_without_an_iban_is_ko,
    a_refund_of_an_unpaid_payment_is_ko,
    money_paid_for_an_order_is_never_the_customers_to_withdraw_and_is_refunded_in_full,
    subscriptions_answer_501_ko,
    a_payment_with_no_free_receiving_account_is_503_ko_and_the_same_request_retries,
    a_repeated_shop_transaction_id_returns_the_same_payment_and_creates_one_intent,
    a_missing_or_wrong_token_is_401_ko,
    bad_input_is_400_ko_naming_the_problem,
    an_unknown_payment_id_is_404_ko,
    check_notifies_the_current_status_and_callback_answers_it,
    a_failing_shop_callback_is_retried_until_one_accepted_arrives,
    a_queued_notification_survives_a_restart,
    the_facade_does_not_exist_without_its_token,
    no_widget_token_can_name_the_account_of_an_order,
    a_forged_shop_notification_is_detectable,
    reconciliation_credits_a_paid_order_and_never_the_customers_wallet,
    an_intent_reconciliation_recorded_first_is_never_offered_for_payment,
);
