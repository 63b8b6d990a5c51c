//! An instance's presence in the shared PostgreSQL database, so that another
//! instance can tell an `Idempotency-Key` claim whose instance died from one
//! that is still being worked on.
//!
//! Each instance holds a session-level advisory lock on `(PRESENCE_SPACE, id)`,
//! `id` its own random number, on a connection of its own for as long as its
//! storage lives, and writes `id` into every claim it makes. When the process
//! dies (SIGKILL, a crash) its sessions end and the database releases the
//! lock; an instance that finds a claimant's lock free takes the claim over at
//! once, instead of answering `idempotency_key_in_flight` until the claim's
//! lease ends. The lease stays as the bound when presence cannot tell, e.g. a
//! host that vanished without closing its connections.
//!
//! The presence session may also end while the process lives (the database
//! terminated it, or restarted). Until the keeper has taken the lock again
//! (it checks every [`CHECK_EVERY`], then reconnects), other instances may
//! take over this instance's claims while it still works on them. That is allowed, as
//! it is when a lease ends under a slow request: the work of a claimed
//! request is idempotent (Pientegra's key is derived from the request's, and
//! the records are keyed by intent, withdrawal and key).

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio_util::task::AbortOnDropHandle;

/// The first key of the presence locks (the two-key advisory lock space,
/// beside the subject locks' own first key).
pub(super) const PRESENCE_SPACE: i32 = 0x4c49_5645; // "LIVE"

/// How often the keeper checks that its session is still open.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a check or a reconnect may take before the session counts as lost.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The longest wait between two attempts to connect again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// This instance's presence: dropping it ends the session, and the lock with it.
pub(super) struct Presence {
    id: i32,
    _keeper: AbortOnDropHandle<()>,
}

impl Presence {
    /// Takes a presence lock under a fresh id, on a new connection that a task
    /// keeps open (and opens again, and locks again, when it is closed).
    pub(super) async fn take(options: PgConnectOptions) -> anyhow::Result<Presence> {
        let mut conn = PgConnection::connect_with(&options).await.context("connecting to PostgreSQL")?;
        // Ids are random: instances need no registry, and a collision (two
        // live instances drawing one id) is refused by the lock itself.
        let id = loop {
            let id = fresh_id();
            if try_lock(&mut conn, id).await.context("taking the presence lock")? {
                break id;
            }
        };
        let keeper = AbortOnDropHandle::new(tokio::spawn(keep(options, id, conn)));
        Ok(Presence { id, _keeper: keeper })
    }

    /// The id this instance writes into its claims.
    pub(super) fn id(&self) -> i32 {
        self.id
    }
}

/// Whether the instance that wrote `claimant` into a claim is present. Runs in
/// the claim's transaction: the shared lock a test of a departed instance
/// takes is released when it ends (shared, so two instances testing the same
/// claimant at once both find it gone). A claim without a claimant (made
/// before claims named one) is taken for present: its lease decides.
pub(super) async fn is_present(conn: &mut PgConnection, claimant: Option<i32>) -> sqlx::Result<bool> {
    let Some(claimant) = claimant else { return Ok(true) };
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock_shared($1, $2)")
        .bind(PRESENCE_SPACE)
        .bind(claimant)
        .fetch_one(conn)
        .await?;
    Ok(!free)
}

/// A random non-negative id.
fn fresh_id() -> i32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & i32::MAX
}

/// Takes the session lock on `id` if it is free; never waits for it.
async fn try_lock(conn: &mut PgConnection, id: i32) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)").bind(PRESENCE_SPACE).bind(id).fetch_one(conn).await
}

/// Keeps the lock: checks the session every [`CHECK_EVERY`], and when it is
/// gone (or does not answer within [`ANSWER_WITHIN`]: a connection whose
/// other end vanished can leave a query waiting for many minutes) takes the
/// lock again on a new session.
async fn keep(options: PgConnectOptions, id: i32, mut conn: PgConnection) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let check = tokio::time::timeout(ANSWER_WITHIN, sqlx::query("SELECT 1").execute(&mut conn)).await;
        if matches!(check, Ok(Ok(_))) {
            continue;
        }
        tracing::warn!(
            "the presence session was lost; other instances may take over this one's requests until it is back"
        );
        drop(conn);
        conn = relock(&options, id).await;
        tracing::info!("the presence lock is held again");
    }
}

/// A new session holding the lock on `id`, after as many attempts as it
/// takes. The lock is tried, never waited for: the old session, when the
/// database has not noticed its end yet, still holds it (and the instance
/// still looks present), and a backend waiting in the lock's queue would not
/// notice that this side gave up on it either.
async fn relock(options: &PgConnectOptions, id: i32) -> PgConnection {
    let mut backoff = Duration::from_millis(100);
    loop {
        match tokio::time::timeout(ANSWER_WITHIN, PgConnection::connect_with(options)).await {
            Ok(Ok(mut conn)) => loop {
                match tokio::time::timeout(ANSWER_WITHIN, try_lock(&mut conn, id)).await {
                    Ok(Ok(true)) => return conn,
                    Ok(Ok(false)) => tokio::time::sleep(CHECK_EVERY).await,
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "taking the presence lock again failed; reconnecting");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!("taking the presence lock again got no answer; reconnecting");
                        break;
                    }
                }
            },
            Ok(Err(err)) => tracing::warn!(error = %err, "reconnecting the presence session failed; retrying"),
            Err(_) => tracing::warn!("reconnecting the presence session got no answer; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
