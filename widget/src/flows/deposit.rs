//! The deposit flow: the amount, the request, where the hosted deposit page
//! opens (a popup opened inside the click, this tab, or the iframe mode's
//! modal), what the status panel offers, and the way back to the partner
//! page after a full-page redirect.

use leptos::prelude::untrack;
use pientegra_shared::api::codes;
use pientegra_shared::status::IntentStatus;
use pientegra_shared::{Amount, Locale};

use super::{Env, Shared, amount_problem, check_amount, keys};
use crate::api::{ApiFailure, Deposit, Framing};
use crate::i18n::{Text as T, amount_error, api_error, t};
use crate::options::OpenMode;

/// The idempotency key's kind.
const KIND: &str = "deposit";

/// Where the deposit the user left for (a redirect) or is paying is kept,
/// so the partner page shows its live status again on the way back.
const PENDING: &str = "deposit:pending";

/// What the status panel shows.
#[derive(Clone, Debug, PartialEq)]
pub enum Panel {
    /// Nothing started yet.
    Idle,
    /// The server is creating the deposit.
    Creating,
    /// The browser blocked the popup.
    Blocked,
    /// The deposit could not be started; the message says why.
    Failed(String),
    /// A deposit the server knows, in its current status.
    Deposit(Box<Deposit>),
}

impl Panel {
    /// The `data-status` test hook: the status wire name, or the stage before it.
    pub fn data_status(&self) -> &'static str {
        match self {
            Panel::Idle => "IDLE",
            Panel::Creating => "CREATING",
            Panel::Blocked => "BLOCKED",
            Panel::Failed(_) => "ERROR",
            Panel::Deposit(d) => d.status.as_str(),
        }
    }
}

/// The one button a panel state can offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    ContinueHere,
    Reopen,
    NewDeposit,
    StartAgain,
}

/// What the iframe mode's modal shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Modal {
    #[default]
    Closed,
    /// The deposit is being created.
    Loading,
    /// The hosted page, framed.
    Frame(String),
    /// The hosted page may not be framed here and the popup was blocked:
    /// why, and a button that opens it from a fresh click.
    CannotFrame { url: String, reason: String },
}

/// Where the hosted page goes once the server hands out its address.
enum Target<P> {
    /// The popup opened in the click handler.
    Popup(P),
    /// A full-page redirect.
    ThisTab,
    /// The popup was blocked; wait for "continue in this tab".
    Blocked,
    /// The in-page modal (iframe mode), showing that the deposit is being prepared.
    Modal,
}

/// One deposit request on its way: the amount, its idempotency key, and
/// where its page goes.
pub struct Attempt<P> {
    amount: Amount,
    key: String,
    target: Target<P>,
}

#[derive(Default)]
struct State {
    /// The deposit this widget follows.
    tracked: Option<String>,
    /// Whether the user pressed the button (an empty field is an error from then on).
    attempted: bool,
    /// Whether the server is creating a deposit.
    creating: bool,
    /// Whether the popup was blocked, and the user has not gone on in this tab yet.
    blocked: bool,
    /// "Continue in this tab", pressed before the deposit's address was known.
    continue_requested: bool,
    /// Why the last deposit could not be started.
    failure: Option<String>,
    modal: Modal,
    /// Whether the last deposit's page may be framed here (iframe mode).
    framing: Option<Framing>,
    /// A word on where the page opened, and why not in the modal.
    notice: String,
}

/// The deposit widget's decisions, over the seams of [`Env`].
pub struct DepositFlow<E: Env> {
    env: E,
    locale: Locale,
    mode: OpenMode,
    /// The element id of the amount field, focused when it needs fixing.
    input_id: String,
    state: Shared<State>,
}

impl<E: Env> DepositFlow<E> {
    /// A flow following the deposit this tab left for, if any: back from a
    /// full-page redirect (or a reload), the widget shows its live status.
    pub fn new(env: E, locale: Locale, mode: OpenMode, input_id: String) -> DepositFlow<E> {
        let tracked = env.get(PENDING).filter(|id| !id.is_empty());
        DepositFlow { env, locale, mode, input_id, state: Shared::new(State { tracked, ..State::default() }) }
    }

