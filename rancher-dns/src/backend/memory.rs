//! An in-memory fake backend for tests (feature `testing`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{DnsBackend, Result};
use crate::model::{Change, RData, ZoneRecords};

/// Records what it was told, for assertions.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    names: Mutex<BTreeMap<String, Vec<RData>>>,
    synced: AtomicBool,
    calls: AtomicUsize,
}

impl MemoryBackend {
    /// An empty, unsynced fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records of a name, if it exists.
    pub fn get(&self, name: &str) -> Option<Vec<RData>> {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no name exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a full sync happened.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// Number of `sync` and `apply` calls.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl DnsBackend for MemoryBackend {
    async fn sync(&self, zone: &dyn ZoneRecords) -> Result<()> {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.clear();
        zone.for_each_name(&mut |name, records| {
            names.insert(name.to_owned(), records.to_vec());
        });
        self.synced.store(true, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn apply(&self, changes: &[Change]) -> Result<()> {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        for c in changes {
            match c {
                Change::Upsert(r) => {
                    names.insert(r.name.clone(), r.records.clone());
                }
                Change::Remove(n) => {
                    names.remove(n);
                }
            }
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::conformance;

    #[tokio::test]
    async fn passes_the_conformance_battery() {
        let backend = MemoryBackend::new();
        conformance::run(&backend, |name| {
            let records = backend.get(&name);
            async move {
                let records = records?;
                let v: Vec<_> = records
                    .iter()
                    .filter_map(|r| match r {
                        RData::A(ip) => Some(*ip),
                        _ => None,
                    })
                    .collect();
                (!v.is_empty()).then_some(v)
            }
        })
        .await;
        assert!(backend.synced());
        assert!(backend.calls() >= 6);
    }
}
