//! Driver ensures in flight, so that Services created together are applied
//! together without a worker waiting on each.
//!
//! The service controller calls the provider from a few workers, one Service
//! at a time. If each call waited for its driver `ensure`, a driver batching
//! concurrent calls (the HAProxy driver: one check and reload for every call
//! waiting) could batch no more Services than there are workers. Instead the
//! `ensure` runs in a task of its own: the call waits for it when nothing
//! else is being applied (one change, one call), and otherwise returns
//! [`Error::Retry`](crate::Error::Retry) at once, leaving the worker free for
//! the next Service. When the task ends, the load balancer's name is sent on
//! [`Applying::finished`], the controller asks again, and the call takes the
//! result without going back to the driver.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use rancher_lb::{
    driver::{self, Driver},
    model::{LbId, LoadBalancer},
};
use tokio::sync::{broadcast, watch};

/// One `ensure` in flight (or finished, its result not yet taken).
struct Call {
    lb: LoadBalancer,
    done: watch::Receiver<bool>,
    result: Arc<Mutex<Option<driver::Result<driver::Status>>>>,
}

/// What [`Applying::ensure`] gives.
pub(super) enum Outcome {
    /// The driver's answer.
    Done(driver::Result<driver::Status>),
    /// Still being applied, together with others.
    Pending,
}

/// The driver ensures in flight, by load balancer id.
pub(super) struct Applying {
    calls: Mutex<HashMap<LbId, Call>>,
    finished: broadcast::Sender<String>,
}

impl Applying {
    pub(super) fn new() -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
            finished: broadcast::channel(4 * driver::STATUS_CHANNEL_CAPACITY).0,
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<LbId, Call>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The names of load balancers whose ensure ended.
    pub(super) fn finished(&self) -> broadcast::Receiver<String> {
        self.finished.subscribe()
    }

    /// Ensures `lb` on `driver`: starts the ensure unless the same load
    /// balancer is in flight already, then waits for it when nothing else is
    /// in flight; otherwise answers [`Outcome::Pending`] unless it is done.
    pub(super) async fn ensure(&self, driver: &Arc<dyn Driver>, lb: &LoadBalancer) -> Outcome {
        let id = lb.id().clone();
        let (mut done, result, alone) = {
            let mut calls = self.calls();
            let alone = calls.iter().all(|(k, c)| *k == id || *c.done.borrow());
            let call = match calls.get(&id) {
                Some(call) if call.lb == *lb => call,
                _ => {
                    calls.insert(id.clone(), self.start(driver.clone(), lb.clone()));
                    &calls[&id]
                }
            };
            (call.done.clone(), call.result.clone(), alone)
        };
        let ended = if alone {
            done.wait_for(|d| *d).await.is_ok()
        } else {
            *done.borrow()
        };
        if !ended {
            return Outcome::Pending;
        }
        let taken = result.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut calls = self.calls();
        if calls
            .get(&id)
            .is_some_and(|c| Arc::ptr_eq(&c.result, &result))
        {
            calls.remove(&id);
        }
        match taken {
            Some(result) => Outcome::Done(result),
            // Taken by a call for the same load balancer made meanwhile.
            None => Outcome::Pending,
        }
    }

    /// Whether the ensure of the load balancer named `name` is still running
    /// (its end is announced on [`Applying::finished`]).
    pub(super) fn is_running(&self, name: &str) -> bool {
        let Ok(id) = LbId::new(name) else {
            return false;
        };
        self.calls().get(&id).is_some_and(|c| !*c.done.borrow())
    }

    /// Forgets `id`'s ensure (its Service is going away) once it has ended,
    /// so that a deletion made next is not undone by it.
    pub(super) async fn forget(&self, id: &LbId) {
        let call = self.calls().remove(id);
        if let Some(mut call) = call {
            let _ = call.done.wait_for(|d| *d).await;
        }
    }

    fn start(&self, driver: Arc<dyn Driver>, lb: LoadBalancer) -> Call {
        let (tx, done) = watch::channel(false);
        let result = Arc::new(Mutex::new(None));
        let call = Call {
            lb: lb.clone(),
            done,
            result: result.clone(),
        };
        let finished = self.finished.clone();
        tokio::spawn(async move {
            let answer = driver.ensure(&lb).await;
            *result.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
            let _ = tx.send(true);
            let _ = finished.send(lb.id().to_string());
        });
        call
    }
}