    /// Asks the server for the deposit the flow came back to, so its live
    /// status shows at once. One the server does not know is dropped.
    pub async fn resume(&self) {
        let Some(intent_id) = self.state.peek(|s| s.tracked.clone()) else { return };
        match self.env.get_deposit(&intent_id).await {
            Ok(deposit) => self.env.learn_deposit(deposit),
            Err(e) if e.is_not_found() => self.state.update(|s| s.tracked = None),
            Err(_) => {}
        }
    }

    /// The followed deposit as the account knows it.
    pub fn current(&self) -> Option<Deposit> {
        let intent_id = self.state.watch(|s| s.tracked.clone())?;
        self.env.known_deposit(&intent_id)
    }

    /// What the status panel shows.
    pub fn panel(&self) -> Panel {
        let (failure, blocked, creating) = self.state.watch(|s| (s.failure.clone(), s.blocked, s.creating));
        if let Some(message) = failure {
            return Panel::Failed(message);
        }
        let deposit = self.current();
        let still_waiting = deposit.as_ref().is_none_or(|d| d.status == IntentStatus::Reserved);
        if blocked && still_waiting {
            return Panel::Blocked;
        }
        match deposit {
            Some(deposit) => Panel::Deposit(Box::new(deposit)),
            None if creating => Panel::Creating,
            None => Panel::Idle,
        }
    }

    /// Why the typed amount is not accepted, in words; empty when it is.
    pub fn amount_problem(&self, input: &str) -> String {
        amount_problem(input, self.state.watch(|s| s.attempted), self.locale)
    }

    /// Whether the server is creating a deposit (the button waits).
    pub fn creating(&self) -> bool {
        self.state.watch(|s| s.creating)
    }

    pub fn notice(&self) -> String {
        self.state.watch(|s| s.notice.clone())
    }

    pub fn modal(&self) -> Modal {
        self.state.watch(|s| s.modal.clone())
    }

    /// Each new status of the followed deposit, once: the host page hears
    /// it. Once the transfer is reported, the modal has done its job; once
    /// the outcome is known, there is nothing to come back for.
    pub fn status_changed(&self, deposit: &Deposit) {
        self.env.deposit_status(deposit);
        if deposit.status != IntentStatus::Reserved {
            self.state.update(|s| s.modal = Modal::Closed);
        }
        if deposit.status.is_final() {
            self.forget_pending(Some(&deposit.intent_id));
        }
    }

    /// The deposit button, with the amount field's text. Runs inside the
    /// click: a popup opens only there, before anything awaits. `None` when
    /// there is nothing to send: a refused amount (the field is focused and
    /// the host page told why) or a deposit already being created.
    pub fn start(&self, input: &str) -> Option<Attempt<E::Popup>> {
        self.state.update(|s| s.attempted = true);
        if self.state.peek(|s| s.creating) {
            return None;
        }
        let amount = match check_amount(input, self.locale) {
            Ok(amount) => amount,
            Err(code) => {
                self.env.error(code, &amount_error(self.locale, code));
                self.env.focus(&self.input_id);
                return None;
            }
        };
        let target = self.open_target();
        let blocked = matches!(target, Target::Blocked);
        self.state.update(|s| {
            s.failure = None;
            s.notice.clear();
            s.tracked = None;
            s.continue_requested = false;
            s.blocked = blocked;
            s.creating = true;
        });
        let key = keys::for_attempt(&self.env, KIND, &format!("{}|{amount}", self.env.user()));
        Some(Attempt { amount, key, target })
    }

    /// Sends the attempt [`DepositFlow::start`] made and takes the user to
    /// the deposit's page, or says why not.
    pub async fn send(&self, attempt: Attempt<E::Popup>) {
        let answer = self.env.create_deposit(attempt.amount, &attempt.key).await;
        keys::settle(&self.env, KIND, &answer);
        self.state.update(|s| s.creating = false);
        match answer {
            Ok((deposit, framing)) => self.created(deposit, framing, attempt.target),
            Err(failure) => self.refused(&failure, &attempt.target),
        }
    }

