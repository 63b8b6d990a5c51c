//! The use cases: creating a deposit or a withdrawal, applying what Pientegra
//! reports, and the PGM facade's payments and refunds, whoever asks for them
//! (an HTTP handler, a background job, a reconciliation pass).
//!
//! Each answers in its own words (a `thiserror` enum per service); the HTTP
//! layer turns those into its stable error codes. Every change a use case
//! commits goes through [`Records`], which wakes the streams of the users it
//! touched after the commit, so no caller has to remember to.

mod deposits;
mod pgm;
mod records;
mod withdrawals;

pub use deposits::{DepositError, DepositRequest, Deposits};
pub use pgm::{
    LookupError, Orders, PayError, PayOutcome, PaymentOrder, Payout, PayoutFault, RefundError, RefundOrder,
    RefundOutcome,
};
pub use records::Records;
pub use withdrawals::{WithdrawalError, WithdrawalRequest, Withdrawals};

use pientegra_shared::ids::IdempotencyKey;
use uuid::Uuid;

use crate::state::AppState;

/// Namespace of the Pientegra idempotency keys the use cases derive, so a
/// retry of ours (after a crash, too) always sends Pientegra the same key.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2e_5d4a_4e8f_9a7b_0c1d_2e3f_4a5b);

/// The Pientegra key of the `kind` of request named by `scope`.
fn derived_key(kind: &str, scope: &str) -> IdempotencyKey {
    crate::pientegra::derived_key(&KEY_NAMESPACE, kind, scope)
}

impl AppState {
    /// Changes to the records, each announced after its commit.
    pub fn records(&self) -> Records<'_> {
        Records::new(self.storage.as_ref(), &self.hub)
    }

    /// Deposits, created for the users waiting for them.
    pub fn deposits(&self) -> Deposits<'_> {
        Deposits {
            records: self.records(),
            pientegra: self.pientegra.as_ref(),
            settings: &self.settings,
            framing: &self.framing,
            metrics: &self.metrics,
        }
    }

    /// Withdrawals, reserved and sent to Pientegra.
    pub fn withdrawals(&self) -> Withdrawals<'_> {
        Withdrawals {
            records: self.records(),
            pientegra: self.pientegra.as_ref(),
            metrics: &self.metrics,
            balance_model: self.settings.balance_model,
        }
    }

    /// The PGM facade's payments and refunds, when the facade is on.
    pub fn orders(&self) -> Option<Orders<'_>> {
        let facade = self.pgm.as_deref()?;
        Some(Orders { facade, deposits: self.deposits(), withdrawals: self.withdrawals() })
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    /// A key that changed between releases would let a retry across an
    /// upgrade create a second deposit or withdrawal at Pientegra.
    #[test]
    fn derived_keys_never_change() {
        let withdrawal = derived_key("withdrawal", &Uuid::nil().to_string());
        assert_eq!(withdrawal.to_string(), "dd587f2e-8a56-5d72-b389-9fe29f904e16");
        let deposit = derived_key("deposit", "ayse:00000000-0000-0000-0000-000000000001");
        assert_eq!(deposit.to_string(), "1ef4a636-c303-565f-b3ce-64465f0ae441");
    }
}
