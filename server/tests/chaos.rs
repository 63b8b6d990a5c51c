//! The chaos run: every fault the sandbox can inject at once (each webhook
//! delivered up to 3 times, shuffled, 20% of deliveries failing, 30% of API
//! calls answering 5xx, added latency) under a concurrent workload; the same
//! invariants as the crash harness.

mod harness;

use harness::{Plan, storm};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_at_once_loses_nothing_and_credits_nothing_twice() {
    let plan = Plan {
        users: Plan::env("CHAOS_USERS", 8),
        deposits: Plan::env("CHAOS_DEPOSITS", 120),
        withdrawals: Plan::env("CHAOS_WITHDRAWALS", 25),
        kills: 0,
        workers: Plan::env("CHAOS_WORKERS", 8),
        faults: json!({
            "duplicateDeliveries": 2,
            "shuffleOrder": true,
            "failDeliveryPercent": 20,
            "apiErrorPercent": 30,
            "apiLatencyMs": 15,
            "deliveryDelayMs": 5
        }),
        seed: Plan::env("CHAOS_SEED", 7) as u64,
        ..Plan::default()
    };
    let outcome = storm(plan.clone()).await;
    println!("chaos storm {plan:?}\n  -> {outcome:?}");
}