    /// The button the status panel offers.
    pub fn offer(&self, offer: Offer) {
        let deposit = untrack(|| self.current());
        match offer {
            // "Continue in this tab" after a blocked popup.
            Offer::ContinueHere => match deposit {
                Some(deposit) if self.env.is_safe_deposit_url(&deposit.deposit_url) => {
                    // Coming back (possibly from the back-forward cache) shows the live status, not the warning.
                    self.state.update(|s| s.blocked = false);
                    self.env.set(PENDING, &deposit.intent_id);
                    self.env.redirect(&deposit.deposit_url);
                }
                // Not created yet: go as soon as it is.
                _ => self.state.update(|s| s.continue_requested = true),
            },
            Offer::Reopen => {
                if let Some(deposit) = deposit.filter(|d| self.env.is_safe_deposit_url(&d.deposit_url)) {
                    self.env.set(PENDING, &deposit.intent_id);
                    self.reopen(deposit.deposit_url);
                }
            }
            Offer::NewDeposit | Offer::StartAgain => {
                self.forget_pending(self.state.peek(|s| s.tracked.clone()).as_deref());
                self.state.update(|s| {
                    s.tracked = None;
                    s.failure = None;
                    s.notice.clear();
                    s.blocked = false;
                });
                self.env.focus(&self.input_id);
            }
        }
    }

    /// The modal was closed (its button, Escape, or the flow).
    pub fn close_modal(&self) {
        self.state.update(|s| s.modal = Modal::Closed);
    }

    /// The modal's "open the payment page", after the page refused the
    /// frame and the popup was blocked: this fresh click may open it.
    pub fn open_in_window(&self) {
        let Modal::CannotFrame { url, .. } = self.state.peek(|s| s.modal.clone()) else { return };
        self.close_modal();
        self.env.open_or_redirect(&url);
    }

    /// Opens what the mode asks for, inside the click.
    fn open_target(&self) -> Target<E::Popup> {
        match self.mode {
            OpenMode::Redirect => Target::ThisTab,
            OpenMode::Iframe => {
                self.state.update(|s| s.modal = Modal::Loading);
                Target::Modal
            }
            OpenMode::Popup | OpenMode::Auto => match self.open_blank_popup() {
                Some(popup) => Target::Popup(popup),
                None if self.mode == OpenMode::Auto => Target::ThisTab,
                None => Target::Blocked,
            },
        }
    }

    fn open_blank_popup(&self) -> Option<E::Popup> {
        self.env.open_blank_popup(t(self.locale, T::PopupTitle), t(self.locale, T::PopupLoading))
    }

    /// The server created the deposit: follow it, and send the user to its page.
    fn created(&self, deposit: Deposit, framing: Framing, target: Target<E::Popup>) {
        let url = deposit.deposit_url.clone();
        let intent_id = deposit.intent_id.clone();
        self.state.update(|s| s.framing = Some(framing.clone()));
        self.env.learn_deposit(deposit);
        self.env.set(PENDING, &intent_id);
        self.state.update(|s| s.tracked = Some(intent_id));
        if !self.env.is_safe_deposit_url(&url) {
            if let Target::Popup(popup) = &target {
                self.env.close_popup(popup);
            }
            self.state.update(|s| {
                s.modal = Modal::Closed;
                s.blocked = false;
            });
            self.report(codes::DEPOSIT_URL_NOT_ALLOWED, t(self.locale, T::UnsafeUrl).to_owned());
            return;
        }
        match target {
            Target::Popup(popup) => {
                self.env.navigate_popup(&popup, &url);
            }
            Target::ThisTab => self.env.redirect(&url),
            Target::Modal => self.show_framed(&framing, url),
            Target::Blocked => {
                if self.state.peek(|s| s.continue_requested) {
                    self.state.update(|s| s.blocked = false);
                    self.env.redirect(&url);
                }
            }
        }
    }

    /// The deposit could not be created: close what was opened for it, say why.
    fn refused(&self, failure: &ApiFailure, target: &Target<E::Popup>) {
        if let Target::Popup(popup) = target {
            self.env.close_popup(popup);
        }
        self.state.update(|s| s.modal = Modal::Closed);
        if failure.is_auth() {
            self.env.token_refused(failure.clone());
        }
        self.state.update(|s| s.blocked = false);
        self.report(failure.code(), api_error(self.locale, failure));
    }

