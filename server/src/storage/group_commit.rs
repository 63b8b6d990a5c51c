//! Group commit for webhooks. A durable commit (an fsync) costs more than
//! applying a webhook, so webhooks are not each given their own transaction:
//! a writer task takes every webhook waiting, applies them in one
//! transaction, commits once, and only then answers them all. Should any of
//! them fail, the whole transaction rolls back and each is applied again in a
//! transaction of its own, so one bad webhook never costs the others their
//! commit. With one webhook waiting this is exactly one transaction per
//! webhook.
//!
//! Each database says how a batch is committed ([`CommitWebhooks`]) and how
//! many writers run side by side: SQLite has one writer; PostgreSQL can run
//! several, each on its own connection.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use futures::FutureExt;
use pientegra_shared::event::WebhookEvent;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Changed, InboxOutcome, Result};

/// A verified webhook: the parsed event and its raw body.
pub(super) type Webhook<'a> = (&'a WebhookEvent, &'a [u8]);

/// At most this many webhooks share one commit.
const MAX_BATCH: usize = 256;
/// Webhooks waiting beyond this make their senders wait too.
const QUEUE: usize = 1024;

type Outcome = Result<Changed<InboxOutcome>>;

/// How a database applies a batch of webhooks.
#[async_trait]
pub(super) trait CommitWebhooks: Send + Sync + 'static {
    /// Dedupes `webhooks` by `eventId`, applies each in order and records them
    /// in the inbox, all in one transaction; returns once it is durable.
    async fn commit(&self, webhooks: &[Webhook<'_>]) -> Result<Vec<Changed<InboxOutcome>>>;
}

struct Job {
    event: WebhookEvent,
    body: Vec<u8>,
    reply: oneshot::Sender<Outcome>,
}

/// The handle to the tasks that write webhooks.
pub(super) struct WebhookWriter {
    jobs: mpsc::Sender<Job>,
}

impl WebhookWriter {
    /// Starts `writers` tasks taking batches from one queue; they stop when
    /// the handle is dropped.
    pub(super) fn spawn(committer: Arc<dyn CommitWebhooks>, writers: usize) -> WebhookWriter {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(run(committer.clone(), queue.clone()));
        }
        WebhookWriter { jobs }
    }

    /// Applies one webhook; returns once the transaction holding it is durable.
    pub(super) async fn apply(&self, event: &WebhookEvent, body: &[u8]) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let job = Job { event: event.clone(), body: body.to_vec(), reply };
        self.jobs.send(job).await.map_err(|_| anyhow!("the webhook writer has stopped"))?;
        answer.await.map_err(|_| anyhow!("the webhook writer stopped before committing"))?
    }
}

async fn run(committer: Arc<dyn CommitWebhooks>, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // The queue is held only while taking a batch: the next writer takes
        // the webhooks that arrive while this one commits.
        if queue.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Should a bug panic inside a batch, its transaction rolls back, its
        // senders get an error (Pientegra retries) and the writer goes on.
        if AssertUnwindSafe(write_batch(committer.as_ref(), batch)).catch_unwind().await.is_err() {
            tracing::error!("a batch of webhooks panicked; none of it was stored");
        }
    }
}

/// Applies and commits `batch`, then answers each job.
async fn write_batch(committer: &dyn CommitWebhooks, batch: Vec<Job>) {
    let webhooks: Vec<Webhook<'_>> = batch.iter().map(|job| (&job.event, job.body.as_slice())).collect();
    let outcomes = match committer.commit(&webhooks).await {
        Ok(changes) => changes.into_iter().map(Ok).collect(),
        Err(e) if webhooks.len() == 1 => vec![Err(e)],
        // Rare (a storage error): find which one fails, commit the others.
        Err(_) => {
            let mut outcomes = Vec::with_capacity(webhooks.len());
            for webhook in &webhooks {
                let one = committer.commit(std::slice::from_ref(webhook)).await;
                outcomes.push(one.map(|mut one| one.remove(0)));
            }
            outcomes
        }
    };
    drop(webhooks);
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        // The sender may have gone (its client hung up): the webhook stays applied.
        let _ = job.reply.send(outcome);
    }
}
