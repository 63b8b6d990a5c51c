//! The withdrawal flow: when each field's error shows, the checks before a
//! request, the request with its idempotency key, and the answer as the
//! status panel shows it.

use pientegra_shared::Locale;
use pientegra_shared::api::codes;
use pientegra_shared::iban::{Iban, IbanError};
use pientegra_shared::ids::HolderName;
use pientegra_shared::status::WithdrawalStatus;

use super::{Env, Shared, amount_problem, check_amount, keys, shown};
use crate::api::{ApiFailure, NewWithdrawal, Withdrawal};
use crate::i18n::{Text as T, amount_error, api_error, holder_error, iban_error, t, tf};

/// The idempotency key's kind.
const KIND: &str = "withdrawal";

/// The form's text, as typed.
#[derive(Clone, Copy, Debug)]
pub struct Form<'a> {
    pub amount: &'a str,
    pub iban: &'a str,
    pub holder: &'a str,
}

/// The element ids of the form's fields, focused when they need fixing.
pub struct FieldIds {
    pub amount: String,
    pub iban: String,
    pub holder: String,
}

/// One withdrawal request on its way, with its idempotency key.
pub struct Attempt {
    request: NewWithdrawal,
    key: String,
}

/// The withdrawal status panel in words.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusWords {
    /// The three steps, each with its label and `done` / `current` / `todo` / `bad`.
    pub steps: Option<[(&'static str, &'static str); 3]>,
    pub title: String,
    pub text: String,
}

#[derive(Default)]
struct State {
    /// Whether the user pressed the button since the last withdrawal went through.
    attempted: bool,
    /// Whether the user left the IBAN field (its unfinished value is an error from then on).
    iban_left: bool,
    /// Whether the user left the holder field.
    holder_left: bool,
    /// The withdrawal this form follows.
    tracked: Option<String>,
    /// Whether a request is on its way.
    pending: bool,
    /// Why the last request failed.
    failure: Option<String>,
}

/// The withdrawal form's decisions, over the seams of [`Env`].
pub struct WithdrawalFlow<E: Env> {
    env: E,
    locale: Locale,
    ids: FieldIds,
    state: Shared<State>,
}

impl<E: Env> WithdrawalFlow<E> {
    pub fn new(env: E, locale: Locale, ids: FieldIds) -> WithdrawalFlow<E> {
        WithdrawalFlow { env, locale, ids, state: Shared::new(State::default()) }
    }

    /// Why the typed amount is not accepted, in words; empty when it is.
    pub fn amount_problem(&self, input: &str) -> String {
        amount_problem(input, self.state.watch(|s| s.attempted), self.locale)
    }

    /// Why the IBAN is not accepted, in words; empty when it is. While it is
    /// still being typed, only a wrong character is worth interrupting for.
    pub fn iban_problem(&self, input: &str) -> String {
        let Err(err) = Iban::parse(input) else {
            return String::new();
        };
        let typing = !self.state.watch(|s| s.attempted || s.iban_left);
        let unfinished = match &err {
            IbanError::Empty => true,
            IbanError::UnknownCountry(cc) => cc.len() < 2,
            IbanError::WrongLength { expected, actual, .. } => actual < expected,
            _ => false,
        };
        if typing && unfinished { String::new() } else { iban_error(self.locale, &err) }
    }

    /// Why the holder's name is not accepted, once the user left the field
    /// or pressed the button; empty otherwise.
    pub fn holder_problem(&self, input: &str) -> String {
        match HolderName::parse(input) {
            Err(err) if self.state.watch(|s| s.attempted || s.holder_left) => holder_error(self.locale, &err),
            _ => String::new(),
        }
    }

    pub fn left_iban(&self) {
        self.state.update(|s| s.iban_left = true);
    }

    pub fn left_holder(&self) {
        self.state.update(|s| s.holder_left = true);
    }

    /// Whether a request is on its way (the button waits).
    pub fn sending(&self) -> bool {
        self.state.watch(|s| s.pending)
    }

