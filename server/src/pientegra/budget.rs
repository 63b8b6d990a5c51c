//! One budget for every call the server makes to Pientegra.
//!
//! Pientegra allows 60 requests a minute per API key and answers 429 beyond
//! that. Every attempt the client sends (creates, lookups, listings, retries,
//! the readiness check) first takes a slot here, so the key never reaches the
//! limit, whatever the traffic: a flood of deposits, a thousand readiness
//! probes, or the background jobs of several instances.
//!
//! The budget is a GCRA (generic cell rate algorithm): one number, the
//! theoretical arrival time `tat`, moves forward by the emission interval
//! `60 s / per_minute` with every call, and a call is admitted while `tat`
//! is at most the priority's tolerance ahead of now. Within any minute at
//! most `burst + per_minute` calls pass, which the defaults (45 + 5) keep
//! under Pientegra's 60. Lower priorities have smaller tolerances, so they
//! leave the last slots to higher ones and wait longer when the budget is
//! busy: money-moving creates first, then lookups a user is waiting for, then
//! background work, which yields.
//!
//! With PostgreSQL, `tat` is a row in the database (`pientegra_call_budget`),
//! advanced by one statement against the database's clock, so
//! every instance sharing the database shares the one budget. With SQLite
//! (one instance) it is a number in memory.
//!
//! That statement is a round trip to the database, and a create would wait
//! for it between claiming its `Idempotency-Key` and calling Pientegra
//! (BENCHMARKS.md, figure 12). So each instance keeps one create slot in
//! hand: taken from the row just after each create (as a lookup would, so
//! never the burst's last slot), spent by the next create at once, and
//! given back to the row when a second passes unused. A slot is spent less
//! than a second after it was taken, so any minute holds at most the calls
//! the rule admits in 61 seconds: `burst + per_minute` while `per_minute`
//! is under 60 (50 with the defaults), up to a second's worth more above.
//!
//! The budget also remembers how the most recent call ended, which is what
//! `/readyz` reports: readiness never calls Pientegra itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PientegraError;
use crate::storage::call_budget::BudgetRow;

/// How long a call a user is waiting for may wait for a slot before it is
/// answered `provider_busy` instead: longer than a short burst, shorter than
/// anyone's patience.
pub const FOREGROUND_MAX_WAIT: Duration = Duration::from_secs(5);

/// How soon to look again after a slot was refused on a row another instance had just moved.
const CONTENDED_RETRY: Duration = Duration::from_millis(2);

/// How long a create slot taken ahead waits in hand before it goes back to the shared row.
const IN_HAND_FOR: Duration = Duration::from_secs(1);

/// Who is asking, in the order the budget serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Jobs nobody is waiting for: the confirmation watcher, reconciliation,
    /// readiness checks, event replays. They wait as long as it takes.
    Background,
    /// A lookup a user (or the shop, through the PGM facade) is waiting for.
    Lookup,
    /// A deposit or withdrawal create: money is moving.
    Create,
}

/// The budget's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetSettings {
    /// Calls per minute, shared by every instance on one database.
    pub per_minute: u32,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
}

impl Default for BudgetSettings {
    /// 45 a minute with bursts of 5: at most 50 in any minute, under Pientegra's documented 60.
    fn default() -> BudgetSettings {
        BudgetSettings { per_minute: 45, burst: 5 }
    }
}

impl BudgetSettings {
    /// As many calls as a test could want: nothing waits.
    pub fn unlimited() -> BudgetSettings {
        BudgetSettings { per_minute: 6_000_000, burst: 1_000_000 }
    }
}

/// The GCRA arithmetic, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gcra {
    /// Time between calls at the sustained rate.
    interval: i64,
    /// How far `tat` may be ahead of now for a Create; the other priorities get less.
    burst: i64,
}

impl Gcra {
    fn new(settings: BudgetSettings) -> Gcra {
        let per_minute = i64::from(settings.per_minute.max(1));
        Gcra { interval: (60_000_000 / per_minute).max(1), burst: i64::from(settings.burst.max(1)) }
    }

