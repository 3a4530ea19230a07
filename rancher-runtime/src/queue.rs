//! A keyed work queue for reconcilers: each key is queued at most once, a key is
//! never processed by two workers at once, failures requeue through
//! [`Policy`], and one slow key never holds up the others.
//!
//! This is the shape of client-go's workqueue: a key added while it is being
//! processed is marked dirty and queued again once its worker is done, so the
//! latest state is always reconciled without running the same key concurrently.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fmt::Debug,
    future::Future,
    hash::Hash,
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::requeue::{Classify, Policy};

/// A deduplicating queue of keys. Cheap to clone.
#[derive(Debug)]
pub struct Queue<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

#[derive(Debug)]
struct Shared<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

#[derive(Debug)]
struct State<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    /// The earliest pending delayed add per key.
    delayed: HashMap<K, Instant>,
    closed: bool,
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> Default for Queue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> Queue<K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    ready: VecDeque::new(),
                    queued: HashSet::new(),
                    processing: HashSet::new(),
                    dirty: HashSet::new(),
                    delayed: HashMap::new(),
                    closed: false,
                }),
                notify: Notify::new(),
            }),
        }
    }

    /// Queues `key` unless it is queued already. A key being processed is queued
    /// again when its worker finishes.
    pub fn add(&self, key: K) {
        let mut state = self.shared.state.lock();
        if state.closed || state.queued.contains(&key) {
            return;
        }
        if state.processing.contains(&key) {
            state.dirty.insert(key);
            return;
        }
        state.queued.insert(key.clone());
        state.ready.push_back(key);
        drop(state);
        self.shared.notify.notify_one();
    }

    /// Queues `key` after `delay`. Of several pending delayed adds for one key only
    /// the earliest is kept.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        {
            let mut state = self.shared.state.lock();
            if state.closed {
                return;
            }
            match state.delayed.get(&key) {
                Some(existing) if *existing <= at => return,
                _ => {
                    state.delayed.insert(key.clone(), at);
                }
            }
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let due = {
                let mut state = queue.shared.state.lock();
                if state.delayed.get(&key) == Some(&at) {
                    state.delayed.remove(&key);
                    true
                } else {
                    false
                }
            };
            if due {
                queue.add(key);
            }
        });
    }

    /// The number of keys waiting (not counting delayed or in-process ones).
    pub fn len(&self) -> usize {
        self.shared.state.lock().ready.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the next key and marks it in process. `None` once closed.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.shared.notify.notified();
            {
                let mut state = self.shared.state.lock();
                if state.closed {
                    return None;
                }
                if let Some(key) = state.ready.pop_front() {
                    state.queued.remove(&key);
                    state.processing.insert(key.clone());
                    if !state.ready.is_empty() {
                        self.shared.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &K) {
        let mut state = self.shared.state.lock();
        state.processing.remove(key);
        if state.dirty.remove(key) {
            drop(state);
            self.add(key.clone());
        }
    }

    /// Closes the queue: [`next`](Self::next) returns `None` to every worker.
    pub fn close(&self) {
        self.shared.state.lock().closed = true;
        self.shared.notify.notify_waiters();
    }

    /// Runs `workers` concurrent workers until `shutdown` is cancelled.
    ///
    /// Each key goes to `reconcile`; on success its backoff resets, on failure it is
    /// queued again after the delay `policy` gives for the error. In-flight
    /// reconciles finish before this returns.
    pub async fn run<F, Fut, E>(
        &self,
        workers: usize,
        policy: Arc<Policy<K>>,
        shutdown: CancellationToken,
        reconcile: F,
    ) where
        F: Fn(K) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Classify + std::fmt::Display + Send + 'static,
        K: Debug,
    {
        let closer = {
            let queue = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                queue.close();
            })
        };
        let mut tasks = Vec::with_capacity(workers.max(1));
        for _ in 0..workers.max(1) {
            let queue = self.clone();
            let policy = policy.clone();
            let reconcile = reconcile.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(key) = queue.next().await {
                    match reconcile(key.clone()).await {
                        Ok(()) => policy.succeeded(&key),
                        Err(error) => {
                            let delay = policy.failed(&key, &error);
                            tracing::debug!(?key, %error, ?delay, "reconcile failed; requeued");
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    queue.done(&key);
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        closer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requeue::ErrorKind;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn keys_are_deduplicated_and_readded_after_processing() {
        let queue = Queue::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
        let first = queue.next().await.unwrap();
        assert_eq!(first, "a");
        // Added while in process: not handed out again until done.
        queue.add("a");
        assert_eq!(queue.next().await, Some("b"));
        assert!(queue.is_empty());
        queue.done(&"a");
        assert_eq!(queue.next().await, Some("a"));
        queue.close();
        assert_eq!(queue.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_adds_keep_the_earliest() {
        let queue = Queue::new();
        queue.add_after("a", Duration::from_secs(10));
        queue.add_after("a", Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(3)).await;
        tokio::task::yield_now().await;
        assert_eq!(queue.next().await, Some("a"));
        queue.done(&"a");
        tokio::time::advance(Duration::from_secs(10)).await;
        tokio::task::yield_now().await;
        assert!(queue.is_empty(), "the later delayed add was dropped");
    }

    struct Slow;
    impl std::fmt::Display for Slow {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("converging")
        }
    }
    impl Classify for Slow {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Retry {
                after: Duration::from_secs(5),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_converging_key_does_not_block_others_and_is_retried() {
        let queue = Queue::new();
        let policy = Arc::new(Policy::default());
        let shutdown = CancellationToken::new();
        let attempts = Arc::new(AtomicUsize::new(0));
        let others = Arc::new(AtomicUsize::new(0));
        let runner = {
            let (queue, shutdown) = (queue.clone(), shutdown.clone());
            let (attempts, others) = (attempts.clone(), others.clone());
            tokio::spawn(async move {
                queue
                    .run(2, policy, shutdown, move |key: &'static str| {
                        let (attempts, others) = (attempts.clone(), others.clone());
                        async move {
                            if key == "slow" {
                                attempts.fetch_add(1, Ordering::SeqCst);
                                Err(Slow)
                            } else {
                                others.fetch_add(1, Ordering::SeqCst);
                                Ok(())
                            }
                        }
                    })
                    .await;
            })
        };
        queue.add("slow");
        for key in ["a", "b", "c"] {
            queue.add(key);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(others.load(Ordering::SeqCst), 3);
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            2,
            "retried after exactly 5 s"
        );
        shutdown.cancel();
        runner.await.unwrap();
    }
}
