//! Intents and withdrawals as the sandbox keeps them, and their wire shapes.

use pientegra_shared::Amount;
use pientegra_shared::event::{IntentSnapshot, WithdrawalSnapshot};
use pientegra_shared::ids::{ExternalUserId, HolderName, UserLabel};
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use pientegra_shared::time::Timestamp;
use pientegra_shared::wire;
use tokio::time::Instant;
use uuid::Uuid;

use super::table::{Key, Row};
use crate::accounts::Account;

/// A deposit intent and what the sandbox knows about it.
#[derive(Clone, Debug)]
pub struct IntentRecord {
    pub id: Uuid,
    pub reference_no: String,
    pub external_user_id: ExternalUserId,
    pub external_user_label: Option<UserLabel>,
    pub requested_amount: Amount,
    pub amount: Amount,
    pub currency: String,
    pub status: IntentStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub approved_at: Option<Timestamp>,
    pub rejected_at: Option<Timestamp>,
    pub rejected_reason: Option<String>,
    pub deposit_url: String,
    /// The receiving account, held until the intent ends.
    pub account: Account,
    pub(super) account_index: Option<usize>,
    /// When auto-review acts on it next.
    pub(super) auto_due: Option<Instant>,
}

impl Row for IntentRecord {
    fn key(&self) -> Key {
        (self.created_at, self.id)
    }
}

impl IntentRecord {
    /// The lookup and listing shape.
    pub fn to_wire(&self) -> wire::Intent {
        wire::Intent {
            intent_id: self.id,
            reference_no: self.reference_no.clone(),
            status: self.status,
            requested_amount: self.requested_amount,
            amount: self.amount,
            currency: self.currency.clone(),
            approved_at: self.approved_at,
            rejected_at: self.rejected_at,
            rejected_reason: self.rejected_reason.clone(),
            external_user_id: Some(self.external_user_id.to_string()),
            created_at: Some(self.created_at),
            expires_at: Some(self.expires_at),
        }
    }

    pub(super) fn snapshot(&self) -> IntentSnapshot {
        IntentSnapshot {
            id: self.id,
            reference_no: self.reference_no.clone(),
            external_user_id: self.external_user_id.to_string(),
            requested_amount: self.requested_amount,
            amount: self.amount,
            currency: self.currency.clone(),
            status: self.status,
            rejected_reason: self.rejected_reason.clone(),
        }
    }
}

/// A withdrawal (payout) and what the sandbox knows about it.
#[derive(Clone, Debug)]
pub struct WithdrawalRecord {
    pub id: Uuid,
    pub reference_no: String,
    pub external_user_id: ExternalUserId,
    pub external_user_label: Option<UserLabel>,
    pub amount: Amount,
    pub currency: String,
    pub target_iban: String,
    pub target_holder_name: HolderName,
    pub status: WithdrawalStatus,
    pub created_at: Timestamp,
    pub approved_at: Option<Timestamp>,
    pub sent_at: Option<Timestamp>,
    pub rejected_at: Option<Timestamp>,
    pub returned_at: Option<Timestamp>,
    pub rejected_reason: Option<String>,
    /// When auto-review acts on it next (approve, then send).
    pub(super) auto_due: Option<Instant>,
}

impl Row for WithdrawalRecord {
    fn key(&self) -> Key {
        (self.created_at, self.id)
    }
}

impl WithdrawalRecord {
    /// The lookup and listing shape.
    pub fn to_wire(&self) -> wire::Withdrawal {
        wire::Withdrawal {
            withdrawal_id: self.id,
            reference_no: self.reference_no.clone(),
            status: self.status,
            amount: self.amount,
            currency: self.currency.clone(),
            external_user_id: Some(self.external_user_id.to_string()),
            created_at: Some(self.created_at),
            sent_at: self.sent_at,
            rejected_at: self.rejected_at,
            returned_at: self.returned_at,
            rejected_reason: self.rejected_reason.clone(),
        }
    }

    pub(super) fn snapshot(&self) -> WithdrawalSnapshot {
        WithdrawalSnapshot {
            id: self.id,
            reference_no: self.reference_no.clone(),
            external_user_id: self.external_user_id.to_string(),
            amount: self.amount,
            currency: self.currency.clone(),
            status: self.status,
            rejected_reason: self.rejected_reason.clone(),
        }
    }
}

/// What a new deposit needs, validated.
#[derive(Clone, Debug)]
pub struct NewIntent {
    pub external_user_id: ExternalUserId,
    pub external_user_label: Option<UserLabel>,
    pub amount: Amount,
    pub currency: String,
}

/// What a new withdrawal needs, validated.
#[derive(Clone, Debug)]
pub struct NewWithdrawal {
    pub external_user_id: ExternalUserId,
    pub external_user_label: Option<UserLabel>,
    pub amount: Amount,
    pub currency: String,
    pub target_iban: String,
    pub target_holder_name: HolderName,
}
