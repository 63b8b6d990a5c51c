//! A model-based property test of the ledger and the two state machines,
//! through the real storage, on each database: SQLite, and PostgreSQL when
//! `PIENTEGRA_TEST_POSTGRES_URL` names a server (skipped with a line saying
//! so when it does not, a failure when `CI=true`).
//!
//! Each case opens a fresh database (a SQLite file, a PostgreSQL schema) and runs a random sequence of what the
//! server sees: deposits recorded, webhooks for intents and withdrawals (every
//! event type, duplicates by `eventId`, any order, unknown types, events for
//! records not known yet, events naming another user), withdrawal requests in
//! both balance models, and Pientegra accepting or refusing them. A few lines
//! of plain Rust say what each step must do; after every step the storage
//! must agree with that model on every outcome, status and balance, the
//! ledger must sum to the balance, and no status may move backwards.
//!
//! `LEDGER_MODEL_CASES=2000 cargo test -p pientegra-server --test ledger_model`
//! runs a deeper search than the default 64 cases, on both databases.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{SubsecRound, Utc};
use pientegra_server::ledger::BalanceModel;
use pientegra_server::storage::{
    Audit, Audited, InboxOutcome, NewDeposit, NewWithdrawal, Storage, WithdrawalRecord, WithdrawalState,
};
use pientegra_shared::Amount;
use pientegra_shared::event::{
    EventKind, IntentEvent, IntentSnapshot, WebhookEvent, WithdrawalEvent, WithdrawalSnapshot,
};
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use pientegra_shared::wire::WithdrawalCreated;
use pientegra_testkit::postgres::{POSTGRES_URL_VAR, Schema};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

const USERS: [&str; 3] = ["ayse", "mehmet", "zeynep"];
const INTENTS: usize = 4;
const WITHDRAWALS: usize = 4;
const MAX_STEPS: usize = 40;

// ---- the scenario ------------------------------------------------------------------

/// Who owns what in one case.
#[derive(Clone, Debug)]
struct World {
    /// The owner (index into `USERS`) and requested amount of each intent.
    intents: Vec<(usize, u64)>,
    /// The owner, amount and balance model of each withdrawal request.
    withdrawals: Vec<(usize, u64, BalanceModel)>,
}

#[derive(Clone, Debug)]
enum Op {
    /// The server created intent `i` at Pientegra and records it (again, maybe).
    RecordDeposit(usize),
    /// A fresh webhook about intent `i`; `amount` is what Pientegra says arrived.
    IntentWebhook { intent: usize, event: IntentEvent, amount: u64, other_user: bool },
    /// A fresh webhook about withdrawal `w` (by its Pientegra id, known or not);
    /// `amount` other than the requested one must not matter (the local amount moves).
    WithdrawalWebhook { withdrawal: usize, event: WithdrawalEvent, other_user: bool, amount: Option<u64> },
    /// A fresh webhook of a type this server does not know.
    UnknownWebhook,
    /// An earlier webhook delivered again, same `eventId` and bytes.
    Redeliver(usize),
    /// The user asks for withdrawal `w` (same idempotency key every time).
    Reserve(usize),
    /// Pientegra accepted withdrawal `w`.
    Accept(usize),
    /// Pientegra definitely refused withdrawal `w`.
    Refuse(usize),
}

fn world() -> impl Strategy<Value = World> {
    let model = prop_oneof![Just(BalanceModel::PreReserve), Just(BalanceModel::FinalDebit)];
    // Every user owns an intent, so every user can be funded.
    (
        proptest::collection::vec(100_u64..500_000, INTENTS),
        0..USERS.len(),
        proptest::collection::vec((0..USERS.len(), 100_u64..100_000, model), WITHDRAWALS),
    )
        .prop_map(|(amounts, last_owner, withdrawals)| {
            let owners = (0..INTENTS).map(|i| if i < USERS.len() { i } else { last_owner });
            World { intents: owners.zip(amounts).collect(), withdrawals }
        })
}