    /// The button, with the form's text. `None` when there is nothing to
    /// send: a field to fix (the first one is focused and the host page told
    /// why) or a request already on its way.
    pub fn start(&self, form: Form<'_>) -> Option<Attempt> {
        self.state.update(|s| s.attempted = true);
        if self.state.peek(|s| s.pending) {
            return None;
        }
        let request = match self.check(form) {
            Ok(request) => request,
            Err((field, code, message)) => {
                self.env.error(code, &message);
                self.env.focus(field);
                return None;
            }
        };
        self.state.update(|s| {
            s.failure = None;
            s.tracked = None;
            s.pending = true;
        });
        let NewWithdrawal { amount, iban, holder_name } = &request;
        let fingerprint = format!("{}|{amount}|{iban}|{holder_name}", self.env.user());
        let key = keys::for_attempt(&self.env, KIND, &fingerprint);
        Some(Attempt { request, key })
    }

    /// Sends the attempt [`WithdrawalFlow::start`] made and follows the
    /// withdrawal, or says why it failed. `true` when it went through: the
    /// form then empties its amount.
    pub async fn send(&self, attempt: Attempt) -> bool {
        let answer = self.env.create_withdrawal(&attempt.request, &attempt.key).await;
        keys::settle(&self.env, KIND, &answer);
        let sent = match answer {
            Ok(withdrawal) => {
                self.state.update(|s| {
                    s.tracked = Some(withdrawal.withdrawal_id.clone());
                    s.attempted = false;
                });
                self.env.learn_withdrawal(withdrawal);
                true
            }
            Err(failure) => {
                if failure.is_auth() {
                    self.env.token_refused(failure.clone());
                }
                let message = self.explain(&failure);
                self.env.error(failure.code(), &message);
                self.state.update(|s| s.failure = Some(message));
                false
            }
        };
        self.state.update(|s| s.pending = false);
        sent
    }

    /// The followed withdrawal as the account knows it.
    pub fn current(&self) -> Option<Withdrawal> {
        let withdrawal_id = self.state.watch(|s| s.tracked.clone())?;
        self.env.known_withdrawal(&withdrawal_id)
    }

    /// Each new status of the followed withdrawal, once: the host page hears it.
    pub fn status_changed(&self, withdrawal: &Withdrawal) {
        self.env.withdrawal_status(withdrawal);
    }

    /// The `data-status` test hook: the status wire name, or the stage before it.
    pub fn data_status(&self) -> String {
        let (failed, pending) = self.state.watch(|s| (s.failure.is_some(), s.pending));
        String::from(if failed {
            "ERROR"
        } else if let Some(w) = self.current() {
            w.status.as_str()
        } else if pending {
            "CREATING"
        } else {
            "IDLE"
        })
    }

    /// What the status panel says.
    pub fn status(&self) -> StatusWords {
        let locale = self.locale;
        let (failure, pending) = self.state.watch(|s| (s.failure.clone(), s.pending));
        if let Some(message) = failure {
            return StatusWords { steps: None, title: message, text: String::new() };
        }
        match self.current() {
            Some(w) => {
                let (title, detail) = withdrawal_words(locale, w.status, &w.iban_masked, w.rejected_reason.as_deref());
                let summary = tf(locale, T::WithdrawalSummary, &[&w.amount.format(locale), &w.reference_no]);
                StatusWords { steps: Some(steps(locale, w.status)), title, text: format!("{detail} {summary}") }
            }
            None => StatusWords {
                steps: None,
                title: String::new(),
                text: t(locale, if pending { T::Sending } else { T::WithdrawIdle }).into(),
            },
        }
    }

    /// The request the form's text makes, or the first field to fix: its id,
    /// the stable code and the words for the host page.
    fn check(&self, form: Form<'_>) -> Result<NewWithdrawal, (&str, &'static str, String)> {
        let locale = self.locale;
        match (check_amount(form.amount, locale), Iban::parse(form.iban), HolderName::parse(form.holder)) {
            (Ok(amount), Ok(iban), Ok(holder)) => {
                Ok(NewWithdrawal { amount, iban: iban.as_str().to_owned(), holder_name: holder.as_str().to_owned() })
            }
            (Err(code), ..) => Err((&self.ids.amount, code, amount_error(locale, code))),
            (_, Err(err), _) => Err((&self.ids.iban, err.code(), iban_error(locale, &err))),
            (.., Err(err)) => Err((&self.ids.holder, codes::VALIDATION_FAILED, holder_error(locale, &err))),
        }
    }

