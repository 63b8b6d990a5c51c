//! Intent and withdrawal statuses, with the forward transitions the contract allows.
//!
//! Two questions matter to a receiver of out-of-order webhooks: "is this a
//! single legal step?" (`can_transition_to`, what the sandbox enforces) and
//! "does this move forward at all?" (`can_advance_to`, reachability through one or
//! more steps, what the companion server uses to ignore stale events).

use serde::{Deserialize, Serialize};

/// The state of a deposit intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IntentStatus {
    Reserved,
    PendingReview,
    Approved,
    Rejected,
    AutoCancelled,
    LateArrival,
}

impl IntentStatus {
    /// Every status, in a stable order.
    pub const ALL: [IntentStatus; 6] = [
        IntentStatus::Reserved,
        IntentStatus::PendingReview,
        IntentStatus::Approved,
        IntentStatus::Rejected,
        IntentStatus::AutoCancelled,
        IntentStatus::LateArrival,
    ];

    /// The wire name, e.g. `PENDING_REVIEW`.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentStatus::Reserved => "RESERVED",
            IntentStatus::PendingReview => "PENDING_REVIEW",
            IntentStatus::Approved => "APPROVED",
            IntentStatus::Rejected => "REJECTED",
            IntentStatus::AutoCancelled => "AUTO_CANCELLED",
            IntentStatus::LateArrival => "LATE_ARRIVAL",
        }
    }

    /// Parses a wire name exactly (case-sensitive, as the API sends it).
    pub fn parse(s: &str) -> Option<IntentStatus> {
        IntentStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Nothing follows a final status.
    pub fn is_final(self) -> bool {
        matches!(self, IntentStatus::Approved | IntentStatus::Rejected)
    }

    /// The statuses one legal step away.
    pub fn next_steps(self) -> &'static [IntentStatus] {
        use IntentStatus::*;
        match self {
            Reserved => &[PendingReview, AutoCancelled],
            PendingReview => &[Approved, Rejected],
            AutoCancelled => &[LateArrival],
            LateArrival => &[Approved, Rejected],
            Approved | Rejected => &[],
        }
    }

    /// Whether `next` is one legal step from `self`.
    pub fn can_transition_to(self, next: IntentStatus) -> bool {
        self.next_steps().contains(&next)
    }

    /// Whether `next` lies strictly ahead of `self` through one or more legal steps.
    pub fn can_advance_to(self, next: IntentStatus) -> bool {
        self.next_steps().iter().any(|&step| step == next || step.can_advance_to(next))
    }
}

/// The state of a withdrawal (payout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WithdrawalStatus {
    PendingReview,
    Approved,
    Sent,
    Rejected,
    Returned,
}

impl WithdrawalStatus {
    /// Every status, in a stable order.
    pub const ALL: [WithdrawalStatus; 5] = [
        WithdrawalStatus::PendingReview,
        WithdrawalStatus::Approved,
        WithdrawalStatus::Sent,
        WithdrawalStatus::Rejected,
        WithdrawalStatus::Returned,
    ];

    /// The wire name, e.g. `PENDING_REVIEW`.
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalStatus::PendingReview => "PENDING_REVIEW",
            WithdrawalStatus::Approved => "APPROVED",
            WithdrawalStatus::Sent => "SENT",
            WithdrawalStatus::Rejected => "REJECTED",
            WithdrawalStatus::Returned => "RETURNED",
        }
    }

    /// Parses a wire name exactly.
    pub fn parse(s: &str) -> Option<WithdrawalStatus> {
        WithdrawalStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// REJECTED and RETURNED end a withdrawal. SENT is not final: a bank return may follow.
    pub fn is_final(self) -> bool {
        matches!(self, WithdrawalStatus::Rejected | WithdrawalStatus::Returned)
    }

    /// The statuses one legal step away.
    pub fn next_steps(self) -> &'static [WithdrawalStatus] {
        use WithdrawalStatus::*;
        match self {
            PendingReview => &[Approved, Rejected],
            Approved => &[Sent, Rejected],
            Sent => &[Returned],
            Rejected | Returned => &[],
        }
    }

    /// Whether `next` is one legal step from `self`.
    pub fn can_transition_to(self, next: WithdrawalStatus) -> bool {
        self.next_steps().contains(&next)
    }

    /// Whether `next` lies strictly ahead of `self` through one or more legal steps.
    pub fn can_advance_to(self, next: WithdrawalStatus) -> bool {
        self.next_steps().iter().any(|&step| step == next || step.can_advance_to(next))
    }
}

impl std::fmt::Display for IntentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for WithdrawalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_paths_follow_the_contract() {
        use IntentStatus::*;
        assert!(Reserved.can_transition_to(PendingReview));
        assert!(!Reserved.can_transition_to(Approved));
        assert!(Reserved.can_advance_to(Approved));
        assert!(AutoCancelled.can_advance_to(Approved));
        assert!(!PendingReview.can_advance_to(LateArrival));
        assert!(!Approved.can_advance_to(Rejected));
        for st in IntentStatus::ALL {
            assert!(!st.can_advance_to(st), "{st} must not loop");
            assert_eq!(st.is_final(), st.next_steps().is_empty());
            assert_eq!(IntentStatus::parse(st.as_str()), Some(st));
        }
    }

    #[test]
    fn a_sent_withdrawal_can_only_be_returned() {
        use WithdrawalStatus::*;
        assert!(Sent.can_advance_to(Returned));
        assert!(!Returned.can_advance_to(Sent));
        assert!(!Sent.can_advance_to(Rejected));
        assert!(PendingReview.can_advance_to(Returned));
        assert!(!Sent.is_final());
        for st in WithdrawalStatus::ALL {
            assert!(!st.can_advance_to(st));
            assert_eq!(WithdrawalStatus::parse(st.as_str()), Some(st));
        }
    }

    #[test]
    fn statuses_use_the_wire_names() {
        assert_eq!(serde_json::to_string(&IntentStatus::AutoCancelled).unwrap(), "\"AUTO_CANCELLED\"");
        assert!(serde_json::from_str::<IntentStatus>("\"approved\"").is_err());
    }
}
