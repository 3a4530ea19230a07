//! Writes Rancher DNS's `answers.json` for a host that runs the original
//! rancher-dns server, atomically (write a temporary file, then rename).
//!
//! Format: `{"default": {"search", "recurse", "authoritative", "a", "cname",
//! "ptr", "txt"}}`; keys are lower-case FQDNs ending in a dot. The format has
//! no AAAA or SRV sections, so those records are left out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use serde::Serialize;

use super::{DnsBackend, Error, Result};
use crate::model::{Change, RData, ZoneRecords};

/// Where and how to write the answers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswersConfig {
    /// The file to write (its directory must exist).
    pub path: PathBuf,
    /// The cluster domain, listed as `authoritative`.
    pub zone: String,
    /// Search suffixes for the `default` client.
    pub search: Vec<String>,
    /// Upstream resolvers (`recurse`), e.g. `["PARENT_DNS"]` for the host
    /// script to substitute.
    pub recurse: Vec<String>,
    /// TTL written on `a` answers.
    pub ttl: u32,
}

#[derive(Debug, Serialize)]
struct Multi {
    answer: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Single {
    answer: String,
}

#[derive(Debug, Serialize, Default)]
struct Client {
    search: Vec<String>,
    recurse: Vec<String>,
    authoritative: Vec<String>,
    a: BTreeMap<String, Multi>,
    cname: BTreeMap<String, Single>,
    ptr: BTreeMap<String, Single>,
    txt: BTreeMap<String, Multi>,
}

/// Keeps the zone in memory and rewrites `answers.json` on every change.
#[derive(Debug)]
pub struct AnswersBackend {
    config: AnswersConfig,
    names: Mutex<BTreeMap<String, Vec<RData>>>,
}

impl AnswersBackend {
    /// A backend writing to `config.path`.
    pub fn new(config: AnswersConfig) -> Self {
        Self {
            config,
            names: Mutex::new(BTreeMap::new()),
        }
    }

    fn render(&self, names: &BTreeMap<String, Vec<RData>>) -> Result<Vec<u8>> {
        let fqdn = |n: &str| format!("{n}.");
        let mut client = Client {
            search: self.config.search.clone(),
            recurse: self.config.recurse.clone(),
            authoritative: vec![self.config.zone.clone()],
            ..Client::default()
        };
        for (name, records) in names {
            let a: Vec<String> = records
                .iter()
                .filter_map(|r| match r {
                    RData::A(ip) => Some(ip.to_string()),
                    _ => None,
                })
                .collect();
            if !a.is_empty() {
                client.a.insert(
                    fqdn(name),
                    Multi {
                        answer: a,
                        ttl: Some(self.config.ttl),
                    },
                );
            }
            for r in records {
                match r {
                    RData::Cname(t) => {
                        client.cname.insert(fqdn(name), Single { answer: fqdn(t) });
                    }
                    RData::Ptr(t) => {
                        client
                            .ptr
                            .entry(fqdn(name))
                            .or_insert_with(|| Single { answer: fqdn(t) });
                    }
                    RData::Txt(strings) => {
                        client.txt.insert(
                            fqdn(name),
                            Multi {
                                answer: strings.clone(),
                                ttl: None,
                            },
                        );
                    }
                    _ => {}
                }
            }
        }
        let doc = BTreeMap::from([("default", client)]);
        serde_json::to_vec_pretty(&doc).map_err(|e| Error::Other(Box::new(e)))
    }

    fn write(&self, names: &BTreeMap<String, Vec<RData>>) -> Result<()> {
        let bytes = self.render(names)?;
        let path = &self.config.path;
        let err = |source| Error::Write {
            path: path.clone(),
            source,
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

#[async_trait]
impl DnsBackend for AnswersBackend {
    async fn sync(&self, zone: &dyn ZoneRecords) -> Result<()> {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.clear();
        zone.for_each_name(&mut |name, records| {
            names.insert(name.to_owned(), records.to_vec());
        });
        self.write(&names)
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
        self.write(&names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::conformance;

    fn read_a(path: &std::path::Path, name: &str) -> Option<Vec<std::net::Ipv4Addr>> {
        let text = std::fs::read_to_string(path).ok()?;
        let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
        let list = doc["default"]["a"].get(format!("{name}."))?["answer"]
            .as_array()?
            .clone();
        Some(
            list.iter()
                .filter_map(|v| v.as_str()?.parse().ok())
                .collect(),
        )
    }

    #[tokio::test]
    async fn passes_the_conformance_battery_and_writes_the_rancher_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("answers.json");
        let backend = AnswersBackend::new(AnswersConfig {
            path: path.clone(),
            zone: "cluster.local".into(),
            search: vec!["svc.cluster.local".into()],
            recurse: vec!["PARENT_DNS".into()],
            ttl: 5,
        });
        let p = path.clone();
        conformance::run(&backend, move |name| {
            let p = p.clone();
            async move { read_a(&p, &name) }
        })
        .await;
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let d = &doc["default"];
        assert_eq!(d["authoritative"][0], "cluster.local");
        assert_eq!(d["recurse"][0], "PARENT_DNS");
        assert_eq!(d["txt"]["dns-version.cluster.local."]["answer"][0], "1.1.0");
        assert!(
            !dir.path().join("answers.json.tmp").exists(),
            "temporary file renamed away"
        );
    }
}
