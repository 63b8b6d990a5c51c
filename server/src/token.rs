//! Widget tokens and stream tickets. They live in `pientegra_shared::token`
//! (pure, so the fuzz targets reach them without the server's dependencies);
//! which users a token may name is the server's rule, kept here.

use pientegra_shared::ids::ExternalUserId;
pub use pientegra_shared::token::{
    AUDIENCE, CLOCK_SKEW, Claims, DEFAULT_MAX_LIFETIME, TICKET_TTL, Ticket, TicketClaims, TicketKey, TokenError,
    TokenKey, looks_like_ticket,
};
use secrecy::SecretString;

/// The key of `WIDGET_TOKEN_SECRET`'s secrets (newest first, never empty)
/// and `WIDGET_TOKEN_MAX_LIFETIME`.
pub fn key(secrets: &[SecretString], max_lifetime: std::time::Duration) -> TokenKey {
    let (newest, older) = secrets.split_first().expect("the settings hold at least one secret");
    TokenKey::new(newest.clone())
        .with_previous(older.iter().cloned())
        .with_max_lifetime(chrono::TimeDelta::from_std(max_lifetime).unwrap_or(chrono::TimeDelta::MAX))
}

/// A token's user is a ledger account no widget may speak for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("names a reserved ledger account, not a user")]
pub struct ReservedUser;

/// Whether a widget token may speak for `user`: any `externalUserId` except
/// the ledger accounts of PGM orders (`pgm-order:...`), whose money is the
/// shop's to refund and never the customer's to withdraw. Checked wherever a
/// token is minted or verified.
pub fn may_name(user: &ExternalUserId) -> Result<(), ReservedUser> {
    if crate::ledger::is_order_account(user.as_str()) { Err(ReservedUser) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_speaks_for_the_account_of_a_pgm_order() {
        let account = crate::ledger::order_account(uuid::Uuid::new_v4(), "user-1");
        // The account's own name, and anything else under its prefix.
        for sub in [account.as_str(), "pgm-order:x", " pgm-order:x "] {
            let user = ExternalUserId::parse(sub).unwrap();
            assert_eq!(may_name(&user), Err(ReservedUser), "{sub}");
        }
        // Names that only look alike are ordinary users.
        for sub in ["pgm-order", "PGM-ORDER:x", "user pgm-order:x"] {
            assert_eq!(may_name(&ExternalUserId::parse(sub).unwrap()), Ok(()), "{sub}");
        }
    }
}
