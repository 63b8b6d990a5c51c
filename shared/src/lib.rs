//! Wire types, money, signatures, widget tokens and IBANs shared by every part of the
//! Pientegra kit. Pure: no I/O, no clock; compiles for the host and for
//! `wasm32-unknown-unknown` (the `token` feature, host only, adds widget tokens).

pub mod amount;
pub mod api;
pub mod event;
pub mod iban;
pub mod ids;
pub mod signature;
pub mod status;
pub mod time;
#[cfg(feature = "token")]
pub mod token;
pub mod wire;

pub use amount::{Amount, Locale};
pub use iban::Iban;
