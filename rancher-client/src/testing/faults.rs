//! Fault injection for the fake server: errors, slow answers, dropped
//! connections and lost answers, for the next requests or for a while.
//!
//! Each request asks [`Faults::decide`] what happens to it. A request can be
//! dropped before it reaches the API (the client sees the connection close and
//! nothing happened), answered with an error status without reaching the API,
//! delayed, or processed and then dropped (the change happened but the client
//! never hears of it: the case that makes a careless retry duplicate or undo
//! work).

use std::time::Duration;

use tokio::time::Instant;

use super::FakeRancher;
use super::http::lock;

/// A fault injected into requests for a while ([`FakeRancher::fault_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Every request is answered with this status (and a Rancher error body)
    /// without reaching the API, as a failing server or gateway answers.
    Status(u16),
    /// Every connection is closed without an answer before the request
    /// reaches the API.
    Drop,
    /// Every change (a request other than `GET`) is processed, then its
    /// connection is closed without the answer: the change is made, the
    /// client cannot know it. Reads are answered.
    LoseAnswer,
    /// Every request waits this long before it is processed.
    Slow(Duration),
}

/// What happens to one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Close the connection before processing.
    pub(crate) drop: bool,
    /// Wait this long first.
    pub(crate) delay: Option<Duration>,
    /// Answer this status without processing.
    pub(crate) status: Option<u16>,
    /// Process, then close the connection without the answer.
    pub(crate) lose_answer: bool,
}

/// The faults set for the next requests and for windows of time.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Answer the next N requests with this status.
    fail: Option<(u32, u16)>,
    /// Close the connection without answering the next N requests.
    drop: u32,
    /// Process the next N changes and close without answering.
    lose: u32,
    /// Wait this long before answering every request.
    delay: Option<Duration>,
    /// Faults until a deadline.
    windows: Vec<(Instant, Fault)>,
}

impl Faults {
    /// Decides the fate of a request arriving now, using up a counted drop;
    /// `change` says whether it is a write (only those lose their answer).
    /// The counted failures and lost answers are taken by [`Faults::after_delay`],
    /// once the request's delay is over.
    pub(crate) fn decide(&mut self, change: bool) -> Decision {
        let now = Instant::now();
        self.windows.retain(|(until, _)| *until > now);
        let mut decision = Decision {
            delay: self.delay,
            ..Decision::default()
        };
        for (_, fault) in &self.windows {
            match *fault {
                Fault::Status(status) => decision.status = decision.status.or(Some(status)),
                Fault::Drop => decision.drop = true,
                Fault::LoseAnswer => decision.lose_answer |= change,
                Fault::Slow(delay) => {
                    decision.delay = Some(decision.delay.map_or(delay, |d| d.max(delay)));
                }
            }
        }
        if self.drop > 0 {
            self.drop -= 1;
            decision.drop = true;
        }
        decision
    }

    /// Completes `decision` once the request's delay is over (so a failure
    /// set meanwhile still applies to it), using up a counted failure or,
    /// failing that, a counted lost answer.
    pub(crate) fn after_delay(&mut self, decision: &mut Decision, change: bool) {
        if decision.status.is_some() {
            return;
        }
        if let Some((n, status)) = self.fail {
            self.fail = (n > 1).then_some((n - 1, status));
            decision.status = Some(status);
        } else if self.lose > 0 && change {
            self.lose -= 1;
            decision.lose_answer = true;
        }
    }
}

impl FakeRancher {
    /// Answers the next `n` requests with `500 ServerError`.
    pub fn fail_next(&self, n: u32) {
        self.fail_next_with(n, 500);
    }

    /// Answers the next `n` requests with `status` and a Rancher error body.
    pub fn fail_next_with(&self, n: u32, status: u16) {
        lock(&self.shared.faults).fail = (n > 0).then_some((n, status));
    }

    /// Closes the connection of the next `n` requests without answering.
    pub fn drop_next(&self, n: u32) {
        lock(&self.shared.faults).drop = n;
    }

    /// Processes the next `n` changes (requests other than `GET`), then closes
    /// their connections without answering: what they change is changed, and
    /// the client cannot tell. Reads in between are answered.
    pub fn lose_next_answers(&self, n: u32) {
        lock(&self.shared.faults).lose = n;
    }

    /// Delays every response by `delay` (`None` to stop).
    pub fn set_response_delay(&self, delay: Option<Duration>) {
        lock(&self.shared.faults).delay = delay;
    }

    /// Injects `fault` into every request for `duration` from now; afterwards
    /// the server recovers on its own. Windows may overlap.
    pub fn fault_for(&self, fault: Fault, duration: Duration) {
        lock(&self.shared.faults)
            .windows
            .push((Instant::now() + duration, fault));
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        *lock(&self.shared.faults) = Faults::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn windows_end_and_counted_faults_are_used_up() {
        let mut faults = Faults::default();
        faults
            .windows
            .push((Instant::now() + Duration::from_secs(2), Fault::Status(503)));
        assert_eq!(faults.decide(false).status, Some(503));
        assert_eq!(faults.decide(true).status, Some(503));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(faults.decide(true), Decision::default(), "recovered");
        faults.lose = 1;
        let mut read = faults.decide(false);
        faults.after_delay(&mut read, false);
        assert!(!read.lose_answer, "reads are answered");
        let mut write = faults.decide(true);
        faults.after_delay(&mut write, true);
        assert!(write.lose_answer);
        let mut next = faults.decide(true);
        faults.after_delay(&mut next, true);
        assert_eq!(next, Decision::default());
    }
}