    /// Shows `message` in the panel and tells the host page.
    fn report(&self, code: &str, message: String) {
        self.env.error(code, &message);
        self.state.update(|s| s.failure = Some(message));
    }

    /// "Open the payment page" of a deposit still waiting for the transfer, from a click.
    fn reopen(&self, url: String) {
        match self.mode {
            OpenMode::Redirect => self.env.redirect(&url),
            OpenMode::Popup | OpenMode::Auto => self.env.open_or_redirect(&url),
            OpenMode::Iframe => match self.state.peek(|s| s.framing.clone()) {
                Some(framing) => self.show_framed(&framing, url),
                None => self.env.open_or_redirect(&url),
            },
        }
    }

    /// Iframe mode, once the address is known: the hosted page in the modal
    /// where it may be framed here; otherwise in a popup (the click's
    /// activation may still allow one), with a word on why, or, when the
    /// popup is blocked too, the reason and a button in the modal that opens
    /// it from a new click.
    fn show_framed(&self, framing: &Framing, url: String) {
        if framing.allowed {
            self.state.update(|s| s.modal = Modal::Frame(url));
            return;
        }
        let locale = self.locale;
        let why =
            t(locale, if framing.reason.as_deref() == Some("unknown") { T::FrameUnknown } else { T::FrameForbidden });
        match self.open_blank_popup() {
            Some(popup) if self.env.navigate_popup(&popup, &url) => self.state.update(|s| {
                s.modal = Modal::Closed;
                s.notice = format!("{why} {}", t(locale, T::OpenedInWindow));
            }),
            _ => self.state.update(|s| s.modal = Modal::CannotFrame { url, reason: why.to_owned() }),
        }
    }

