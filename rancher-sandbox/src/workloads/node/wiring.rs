//! Root mode's CNI calls, made away from the store's lock: a pod's ADD runs on a thread
//! of its own (pods are wired side by side, and the API server and the other controllers
//! go on meanwhile), and its result wakes the kubelet's loop for the pod. A DEL runs on a
//! thread too. A pod deleted while its ADD runs is unwired when the ADD returns.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::UnboundedSender;

use super::NodeKey;
use super::cni::CniNetwork;
use crate::workloads::objects::Key;

/// Where a pod's namespace is wired: the node's bridge and range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) bridge: String,
    pub(crate) range: String,
}

/// What is known of a pod's ADD.
#[derive(Debug)]
pub(crate) enum Wire {
    /// No ADD was started for this pod.
    Idle,
    /// The ADD runs.
    Running,
    /// The ADD returned.
    Done(io::Result<IpAddr>),
}

/// ADDs that returned, and pods whose ADD is no longer wanted, shared with the threads.
#[derive(Debug, Default)]
struct Returned {
    /// The sandbox stops: a returning ADD is undone by its own thread.
    closed: bool,
    /// By pod uid.
    results: HashMap<String, io::Result<IpAddr>>,
    /// Pods deleted while their ADD ran.
    abandoned: HashSet<String>,
}

/// The CNI calls of one kubelet.
#[derive(Debug)]
pub(crate) struct Wiring {
    cni: CniNetwork,
    /// Pods whose ADD runs or returned and is not yet taken: uid and place.
    started: HashMap<Key, (String, Place)>,
    returned: Arc<Mutex<Returned>>,
    wake: UnboundedSender<NodeKey>,
}

impl Wiring {
    pub(crate) fn new(cni: CniNetwork, wake: UnboundedSender<NodeKey>) -> Self {
        Self {
            cni,
            started: HashMap::new(),
            returned: Arc::default(),
            wake,
        }
    }

    pub(crate) fn cni(&self) -> &CniNetwork {
        &self.cni
    }

    /// Whether an ADD was started for the pod and not yet taken.
    pub(crate) fn started(&self, key: &Key) -> bool {
        self.started.contains_key(key)
    }

    /// Where the pod `uid` stands.
    pub(crate) fn poll(&mut self, key: &Key, uid: &str) -> Wire {
        match self.started.get(key) {
            Some((started, _)) if started == uid => {}
            _ => return Wire::Idle,
        }
        let result = lock(&self.returned).results.remove(uid);
        match result {
            Some(result) => {
                self.started.remove(key);
                Wire::Done(result)
            }
            None => Wire::Running,
        }
    }

    /// Starts the pod's ADD on a thread; its return queues `key` again.
    pub(crate) fn begin(&mut self, key: &Key, uid: &str, place: Place) {
        self.started
            .insert(key.clone(), (uid.to_string(), place.clone()));
        let (cni, returned, wake) = (self.cni.clone(), self.returned.clone(), self.wake.clone());
        let (thread_key, uid) = (key.clone(), uid.to_string());
        let thread_uid = uid.clone();
        let spawned = std::thread::Builder::new()
            .name("sandbox-cni-add".into())
            .spawn(move || {
                let uid = thread_uid;
                let result = cni.add(&uid, &place.bridge, &place.range);
                let mut r = lock(&returned);
                if r.closed || r.abandoned.remove(&uid) {
                    let closed = r.closed;
                    drop(r);
                    if result.is_ok() {
                        cni.del(&uid, &place.bridge, &place.range);
                    }
                    if closed {
                        cni.remove_bridge(&place.bridge);
                    }
                    return;
                }
                r.results.insert(uid, result);
                drop(r);
                let _ = wake.send(NodeKey::Pod(thread_key));
            });
        if let Err(e) = spawned {
            lock(&self.returned).results.insert(uid, Err(e));
            let _ = self.wake.send(NodeKey::Pod(key.clone()));
        }
    }

    /// Forgets the pod's ADD: undone now if it returned, when it returns otherwise.
    pub(crate) fn abandon(&mut self, key: &Key) {
        let Some((uid, place)) = self.started.remove(key) else {
            return;
        };
        let mut r = lock(&self.returned);
        match r.results.remove(&uid) {
            Some(Ok(_)) => {
                drop(r);
                self.unwire(&uid, &place);
            }
            Some(Err(_)) => {}
            None => {
                r.abandoned.insert(uid);
            }
        }
    }

    /// Unwires a pod on a thread (at once if no thread can be made).
    pub(crate) fn unwire(&self, uid: &str, place: &Place) {
        let (cni, uid2, place2) = (self.cni.clone(), uid.to_string(), place.clone());
        let spawned = std::thread::Builder::new()
            .name("sandbox-cni-del".into())
            .spawn(move || cni.del(&uid2, &place2.bridge, &place2.range));
        if spawned.is_err() {
            self.cni.del(uid, &place.bridge, &place.range);
        }
    }

    /// The sandbox stops: returned ADDs are undone here, running ones by their threads.
    pub(crate) fn close(&mut self) {
        let results = {
            let mut r = lock(&self.returned);
            r.closed = true;
            std::mem::take(&mut r.results)
        };
        for (uid, place) in self.started.values() {
            if let Some(Ok(_)) = results.get(uid) {
                self.cni.del(uid, &place.bridge, &place.range);
            }
        }
        self.started.clear();
    }
}

fn lock(m: &Mutex<Returned>) -> std::sync::MutexGuard<'_, Returned> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
