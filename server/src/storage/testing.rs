//! What the storage tests of both databases share: events as Pientegra
//! sends them, and checks that hold for any [`Storage`].

use std::future::Future;

use chrono::Utc;
use pientegra_shared::Amount;
use pientegra_shared::api::UserEvent;
use pientegra_shared::event::{
    EventKind, IntentEvent, IntentSnapshot, WebhookEvent, WithdrawalEvent, WithdrawalSnapshot,
};
use pientegra_shared::status::IntentStatus;
use pientegra_shared::wire::WithdrawalCreated;
use uuid::Uuid;

use super::{Audit, BalanceRow, Changed, InboxOutcome, NewDeposit, NewWithdrawal, Result, Storage};
use crate::ledger::BalanceModel;

pub fn approved(intent_id: Uuid) -> WebhookEvent {
    approved_for(intent_id, 1_000)
}

pub fn approved_for(intent_id: Uuid, minor: u64) -> WebhookEvent {
    WebhookEvent {
        event_id: Uuid::now_v7(),
        occurred_at: Utc::now(),
        kind: EventKind::Intent {
            event: IntentEvent::Approved,
            intent: IntentSnapshot {
                id: intent_id,
                reference_no: "REF".into(),
                external_user_id: "u".into(),
                requested_amount: Amount::from_minor(minor),
                amount: Amount::from_minor(minor),
                currency: "TRY".into(),
                status: IntentStatus::Approved,
                rejected_reason: None,
            },
        },
    }
}

pub fn withdrawal(event: WithdrawalEvent, withdrawal_id: Uuid, minor: u64) -> WebhookEvent {
    WebhookEvent {
        event_id: Uuid::now_v7(),
        occurred_at: Utc::now(),
        kind: EventKind::Withdrawal {
            event,
            withdrawal: WithdrawalSnapshot {
                id: withdrawal_id,
                reference_no: "W-REF".into(),
                external_user_id: "u".into(),
                amount: Amount::from_minor(minor),
                currency: "TRY".into(),
                status: event.status(),
                rejected_reason: None,
            },
        },
    }
}

/// Records a RESERVED deposit of user `u`; returns its intent id.
pub async fn record_deposit(storage: &dyn Storage, minor: u64) -> Uuid {
    let intent_id = Uuid::new_v4();
    record_deposit_of(storage, intent_id, minor).await;
    intent_id
}

/// Records a RESERVED deposit of user `u` for `intent_id`.
pub async fn record_deposit_of(storage: &dyn Storage, intent_id: Uuid, minor: u64) {
    let deposit = NewDeposit {
        intent_id,
        user_id: "u".into(),
        reference_no: "REF".into(),
        deposit_url: String::new(),
        requested_amount: Amount::from_minor(minor),
        amount: Amount::from_minor(minor),
        currency: "TRY".into(),
        expires_at: Utc::now(),
    };
    storage.record_deposit(deposit, None).await.unwrap();
}

/// Events about the same deposit or withdrawal in one batch each see what
/// the ones before them did: money moves once, in order, and the stream
/// tells it in that order. `one_batch` applies its events as one batch.
pub async fn events_in_one_batch_see_the_ones_before_them<S, F, Fut>(storage: &S, one_batch: F)
where
    S: Storage + Audit,
    F: FnOnce(Vec<WebhookEvent>) -> Fut,
    Fut: Future<Output = Vec<Result<Changed<InboxOutcome>>>>,
{
    let funding = record_deposit(storage, 5_000).await;
    storage.apply_webhook(&approved_for(funding, 5_000), b"{}").await.unwrap();
    let request = NewWithdrawal {
        user_id: "u".into(),
        idempotency_key: "w-1".into(),
        amount: Amount::from_minor(2_000),
        currency: "TRY".into(),
        iban: "TR330006100519786457841326".into(),
        holder_name: "U".into(),
        balance_model: BalanceModel::PreReserve,
    };
    let reserved = storage.reserve_withdrawal(request).await.unwrap().unwrap().value;
    let withdrawal_id = Uuid::new_v4();
    let created =
        WithdrawalCreated { withdrawal_id, reference_no: "W-REF".into(), status: None, amount: None, currency: None };
    storage.withdrawal_accepted(reserved.local_id, &created).await.unwrap();
    let deposit = record_deposit(storage, 1_000).await;
    let seq_before = storage.last_event_seq("u").await.unwrap();

    let outcomes: Vec<InboxOutcome> = one_batch(vec![
        approved(deposit),
        approved(deposit),
        withdrawal(WithdrawalEvent::Sent, withdrawal_id, 2_000),
        withdrawal(WithdrawalEvent::Returned, withdrawal_id, 2_000),
        withdrawal(WithdrawalEvent::Sent, withdrawal_id, 2_000),
    ])
    .await
    .into_iter()
    .map(|outcome| outcome.unwrap().value)
    .collect();

    use InboxOutcome::{Applied, Stale};
    assert_eq!(outcomes, [Applied, Stale, Applied, Applied, Stale]);
    let balance = storage.balance("u").await.unwrap();
    let expected = BalanceRow { available: Amount::from_minor(6_000), reserved: Amount::ZERO };
    assert_eq!(balance, expected);
    assert_eq!(storage.ledger_sum("u").await.unwrap(), (6_000, 0));
    let events = storage.events_after("u", seq_before, 100).await.unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let (deposit, withdrawal, balance) =
        (UserEvent::DEPOSIT_UPDATED, UserEvent::WITHDRAWAL_UPDATED, UserEvent::BALANCE_UPDATED);
    assert_eq!(names, [deposit, balance, withdrawal, balance, withdrawal, balance]);
    // The balance events count the money as it moved: 4,000 after the credit, 4,000
    // after SENT (the reservation goes), 6,000 after RETURNED.
    let available: Vec<&str> = events.iter().filter(|e| e.name == balance).map(|e| e.data.as_str()).collect();
    assert!(available[0].contains("\"available\":\"4000\""), "{available:?}");
    assert!(available[2].contains("\"available\":\"6000\""), "{available:?}");
}

