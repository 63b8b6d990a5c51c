//! The widgets and their parts. Each takes its inputs as props; the shared
//! account state comes from [`crate::hooks::use_event_source`].

mod activity;
mod amount_field;
mod balance;
mod deposit;
mod deposit_status;
mod event_log;
mod withdrawal;

use std::sync::atomic::{AtomicU32, Ordering};

use pientegra_shared::{Amount, Locale};

pub use activity::Activity;
pub use balance::BalanceCard;
pub use deposit::DepositWidget;
pub use event_log::EventLog;
pub use withdrawal::WithdrawalForm;

/// A page-unique element id, so several widgets can sit on one page and
/// still pair every label with its input.
fn unique_id(stem: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("pk{}-{stem}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What the user typed, in major units, as an exact amount within the payment range.
/// The error is the stable code [`crate::i18n::amount_error`] explains.
fn check_amount(input: &str, locale: Locale) -> Result<Amount, &'static str> {
    Amount::parse_input(input, locale).map_err(|e| e.code())?.check_range().map_err(|e| e.code())
}

/// `"1.500 ₺"` / `"₺1,500"`: whole amounts without the `,00`, for buttons.
fn short_amount(amount: Amount, locale: Locale) -> String {
    let full = amount.format(locale);
    if amount.minor() % 100 != 0 {
        return full;
    }
    let zeros = format!("{}00", locale.decimal_separator());
    full.replacen(&zeros, "", 1)
}