fn op() -> impl Strategy<Value = Op> {
    let intent_event = proptest::sample::select(&IntentEvent::ALL[..]);
    let withdrawal_event = proptest::sample::select(&WithdrawalEvent::ALL[..]);
    // Mostly the requested amount's order of magnitude; sometimes a very different transfer.
    let amount = prop_oneof![3 => 100_u64..500_000, 1 => 1_u64..100_000_000];
    let other_user = proptest::bool::weighted(0.1);
    prop_oneof![
        3 => (0..INTENTS).prop_map(Op::RecordDeposit),
        5 => (0..INTENTS, intent_event, amount, other_user).prop_map(|(intent, event, amount, other_user)| {
            Op::IntentWebhook { intent, event, amount, other_user }
        }),
        5 => (0..WITHDRAWALS, withdrawal_event, other_user, proptest::option::weighted(0.1, 1_u64..1_000_000)).prop_map(
            |(withdrawal, event, other_user, amount)| Op::WithdrawalWebhook { withdrawal, event, other_user, amount }
        ),
        1 => Just(Op::UnknownWebhook),
        2 => any::<usize>().prop_map(Op::Redeliver),
        3 => (0..WITHDRAWALS).prop_map(Op::Reserve),
        4 => (0..WITHDRAWALS).prop_map(Op::Accept),
        1 => (0..WITHDRAWALS).prop_map(Op::Refuse),
    ]
}

/// A world and up to `MAX_STEPS` operations. Most cases start by funding some
/// intents (recorded and approved, in either order) and requesting some
/// withdrawals, accepted at once or somewhere in the random tail (so that their
/// webhooks may come first), so withdrawals get past the balance check and
/// the tail's webhooks have something to move.
fn scenario() -> impl Strategy<Value = (World, Vec<Op>)> {
    let most = |n: usize| proptest::sample::subsequence((0..n).collect::<Vec<_>>(), n / 2..=n);
    let late_accepts = proptest::collection::vec(proptest::option::of(any::<usize>()), WITHDRAWALS);
    let tail = proptest::collection::vec(op(), 1..=MAX_STEPS - 2 * INTENTS - 2 * WITHDRAWALS);
    (world(), proptest::bool::weighted(0.8), most(INTENTS), most(WITHDRAWALS), late_accepts, tail)
        .prop_flat_map(|(world, warm_up, funded, requested, late_accepts, mut tail)| {
            let mut funding = Vec::new();
            let mut requests = Vec::new();
            if warm_up {
                for &i in &funded {
                    let amount = world.intents[i].1;
                    funding.push(Op::RecordDeposit(i));
                    funding.push(Op::IntentWebhook {
                        intent: i,
                        event: IntentEvent::Approved,
                        amount,
                        other_user: false,
                    });
                }
                for &w in &requested {
                    requests.push(Op::Reserve(w));
                    match late_accepts[w] {
                        Some(at) => tail.insert(at % (tail.len() + 1), Op::Accept(w)),
                        None => requests.push(Op::Accept(w)),
                    }
                }
            }
            (Just(world), Just(funding).prop_shuffle(), Just(requests), Just(tail))
        })
        .prop_map(|(world, funding, requests, tail)| (world, funding.into_iter().chain(requests).chain(tail).collect()))
}

fn intent_id(i: usize) -> Uuid {
    Uuid::from_u128(0x1000 + i as u128)
}

/// The id Pientegra gives withdrawal `w` when it accepts it.
fn withdrawal_id(w: usize) -> Uuid {
    Uuid::from_u128(0x2000 + w as u128)
}

fn idempotency_key(w: usize) -> String {
    format!("withdrawal-key-{w}")
}

// ---- the model ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Balance {
    available: i64,
    reserved: i64,
}

