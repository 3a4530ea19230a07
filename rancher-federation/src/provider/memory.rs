//! [`MemoryProvider`]: an in-memory zone for tests, with a log of every change
//! applied and failure injection.

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{DnsProvider, Error, Result};
use crate::model::{Changes, RecordSet, Scope};

/// An in-memory zone. Every applied [`Changes`] is logged, so tests can check
/// that a provider user sends minimal changes.
#[derive(Debug, Default)]
pub struct MemoryProvider {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: RecordSet,
    applied: Vec<Changes>,
    failing: Option<String>,
}

impl MemoryProvider {
    /// An empty zone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record in the zone, in any scope.
    pub fn all(&self) -> RecordSet {
        self.state.lock().records.clone()
    }

    /// Every change applied so far, oldest first.
    pub fn applied(&self) -> Vec<Changes> {
        self.state.lock().applied.clone()
    }

    /// Makes every call fail with `reason` until [`recover`](Self::recover).
    pub fn fail(&self, reason: impl Into<String>) {
        self.state.lock().failing = Some(reason.into());
    }

    /// Ends a failure started with [`fail`](Self::fail).
    pub fn recover(&self) {
        self.state.lock().failing = None;
    }

    fn check(state: &State) -> Result<()> {
        match &state.failing {
            Some(reason) => Err(Error::Unreachable {
                server: "memory".into(),
                source: std::io::Error::other(reason.clone()),
            }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl DnsProvider for MemoryProvider {
    async fn records(&self, scope: &Scope) -> Result<RecordSet> {
        let state = self.state.lock();
        Self::check(&state)?;
        Ok(state
            .records
            .iter()
            .filter(|record| scope.owns(&record.name))
            .cloned()
            .collect())
    }

    async fn apply(&self, changes: &Changes) -> Result<()> {
        let mut state = self.state.lock();
        Self::check(&state)?;
        // A zone holds one TTL per RRset: an addition replaces the TTL of
        // records of the same name and type.
        for added in &changes.added {
            let stale: Vec<_> = state
                .records
                .iter()
                .filter(|r| {
                    r.name == added.name && r.data.kind() == added.data.kind() && r.ttl != added.ttl
                })
                .cloned()
                .collect();
            for record in stale {
                state.records.remove(&record);
                let mut renewed = record;
                renewed.ttl = added.ttl;
                state.records.insert(renewed);
            }
        }
        changes.apply_to(&mut state.records);
        state.applied.push(changes.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_provider_passes_the_conformance_battery() {
        let provider = MemoryProvider::new();
        super::super::conformance::run(&provider).await;
    }

    #[tokio::test]
    async fn failures_are_reported_until_recovered() {
        let provider = MemoryProvider::new();
        let scope = crate::model::Federation::new("f", "example.org")
            .unwrap()
            .scope();
        provider.fail("down");
        assert!(matches!(
            provider.records(&scope).await,
            Err(Error::Unreachable { .. })
        ));
        provider.recover();
        assert!(provider.records(&scope).await.unwrap().is_empty());
    }
}
