//! Address management built into the plugin, compatible in spirit with `host-local`.
//!
//! [`IpStore`] is where reservations live; [`FileStore`] keeps one file per
//! reserved address under `dataDir/<network>/` (content `<containerID>\r\n<ifname>`,
//! as `host-local` writes it), with a `flock` on `dataDir/<network>/lock` around
//! every change, so concurrent plugin processes never hand out one address twice.
//! The algorithm on top ([`allocate`], [`release`], [`gc`]) is written once for
//! every store:
//!
//! - addresses are handed out round-robin from the last reserved one per range set;
//! - when a set is exhausted, reservations whose holder is gone (the caller's
//!   `in_use` says so: the plugin asks whether the attachment's host veth still
//!   exists) are released and the search runs again, so addresses leaked by a
//!   crashed runtime come back without GC ever being called;
//! - a failed allocation releases what it had reserved.

mod file;

pub use file::{FileStore, LAST_RESERVED_PREFIX, LOCK_FILE};

use std::{collections::HashSet, net::IpAddr, path::PathBuf};

use crate::model::{Attachment, Family, Range, RangeSet, Reservation};

/// Errors of the address store and the allocator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the store failed.
    #[error("address store I/O failed on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No free address is left in a range set.
    #[error("no free {family} address left in range set {set} ({ranges})")]
    Exhausted {
        /// The index of the set in `ipam.ranges`.
        set: usize,
        /// Its family.
        family: Family,
        /// Its ranges, for the message.
        ranges: String,
    },
    /// The attachment holds an address in the set already.
    #[error(
        "{address} is already reserved for {container_id}/{ifname}; DEL it before adding it again"
    )]
    Duplicate {
        /// The address held.
        address: IpAddr,
        /// The container.
        container_id: String,
        /// The interface.
        ifname: String,
    },
    /// An address asked for is outside every range set.
    #[error("requested address {0} is not in any configured range")]
    NotInRange(IpAddr),
    /// An address asked for is held by someone else.
    #[error("requested address {0} is already reserved")]
    Taken(IpAddr),
    /// The store is not usable (a fake told to fail, a broken layout).
    #[error("address store unavailable: {0}")]
    Unavailable(String),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where reservations are kept: one independent set of reservations per network.
///
/// Implementations must make [`lock`](IpStore::lock) exclusive across every
/// process that shares the store (the plugin runs as many processes at once), and
/// must make each [`Locked`] change durable before it returns.
pub trait IpStore: Send + Sync {
    /// Takes the network's lock, blocking until it is free; released when the
    /// returned guard is dropped.
    fn lock(&self, network: &str) -> Result<Box<dyn Locked + '_>>;
}

/// The reservations of one network, while its lock is held.
pub trait Locked {
    /// Every reservation of the network.
    fn reservations(&mut self) -> Result<Vec<Reservation>>;

    /// Records `reservation`; `Ok(false)` when its address is held already.
    fn reserve(&mut self, reservation: &Reservation) -> Result<bool>;

    /// Removes the reservation of `addr`; `Ok` when there is none.
    fn release(&mut self, addr: IpAddr) -> Result<()>;

    /// The address last handed out from range set `set`.
    fn last_reserved(&mut self, set: usize) -> Result<Option<IpAddr>>;

    /// Remembers the address last handed out from range set `set`.
    fn set_last_reserved(&mut self, set: usize, addr: IpAddr) -> Result<()>;
}

/// One address handed out, with the range it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The address.
    pub addr: IpAddr,
    /// Its range (subnet and gateway).
    pub range: Range,
}