#[derive(Clone, Copy, Debug)]
struct DepositModel {
    status: IntentStatus,
    credited: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct WithdrawalModel {
    local_id: Uuid,
    state: WithdrawalState,
}

/// What the storage must do, in as little code as it can be said.
struct Model {
    world: World,
    deposits: Vec<Option<DepositModel>>,
    withdrawals: Vec<Option<WithdrawalModel>>,
    balances: HashMap<&'static str, Balance>,
    seen: HashSet<Uuid>,
    delivered: Vec<WebhookEvent>,
    /// Events about intents / Pientegra withdrawal ids not known yet, in arrival order.
    orphans: HashMap<Uuid, Vec<WebhookEvent>>,
    next_event: u128,
}

impl Model {
    fn new(world: World) -> Model {
        Model {
            world,
            deposits: vec![None; INTENTS],
            withdrawals: vec![None; WITHDRAWALS],
            balances: USERS.iter().map(|u| (*u, Balance::default())).collect(),
            seen: HashSet::new(),
            delivered: Vec::new(),
            orphans: HashMap::new(),
            next_event: 0,
        }
    }

    fn fresh_event_id(&mut self) -> Uuid {
        self.next_event += 1;
        Uuid::from_u128(0xE000_0000 + self.next_event)
    }

    fn user_of_withdrawal(&self, w: usize) -> &'static str {
        USERS[self.world.withdrawals[w].0]
    }

    /// The outcome of an event seen for the first time.
    fn apply(&mut self, event: &WebhookEvent) -> InboxOutcome {
        match &event.kind {
            EventKind::Unknown { .. } => InboxOutcome::Ignored,
            EventKind::Intent { event: kind, intent } => {
                let i = (0..INTENTS).find(|&i| intent_id(i) == intent.id).expect("events name our intents");
                let Some(mut deposit) = self.deposits[i] else {
                    self.orphans.entry(intent.id).or_default().push(event.clone());
                    return InboxOutcome::Orphan;
                };
                let owner = USERS[self.world.intents[i].0];
                // Another user, or an amount outside the contract's range: never applied.
                if intent.external_user_id != owner || intent.amount.check_range().is_err() {
                    return InboxOutcome::Mismatch;
                }
                let next = kind.status();
                if !deposit.status.can_advance_to(next) {
                    return InboxOutcome::Stale;
                }
                deposit.status = next;
                if next == IntentStatus::Approved {
                    // APPROVED is final, so this runs once per intent: the credit is the
                    // approving event's `amount`, never the requested amount.
                    assert!(deposit.credited.is_none(), "the model approved twice");
                    deposit.credited = Some(intent.amount.minor());
                    self.balances.get_mut(owner).expect("a user").available += signed(intent.amount.minor());
                }
                self.deposits[i] = Some(deposit);
                InboxOutcome::Applied
            }
            EventKind::Withdrawal { event: kind, withdrawal: snapshot } => {
                let accepted = (0..WITHDRAWALS).find(|&w| {
                    withdrawal_id(w) == snapshot.id
                        && matches!(self.withdrawals[w], Some(WithdrawalModel { state: WithdrawalState::Known(_), .. }))
                });
                let Some(w) = accepted else {
                    self.orphans.entry(snapshot.id).or_default().push(event.clone());
                    return InboxOutcome::Orphan;
                };
                let owner = self.user_of_withdrawal(w);
                if snapshot.external_user_id != owner || snapshot.amount.check_range().is_err() {
                    return InboxOutcome::Mismatch;
                }
                let mut record = self.withdrawals[w].expect("accepted above");
                let WithdrawalState::Known(current) = record.state else { unreachable!("accepted above") };
                let target = kind.status();
                if !current.can_advance_to(target) {
                    return InboxOutcome::Stale;
                }
                let (_, amount, model) = self.world.withdrawals[w];
                let a = signed(amount);
                let balance = self.balances.get_mut(owner).expect("a user");
                use WithdrawalStatus::{Rejected, Returned, Sent};
                // Passing SENT takes the money for good (skipped steps included);
                // RETURNED gives it back; REJECTED releases a reservation.
                if matches!(target, Sent | Returned) && !matches!(current, Sent | Returned) {
                    match model {
                        BalanceModel::PreReserve => balance.reserved -= a,
                        BalanceModel::FinalDebit => balance.available -= a,
                    }
                }
                if target == Returned {
                    balance.available += a;
                }
                if target == Rejected && model == BalanceModel::PreReserve {
                    balance.available += a;
                    balance.reserved -= a;
                }
                record.state = WithdrawalState::Known(target);
                self.withdrawals[w] = Some(record);
                InboxOutcome::Applied
            }
        }
    }