    /// How many slots of the burst a priority may use: creates all of them,
    /// lookups all but one, background work half.
    fn slots(&self, priority: Priority) -> i64 {
        match priority {
            Priority::Create => self.burst,
            Priority::Lookup => (self.burst - 1).max(1),
            Priority::Background => (self.burst / 2).max(1),
        }
    }

    /// How far `tat` may be ahead of now for a call of `priority` to go.
    fn tolerance(&self, priority: Priority) -> i64 {
        (self.slots(priority) - 1) * self.interval
    }

    /// Given the stored `tat` and `now`: `Ok(new tat)` when the call may go,
    /// or `Err(microseconds to wait)`. (The shared store takes its slots by
    /// the same rule, in SQL: [`BudgetRow::take`].)
    fn decide(&self, tat: i64, now: i64, priority: Priority) -> Result<i64, i64> {
        let tat = tat.max(now);
        let allowed_at = tat - self.tolerance(priority);
        if allowed_at <= now { Ok(tat + self.interval) } else { Err(allowed_at - now) }
    }
}

/// Where `tat` lives.
enum Store {
    /// One process: microseconds since `epoch`.
    Local { epoch: Instant, tat: Mutex<i64> },
    /// Every instance on one PostgreSQL database.
    Shared(BudgetRow),
}

/// How the most recent call to Pientegra ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Pientegra gave a definite answer with our key (a record or a refusal
    /// other than 401); false for a transport failure, 5xx, 429 or a 401.
    pub answered: bool,
    pub at: Instant,
}

/// The call budget and the outcome of the latest call; one per server.
pub struct CallBudget {
    gcra: Gcra,
    store: Store,
    shutdown: CancellationToken,
    contact: Mutex<Option<Contact>>,
    /// The create slot taken ahead from the shared row (see the module's notes).
    in_hand: Mutex<InHand>,
}

/// The create slot an instance holds ahead of the create that will spend it.
#[derive(Debug, Default)]
struct InHand {
    slot: Option<Held>,
    /// Slots taken into the hand so far: their numbers.
    taken: u64,
    /// A take for the hand is on its way.
    filling: bool,
}

/// A slot in hand.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Numbered, so the give-back of an old slot leaves a newer one alone.
    number: u64,
    /// Where the slot ends on the row's clock, for its give-back.
    until: i64,
    /// When it may no longer be spent: [`IN_HAND_FOR`] after its take was sent.
    deadline: Instant,
}

impl InHand {
    /// The take for the hand ended: `until` when it took a slot.
    fn filled(&mut self, until: Option<i64>, deadline: Instant) -> Option<Held> {
        self.filling = false;
        self.taken += 1;
        self.slot = until.map(|until| Held { number: self.taken, until, deadline });
        self.slot
    }

    /// Spends the slot in hand, unless there is none or it is past its deadline.
    fn spend(&mut self, now: Instant) -> bool {
        match self.slot {
            Some(held) if now < held.deadline => {
                self.slot = None;
                true
            }
            _ => false,
        }
    }

    /// Takes `held` back out of the hand, if no create spent it.
    fn take_back(&mut self, held: Held) -> bool {
        let unused = self.slot.is_some_and(|slot| slot.number == held.number);
        if unused {
            self.slot = None;
        }
        unused
    }
}

impl std::fmt::Debug for CallBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = matches!(self.store, Store::Shared(_));
        f.debug_struct("CallBudget").field("gcra", &self.gcra).field("shared", &shared).finish_non_exhaustive()
    }
}

impl CallBudget {
    /// A budget of this process alone.
    pub fn local(settings: BudgetSettings, shutdown: CancellationToken) -> CallBudget {
        CallBudget::with_store(settings, Store::Local { epoch: Instant::now(), tat: Mutex::new(0) }, shutdown)
    }

