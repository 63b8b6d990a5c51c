//! Reconciliation: the safety net under the webhooks.
//!
//! A pass walks every intent and withdrawal Pientegra lists in a time window,
//! compares each with the local record, and (with `apply`) feeds a missed
//! transition through the same idempotent path as a webhook, under a
//! deterministic event id: so a second pass, or the real webhook arriving
//! late, changes nothing. Amount mismatches are flagged, never corrected.
//! Then DEAD and FAILED deliveries are replayed.
//!
//! A local record may belong to a PGM order's ledger account
//! (`ledger::order_account`) rather than to a wallet: the made-up events name
//! the user Pientegra knows that account by (the order's customer), as
//! Pientegra's own webhooks do, so they move the order's money and never the
//! customer's wallet. An intent missing locally is recorded under Pientegra's
//! `externalUserId`; should it be a PGM payment caught between its creation
//! and its recording, the facade refuses to offer it for payment.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use pientegra_shared::event::{
    EventKind, IntentEvent, IntentSnapshot, WebhookEvent, WithdrawalEvent, WithdrawalSnapshot,
};
use pientegra_shared::wire::{EventsQuery, Intent, ListQuery, Withdrawal};
use serde::Serialize;
use uuid::Uuid;

use crate::ledger;
use crate::pientegra::{self, PientegraApi, PientegraError};
use crate::service::Records;
use crate::sse::Hub;
use crate::storage::{DepositRecord, InboxOutcome, NewDeposit, Storage, WithdrawalRecord, WithdrawalState};

/// Namespace of the event ids reconciliation makes up for missed transitions.
const RECONCILE_NAMESPACE: Uuid = Uuid::from_u128(0x2d8e_61f0_7c4b_4a39_b5e2_93c1_0f6a_7d18);

/// What a pass found about one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Pientegra has it; this server does not.
    MissingLocally,
    /// Pientegra's status is ahead of ours.
    StatusBehind,
    /// The credited or requested amount differs from Pientegra's: flagged only.
    AmountMismatch,
    /// This server has it; Pientegra does not.
    UnknownToPientegra,
}

impl Category {
    const ALL: [Category; 4] =
        [Category::MissingLocally, Category::StatusBehind, Category::AmountMismatch, Category::UnknownToPientegra];

    fn label(self) -> &'static str {
        match self {
            Category::MissingLocally => "missing locally",
            Category::StatusBehind => "status behind",
            Category::AmountMismatch => "amount mismatch",
            Category::UnknownToPientegra => "unknown to Pientegra",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub category: Category,
    /// `intent` or `withdrawal`.
    pub kind: &'static str,
    pub id: Uuid,
    pub local: Option<String>,
    pub pientegra: Option<String>,
    /// Whether this pass changed local state for it.
    pub applied: bool,
}

/// The result of a pass.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(with = "pientegra_shared::time::millis")]
    pub from: DateTime<Utc>,
    #[serde(with = "pientegra_shared::time::millis")]
    pub to: DateTime<Utc>,
    pub apply: bool,
    pub intents_checked: usize,
    pub withdrawals_checked: usize,
    pub findings: Vec<Finding>,
    pub events_replayed: usize,
    pub replay_failures: usize,
}

impl Report {
    /// Findings of one category.
    pub fn count(&self, category: Category) -> usize {
        self.findings.iter().filter(|f| f.category == category).count()
    }

    /// Findings this pass applied.
    pub fn applied(&self) -> usize {
        self.findings.iter().filter(|f| f.applied).count()
    }

    /// A human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mode = if self.apply { "apply" } else { "report only" };
        let _ = writeln!(
            out,
            "reconciliation {} .. {} ({mode})",
            pientegra_shared::time::format(&self.from),
            pientegra_shared::time::format(&self.to)
        );
        let _ = writeln!(out, "  {:<24}{:>8}", "intents checked", self.intents_checked);
        let _ = writeln!(out, "  {:<24}{:>8}", "withdrawals checked", self.withdrawals_checked);
        for category in Category::ALL {
            let applied = self.findings.iter().filter(|f| f.category == category && f.applied).count();
            let _ = writeln!(out, "  {:<24}{:>8}   applied {applied}", category.label(), self.count(category));
        }
        let _ =
            writeln!(out, "  {:<24}{:>8}   failed {}", "events replayed", self.events_replayed, self.replay_failures);
        for f in &self.findings {
            let _ = writeln!(
                out,
                "  - {:<22} {:<10} {}  local={} pientegra={}{}",
                f.category.label(),
                f.kind,
                f.id,
                f.local.as_deref().unwrap_or("-"),
                f.pientegra.as_deref().unwrap_or("-"),
                if f.applied { "  (applied)" } else { "" }
            );
        }
        out
    }
}

/// The parts a pass needs: what it applies wakes the streams of `hub`.
pub struct Reconciler<'a> {
    pub storage: &'a dyn Storage,
    pub pientegra: &'a dyn PientegraApi,
    pub hub: &'a Hub,
}