    /// Events that waited for `subject`, applied in arrival order.
    fn replay_orphans(&mut self, subject: Uuid) {
        for event in self.orphans.remove(&subject).unwrap_or_default() {
            let outcome = self.apply(&event);
            assert_ne!(outcome, InboxOutcome::Orphan, "the subject is known now");
        }
    }

    /// What final-debit requests not yet sent or ended hold back from `user`.
    fn pending_final_debit(&self, user: &str) -> i64 {
        (0..WITHDRAWALS)
            .filter(|&w| self.user_of_withdrawal(w) == user && self.world.withdrawals[w].2 == BalanceModel::FinalDebit)
            .filter(|&w| {
                matches!(
                    self.withdrawals[w].map(|r| r.state),
                    Some(
                        WithdrawalState::Submitting
                            | WithdrawalState::Known(WithdrawalStatus::PendingReview | WithdrawalStatus::Approved)
                    )
                )
            })
            .map(|w| signed(self.world.withdrawals[w].1))
            .sum()
    }
}

fn signed(minor: u64) -> i64 {
    i64::try_from(minor).expect("test amounts fit i64")
}

// ---- building events ---------------------------------------------------------------

fn now() -> chrono::DateTime<Utc> {
    // Milliseconds, as Pientegra writes them, so the stored body re-parses to the same event.
    Utc::now().trunc_subsecs(3)
}

