//! The users' views of stored records. They live with storage because storage
//! writes them: each change appends the events that announce it (a view, as
//! JSON) to the user's stream in the same transaction, and creating a deposit
//! stores the answer to the request ([`DepositRecord::reply_body`]) with it.
//! The HTTP layer serves the same views, so what a stream replays and what a
//! read returns cannot drift apart.

use pientegra_shared::api::{self, UserEvent};

use super::{BalanceRow, DepositRecord, WithdrawalRecord, WithdrawalState};

impl DepositRecord {
    /// The user's view.
    pub fn view(&self) -> api::Deposit {
        api::Deposit {
            intent_id: self.intent_id,
            reference_no: self.reference_no.clone(),
            deposit_url: self.deposit_url.clone(),
            requested_amount: self.requested_amount,
            amount: self.credited_amount.unwrap_or(self.amount),
            currency: self.currency.clone(),
            expires_at: self.expires_at,
            status: self.status,
            rejected_reason: self.rejected_reason.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            framing: None,
        }
    }

    /// The body of the answer to the request that created it: the user's view
    /// as JSON, with what the asking page may do with `depositUrl`.
    pub fn reply_body(&self, framing: Option<api::Framing>) -> String {
        serde_json::to_string(&api::Deposit { framing, ..self.view() }).expect("views serialize")
    }
}

impl WithdrawalRecord {
    /// The user's view, once Pientegra knows the withdrawal.
    pub fn view(&self) -> Option<api::Withdrawal> {
        let (WithdrawalState::Known(status), Some(withdrawal_id)) = (self.state, self.withdrawal_id) else {
            return None;
        };
        Some(api::Withdrawal {
            withdrawal_id,
            reference_no: self.reference_no.clone().unwrap_or_default(),
            amount: self.amount,
            currency: self.currency.clone(),
            status,
            iban_masked: api::mask_iban(&self.iban),
            holder_name: self.holder_name.clone(),
            rejected_reason: self.rejected_reason.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl BalanceRow {
    /// The user's view.
    pub fn view(self) -> api::Balance {
        api::Balance {
            available: self.available,
            reserved: self.reserved,
            currency: pientegra_shared::wire::DEFAULT_CURRENCY.to_owned(),
        }
    }
}

/// The stream event that announces a balance.
pub fn balance_event(balance: BalanceRow) -> UserEvent {
    UserEvent::Balance(balance.view())
}
