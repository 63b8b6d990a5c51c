//! The pool of receiving accounts a deposit reserves: one account serves one
//! open intent at a time, which is how a real provider tells transfers apart.

use std::collections::VecDeque;

/// A receiving bank account the user transfers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account holder shown on the hosted page.
    pub holder: String,
    /// A valid Turkish IBAN, 26 characters, no spaces.
    pub iban: String,
}

/// Holder names cycled through the pool (plausible, invented).
const HOLDERS: [&str; 8] = [
    "Pientegra Ödeme Hizmetleri A.Ş.",
    "Ayşe Demir",
    "Mehmet Kaya",
    "Zeynep Çelik",
    "Emre Şahin",
    "Elif Yıldız",
    "Burak Öztürk",
    "Selin Aydın",
];

/// Bank codes (5 digits) of the generated IBANs.
const BANKS: [&str; 4] = ["00010", "00062", "00064", "00046"];

/// A fixed set of accounts, each free or reserved by exactly one intent.
#[derive(Debug)]
pub struct AccountPool {
    accounts: Vec<Account>,
    /// Free accounts, oldest released first, so the same account is not handed
    /// straight back out (easier to tell intents apart in a demo).
    free: VecDeque<usize>,
}

impl AccountPool {
    /// `size` deterministic accounts, all free.
    pub fn new(size: usize) -> AccountPool {
        let accounts = (0..size)
            .map(|i| Account {
                holder: HOLDERS[i % HOLDERS.len()].to_owned(),
                iban: turkish_iban(BANKS[i % BANKS.len()], account_number(i)),
            })
            .collect();
        AccountPool { accounts, free: (0..size).collect() }
    }

    /// Takes a free account, or `None` when every account is reserved.
    pub fn reserve(&mut self) -> Option<usize> {
        self.free.pop_front()
    }

    /// Gives an account back to the pool.
    pub fn release(&mut self, index: usize) {
        debug_assert!(!self.free.contains(&index), "account {index} released twice");
        self.free.push_back(index);
    }

    /// The account at `index` (as returned by [`AccountPool::reserve`]).
    pub fn get(&self, index: usize) -> &Account {
        &self.accounts[index]
    }

    /// How many accounts are free.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

/// A 16-digit account number that looks random but is fixed per index:
/// multiplying by a number coprime to 10^16 is a bijection modulo 10^16.
fn account_number(index: usize) -> u64 {
    const MODULUS: u128 = 10_000_000_000_000_000;
    const MULTIPLIER: u128 = 6_364_136_223_846_793;
    let index = u128::try_from(index).unwrap_or(u128::MAX) + 1;
    u64::try_from((index * MULTIPLIER) % MODULUS).expect("below 10^16")
}

/// `TRkk BBBB B0AA AAAA AAAA AAAA AA`: bank code, the reserved `0`, then a
/// 16-digit account number, with the ISO 13616 check digits computed.
fn turkish_iban(bank: &str, account: u64) -> String {
    let bban = format!("{bank}0{account:016}");
    // Check digits: move "TR00" to the end, read letters as 10..35, mod 97.
    let rearranged = format!("{bban}TR00");
    let remainder = rearranged.chars().fold(0_u32, |acc, c| {
        let value = c.to_digit(36).expect("digits and letters only");
        let shifted = if value >= 10 { acc * 100 + value } else { acc * 10 + value };
        shifted % 97
    });
    format!("TR{:02}{bban}", 98 - remainder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pientegra_shared::Iban;

    #[test]
    fn generated_ibans_are_valid_and_distinct() {
        let pool = AccountPool::new(60);
        let mut seen = std::collections::HashSet::new();
        for i in 0..60 {
            let account = pool.get(i);
            assert_eq!(account.iban.len(), 26);
            assert!(Iban::parse(&account.iban).is_ok(), "{}", account.iban);
            assert!(seen.insert(account.iban.clone()));
        }
    }

    #[test]
    fn the_known_example_checks_out() {
        // TR33 0006 1005 1978 6457 8413 26 is the registry's example.
        assert_eq!(turkish_iban("00061", 519_786_457_841_326), "TR330006100519786457841326");
    }

    #[test]
    fn a_released_account_goes_to_the_back() {
        let mut pool = AccountPool::new(2);
        let a = pool.reserve().unwrap();
        let b = pool.reserve().unwrap();
        assert_eq!(pool.reserve(), None);
        pool.release(b);
        pool.release(a);
        assert_eq!(pool.reserve(), Some(b));
        assert_eq!(pool.free_count(), 1);
    }
}