    /// Forgets the pending deposit, if it is `intent_id` (or whichever, for `None`).
    fn forget_pending(&self, intent_id: Option<&str>) {
        let pending = self.env.get(PENDING).filter(|id| !id.is_empty());
        if intent_id.is_none() || pending.as_deref() == intent_id {
            self.env.remove(PENDING);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use pientegra_shared::status::IntentStatus::{Approved, PendingReview, Reserved};

    use super::*;
    use crate::flows::fake::{Fake, deposit, framing, run};

    const PAGE: &str = "https://pay.example/d/1";

    fn flow(mode: OpenMode) -> (Rc<Fake>, DepositFlow<Rc<Fake>>) {
        let fake = Fake::new();
        (fake.clone(), DepositFlow::new(fake, Locale::En, mode, "amount-field".into()))
    }

    /// The server's answer to a create call: a deposit of 250.00 waiting for its transfer at `url`.
    fn created(url: &str) -> Result<(Deposit, Framing), ApiFailure> {
        Ok((deposit("d1", 25_000, Reserved, url), framing(None)))
    }

    /// Presses the button with `input` in the field, and lets the server answer.
    fn deposit_of(flow: &DepositFlow<Rc<Fake>>, input: &str) {
        let attempt = flow.start(input).expect("an attempt");
        run(flow.send(attempt));
    }

    #[test]
    fn the_popup_opens_inside_the_click_and_goes_to_the_page_once_it_is_known() {
        let (fake, flow) = flow(OpenMode::Popup);
        let attempt = flow.start("250.00").expect("an attempt");
        assert_eq!(fake.took(), ["popup 1 opened: Opening the payment page…"], "before any request");
        assert_eq!(flow.panel(), Panel::Creating);
        assert!(flow.creating());

        fake.answer_create_deposit(created(PAGE));
        run(flow.send(attempt));
        assert_eq!(fake.sent(), ["create_deposit 25000 key-1"]);
        assert_eq!(fake.took(), [format!("popup 1 -> {PAGE}")]);
        assert_eq!(flow.panel().data_status(), "RESERVED");
        assert!(!flow.creating());
        assert_eq!(fake.stored(PENDING).as_deref(), Some("d1"), "remembered for the way back");
    }

    #[test]
    fn a_blocked_popup_leads_to_continue_in_this_tab() {
        let (fake, flow) = flow(OpenMode::Popup);
        fake.blocks_popups.set(true);
        let attempt = flow.start("250.00").expect("an attempt");
        assert_eq!(flow.panel(), Panel::Blocked, "said at once, while the deposit is created");
        fake.answer_create_deposit(created(PAGE));
        run(flow.send(attempt));
        assert_eq!(fake.took(), ["popup blocked"], "nowhere to go until the user says so");
        assert_eq!(flow.panel(), Panel::Blocked);

        flow.offer(Offer::ContinueHere);
        assert_eq!(fake.took(), [format!("redirect {PAGE}")]);
        assert_eq!(flow.panel().data_status(), "RESERVED", "the way back shows the live status");
    }

    #[test]
    fn continue_in_this_tab_before_the_deposit_exists_goes_as_soon_as_it_does() {
        let (fake, flow) = flow(OpenMode::Popup);
        fake.blocks_popups.set(true);
        let attempt = flow.start("250.00").expect("an attempt");
        flow.offer(Offer::ContinueHere);
        assert_eq!(fake.took(), ["popup blocked"]);
        fake.answer_create_deposit(created(PAGE));
        run(flow.send(attempt));
        assert_eq!(fake.took(), [format!("redirect {PAGE}")]);
        assert_eq!(flow.panel().data_status(), "RESERVED");
    }

    #[test]
    fn auto_mode_goes_in_this_tab_when_the_popup_is_blocked_and_redirect_mode_always() {
        for mode in [OpenMode::Auto, OpenMode::Redirect] {
            let (fake, flow) = flow(mode);
            fake.blocks_popups.set(true);
            fake.answer_create_deposit(created(PAGE));
            deposit_of(&flow, "250.00");
            assert_eq!(fake.took().last().map(String::as_str), Some(format!("redirect {PAGE}").as_str()), "{mode:?}");
            assert_eq!(flow.panel().data_status(), "RESERVED", "{mode:?}");
        }
    }

    #[test]
    fn the_redirect_return_with_a_known_intent_resumes_its_live_status() {
        let fake = Fake::new();
        fake.store(PENDING, "d1");
        let flow = DepositFlow::new(fake.clone(), Locale::En, OpenMode::Redirect, "amount-field".into());
        assert_eq!(flow.panel(), Panel::Idle, "the account does not know it yet");
        fake.answer_get_deposit(Ok(deposit("d1", 25_000, PendingReview, PAGE)));
        run(flow.resume());
        assert_eq!(fake.sent(), ["get_deposit d1"]);
        assert_eq!(flow.panel().data_status(), "PENDING_REVIEW");

        // The approval arrives on the stream: the outcome is known, nothing to come back for.
        let approved = deposit("d1", 25_000, Approved, PAGE);
        fake.hear_deposit(approved.clone());
        flow.status_changed(&approved);
        assert_eq!(flow.panel().data_status(), "APPROVED");
        assert_eq!(fake.took(), ["deposit-status APPROVED"]);
        assert_eq!(fake.stored(PENDING), None);
    }

    #[test]
    fn a_return_the_server_does_not_know_is_dropped_and_a_fresh_page_asks_nothing() {
        let fake = Fake::new();
        fake.store(PENDING, "gone");
        let flow = DepositFlow::new(fake.clone(), Locale::En, OpenMode::Redirect, "amount-field".into());
        fake.answer_get_deposit(Err(ApiFailure::Api { status: 404, code: "not_found".into() }));
        run(flow.resume());
        fake.hear_deposit(deposit("gone", 25_000, Reserved, PAGE));
        assert_eq!(flow.current(), None, "no longer followed");
        assert_eq!(flow.panel(), Panel::Idle);

        let (fake, flow) = self::flow(OpenMode::Popup);
        run(flow.resume());
        assert!(fake.sent().is_empty(), "nothing pending, nothing asked");
    }

    #[test]
    fn a_return_the_server_cannot_answer_now_is_still_followed() {
        let fake = Fake::new();
        fake.store(PENDING, "d1");
        let flow = DepositFlow::new(fake.clone(), Locale::En, OpenMode::Redirect, "amount-field".into());
        fake.answer_get_deposit(Err(ApiFailure::Network));
        run(flow.resume());
        fake.hear_deposit(deposit("d1", 25_000, PendingReview, PAGE));
        assert_eq!(flow.panel().data_status(), "PENDING_REVIEW", "the stream brings it");
    }

    #[test]
    fn the_key_is_reused_on_a_retry_after_a_network_error() {
        let (fake, flow) = flow(OpenMode::Redirect);
        fake.answer_create_deposit(Err(ApiFailure::Network));
        deposit_of(&flow, "250.00");
        assert_eq!(flow.panel().data_status(), "ERROR");
        assert!(fake.took().iter().any(|line| line.starts_with("error network:")), "the host page hears it");

        // A reload keeps sessionStorage: a new flow over it sends the same key.
        let flow = DepositFlow::new(fake.clone(), Locale::En, OpenMode::Redirect, "amount-field".into());
        fake.answer_create_deposit(created(PAGE));
        deposit_of(&flow, "250.00");
        assert_eq!(fake.sent(), ["create_deposit 25000 key-1", "create_deposit 25000 key-1"]);
    }

    #[test]
    fn a_definite_answer_drops_the_key_so_the_next_deposit_gets_a_new_one() {
        let (fake, flow) = flow(OpenMode::Redirect);
        fake.answer_create_deposit(created(PAGE));
        deposit_of(&flow, "250.00");
        flow.offer(Offer::NewDeposit);
        fake.answer_create_deposit(Err(ApiFailure::Api { status: 422, code: "amount_above_max".into() }));
        deposit_of(&flow, "250.00");
        fake.answer_create_deposit(created(PAGE));
        deposit_of(&flow, "250.00");
        assert_eq!(
            fake.sent(),
            ["create_deposit 25000 key-1", "create_deposit 25000 key-2", "create_deposit 25000 key-3"],
            "after a deposit and after a refusal"
        );
    }

    #[test]
    fn a_bad_amount_never_reaches_the_server_nor_opens_a_popup() {
        let (fake, flow) = flow(OpenMode::Popup);
        assert_eq!(flow.amount_problem(""), "", "an empty field is not an error before the button");
        assert!(flow.start("0.50").is_none());
        assert!(flow.start("").is_none());
        assert_eq!(
            fake.took(),
            [
                "error amount_below_min: The least you can enter is ₺1.00.",
                "focus amount-field",
                "error amount_empty: Enter an amount.",
                "focus amount-field"
            ]
        );
        assert!(fake.sent().is_empty());
        assert_eq!(flow.amount_problem(""), "Enter an amount.", "it is after");
        assert_eq!(flow.panel(), Panel::Idle);
    }

    #[test]
    fn a_second_click_while_the_deposit_is_created_sends_nothing() {
        let (fake, flow) = flow(OpenMode::Popup);
        let attempt = flow.start("250.00").expect("an attempt");
        assert!(flow.start("250.00").is_none());
        assert_eq!(fake.took().len(), 1, "one popup");
        fake.answer_create_deposit(created(PAGE));
        run(flow.send(attempt));
        assert_eq!(fake.sent().len(), 1);
    }

    #[test]
    fn a_page_the_browser_may_not_go_to_is_refused_and_its_popup_closed() {
        let (fake, flow) = flow(OpenMode::Popup);
        fake.answer_create_deposit(created("javascript:alert(1)"));
        deposit_of(&flow, "250.00");
        let took = fake.took();
        assert_eq!(took[1], "popup 1 closed");
        assert!(took[2].starts_with("error deposit_url_not_allowed:"), "{took:?}");
        assert_eq!(flow.panel().data_status(), "ERROR");
        flow.offer(Offer::Reopen);
        assert!(fake.took().is_empty(), "never opened");
    }

    #[test]
    fn a_refusal_closes_the_popup_and_a_refused_token_reaches_the_account() {
        let (fake, flow) = flow(OpenMode::Popup);
        let expired = ApiFailure::Api { status: 401, code: "token_expired".into() };
        fake.answer_create_deposit(Err(expired.clone()));
        deposit_of(&flow, "250.00");
        assert_eq!(fake.took()[1], "popup 1 closed");
        assert_eq!(*fake.refused_token.borrow(), Some(expired));
        assert!(matches!(flow.panel(), Panel::Failed(_)));
    }

    #[test]
    fn iframe_mode_frames_the_page_where_it_may_and_closes_once_the_transfer_is_reported() {
        let (fake, flow) = flow(OpenMode::Iframe);
        let attempt = flow.start("250.00").expect("an attempt");
        assert_eq!(flow.modal(), Modal::Loading);
        fake.answer_create_deposit(created(PAGE));
        run(flow.send(attempt));
        assert_eq!(flow.modal(), Modal::Frame(PAGE.into()));
        assert!(fake.took().is_empty(), "no window");

        let reserved = deposit("d1", 25_000, Reserved, PAGE);
        flow.status_changed(&reserved);
        assert_eq!(flow.modal(), Modal::Frame(PAGE.into()), "still paying");
        flow.close_modal();
        flow.offer(Offer::Reopen);
        assert_eq!(flow.modal(), Modal::Frame(PAGE.into()), "reopened in the frame");
        let submitted = deposit("d1", 25_000, PendingReview, PAGE);
        fake.hear_deposit(submitted.clone());
        flow.status_changed(&submitted);
        assert_eq!(flow.modal(), Modal::Closed);
        assert_eq!(fake.stored(PENDING).as_deref(), Some("d1"), "not final yet");
    }

    #[test]
    fn iframe_mode_opens_a_popup_and_says_why_where_framing_is_forbidden() {
        let (fake, flow) = flow(OpenMode::Iframe);
        fake.answer_create_deposit(Ok((deposit("d1", 25_000, Reserved, PAGE), framing(Some("frame_ancestors")))));
        deposit_of(&flow, "250.00");
        assert_eq!(flow.modal(), Modal::Closed);
        assert_eq!(fake.took(), ["popup 1 opened: Opening the payment page…".to_owned(), format!("popup 1 -> {PAGE}")]);
        assert!(flow.notice().ends_with("The payment page opened in a new window."), "{}", flow.notice());

        // With the popup blocked too, the modal says why and offers a fresh click.
        fake.blocks_popups.set(true);
        flow.offer(Offer::Reopen);
        let Modal::CannotFrame { url, reason } = flow.modal() else { panic!("{:?}", flow.modal()) };
        assert_eq!(url, PAGE);
        assert_eq!(format!("{reason} The payment page opened in a new window."), flow.notice());
        fake.took();
        flow.open_in_window();
        assert_eq!(flow.modal(), Modal::Closed);
        assert_eq!(fake.took(), ["popup blocked".to_owned(), format!("redirect {PAGE}")], "this tab, then");
    }

    #[test]
    fn a_popup_closed_before_the_page_is_known_leaves_the_reopen_button() {
        let (fake, flow) = flow(OpenMode::Popup);
        let attempt = flow.start("250.00").expect("an attempt");
        fake.popup_gone.set(true);
        fake.answer_create_deposit(created(PAGE));
        run(flow.send(attempt));
        assert_eq!(fake.took(), ["popup 1 opened: Opening the payment page…"], "went nowhere");
        assert_eq!(flow.panel().data_status(), "RESERVED", "the panel offers to open it again");

        // In iframe mode, a page that may not be framed and a popup gone at once: the modal says why.
        let (fake, flow) = self::flow(OpenMode::Iframe);
        fake.popup_gone.set(true);
        fake.answer_create_deposit(Ok((deposit("d1", 25_000, Reserved, PAGE), framing(Some("unknown")))));
        deposit_of(&flow, "250.00");
        assert!(matches!(flow.modal(), Modal::CannotFrame { .. }), "{:?}", flow.modal());
        assert_eq!(flow.notice(), "");
    }

    #[test]
    fn a_new_deposit_forgets_the_last_one_and_focuses_the_amount() {
        let (fake, flow) = flow(OpenMode::Popup);
        fake.answer_create_deposit(created(PAGE));
        deposit_of(&flow, "250.00");
        fake.took();
        flow.offer(Offer::StartAgain);
        assert_eq!(flow.panel(), Panel::Idle);
        assert_eq!(fake.stored(PENDING), None);
        assert_eq!(fake.took(), ["focus amount-field"]);
    }
}