/// Reserves one address per range set for `attachment`.
///
/// `requested` addresses are taken from the set they belong to; the others are
/// handed out round-robin. `in_use` is asked, only when a set is exhausted, whether
/// a reservation's holder still exists; those that do not are released.
pub fn allocate(
    tx: &mut dyn Locked,
    sets: &[RangeSet],
    attachment: &Attachment,
    requested: &[IpAddr],
    in_use: &dyn Fn(&Reservation) -> bool,
) -> Result<Vec<Allocation>> {
    for addr in requested {
        if !sets.iter().any(|s| s.contains(*addr)) {
            return Err(Error::NotInRange(*addr));
        }
    }
    let mut existing = tx.reservations()?;
    if let Some(held) = existing
        .iter()
        .find(|r| r.attachment == *attachment && sets.iter().any(|s| s.contains(r.addr)))
    {
        return Err(Error::Duplicate {
            address: held.addr,
            container_id: attachment.container_id.clone(),
            ifname: attachment.ifname.clone(),
        });
    }
    let mut done: Vec<Allocation> = Vec::new();
    let result = (|| {
        for (i, set) in sets.iter().enumerate() {
            let addr = match requested.iter().find(|a| set.contains(**a)) {
                Some(addr) => {
                    if !tx.reserve(&reservation(*addr, attachment))? {
                        return Err(Error::Taken(*addr));
                    }
                    *addr
                }
                None => match next_free(tx, set, i, &existing, attachment)? {
                    Some(addr) => addr,
                    None => {
                        // Exhausted: release what nobody holds any more, then retry.
                        let mut reclaimed = false;
                        for stale in existing
                            .iter()
                            .filter(|r| set.contains(r.addr) && !in_use(r))
                        {
                            tx.release(stale.addr)?;
                            reclaimed = true;
                        }
                        let again = if reclaimed {
                            existing = tx.reservations()?;
                            next_free(tx, set, i, &existing, attachment)?
                        } else {
                            None
                        };
                        again.ok_or_else(|| Error::Exhausted {
                            set: i,
                            family: set.family().unwrap_or(Family::V4),
                            ranges: set
                                .ranges
                                .iter()
                                .map(|r| format!("{}-{}", r.start, r.end))
                                .collect::<Vec<_>>()
                                .join(", "),
                        })?
                    }
                },
            };
            let range = set.range_of(addr).cloned().ok_or(Error::NotInRange(addr))?;
            done.push(Allocation { addr, range });
            tx.set_last_reserved(i, addr)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(done),
        Err(e) => {
            for a in &done {
                // Best effort: the caller reports the first error.
                let _ = tx.release(a.addr);
            }
            Err(e)
        }
    }
}

fn reservation(addr: IpAddr, attachment: &Attachment) -> Reservation {
    Reservation {
        addr,
        attachment: attachment.clone(),
    }
}

/// The next free address of `set` after its last reserved one, reserved.
fn next_free(
    tx: &mut dyn Locked,
    set: &RangeSet,
    index: usize,
    existing: &[Reservation],
    attachment: &Attachment,
) -> Result<Option<IpAddr>> {
    let taken: HashSet<IpAddr> = existing.iter().map(|r| r.addr).collect();
    let capacity: u128 = set.ranges.iter().map(Range::capacity).sum();
    let mut cursor = tx.last_reserved(index)?.filter(|a| set.contains(*a));
    let mut tried: u128 = 0;
    while tried < capacity {
        let Some(candidate) = set.next_after(cursor) else {
            return Ok(None);
        };
        tried += 1;
        cursor = Some(candidate);
        if taken.contains(&candidate) {
            continue;
        }
        if tx.reserve(&reservation(candidate, attachment))? {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

/// Releases every address `attachment` holds; `Ok` with nothing released when it
/// holds none (DEL is idempotent).
pub fn release(tx: &mut dyn Locked, attachment: &Attachment) -> Result<Vec<IpAddr>> {
    let mut released = Vec::new();
    for r in tx.reservations()? {
        if r.attachment == *attachment {
            tx.release(r.addr)?;
            released.push(r.addr);
        }
    }
    Ok(released)
}

/// The addresses `attachment` holds.
pub fn held(tx: &mut dyn Locked, attachment: &Attachment) -> Result<Vec<IpAddr>> {
    Ok(tx
        .reservations()?
        .into_iter()
        .filter(|r| r.attachment == *attachment)
        .map(|r| r.addr)
        .collect())
}

/// Releases every reservation whose attachment `keep` rejects; returns them. Goes on
/// past a failed release and reports the first failure at the end.
pub fn gc(tx: &mut dyn Locked, keep: &dyn Fn(&Attachment) -> bool) -> Result<Vec<Reservation>> {
    let mut released = Vec::new();
    let mut first_error = None;
    for r in tx.reservations()? {
        if !keep(&r.attachment) {
            match tx.release(r.addr) {
                Ok(()) => released.push(r),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(released),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryStore;

    fn set(subnet: &str, end: Option<&str>) -> RangeSet {
        RangeSet {
            ranges: vec![
                Range::new(
                    subnet.parse().unwrap(),
                    None,
                    end.map(|e| e.parse().unwrap()),
                    None,
                )
                .unwrap(),
            ],
        }
    }

    #[test]
    fn allocation_is_round_robin_and_release_is_idempotent() {
        let store = MemoryStore::default();
        let sets = [set("10.42.0.0/24", None)];
        let mut tx = store.lock("net").unwrap();
        let a = allocate(&mut *tx, &sets, &Attachment::new("a", "eth0"), &[], &|_| {
            true
        })
        .unwrap();
        let b = allocate(&mut *tx, &sets, &Attachment::new("b", "eth0"), &[], &|_| {
            true
        })
        .unwrap();
        assert_eq!(a[0].addr.to_string(), "10.42.0.2");
        assert_eq!(b[0].addr.to_string(), "10.42.0.3");
        assert_eq!(
            release(&mut *tx, &Attachment::new("a", "eth0"))
                .unwrap()
                .len(),
            1
        );
        assert!(
            release(&mut *tx, &Attachment::new("a", "eth0"))
                .unwrap()
                .is_empty()
        );
        // Round-robin: the freed .2 is not handed out next.
        let c = allocate(&mut *tx, &sets, &Attachment::new("c", "eth0"), &[], &|_| {
            true
        })
        .unwrap();
        assert_eq!(c[0].addr.to_string(), "10.42.0.4");
        let dup = allocate(&mut *tx, &sets, &Attachment::new("c", "eth0"), &[], &|_| {
            true
        });
        assert!(matches!(dup, Err(Error::Duplicate { .. })));
    }

    #[test]
    fn exhaustion_reclaims_only_dead_holders() {
        let store = MemoryStore::default();
        // .2 and .3 only.
        let sets = [set("10.42.0.0/24", Some("10.42.0.3"))];
        let mut tx = store.lock("net").unwrap();
        for id in ["a", "b"] {
            allocate(&mut *tx, &sets, &Attachment::new(id, "eth0"), &[], &|_| {
                true
            })
            .unwrap();
        }
        let err = allocate(&mut *tx, &sets, &Attachment::new("c", "eth0"), &[], &|_| {
            true
        });
        assert!(
            matches!(err, Err(Error::Exhausted { set: 0, .. })),
            "{err:?}"
        );
        let got = allocate(&mut *tx, &sets, &Attachment::new("c", "eth0"), &[], &|r| {
            r.attachment.container_id != "a"
        })
        .unwrap();
        assert_eq!(got[0].addr.to_string(), "10.42.0.2");
    }

    #[test]
    fn dual_stack_failure_releases_the_first_family() {
        let store = MemoryStore::default();
        let sets = [set("10.42.0.0/24", None), set("fd42::/126", None)];
        let mut tx = store.lock("net").unwrap();
        allocate(&mut *tx, &sets, &Attachment::new("a", "eth0"), &[], &|_| {
            true
        })
        .unwrap();
        // fd42::/126 holds only ::2.
        let err = allocate(&mut *tx, &sets, &Attachment::new("b", "eth0"), &[], &|_| {
            true
        });
        assert!(
            matches!(err, Err(Error::Exhausted { set: 1, .. })),
            "{err:?}"
        );
        assert_eq!(tx.reservations().unwrap().len(), 2);
    }

    #[test]
    fn requested_addresses() {
        let store = MemoryStore::default();
        let sets = [set("10.42.0.0/24", None)];
        let mut tx = store.lock("net").unwrap();
        let want: IpAddr = "10.42.0.77".parse().unwrap();
        let got = allocate(
            &mut *tx,
            &sets,
            &Attachment::new("a", "eth0"),
            &[want],
            &|_| true,
        )
        .unwrap();
        assert_eq!(got[0].addr, want);
        let err = allocate(
            &mut *tx,
            &sets,
            &Attachment::new("b", "eth0"),
            &[want],
            &|_| true,
        );
        assert!(matches!(err, Err(Error::Taken(_))));
        let outside: IpAddr = "10.9.0.1".parse().unwrap();
        let err = allocate(
            &mut *tx,
            &sets,
            &Attachment::new("b", "eth0"),
            &[outside],
            &|_| true,
        );
        assert!(matches!(err, Err(Error::NotInRange(_))));
    }

    #[test]
    fn gc_keeps_valid_attachments() {
        let store = MemoryStore::default();
        let sets = [set("10.42.0.0/24", None)];
        let mut tx = store.lock("net").unwrap();
        for id in ["a", "b", "c"] {
            allocate(&mut *tx, &sets, &Attachment::new(id, "eth0"), &[], &|_| {
                true
            })
            .unwrap();
        }
        let gone = gc(&mut *tx, &|a| a.container_id == "b").unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(tx.reservations().unwrap().len(), 1);
    }
}