    /// A failed request in words; too little money names what can be withdrawn.
    fn explain(&self, failure: &ApiFailure) -> String {
        if failure.code() == codes::INSUFFICIENT_FUNDS {
            tf(self.locale, T::InsufficientFunds, &[&shown(self.env.available(), self.locale)])
        } else {
            api_error(self.locale, failure)
        }
    }
}

/// The three steps, each with its label and `done` / `current` / `todo` / `bad`.
fn steps(locale: Locale, status: WithdrawalStatus) -> [(&'static str, &'static str); 3] {
    use WithdrawalStatus::*;
    let last = match status {
        Rejected => (t(locale, T::StepRejected), "bad"),
        Returned => (t(locale, T::StepReturned), "bad"),
        Sent => (t(locale, T::StepSent), "done"),
        Approved => (t(locale, T::StepSent), "current"),
        PendingReview => (t(locale, T::StepSent), "todo"),
    };
    let review = match status {
        PendingReview => "current",
        _ => "done",
    };
    [(t(locale, T::StepReceived), "done"), (t(locale, T::StepReview), review), last]
}

/// Headline and detail for a withdrawal status.
fn withdrawal_words(
    locale: Locale,
    status: WithdrawalStatus,
    iban_masked: &str,
    reason: Option<&str>,
) -> (String, String) {
    use WithdrawalStatus::*;
    match status {
        PendingReview => (t(locale, T::WithdrawReceived).into(), t(locale, T::WithdrawReceivedHelp).into()),
        Approved => (t(locale, T::WithdrawApproved).into(), t(locale, T::WithdrawApprovedHelp).into()),
        Sent => (t(locale, T::WithdrawSent).into(), tf(locale, T::WithdrawSentHelp, &[iban_masked])),
        Rejected => (
            t(locale, T::WithdrawRejected).into(),
            format!(
                "{} {} {}",
                t(locale, T::Reason),
                reason.unwrap_or(t(locale, T::NoReason)),
                t(locale, T::WithdrawRejectedHelp)
            ),
        ),
        Returned => (t(locale, T::WithdrawReturned).into(), t(locale, T::WithdrawReturnedHelp).into()),
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use pientegra_shared::Amount;
    use pientegra_shared::status::WithdrawalStatus::{PendingReview, Rejected};

    use super::*;
    use crate::flows::fake::{Fake, run, withdrawal};

    const IBAN: &str = "TR33 0006 1005 1978 6457 8413 26";

    fn flow() -> (Rc<Fake>, WithdrawalFlow<Rc<Fake>>) {
        let fake = Fake::new();
        let ids = FieldIds { amount: "amount-field".into(), iban: "iban-field".into(), holder: "holder-field".into() };
        (fake.clone(), WithdrawalFlow::new(fake, Locale::En, ids))
    }

    fn form<'a>(amount: &'a str, iban: &'a str, holder: &'a str) -> Form<'a> {
        Form { amount, iban, holder }
    }

    /// Presses the button with a good form for `amount`, and lets the server answer.
    fn withdraw(flow: &WithdrawalFlow<Rc<Fake>>, amount: &str) -> bool {
        let attempt = flow.start(form(amount, IBAN, "Ayşe Yılmaz")).expect("an attempt");
        run(flow.send(attempt))
    }

    #[test]
    fn a_form_to_fix_focuses_its_first_bad_field_and_sends_nothing() {
        let (fake, flow) = flow();
        let mistyped = "TR33 0006 1005 1978 6457 8413 27";
        assert!(flow.start(form("100.00", mistyped, "")).is_none());
        assert!(flow.start(form("100.00", IBAN, "")).is_none());
        assert!(flow.start(form("", "", "")).is_none());
        let took = fake.took();
        assert_eq!(
            took[0],
            "error invalid_iban: The IBAN's check digits do not match; a character is probably mistyped."
        );
        assert_eq!(took[1], "focus iban-field");
        assert_eq!(took[2], "error validation_failed: Enter the account holder's name.");
        assert_eq!(took[3], "focus holder-field");
        assert_eq!(&took[4..], ["error amount_empty: Enter an amount.", "focus amount-field"]);
        assert!(fake.sent().is_empty());
        assert_eq!(flow.data_status(), "IDLE");
    }

    #[test]
    fn field_errors_wait_for_the_user_to_leave_the_field_or_press_the_button() {
        let (_fake, flow) = flow();
        assert_eq!(flow.iban_problem("TR33 0006"), "", "still being typed");
        assert_ne!(flow.iban_problem("T3"), "", "a wrong character interrupts at once");
        assert_eq!(flow.holder_problem(""), "");
        flow.left_iban();
        assert_eq!(flow.iban_problem("TR33 0006"), "A TR IBAN has 26 characters; this one has 8.");
        assert_eq!(flow.holder_problem(""), "", "only the IBAN was left");
        flow.left_holder();
        assert_eq!(flow.holder_problem(""), "Enter the account holder's name.");
        assert_eq!(flow.amount_problem(""), "");
        assert_eq!(flow.iban_problem(IBAN), "");
    }

    #[test]
    fn an_accepted_withdrawal_is_followed_and_empties_the_amount() {
        let (fake, flow) = flow();
        let attempt = flow.start(form("100.00", IBAN, "Ayşe Yılmaz")).expect("an attempt");
        assert!(flow.sending());
        assert_eq!(flow.data_status(), "CREATING");
        assert_eq!(flow.status().text, "Sending…");
        fake.answer_create_withdrawal(Ok(withdrawal("w1", 10_000, PendingReview)));
        assert!(run(flow.send(attempt)), "the amount field empties");
        assert_eq!(fake.sent(), ["create_withdrawal 10000 TR330006100519786457841326 Ayşe Yılmaz key-1"]);
        assert!(!flow.sending());
        assert_eq!(flow.data_status(), "PENDING_REVIEW");
        let status = flow.status();
        assert_eq!(status.steps.map(|steps| steps.map(|(_, state)| state)), Some(["done", "current", "todo"]));
        assert!(status.text.ends_with("Amount: ₺100.00, reference: REF-w1."), "{}", status.text);
        assert_eq!(flow.amount_problem(""), "", "an empty amount is not an error again until the next press");

        let rejected = withdrawal("w1", 10_000, Rejected);
        flow.status_changed(&rejected);
        assert_eq!(fake.took(), ["withdrawal-status REJECTED"]);
    }

    #[test]
    fn the_key_survives_a_network_error_and_a_definite_answer_drops_it() {
        let (fake, flow) = flow();
        fake.answer_create_withdrawal(Err(ApiFailure::Network));
        assert!(!withdraw(&flow, "100.00"));
        assert_eq!(flow.data_status(), "ERROR");
        fake.answer_create_withdrawal(Err(ApiFailure::Api { status: 422, code: "insufficient_funds".into() }));
        assert!(!withdraw(&flow, "100.00"));
        fake.answer_create_withdrawal(Ok(withdrawal("w1", 10_000, PendingReview)));
        assert!(withdraw(&flow, "100.00"));
        fake.answer_create_withdrawal(Ok(withdrawal("w2", 10_000, PendingReview)));
        assert!(withdraw(&flow, "100.00"));
        let keys: Vec<String> = fake.sent().iter().map(|r| r.rsplit(' ').next().unwrap().to_owned()).collect();
        assert_eq!(keys, ["key-1", "key-1", "key-2", "key-3"], "retried, refused, sent, sent again");
    }

    #[test]
    fn too_little_money_names_what_can_be_withdrawn() {
        let (fake, flow) = flow();
        fake.available.set(Some(Amount::from_minor(5_000)));
        fake.answer_create_withdrawal(Err(ApiFailure::Api { status: 422, code: "insufficient_funds".into() }));
        withdraw(&flow, "100.00");
        let message = "Insufficient funds: you can withdraw at most ₺50.00.";
        assert_eq!(fake.took(), [format!("error insufficient_funds: {message}")]);
        assert_eq!(flow.status(), StatusWords { steps: None, title: message.into(), text: String::new() });
        assert_eq!(flow.amount_problem(""), "Enter an amount.", "the form was attempted");
    }

    #[test]
    fn a_refused_token_reaches_the_account() {
        let (fake, flow) = flow();
        let expired = ApiFailure::Api { status: 401, code: "token_expired".into() };
        fake.answer_create_withdrawal(Err(expired.clone()));
        withdraw(&flow, "100.00");
        assert_eq!(*fake.refused_token.borrow(), Some(expired));
        assert_eq!(flow.data_status(), "ERROR");
    }
}
