//! Reconcile policy: how long to wait before trying an object again.
//!
//! Errors say what kind of retry they want through [`Classify`]:
//! [`ErrorKind::Retry`] requeues after exactly the delay the backend asked for;
//! [`ErrorKind::Backoff`] backs off exponentially with jitter, from 5 s doubling up
//! to 5 min. A successful reconcile resets the object's backoff.

use std::{collections::HashMap, hash::Hash, time::Duration};

use parking_lot::Mutex;

/// What kind of retry an error asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend is converging: try again after exactly this delay, without
    /// counting it as a failure.
    Retry {
        /// The delay before the next attempt.
        after: Duration,
    },
    /// A failure: back off exponentially.
    Backoff,
}

/// Implemented by controller errors so the policy knows how to requeue.
pub trait Classify {
    /// The retry this error asks for.
    fn kind(&self) -> ErrorKind {
        ErrorKind::Backoff
    }
}

/// Exponential backoff parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// The fraction of each delay drawn at random and added (0.0 = none).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay before attempt number `failures` (1 for the first failure),
    /// without jitter: `initial * 2^(failures-1)`, capped at `max`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |delay| delay.min(self.max))
    }

    /// The delay with jitter added; never more than `max * (1 + jitter)`.
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self.base_delay(failures);
        let jitter = self.jitter.clamp(0.0, 1.0);
        base + base.mul_f64(jitter * fastrand::f64())
    }
}

/// Per-object retry state for one controller.
///
/// Keys are whatever identifies an object to the controller (for example
/// `ObjectRef<K>` or `(namespace, name)`).
#[derive(Debug)]
pub struct Policy<Key> {
    backoff: Backoff,
    failures: Mutex<HashMap<Key, u32>>,
}

impl<Key: Eq + Hash + Clone> Default for Policy<Key> {
    fn default() -> Self {
        Self::new(Backoff::default())
    }
}

impl<Key: Eq + Hash + Clone> Policy<Key> {
    /// A policy with these backoff parameters.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failed reconcile of `key` and returns the delay before the next try.
    pub fn failed(&self, key: &Key, error: &impl Classify) -> Duration {
        match error.kind() {
            ErrorKind::Retry { after } => after,
            ErrorKind::Backoff => {
                let mut failures = self.failures.lock();
                let count = failures.entry(key.clone()).or_insert(0);
                *count = count.saturating_add(1);
                self.backoff.delay(*count)
            }
        }
    }

    /// Records a successful reconcile of `key`, resetting its backoff.
    pub fn succeeded(&self, key: &Key) {
        self.failures.lock().remove(key);
    }

    /// Forgets `key` (the object was deleted).
    pub fn forget(&self, key: &Key) {
        self.succeeded(key);
    }

    /// The number of consecutive failures recorded for `key`.
    pub fn failures(&self, key: &Key) -> u32 {
        self.failures.lock().get(key).copied().unwrap_or(0)
    }

    /// The same decision as [`Policy::failed`], as a kube-runtime [`Action`] for
    /// use in a `Controller`'s error policy.
    ///
    /// [`Action`]: kube::runtime::controller::Action
    pub fn action(&self, key: &Key, error: &impl Classify) -> kube::runtime::controller::Action {
        kube::runtime::controller::Action::requeue(self.failed(key, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum TestError {
        Retry(Duration),
        Plain,
    }

    impl Classify for TestError {
        fn kind(&self) -> ErrorKind {
            match self {
                Self::Retry(after) => ErrorKind::Retry { after: *after },
                Self::Plain => ErrorKind::Backoff,
            }
        }
    }

    #[test]
    fn retry_requeues_after_exactly_the_requested_delay() {
        let policy = Policy::<&str>::default();
        let after = Duration::from_millis(1234);
        for _ in 0..5 {
            assert_eq!(policy.failed(&"a", &TestError::Retry(after)), after);
        }
        assert_eq!(policy.failures(&"a"), 0, "a Retry is not a failure");
        let action = policy.action(&"a", &TestError::Retry(after));
        assert_eq!(
            action,
            kube::runtime::controller::Action::requeue(after),
            "the controller action carries the same delay"
        );
    }

    #[test]
    fn plain_errors_back_off_exponentially_with_bounded_jitter_and_reset_on_success() {
        let policy = Policy::<&str>::default();
        let mut previous_base = Duration::ZERO;
        for failure in 1..=12u32 {
            let delay = policy.failed(&"a", &TestError::Plain);
            let base = Backoff::default().base_delay(failure);
            assert!(
                delay >= base && delay <= base.mul_f64(1.1),
                "{failure}: {delay:?}"
            );
            assert!(base >= previous_base);
            previous_base = base;
        }
        assert_eq!(
            previous_base,
            Duration::from_secs(300),
            "capped at 5 minutes"
        );
        assert_eq!(
            Backoff::default().base_delay(1),
            Duration::from_secs(5),
            "first delay"
        );
        assert_eq!(Backoff::default().base_delay(2), Duration::from_secs(10));
        assert_eq!(Backoff::default().base_delay(4), Duration::from_secs(40));

        // Another key is unaffected; success resets.
        assert_eq!(policy.failures(&"b"), 0);
        policy.succeeded(&"a");
        let delay = policy.failed(&"a", &TestError::Plain);
        assert!(delay < Duration::from_secs(6), "{delay:?}");
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let backoff = Backoff::default();
        assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(300));
        assert_eq!(backoff.base_delay(0), Duration::from_secs(5));
    }
}