    /// The budget for a server on `database_url`: shared through the database
    /// on PostgreSQL (whose migrations created its row), in memory on SQLite.
    pub async fn connect(
        settings: BudgetSettings,
        database_url: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<CallBudget> {
        if !database_url.starts_with("postgres") {
            return Ok(CallBudget::local(settings, shutdown));
        }
        let row = BudgetRow::connect(database_url).await?;
        Ok(CallBudget::with_store(settings, Store::Shared(row), shutdown))
    }

    fn with_store(settings: BudgetSettings, store: Store, shutdown: CancellationToken) -> CallBudget {
        CallBudget {
            gcra: Gcra::new(settings),
            store,
            shutdown,
            contact: Mutex::new(None),
            in_hand: Mutex::new(InHand::default()),
        }
    }

    /// Waits for a slot. A foreground call that would wait longer than
    /// [`FOREGROUND_MAX_WAIT`] is not sent: [`PientegraError::NotSent`] says
    /// when to try again. Background calls wait until shutdown.
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Result<(), PientegraError> {
        let slot = self.wait_for_slot(priority).await;
        if slot.is_ok() && priority == Priority::Create {
            // The next create's slot, taken now so that it does not wait for the row.
            self.fill_hand();
        }
        slot
    }

    /// A create's slot from the hand, or any slot from the store: see [`Self::acquire`].
    async fn wait_for_slot(&self, priority: Priority) -> Result<(), PientegraError> {
        let started = Instant::now();
        loop {
            if priority == Priority::Create && self.spend_in_hand() {
                return Ok(());
            }
            let wait = match self.try_take(priority).await {
                Ok(None) => return Ok(()),
                Ok(Some(wait)) => wait,
                Err(err) => {
                    // Without the shared count no instance may guess: the database
                    // is down, and nothing a call could bring back can be recorded anyway.
                    tracing::warn!(error = format!("{err:#}"), "reading the Pientegra call budget");
                    return Err(PientegraError::NotSent {
                        reason: "the shared call budget could not be read".into(),
                        retry_after: Duration::from_secs(1),
                    });
                }
            };
            if priority > Priority::Background && started.elapsed() + wait > FOREGROUND_MAX_WAIT {
                return Err(PientegraError::NotSent {
                    reason: "the Pientegra call budget is spent for now".into(),
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.cancelled() => {
                    return Err(PientegraError::NotSent {
                        reason: "the server is shutting down".into(),
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
        }
    }

    /// Spends the create slot in hand, if there is one still young enough.
    fn spend_in_hand(&self) -> bool {
        self.in_hand.lock().expect("in-hand lock").spend(Instant::now())
    }

    /// Starts taking a create slot for the hand ([`Self::hold_a_slot`]),
    /// unless the hand holds one or a take is on its way. Never waits: when
    /// the row has no slot free, the hand stays empty.
    fn fill_hand(self: &Arc<Self>) {
        if !matches!(self.store, Store::Shared(_)) || self.shutdown.is_cancelled() {
            return;
        }
        {
            let mut hand = self.in_hand.lock().expect("in-hand lock");
            if hand.slot.is_some() || hand.filling {
                return;
            }
            hand.filling = true;
        }
        tokio::spawn(Arc::clone(self).hold_a_slot());
    }

    /// Takes a create slot from the shared row into the hand, and gives it
    /// back if it is still there at its deadline (or at shutdown). The hand
    /// takes as a lookup would, so it never takes the last slot of the burst,
    /// which stays for a create that asks the row itself.
    async fn hold_a_slot(self: Arc<Self>) {
        let Store::Shared(row) = &self.store else { return };
        let interval = self.gcra.interval;
        let deadline = Instant::now() + IN_HAND_FOR;
        let until = match row.take(interval, self.gcra.tolerance(Priority::Lookup)).await {
            Ok(attempt) => attempt.taken,
            Err(err) => {
                tracing::debug!(error = format!("{err:#}"), "taking a call budget slot for the hand");
                None
            }
        };
        let Some(held) = self.in_hand.lock().expect("in-hand lock").filled(until, deadline) else { return };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = self.shutdown.cancelled() => {}
        }
        if !self.in_hand.lock().expect("in-hand lock").take_back(held) {
            return;
        }
        if let Err(err) = row.give_back(interval, held.until).await {
            tracing::debug!(error = format!("{err:#}"), "giving an unused call budget slot back");
        }
    }

    /// Takes a slot if one is free; otherwise how long to wait for one.
    async fn try_take(&self, priority: Priority) -> anyhow::Result<Option<Duration>> {
        match &self.store {
            Store::Local { epoch, tat } => {
                let now = micros(epoch.elapsed());
                let mut tat = tat.lock().expect("call budget lock");
                Ok(match self.gcra.decide(*tat, now, priority) {
                    Ok(next) => {
                        *tat = next;
                        None
                    }
                    Err(wait) => Some(from_micros(wait)),
                })
            }
            Store::Shared(row) => {
                let attempt = row.take(self.gcra.interval, self.gcra.tolerance(priority)).await?;
                if attempt.taken.is_some() {
                    return Ok(None);
                }
                Ok(Some(match self.gcra.decide(attempt.tat, attempt.now, priority) {
                    Err(wait) => from_micros(wait),
                    // Refused on a row another instance had moved since the
                    // statement's snapshot: look again at once.
                    Ok(_) => CONTENDED_RETRY,
                }))
            }
        }
    }

    /// Records how a call that was sent ended.
    pub fn record(&self, answered: bool) {
        *self.contact.lock().expect("contact lock") = Some(Contact { answered, at: Instant::now() });
    }

    /// How the most recent call ended, if one was made.
    pub fn contact(&self) -> Option<Contact> {
        *self.contact.lock().expect("contact lock")
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    /// Admits calls at `now` (seconds) until one must wait; how many went.
    fn admitted_at(gcra: &Gcra, tat: &mut i64, now: i64, priority: Priority) -> usize {
        let mut n = 0;
        while let Ok(next) = gcra.decide(*tat, now * SECOND, priority) {
            *tat = next;
            n += 1;
        }
        n
    }

    #[test]
    fn a_quiet_budget_admits_its_burst_then_the_rate() {
        let gcra = Gcra::new(BudgetSettings { per_minute: 60, burst: 5 });
        let mut tat = 0;
        assert_eq!(admitted_at(&gcra, &mut tat, 100, Priority::Create), 5);
        assert_eq!(gcra.decide(tat, 100 * SECOND, Priority::Create), Err(SECOND));
        assert_eq!(admitted_at(&gcra, &mut tat, 101, Priority::Create), 1);
        assert_eq!(admitted_at(&gcra, &mut tat, 111, Priority::Create), 5, "ten quiet seconds refill the burst");
    }

    #[test]
    fn no_minute_holds_more_than_burst_plus_rate() {
        let settings = BudgetSettings::default();
        let gcra = Gcra::new(settings);
        let mut tat = 0;
        // Greedy callers every 10 ms for a minute.
        let mut sent = 0;
        for step in 0..6_000 {
            if let Ok(next) = gcra.decide(tat, step * 10_000, Priority::Create) {
                tat = next;
                sent += 1;
            }
        }
        assert!(sent <= settings.burst + settings.per_minute, "{sent}");
        assert!(sent < 60, "Pientegra's documented limit is 60 a minute; sent {sent}");
    }

    #[test]
    fn lower_priorities_leave_slots_to_higher_ones_and_wait_longer() {
        let gcra = Gcra::new(BudgetSettings { per_minute: 60, burst: 6 });
        let mut tat = 0;
        assert_eq!(admitted_at(&gcra, &mut tat, 10, Priority::Background), 3);
        assert_eq!(admitted_at(&gcra, &mut tat, 10, Priority::Lookup), 2);
        assert_eq!(admitted_at(&gcra, &mut tat, 10, Priority::Create), 1);
        let wait = |p| gcra.decide(tat, 10 * SECOND, p).unwrap_err();
        assert!(wait(Priority::Create) < wait(Priority::Lookup));
        assert!(wait(Priority::Lookup) < wait(Priority::Background));
    }

    /// The shared row admits as the arithmetic above does: the burst at
    /// once, then a wait of one interval (skipped without PostgreSQL, unless `CI=true`).
    #[tokio::test]
    async fn the_shared_row_admits_the_burst_then_asks_to_wait_an_interval() {
        let Some(schema) = pientegra_testkit::postgres::Schema::create().await else { return };
        drop(crate::storage::connect(&schema.url).await.unwrap());
        let settings = BudgetSettings { per_minute: 60, burst: 5 };
        let budget = CallBudget::connect(settings, &schema.url, CancellationToken::new()).await.unwrap();
        let started = Instant::now();
        for _ in 0..5 {
            assert_eq!(budget.try_take(Priority::Create).await.unwrap(), None);
        }
        let wait = budget.try_take(Priority::Create).await.unwrap().expect("the sixth waits");
        // A second after the first take, on the database's clock.
        let since_first = started.elapsed();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(wait + since_first >= Duration::from_millis(990), "{wait:?} after {since_first:?}");
        let background = budget.try_take(Priority::Background).await.unwrap().expect("background waits longer");
        assert!(background > wait, "{background:?} after {wait:?}");
    }

    /// The shared row's `tat`.
    async fn row_tat(conn: &mut sqlx::PgConnection) -> i64 {
        sqlx::query_scalar("SELECT tat_us FROM pientegra_call_budget").fetch_one(conn).await.unwrap()
    }

    /// Waits (up to 5 s) until no take for the hand is on its way; whether the hand holds a slot.
    async fn hand_settled(budget: &CallBudget) -> bool {
        for _ in 0..500 {
            let (filling, held) = {
                let hand = budget.in_hand.lock().unwrap();
                (hand.filling, hand.slot.is_some())
            };
            if !filling {
                return held;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a take for the hand never ended");
    }

    /// A budget on the schema of `url`.
    async fn shared(url: &str, settings: BudgetSettings) -> Arc<CallBudget> {
        Arc::new(CallBudget::connect(settings, url, CancellationToken::new()).await.unwrap())
    }

    /// Migrates the schema of `url` and connects to it.
    async fn connect(url: &str) -> sqlx::PgConnection {
        use sqlx::Connection;
        drop(crate::storage::connect(url).await.unwrap());
        sqlx::PgConnection::connect(url).await.unwrap()
    }

    /// A create takes a second slot for the hand; unused at its deadline,
    /// the slot goes back to the row, all of it while still ahead of the clock.
    #[tokio::test]
    async fn a_create_takes_a_slot_in_hand_which_goes_back_unused() {
        let Some(schema) = pientegra_testkit::postgres::Schema::create().await else { return };
        let mut conn = connect(&schema.url).await;
        // An interval of 2 s: the slot in hand is wholly ahead of the clock at its deadline.
        let budget = shared(&schema.url, BudgetSettings { per_minute: 30, burst: 5 }).await;
        budget.acquire(Priority::Create).await.unwrap();
        assert!(hand_settled(&budget).await, "the hand holds a slot");
        let held = row_tat(&mut conn).await;
        for _ in 0..300 {
            if budget.in_hand.lock().unwrap().slot.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(budget.in_hand.lock().unwrap().slot.is_none(), "the slot left the hand");
        let mut tat = row_tat(&mut conn).await;
        for _ in 0..100 {
            if tat != held {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            tat = row_tat(&mut conn).await;
        }
        assert_eq!(held - tat, budget.gcra.interval, "the unused slot went back, and only it");
    }

    /// A slot that ended behind the clock gives nothing back: the slots taken
    /// after it stay where they are.
    #[tokio::test]
    async fn a_slot_already_behind_the_clock_gives_nothing_back() {
        let Some(schema) = pientegra_testkit::postgres::Schema::create().await else { return };
        let mut conn = connect(&schema.url).await;
        let budget = shared(&schema.url, BudgetSettings { per_minute: 60, burst: 5 }).await;
        let Store::Shared(row) = &budget.store else { unreachable!("a PostgreSQL budget") };
        let now: i64 = sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let (interval, others) = (budget.gcra.interval, now + 3 * budget.gcra.interval);
        sqlx::query("UPDATE pientegra_call_budget SET tat_us = $1").bind(others).execute(&mut conn).await.unwrap();
        row.give_back(interval, now - interval / 2).await.unwrap();
        assert_eq!(row_tat(&mut conn).await, others);
        // Wholly ahead of the clock, a slot goes back whole.
        row.give_back(interval, now + 10 * interval).await.unwrap();
        assert_eq!(row_tat(&mut conn).await, others - interval);
    }

    /// A create spends the slot in hand without the row, which another
    /// instance emptied meanwhile; the hands never let more than the burst through.
    #[tokio::test]
    async fn a_slot_in_hand_is_spent_without_the_row_and_never_beyond_the_burst() {
        let Some(schema) = pientegra_testkit::postgres::Schema::create().await else { return };
        let mut conn = connect(&schema.url).await;
        // An interval of 10 s: a create that had to wait for the row would not be sent.
        let settings = BudgetSettings { per_minute: 6, burst: 5 };
        let (ours, other) = (shared(&schema.url, settings).await, shared(&schema.url, settings).await);
        ours.acquire(Priority::Create).await.unwrap();
        assert!(hand_settled(&ours).await);
        for _ in 0..3 {
            assert_eq!(other.try_take(Priority::Create).await.unwrap(), None);
        }
        assert!(other.try_take(Priority::Create).await.unwrap().is_some(), "the row is empty");
        let emptied = row_tat(&mut conn).await;
        ours.acquire(Priority::Create).await.expect("the slot in hand is spent");
        assert!(!hand_settled(&ours).await, "and the empty row gave the hand no other");
        assert_eq!(row_tat(&mut conn).await, emptied, "the row did not move");

        // Five creates from a fresh row on two instances: the hands take from the same five slots.
        let schema = pientegra_testkit::postgres::Schema::create().await.unwrap();
        drop(connect(&schema.url).await);
        let settings = BudgetSettings { per_minute: 60, burst: 5 };
        let (a, b) = (shared(&schema.url, settings).await, shared(&schema.url, settings).await);
        for budget in [&a, &b, &a, &b, &a] {
            budget.acquire(Priority::Create).await.unwrap();
            hand_settled(budget).await;
        }
        let held = [&a, &b].iter().filter(|budget| budget.in_hand.lock().unwrap().slot.is_some()).count();
        assert_eq!(held, 0, "five slots were spent; none is left for a hand");
        assert!(a.try_take(Priority::Create).await.unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_foreground_call_is_not_sent_rather_than_wait_long() {
        let budget = Arc::new(CallBudget::local(BudgetSettings { per_minute: 1, burst: 1 }, CancellationToken::new()));
        budget.acquire(Priority::Create).await.unwrap();
        match budget.acquire(Priority::Create).await {
            Err(PientegraError::NotSent { retry_after, .. }) => assert!(retry_after > FOREGROUND_MAX_WAIT),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_background_call_waits_for_its_slot_and_ends_on_shutdown() {
        let shutdown = CancellationToken::new();
        let budget = Arc::new(CallBudget::local(BudgetSettings { per_minute: 1, burst: 1 }, shutdown.clone()));
        budget.acquire(Priority::Background).await.unwrap();
        let started = Instant::now();
        budget.acquire(Priority::Background).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(59));
        shutdown.cancel();
        assert!(matches!(budget.acquire(Priority::Background).await, Err(PientegraError::NotSent { .. })));
    }
}