/// A deposit is recorded with its answer and its event on the user's
/// stream: as returned, as read back, as answered again on a replay; once,
/// however often it is recorded; and when a webhook about it came first, the
/// stored answer is the deposit that webhook moved on.
pub async fn a_recorded_deposit_is_stored_with_its_event_and_its_answer(storage: &dyn Storage) {
    use super::{DepositReply, IdempotencyClaim, IdempotencyScope, Reply};
    use pientegra_shared::api::Framing;

    let recorded = |intent_id: Uuid, key: &'static str| {
        let deposit = NewDeposit {
            intent_id,
            user_id: "u".into(),
            reference_no: "REF".into(),
            deposit_url: "https://pay.example/d".into(),
            requested_amount: Amount::from_minor(2_500),
            amount: Amount::from_minor(2_500),
            currency: "TRY".into(),
            expires_at: Utc::now(),
        };
        async move {
            let scope = IdempotencyScope { user_id: "u", route: "deposits", key };
            assert_eq!(storage.claim_idempotency(&scope, "hash", 60_000).await.unwrap(), IdempotencyClaim::Claimed);
            let reply = DepositReply {
                reply: Reply { scope: &scope, request_hash: "hash", status: 201 },
                framing: Some(Framing::ALLOWED),
            };
            let first = storage.record_deposit(deposit.clone(), Some(&reply)).await.unwrap();
            let again = storage.record_deposit(deposit, Some(&reply)).await.unwrap();
            assert_eq!(again.value, first.value, "recorded twice, it is one deposit");
            assert!(again.touched.is_empty(), "a second record appends nothing");
            // As the request's handler does once the work kept its answer.
            storage.settle_idempotency(&scope).await.unwrap();
            let answered = storage.claim_idempotency(&scope, "hash", 60_000).await.unwrap();
            (first, answered)
        }
    };

    let intent_id = Uuid::new_v4();
    let (first, answered) = recorded(intent_id, "k1").await;
    assert_eq!(first.value.status, IntentStatus::Reserved);
    assert_eq!(first.touched, ["u"]);
    assert_eq!(storage.deposit(intent_id).await.unwrap().as_ref(), Some(&first.value), "as returned, as read back");
    let body = first.value.reply_body(Some(Framing::ALLOWED));
    assert_eq!(answered, IdempotencyClaim::Done { status: 201, body });
    let events = storage.events_after("u", 0, 10).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = UserEvent::Deposit(first.value.view());
    assert_eq!((events[0].seq, events[0].name.as_str(), events[0].data.clone()), (1, event.name(), event.data()));

    // Approved before it was recorded: the answer tells the approval.
    let early = Uuid::new_v4();
    let approval = approved_for(early, 2_500);
    storage.apply_webhook(&approval, &approval.to_body()).await.unwrap();
    let (moved_on, answered) = recorded(early, "k2").await;
    assert_eq!(moved_on.value.status, IntentStatus::Approved);
    let body = moved_on.value.reply_body(Some(Framing::ALLOWED));
    assert_eq!(answered, IdempotencyClaim::Done { status: 201, body });
    let names: Vec<String> = storage.events_after("u", 1, 10).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(
        names.first().map(String::as_str),
        Some("deposit.updated"),
        "the deposit's own event comes first: {names:?}"
    );
    assert!(names.len() > 1, "the approval's events follow: {names:?}");
}