impl<'a> Reconciler<'a> {
    /// Changes to the records, each announced to the users' streams.
    fn records(&self) -> Records<'a> {
        Records::new(self.storage, self.hub)
    }

    /// One pass over `[from, to)`.
    pub async fn run(&self, from: DateTime<Utc>, to: DateTime<Utc>, apply: bool) -> anyhow::Result<Report> {
        let mut report = Report {
            from,
            to,
            apply,
            intents_checked: 0,
            withdrawals_checked: 0,
            findings: vec![],
            events_replayed: 0,
            replay_failures: 0,
        };
        let window =
            ListQuery { created_from: Some(from), created_to: Some(to), limit: Some(100), ..ListQuery::default() };

        let intents: Vec<Intent> = pientegra::all_intents(self.pientegra, window.clone()).try_collect().await?;
        report.intents_checked = intents.len();
        let seen: HashSet<Uuid> = intents.iter().map(|i| i.intent_id).collect();
        // The window's local records in one query, not one lookup per intent.
        let locals = self.storage.deposits_created_between(from, to).await?;
        let by_id: HashMap<Uuid, &DepositRecord> = locals.iter().map(|d| (d.intent_id, d)).collect();
        for intent in &intents {
            self.check_intent(intent, by_id.get(&intent.intent_id).copied(), apply, &mut report).await?;
        }
        for local in &locals {
            if seen.contains(&local.intent_id) {
                continue;
            }
            // Timestamps differ a little on both sides: ask before calling it unknown.
            match self.pientegra.get_intent(local.intent_id).await {
                Ok(intent) => self.check_intent(&intent, None, apply, &mut report).await?,
                Err(PientegraError::NotFound) => report.findings.push(Finding {
                    category: Category::UnknownToPientegra,
                    kind: "intent",
                    id: local.intent_id,
                    local: Some(local.status.to_string()),
                    pientegra: None,
                    applied: false,
                }),
                Err(err) => return Err(err.into()),
            }
        }

        let withdrawals: Vec<Withdrawal> = pientegra::all_withdrawals(self.pientegra, window).try_collect().await?;
        report.withdrawals_checked = withdrawals.len();
        let seen: HashSet<Uuid> = withdrawals.iter().map(|w| w.withdrawal_id).collect();
        let locals = self.storage.withdrawals_created_between(from, to).await?;
        let by_id: HashMap<Uuid, &WithdrawalRecord> =
            locals.iter().filter_map(|w| Some((w.withdrawal_id?, w))).collect();
        for withdrawal in &withdrawals {
            self.check_withdrawal(withdrawal, by_id.get(&withdrawal.withdrawal_id).copied(), apply, &mut report)
                .await?;
        }
        for local in &locals {
            let Some(id) = local.withdrawal_id.filter(|id| !seen.contains(id)) else { continue };
            match self.pientegra.get_withdrawal(id).await {
                Ok(w) => self.check_withdrawal(&w, None, apply, &mut report).await?,
                Err(PientegraError::NotFound) => report.findings.push(Finding {
                    category: Category::UnknownToPientegra,
                    kind: "withdrawal",
                    id,
                    local: Some(local.state.as_str().to_owned()),
                    pientegra: None,
                    applied: false,
                }),
                Err(err) => return Err(err.into()),
            }
        }

        if apply {
            self.replay_failed_events(from, to, &mut report).await?;
        }
        Ok(report)
    }

    /// Compares one intent with its local record; `listed` is that record as read
    /// with the whole window, if it was.
    async fn check_intent(
        &self,
        remote: &Intent,
        listed: Option<&DepositRecord>,
        apply: bool,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        // A listed record that is up to date is used as is; one that looks behind
        // is read again, as a webhook may have moved it since the window was read.
        let mut local = match listed {
            Some(deposit) if !deposit.status.can_advance_to(remote.status) => Some(Cow::Borrowed(deposit)),
            _ => self.storage.deposit(remote.intent_id).await?.map(Cow::Owned),
        };
        let mut finding = Finding {
            category: Category::StatusBehind,
            kind: "intent",
            id: remote.intent_id,
            local: local.as_ref().map(|d| d.status.to_string()),
            pientegra: Some(remote.status.to_string()),
            applied: false,
        };
        if local.is_none() {
            finding.category = Category::MissingLocally;
            if apply {
                if let Some(user_id) = remote.external_user_id.clone() {
                    let recorded = self
                        .records()
                        .record_deposit(
                            NewDeposit {
                                intent_id: remote.intent_id,
                                user_id,
                                reference_no: remote.reference_no.clone(),
                                // The listing carries no depositUrl; the user was never sent one by us.
                                deposit_url: String::new(),
                                requested_amount: remote.requested_amount,
                                amount: remote.amount,
                                currency: remote.currency.clone(),
                                expires_at: remote.expires_at.or(remote.created_at).unwrap_or_else(Utc::now),
                            },
                            None,
                        )
                        .await?;
                    finding.applied = true;
                    local = Some(Cow::Owned(recorded));
                }
            }
        }
        let Some(deposit) = local else {
            report.findings.push(finding);
            return Ok(());
        };
        if deposit.status.can_advance_to(remote.status) {
            if apply && remote.status == pientegra_shared::status::IntentStatus::PendingReview {
                // No event exists for it and no money moves: record the status only.
                finding.applied |= self.records().note_under_review(remote.intent_id).await?;
            } else if apply {
                if let Some(event) = IntentEvent::for_status(remote.status) {
                    let snapshot = IntentSnapshot {
                        id: remote.intent_id,
                        reference_no: remote.reference_no.clone(),
                        external_user_id: ledger::pientegra_user(&deposit.user_id).to_owned(),
                        requested_amount: remote.requested_amount,
                        amount: remote.amount,
                        currency: remote.currency.clone(),
                        status: remote.status,
                        rejected_reason: remote.rejected_reason.clone(),
                    };
                    let key = format!("intent:{}:{}", remote.intent_id, remote.status);
                    finding.applied |= self.apply(&key, EventKind::Intent { event, intent: snapshot }).await?;
                }
            }
            report.findings.push(finding);
        } else if finding.category == Category::MissingLocally {
            report.findings.push(finding);
        }
        let credited = deposit.credited_amount;
        if remote.status == pientegra_shared::status::IntentStatus::Approved
            && credited.is_some_and(|c| c != remote.amount)
        {
            report.findings.push(Finding {
                category: Category::AmountMismatch,
                kind: "intent",
                id: remote.intent_id,
                local: credited.map(|c| c.to_string()),
                pientegra: Some(remote.amount.to_string()),
                applied: false,
            });
        }
        Ok(())
    }

    /// Compares one withdrawal with its local record; `listed` as for [`Self::check_intent`].
    async fn check_withdrawal(
        &self,
        remote: &Withdrawal,
        listed: Option<&WithdrawalRecord>,
        apply: bool,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let up_to_date = |w: &WithdrawalRecord| match w.state {
            WithdrawalState::Known(current) => !current.can_advance_to(remote.status),
            _ => false,
        };
        let local = match listed {
            Some(withdrawal) if up_to_date(withdrawal) => Some(Cow::Borrowed(withdrawal)),
            _ => self.storage.withdrawal(remote.withdrawal_id).await?.map(Cow::Owned),
        };
        let Some(local) = local else {
            // Requests whose answer was lost are settled by resubmission, which attaches the id.
            report.findings.push(Finding {
                category: Category::MissingLocally,
                kind: "withdrawal",
                id: remote.withdrawal_id,
                local: None,
                pientegra: Some(remote.status.to_string()),
                applied: false,
            });
            return Ok(());
        };
        if local.amount != remote.amount {
            report.findings.push(Finding {
                category: Category::AmountMismatch,
                kind: "withdrawal",
                id: remote.withdrawal_id,
                local: Some(local.amount.to_string()),
                pientegra: Some(remote.amount.to_string()),
                applied: false,
            });
        }
        let WithdrawalState::Known(current) = local.state else { return Ok(()) };
        if !current.can_advance_to(remote.status) {
            return Ok(());
        }
        let mut finding = Finding {
            category: Category::StatusBehind,
            kind: "withdrawal",
            id: remote.withdrawal_id,
            local: Some(current.to_string()),
            pientegra: Some(remote.status.to_string()),
            applied: false,
        };
        if apply {
            if let Some(event) = WithdrawalEvent::for_status(remote.status) {
                let snapshot = WithdrawalSnapshot {
                    id: remote.withdrawal_id,
                    reference_no: remote.reference_no.clone(),
                    external_user_id: ledger::pientegra_user(&local.user_id).to_owned(),
                    amount: remote.amount,
                    currency: remote.currency.clone(),
                    status: remote.status,
                    rejected_reason: remote.rejected_reason.clone(),
                };
                let key = format!("withdrawal:{}:{}", remote.withdrawal_id, remote.status);
                finding.applied = self.apply(&key, EventKind::Withdrawal { event, withdrawal: snapshot }).await?;
            }
        }
        report.findings.push(finding);
        Ok(())
    }

    /// Runs a made-up event through the webhook path; its id is derived from
    /// `key`, so applying the same transition twice is a duplicate.
    async fn apply(&self, key: &str, kind: EventKind) -> anyhow::Result<bool> {
        let event = WebhookEvent {
            event_id: Uuid::new_v5(&RECONCILE_NAMESPACE, key.as_bytes()),
            occurred_at: Utc::now(),
            kind,
        };
        Ok(self.records().apply_event(&event, &event.to_body()).await? == InboxOutcome::Applied)
    }

    async fn replay_failed_events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let query = EventsQuery {
            created_from: Some(from),
            created_to: Some(to),
            delivery_status: Some("DEAD,FAILED".into()),
            limit: Some(100),
            ..EventsQuery::default()
        };
        let failed: Vec<_> = pientegra::all_events(self.pientegra, query).try_collect().await?;
        for event in failed {
            match self.pientegra.replay_event(event.event_id).await {
                Ok(_) => report.events_replayed += 1,
                Err(err) => {
                    tracing::warn!(event_id = %event.event_id, error = %err, "replay failed");
                    report.replay_failures += 1;
                }
            }
        }
        Ok(())
    }
}
