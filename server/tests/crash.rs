//! The crash harness: the server is SIGKILLed at random moments while
//! deposits, withdrawals and webhooks are in flight, and restarted each time.
//! Afterwards every balance equals what Pientegra's records say, no business
//! key was applied twice, no SSE id was reused, and nothing is stuck reserved.
//!
//! Reduced size here; `cargo xtask crash` runs the full size
//! (2,000 deposits, 300 withdrawals, 50 users, 10+ kills).

mod harness;

use harness::{Plan, storm};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_server_mid_storm_loses_nothing_and_credits_nothing_twice() {
    let plan = Plan {
        users: Plan::env("CRASH_USERS", 10),
        deposits: Plan::env("CRASH_DEPOSITS", 150),
        withdrawals: Plan::env("CRASH_WITHDRAWALS", 30),
        kills: Plan::env("CRASH_KILLS", 10),
        workers: Plan::env("CRASH_WORKERS", 8),
        faults: json!({}),
        seed: Plan::env("CRASH_SEED", 20_261_121) as u64,
        ..Plan::default()
    };
    let outcome = storm(plan.clone()).await;
    println!("crash storm {plan:?}\n  -> {outcome:?}");
    assert!(outcome.kills >= plan.kills);
}