fn other(user: &'static str) -> &'static str {
    USERS.iter().copied().find(|u| *u != user).expect("more than one user")
}

fn intent_event(model: &mut Model, i: usize, event: IntentEvent, amount: u64, other_user: bool) -> WebhookEvent {
    let (owner, requested) = model.world.intents[i];
    let owner = USERS[owner];
    let intent = IntentSnapshot {
        id: intent_id(i),
        reference_no: format!("REF{i}"),
        external_user_id: if other_user { other(owner) } else { owner }.to_owned(),
        requested_amount: Amount::from_minor(requested),
        amount: Amount::from_minor(amount),
        currency: "TRY".into(),
        status: event.status(),
        rejected_reason: (event == IntentEvent::Rejected).then(|| "no transfer".to_owned()),
    };
    WebhookEvent { event_id: model.fresh_event_id(), occurred_at: now(), kind: EventKind::Intent { event, intent } }
}

fn withdrawal_event(
    model: &mut Model,
    w: usize,
    event: WithdrawalEvent,
    other_user: bool,
    amount: Option<u64>,
) -> WebhookEvent {
    let owner = model.user_of_withdrawal(w);
    let withdrawal = WithdrawalSnapshot {
        id: withdrawal_id(w),
        reference_no: format!("WREF{w}"),
        external_user_id: if other_user { other(owner) } else { owner }.to_owned(),
        amount: Amount::from_minor(amount.unwrap_or(model.world.withdrawals[w].1)),
        currency: "TRY".into(),
        status: event.status(),
        rejected_reason: (event == WithdrawalEvent::Rejected).then(|| "compliance".to_owned()),
    };
    WebhookEvent {
        event_id: model.fresh_event_id(),
        occurred_at: now(),
        kind: EventKind::Withdrawal { event, withdrawal },
    }
}

fn unknown_event(model: &mut Model) -> WebhookEvent {
    let payload = serde_json::json!({"payout": {"id": "x", "amount": "100"}});
    WebhookEvent {
        event_id: model.fresh_event_id(),
        occurred_at: now(),
        kind: EventKind::Unknown {
            event_type: "payout.teleported".into(),
            payload: payload.as_object().expect("an object").clone(),
        },
    }
}

// ---- running a case ----------------------------------------------------------------

/// Statuses seen so far, to check that none moves backwards.
#[derive(Default)]
struct Seen {
    deposits: HashMap<usize, IntentStatus>,
    withdrawals: HashMap<usize, WithdrawalState>,
}

fn withdrawal_state_rank_allows(before: WithdrawalState, after: WithdrawalState) -> bool {
    use WithdrawalState::{Known, Refused, Submitting};
    match (before, after) {
        _ if before == after => true,
        // Accepted (PENDING_REVIEW), and maybe further at once by events that waited for it.
        (Submitting, Refused | Known(_)) => true,
        (Known(a), Known(b)) => a.can_advance_to(b),
        _ => false,
    }
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

async fn run_case(database: &Database, world: World, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fresh = database.fresh().await.map_err(|e| fail(format!("a fresh database: {e:#}")))?;
    let storage = Audited::connect(&fresh.url).await.map_err(|e| fail(format!("connect: {e:#}")))?;
    let outcome = run_steps(&storage, world, ops).await;
    drop(storage);
    drop(fresh);
    outcome
}

async fn run_steps(storage: &Audited, world: World, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::new(world);
    let mut seen = Seen::default();
    for (step, op) in ops.iter().enumerate() {
        let at = |what: String| fail(format!("step {step} ({op:?}): {what}"));
        step_once(&**storage, &mut model, op).await.map_err(|e| at(format!("{e:#}")))?;
        check(storage, &model, &mut seen).await.map_err(at)?;
    }
    Ok(())
}

/// Runs one operation against the storage and the model; an error is a disagreement.
async fn step_once(storage: &dyn Storage, model: &mut Model, op: &Op) -> anyhow::Result<()> {
    match *op {
        Op::RecordDeposit(i) => {
            let (owner, requested) = model.world.intents[i];
            let deposit = NewDeposit {
                intent_id: intent_id(i),
                user_id: USERS[owner].to_owned(),
                reference_no: format!("REF{i}"),
                deposit_url: format!("https://pay.example/d/{i}"),
                requested_amount: Amount::from_minor(requested),
                amount: Amount::from_minor(requested),
                currency: "TRY".into(),
                expires_at: now() + chrono::Duration::minutes(30),
            };
            let recorded = storage.record_deposit(deposit, None).await?.value;
            anyhow::ensure!(recorded.intent_id == intent_id(i) && recorded.user_id == USERS[owner], "{recorded:?}");
            if model.deposits[i].is_none() {
                model.deposits[i] = Some(DepositModel { status: IntentStatus::Reserved, credited: None });
                model.replay_orphans(intent_id(i));
            }
        }
        Op::IntentWebhook { intent, event, amount, other_user } => {
            let event = intent_event(model, intent, event, amount, other_user);
            deliver(storage, model, event).await?;
        }
        Op::WithdrawalWebhook { withdrawal, event, other_user, amount } => {
            let event = withdrawal_event(model, withdrawal, event, other_user, amount);
            deliver(storage, model, event).await?;
        }
        Op::UnknownWebhook => {
            let event = unknown_event(model);
            deliver(storage, model, event).await?;
        }
        Op::Redeliver(k) => {
            if model.delivered.is_empty() {
                return Ok(());
            }
            let event = model.delivered[k % model.delivered.len()].clone();
            let outcome = storage.apply_webhook(&event, &event.to_body()).await?.value;
            anyhow::ensure!(outcome == InboxOutcome::Duplicate, "a redelivered eventId gave {outcome:?}");
        }
        Op::Reserve(w) => {
            let (owner, amount, balance_model) = model.world.withdrawals[w];
            let user = USERS[owner];
            let request = NewWithdrawal {
                user_id: user.to_owned(),
                idempotency_key: idempotency_key(w),
                amount: Amount::from_minor(amount),
                currency: "TRY".into(),
                iban: "TR330006100519786457841326".into(),
                holder_name: "Ayşe Yılmaz".into(),
                balance_model,
            };
            let answer = storage.reserve_withdrawal(request).await?;
            match (model.withdrawals[w], answer) {
                (Some(known), Ok(changed)) => {
                    // The same key again: the existing request, nothing reserved twice.
                    anyhow::ensure!(changed.value.local_id == known.local_id, "a repeated key made a new withdrawal");
                }
                (Some(_), Err(refused)) => anyhow::bail!("a repeated key was refused: {refused:?}"),
                (None, answer) => {
                    let balance = model.balances[user];
                    let spendable = balance.available - model.pending_final_debit(user);
                    let a = signed(amount);
                    match answer {
                        Ok(changed) if spendable >= a => {
                            let record = changed.value;
                            anyhow::ensure!(record.state == WithdrawalState::Submitting, "{record:?}");
                            anyhow::ensure!(record.balance_model == balance_model, "{record:?}");
                            model.withdrawals[w] =
                                Some(WithdrawalModel { local_id: record.local_id, state: WithdrawalState::Submitting });
                            if balance_model == BalanceModel::PreReserve {
                                let balance = model.balances.get_mut(user).expect("a user");
                                balance.available -= a;
                                balance.reserved += a;
                            }
                        }
                        Ok(changed) => {
                            anyhow::bail!("reserved {a} with only {spendable} spendable: {:?}", changed.value)
                        }
                        Err(refused) if spendable < a => anyhow::ensure!(
                            signed(refused.available.minor()) == spendable.max(0),
                            "insufficient funds reports {:?}, the model {spendable}",
                            refused.available
                        ),
                        Err(refused) => anyhow::bail!("refused {a} with {spendable} spendable: {refused:?}"),
                    }
                }
            }
        }
        Op::Accept(w) => {
            let Some(mut record) = model.withdrawals[w] else { return Ok(()) };
            let created = WithdrawalCreated {
                withdrawal_id: withdrawal_id(w),
                reference_no: format!("WREF{w}"),
                status: Some(WithdrawalStatus::PendingReview),
                amount: Some(Amount::from_minor(model.world.withdrawals[w].1)),
                currency: Some("TRY".into()),
            };
            storage.withdrawal_accepted(record.local_id, &created).await?;
            if record.state == WithdrawalState::Submitting {
                record.state = WithdrawalState::Known(WithdrawalStatus::PendingReview);
                model.withdrawals[w] = Some(record);
                model.replay_orphans(withdrawal_id(w));
            }
        }
        Op::Refuse(w) => {
            let Some(mut record) = model.withdrawals[w] else { return Ok(()) };
            storage.withdrawal_refused(record.local_id, "iban_blocked").await?;
            if record.state == WithdrawalState::Submitting {
                record.state = WithdrawalState::Refused;
                model.withdrawals[w] = Some(record);
                let (owner, amount, balance_model) = model.world.withdrawals[w];
                if balance_model == BalanceModel::PreReserve {
                    let balance = model.balances.get_mut(USERS[owner]).expect("a user");
                    balance.available += signed(amount);
                    balance.reserved -= signed(amount);
                }
            }
        }
    }
    Ok(())
}

/// A first delivery: the storage's outcome must be the model's.
async fn deliver(storage: &dyn Storage, model: &mut Model, event: WebhookEvent) -> anyhow::Result<()> {
    let outcome = storage.apply_webhook(&event, &event.to_body()).await?.value;
    anyhow::ensure!(model.seen.insert(event.event_id), "the test reused an eventId");
    let expected = model.apply(&event);
    model.delivered.push(event);
    anyhow::ensure!(outcome == expected, "outcome {outcome:?}, the model says {expected:?}");
    Ok(())
}

/// Everything the storage holds must match the model, after every step.
async fn check(storage: &Audited, model: &Model, seen: &mut Seen) -> Result<(), String> {
    let e = |e: anyhow::Error| format!("{e:#}");
    for user in USERS {
        let expected = model.balances[user];
        if expected.available < 0 || expected.reserved < 0 {
            return Err(format!("the model's balance of {user} went negative: {expected:?}"));
        }
        let stored = storage.balance(user).await.map_err(e)?;
        let stored = Balance { available: signed(stored.available.minor()), reserved: signed(stored.reserved.minor()) };
        if stored != expected {
            return Err(format!("balance of {user}: stored {stored:?}, model {expected:?}"));
        }
        let (available, reserved) = storage.ledger_sum(user).await.map_err(e)?;
        if (available, reserved) != (stored.available, stored.reserved) {
            return Err(format!("ledger of {user} sums to ({available}, {reserved}), balance is {stored:?}"));
        }
    }

    for i in 0..INTENTS {
        let stored = storage.deposit(intent_id(i)).await.map_err(e)?;
        match (stored, model.deposits[i]) {
            (None, None) => {}
            (Some(record), Some(expected)) => {
                if record.status != expected.status {
                    return Err(format!("intent {i}: stored {}, model {}", record.status, expected.status));
                }
                let credited = record.credited_amount.map(Amount::minor);
                if credited != expected.credited || credited.is_some() != (record.status == IntentStatus::Approved) {
                    return Err(format!(
                        "intent {i} ({}): credited {credited:?}, model {:?}",
                        record.status, expected.credited
                    ));
                }
                if let Some(before) = seen.deposits.insert(i, record.status) {
                    if before != record.status && !before.can_advance_to(record.status) {
                        return Err(format!("intent {i} moved back from {before} to {}", record.status));
                    }
                }
            }
            (stored, expected) => return Err(format!("intent {i}: stored {stored:?}, model {expected:?}")),
        }
    }

    for w in 0..WITHDRAWALS {
        let user = model.user_of_withdrawal(w);
        let stored = storage.withdrawal_by_key(user, &idempotency_key(w)).await.map_err(e)?;
        match (stored, model.withdrawals[w]) {
            (None, None) => {}
            (Some(record), Some(expected)) => {
                check_withdrawal(w, &record, expected)?;
                if let Some(before) = seen.withdrawals.insert(w, record.state) {
                    if !withdrawal_state_rank_allows(before, record.state) {
                        return Err(format!("withdrawal {w} moved back from {before:?} to {:?}", record.state));
                    }
                }
            }
            (stored, expected) => return Err(format!("withdrawal {w}: stored {stored:?}, model {expected:?}")),
        }
    }
    Ok(())
}

fn check_withdrawal(w: usize, record: &WithdrawalRecord, expected: WithdrawalModel) -> Result<(), String> {
    if record.local_id != expected.local_id || record.state != expected.state {
        return Err(format!("withdrawal {w}: stored {:?} {:?}, model {expected:?}", record.local_id, record.state));
    }
    let has_id = record.withdrawal_id == Some(withdrawal_id(w));
    let should = matches!(expected.state, WithdrawalState::Known(_));
    if has_id != should || (!should && record.withdrawal_id.is_some()) {
        return Err(format!("withdrawal {w} in {:?} has Pientegra id {:?}", record.state, record.withdrawal_id));
    }
    Ok(())
}

/// Runs the random search on `database`.
fn search(database: Database) {
    let cases = std::env::var("LEDGER_MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64);
    // No regression files beside the sources: a failure prints its shrunk scenario.
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 2_000, ..Config::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let mut runner = TestRunner::new(config);
    let result = runner.run(&scenario(), |(world, ops)| runtime.block_on(run_case(&database, world, ops)));
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn storage_agrees_with_the_ledger_model_after_every_step() {
    search(Database::Sqlite);
}

#[test]
fn postgres_storage_agrees_with_the_ledger_model_after_every_step() {
    if let Some(database) = Database::postgres() {
        search(database);
    }
}

/// The scenarios the random search must keep covering, spelled out.
/// Runs the spelled-out scenarios on `database`.
fn known_scenarios(database: Database) {
    use Op::*;
    let world = World {
        intents: vec![(0, 100_000), (0, 50_000), (1, 10_000), (2, 20_000)],
        withdrawals: vec![
            (0, 30_000, BalanceModel::PreReserve),
            (0, 30_000, BalanceModel::FinalDebit),
            (1, 5_000, BalanceModel::FinalDebit),
            (2, 1_000, BalanceModel::PreReserve),
        ],
    };
    let approve = |intent, amount| IntentWebhook { intent, event: IntentEvent::Approved, amount, other_user: false };
    let withdrawal = |withdrawal, event| WithdrawalWebhook { withdrawal, event, other_user: false, amount: None };
    let scenarios: Vec<Vec<Op>> = vec![
        // Approved before recorded (an orphan), then recorded; then the same event again.
        vec![approve(0, 90_000), RecordDeposit(0), Redeliver(0), RecordDeposit(0)],
        // Reordered: approved then auto-cancelled and late arrival (stale), rejected (stale).
        vec![
            RecordDeposit(1),
            approve(1, 50_000),
            IntentWebhook { intent: 1, event: IntentEvent::AutoCancelled, amount: 1, other_user: false },
            IntentWebhook { intent: 1, event: IntentEvent::Rejected, amount: 1, other_user: false },
        ],
        // Another user's name on the event: nothing moves.
        vec![
            RecordDeposit(2),
            IntentWebhook { intent: 2, event: IntentEvent::Approved, amount: 10_000, other_user: true },
        ],
        // Both models: reserve, accept, returned before sent, then sent (stale).
        vec![
            RecordDeposit(0),
            approve(0, 100_000),
            Reserve(0),
            Reserve(1),
            Reserve(0),
            Accept(0),
            Accept(1),
            withdrawal(0, WithdrawalEvent::Returned),
            withdrawal(1, WithdrawalEvent::Returned),
            withdrawal(0, WithdrawalEvent::Sent),
            withdrawal(1, WithdrawalEvent::Sent),
        ],
        // Events before the acceptance, a refusal after an acceptance (no-op), insufficient funds.
        vec![
            Reserve(2),
            RecordDeposit(2),
            approve(2, 10_000),
            Reserve(2),
            withdrawal(2, WithdrawalEvent::Sent),
            withdrawal(2, WithdrawalEvent::Approved),
            Accept(2),
            Refuse(2),
            UnknownWebhook,
            Redeliver(3),
        ],
        // A webhook amount other than the requested one: the local amount moves.
        vec![
            RecordDeposit(3),
            approve(3, 20_000),
            Reserve(3),
            Accept(3),
            WithdrawalWebhook { withdrawal: 3, event: WithdrawalEvent::Sent, other_user: false, amount: Some(999_999) },
        ],
        // A refusal releases a pre-reservation; a late acceptance changes nothing.
        vec![
            RecordDeposit(3),
            approve(3, 20_000),
            Reserve(3),
            Refuse(3),
            Accept(3),
            withdrawal(3, WithdrawalEvent::Sent),
        ],
    ];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    for (n, ops) in scenarios.into_iter().enumerate() {
        if let Err(failure) = runtime.block_on(run_case(&database, world.clone(), ops)) {
            panic!("scenario {n}: {failure}");
        }
    }
}

#[test]
fn known_scenarios_agree_with_the_model() {
    known_scenarios(Database::Sqlite);
}

#[test]
fn known_scenarios_agree_with_the_model_on_postgres() {
    if let Some(database) = Database::postgres() {
        known_scenarios(database);
    }
}

// ---- the databases -----------------------------------------------------------------

/// Where the cases of one test keep their data: each case gets a database of its own.
enum Database {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A schema on the PostgreSQL server of `PIENTEGRA_TEST_POSTGRES_URL`.
    Postgres,
}

/// One case's database.
struct Fresh {
    /// Its `DATABASE_URL`.
    url: String,
    /// The SQLite file's folder (removed when dropped).
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema (dropped when dropped).
    _schema: Option<Schema>,
}

impl Database {
    /// PostgreSQL at `PIENTEGRA_TEST_POSTGRES_URL`. Without the variable the
    /// test is skipped (`None`, with a line saying so), unless `CI=true`,
    /// where a missing database is a failure.
    fn postgres() -> Option<Database> {
        if std::env::var(POSTGRES_URL_VAR).ok().filter(|u| !u.trim().is_empty()).is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{POSTGRES_URL_VAR} must be set when CI=true: the PostgreSQL tests cannot run"
            );
            eprintln!("skipped: {POSTGRES_URL_VAR} unset");
            return None;
        }
        Some(Database::Postgres)
    }

    /// A new, empty database: a SQLite file, or a PostgreSQL schema that the
    /// returned URL puts first on the `search_path`.
    async fn fresh(&self) -> anyhow::Result<Fresh> {
        match self {
            Database::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("m.db").display());
                Ok(Fresh { url, _dir: Some(dir), _schema: None })
            }
            Database::Postgres => {
                let schema = Schema::create().await.context("a PostgreSQL schema")?;
                Ok(Fresh { url: schema.url.clone(), _dir: None, _schema: Some(schema) })
            }
        }
    }
}
