//! Intake: validated orders are stored in group commits. Concurrent requests
//! are gathered into one transaction (one fsync for many orders), and each
//! request is answered only after that transaction committed.

use crate::store::{AcceptOutcome, Accepted, NewOrder, Store, StoreError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Most orders in one transaction.
const MAX_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("a request with this idempotency key is still in flight")]
    KeyInFlight,
    #[error("intake is shutting down")]
    Closed,
    /// The transaction holding these orders failed; nothing of them was stored.
    #[error("storing the orders failed: {0}")]
    Failed(Arc<StoreError>),
}

struct Submission {
    orders: Vec<NewOrder>,
    /// The submission's outcomes; `made_ready` is the batch's (an order
    /// of the transaction it shared was filled from stock whole).
    reply: oneshot::Sender<Result<Accepted, Arc<StoreError>>>,
}

type KeySet = Arc<Mutex<HashSet<(String, String)>>>;

/// Idempotency keys held while their request is processed.
struct KeyClaim {
    set: KeySet,
    keys: Vec<(String, String)>,
}

impl KeyClaim {
    fn take(set: &KeySet, keys: Vec<(String, String)>) -> Result<KeyClaim, IntakeError> {
        let mut held = set.lock().unwrap_or_else(|p| p.into_inner());
        if keys.iter().any(|key| held.contains(key)) {
            return Err(IntakeError::KeyInFlight);
        }
        held.extend(keys.iter().cloned());
        Ok(KeyClaim {
            set: Arc::clone(set),
            keys,
        })
    }
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        let mut held = self.set.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            held.remove(key);
        }
    }
}

/// Whether orders arrive faster than intake commits them: the commit loop
/// notes each group commit that gathered more than one request (they
/// arrived while the one before was committing). Background work that can
/// wait, the promise watch's rounds, waits while such commits keep coming:
/// on two cores a round's reads and writes slow a burst of intake by a
/// tenth or more (docs/benchmarks.md).
#[derive(Clone)]
pub struct IntakeLoad {
    since: Instant,
    /// When the last group commit ended, in ms after `since` plus one
    /// (0: none yet).
    last_group: Arc<AtomicU64>,
}

impl Default for IntakeLoad {
    fn default() -> Self {
        IntakeLoad {
            since: Instant::now(),
            last_group: Arc::default(),
        }
    }
}

impl IntakeLoad {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A commit that gathered more than one request just ended.
    pub fn note_group(&self) {
        self.last_group
            .store(self.elapsed_ms().saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a group commit ended within the last `window`.
    pub fn busy_within(&self, window: Duration) -> bool {
        match self.last_group.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let ago = self.elapsed_ms().saturating_sub(last - 1);
                u128::from(ago) < window.as_millis()
            }
        }
    }

    /// Tests: a group commit noted every `every`, until the task is aborted.
    #[cfg(test)]
    pub(crate) fn note_every(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let load = self.clone();
        tokio::spawn(async move {
            loop {
                load.note_group();
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Waits until no group commit ended within the last `window` (looking
    /// every `window`), or `most` has passed; returns how long it waited.
    /// Zero when none did.
    pub async fn quiet(&self, window: Duration, most: Duration) -> Duration {
        if !self.busy_within(window) {
            return Duration::ZERO;
        }
        let started = Instant::now();
        loop {
            let left = most.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(window.min(left)).await;
            if !self.busy_within(window) {
                break;
            }
        }
        started.elapsed()
    }
}

/// The handle the API uses; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    /// Submissions to the committer task. Bounded: when full, requests wait
    /// (back-pressure on HTTP clients). Closed at shutdown after the HTTP
    /// server stopped; the committer drains what is queued, then exits.
    submissions: mpsc::Sender<Submission>,
    /// Idempotency keys (brand, key) of requests being processed, for 409.
    in_flight: KeySet,
    /// Whether requests arrive in groups, for background work to yield.
    pub load: IntakeLoad,
}

impl Intake {
    /// Starts the committer task. When `stop` is cancelled (or every handle
    /// is dropped) it refuses new submissions, commits those already queued,
    /// and ends.
    pub fn start(store: Store, stop: CancellationToken) -> (Intake, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let load = IntakeLoad::default();
        let task = tokio::spawn(commit_loop(store, rx, stop, load.clone()));
        (
            Intake {
                submissions: tx,
                in_flight: Arc::default(),
                load,
            },
            task,
        )
    }

    /// Stores `orders` atomically (all or none) and returns one outcome per
    /// order, and whether stock made an order ready at once (of these or of
    /// others committed with them).
    pub async fn submit(&self, orders: Vec<NewOrder>) -> Result<Accepted, IntakeError> {
        let keys: Vec<(String, String)> = orders
            .iter()
            .filter_map(|o| {
                o.idempotency
                    .as_ref()
                    .map(|i| (o.brand.to_string(), i.key.clone()))
            })
            .collect();
        let _claim = KeyClaim::take(&self.in_flight, keys)?;
        // The claim is released when this future ends, or is dropped because
        // the client went away: a retry with the same key is never stuck on 409.
        self.send(orders).await
    }

    async fn send(&self, orders: Vec<NewOrder>) -> Result<Accepted, IntakeError> {
        let (reply, response) = oneshot::channel();
        self.submissions
            .send(Submission { orders, reply })
            .await
            .map_err(|_| IntakeError::Closed)?;
        match response.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(err)) => Err(IntakeError::Failed(err)),
            Err(_) => Err(IntakeError::Closed),
        }
    }
}

async fn commit_loop(
    store: Store,
    mut rx: mpsc::Receiver<Submission>,
    stop: CancellationToken,
    load: IntakeLoad,
) {
    let mut batch: Vec<Submission> = Vec::new();
    let mut closing = false;
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            _ = stop.cancelled(), if !closing => {
                // New submissions fail with Closed; queued ones are still taken.
                closing = true;
                rx.close();
                continue;
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        let mut count = batch[0].orders.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => {
                    count += next.orders.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // The orders move into one list; each submission keeps how many
        // of them are its own, in turn.
        let mut orders: Vec<NewOrder> = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(batch.len());
        for submission in batch.drain(..) {
            replies.push((submission.orders.len(), submission.reply));
            orders.extend(submission.orders);
        }
        metrics::histogram!("fabflow_intake_batch_orders").record(orders.len() as f64);
        let started = std::time::Instant::now();
        let stored = store.accept_orders_telling_ready(&orders).await;
        metrics::histogram!("fabflow_intake_commit_seconds").record(started.elapsed());
        if replies.len() > 1 {
            load.note_group();
        }
        match stored {
            Ok(Accepted {
                outcomes,
                made_ready,
            }) => {
                metrics::counter!("fabflow_orders_accepted_total").increment(
                    outcomes
                        .iter()
                        .filter(|o| **o == AcceptOutcome::Created)
                        .count() as u64,
                );
                let mut outcomes = outcomes.into_iter();
                for (count, reply) in replies {
                    let mine: Vec<AcceptOutcome> = outcomes.by_ref().take(count).collect();
                    // A dropped receiver: the client went away; the orders are stored all the same.
                    let _ = reply.send(Ok(Accepted {
                        outcomes: mine,
                        made_ready,
                    }));
                }
            }
            // A database that refuses writes refuses each one alike.
            Err(err) if replies.len() > 1 && !matches!(err, StoreError::Unavailable(_)) => {
                // One submission can spoil a shared transaction: retry each on its own.
                error!(error = %err, orders = orders.len(), "group commit failed; retrying one by one");
                let mut orders = orders.into_iter();
                for (count, reply) in replies {
                    let own: Vec<NewOrder> = orders.by_ref().take(count).collect();
                    let result = store
                        .accept_orders_telling_ready(&own)
                        .await
                        .map_err(Arc::new);
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                error!(error = %err, "storing orders failed");
                let err = Arc::new(err);
                for (_, reply) in replies {
                    let _ = reply.send(Err(Arc::clone(&err)));
                }
            }
        }
    }
    info!("intake drained and stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commit loop passes on whether stock made an order of the batch
    /// ready (the API then wakes the courier waves), and only then.
    #[tokio::test]
    async fn a_submission_hears_whether_stock_made_an_order_ready() {
        use crate::store::tests::new_order;
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("intake.db").display());
        let store = Store::connect(&url).await.expect("store");
        // Two tees on north's shelf: exactly one order's worth.
        store
            .write_statement(sqlx::query(
                "INSERT INTO stock (factory, sku, units, updated_ms) VALUES ('north', 'tee', 2, 0)",
            ))
            .await
            .expect("stock");
        let stop = CancellationToken::new();
        let (intake, task) = Intake::start(store.clone(), stop.clone());
        let first = intake
            .submit(vec![new_order("o1", "zest", None)])
            .await
            .expect("o1");
        assert_eq!(first.outcomes, vec![AcceptOutcome::Created]);
        assert!(first.made_ready, "the shelf filled o1");
        let second = intake
            .submit(vec![new_order("o2", "zest", None)])
            .await
            .expect("o2");
        assert_eq!(second.outcomes, vec![AcceptOutcome::Created]);
        assert!(!second.made_ready, "o2 is made, not taken from the shelf");
        stop.cancel();
        drop(intake);
        task.await.expect("commit loop");
        store.close().await;
    }

    /// A commit that gathered requests which arrived while the one before
    /// was committing is noted as intake load; one request alone is not.
    #[tokio::test]
    async fn a_commit_gathering_several_requests_is_noted_and_one_alone_is_not() {
        use crate::store::tests::new_order;
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("intake.db").display());
        let store = Store::connect(&url).await.expect("store");
        let stop = CancellationToken::new();
        let load = IntakeLoad::default();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(commit_loop(store.clone(), rx, stop.clone(), load.clone()));
        let submit = |id: &str| {
            let (reply, response) = oneshot::channel();
            let submission = Submission {
                orders: vec![new_order(id, "zest", None)],
                reply,
            };
            (submission, response)
        };
        let hour = Duration::from_secs(3600);
        let (alone, response) = submit("o1");
        tx.send(alone).await.expect("sent");
        response.await.expect("reply").expect("o1");
        assert!(!load.busy_within(hour), "o1 came alone");
        assert_eq!(load.quiet(hour, hour).await, Duration::ZERO, "no wait");

        // This test's runtime has one thread: the commit loop runs only
        // once this task waits, and then finds all three queued.
        let mut responses = Vec::new();
        for id in ["o2", "o3", "o4"] {
            let (submission, response) = submit(id);
            tx.send(submission).await.expect("sent");
            responses.push(response);
        }
        for response in responses {
            response.await.expect("reply").expect("accepted");
        }
        assert!(load.busy_within(hour), "a group commit");
        drop(tx);
        task.await.expect("commit loop");
        store.close().await;
    }

    /// `quiet` returns at once when intake is idle, a window after the last
    /// group commit, and after `most` while group commits keep coming.
    #[tokio::test(start_paused = true)]
    async fn quiet_waits_for_group_commits_to_stop_but_no_longer_than_most() {
        let load = IntakeLoad::default();
        let window = Duration::from_millis(200);
        let most = Duration::from_secs(10);
        assert_eq!(load.quiet(window, most).await, Duration::ZERO, "idle");
        tokio::time::sleep(Duration::from_secs(1)).await;
        load.note_group();
        let waited = load.quiet(window, most).await;
        assert!(
            waited >= window && waited < 2 * window,
            "{waited:?} after one group commit"
        );
        let noting = load.note_every(Duration::from_millis(50));
        tokio::task::yield_now().await;
        assert_eq!(load.quiet(window, most).await, most, "a burst that lasts");
        noting.abort();
    }

    #[test]
    fn a_key_is_held_until_its_claim_is_dropped() {
        let set: KeySet = Arc::default();
        let key = || vec![("acme".to_string(), "k".to_string())];
        let claim = KeyClaim::take(&set, key()).expect("free");
        assert!(matches!(
            KeyClaim::take(&set, key()),
            Err(IntakeError::KeyInFlight)
        ));
        assert!(
            KeyClaim::take(&set, vec![("zest".into(), "k".into())]).is_ok(),
            "keys are per brand"
        );
        drop(claim);
        assert!(
            KeyClaim::take(&set, key()).is_ok(),
            "released on drop, e.g. a cancelled request"
        );
    }
}
