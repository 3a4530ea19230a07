//! [`FileStore`]: reservations as files, in `host-local`'s layout.

use std::{
    fs::{self, File, OpenOptions},
    io::{ErrorKind, Write},
    net::IpAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use super::{Error, IpStore, Locked, Result};
use crate::model::{Attachment, Reservation};

/// The lock file of a network's directory.
pub const LOCK_FILE: &str = "lock";

/// The prefix of the per-set "last reserved" files.
pub const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";

/// Reservations under `root/<network>/`: one file per address holding
/// `<containerID>\r\n<ifname>`, `last_reserved_ip.<set>`, and `lock`, which is
/// `flock`ed while a [`Locked`] guard lives.
#[derive(Clone, Debug)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store under `root` (created on first use, mode 0700).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of `network`.
    pub fn dir(&self, network: &str) -> PathBuf {
        self.root.join(network)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl IpStore for FileStore {
    fn lock(&self, network: &str) -> Result<Box<dyn Locked + '_>> {
        // The network name was validated ([A-Za-z0-9][A-Za-z0-9_.-]*), but this is a
        // path component: refuse anything else outright.
        if network.is_empty() || network.contains('/') || network == "." || network == ".." {
            return Err(Error::Unavailable(format!(
                "network name {network:?} is not a directory name"
            )));
        }
        let dir = self.dir(network);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        Ok(Box::new(FileLocked { dir, _lock: lock }))
    }
}

struct FileLocked {
    dir: PathBuf,
    // Holding the file holds the flock; dropping it releases the lock.
    _lock: File,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileLocked {
    fn tmp_path(&self) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".tmp-{}-{n}", std::process::id()))
    }

    /// Writes `content` to a temporary file first, so a reader never sees a
    /// half-written reservation even if the plugin is killed mid-write.
    fn write_tmp(&self, content: &[u8]) -> Result<PathBuf> {
        let tmp = self.tmp_path();
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(content).map_err(io(&tmp))?;
        Ok(tmp)
    }
}

fn parse_reservation(addr: IpAddr, content: &str) -> Reservation {
    let mut lines = content.split("\r\n").map(str::trim);
    let container_id = lines.next().unwrap_or_default().to_string();
    let ifname = lines.next().unwrap_or_default().to_string();
    Reservation {
        addr,
        attachment: Attachment {
            container_id,
            ifname,
        },
    }
}

impl Locked for FileLocked {
    fn reservations(&mut self) -> Result<Vec<Reservation>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io(&self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            let Some(addr) = name.to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                // `lock`, `last_reserved_ip.N`, temporaries left by a killed plugin.
                if name.to_str().is_some_and(|n| n.starts_with(".tmp-")) {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            };
            let path = entry.path();
            match fs::read_to_string(&path) {
                Ok(content) => out.push(parse_reservation(addr, &content)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        out.sort_by_key(|r| r.addr);
        Ok(out)
    }

    fn reserve(&mut self, reservation: &Reservation) -> Result<bool> {
        let content = format!(
            "{}\r\n{}",
            reservation.attachment.container_id, reservation.attachment.ifname
        );
        let tmp = self.write_tmp(content.as_bytes())?;
        let path = self.dir.join(reservation.addr.to_string());
        // link(2) fails with EEXIST when the address is held: atomic test-and-set.
        let linked = match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io(&path)(e)),
        };
        let _ = fs::remove_file(&tmp);
        linked
    }

    fn release(&mut self, addr: IpAddr) -> Result<()> {
        let path = self.dir.join(addr.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn last_reserved(&mut self, set: usize) -> Result<Option<IpAddr>> {
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn set_last_reserved(&mut self, set: usize, addr: IpAddr) -> Result<()> {
        // Rewritten in place, not replaced by a rename: replacing frees the old
        // file's block, and on a filesystem mounted with `discard` that waits for
        // the disk. The file is only where the round-robin resumes: a write torn
        // by a killed plugin leaves a hint that is wrong or unreadable (read as
        // none), never a second holder of an address.
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        let content = addr.to_string();
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(content.as_bytes()).map_err(io(&path))?;
        f.set_len(content.len() as u64).map_err(io(&path))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use super::*;
    use crate::{
        ipam::{allocate, release},
        model::{Range, RangeSet},
    };

    #[test]
    fn layout_matches_host_local() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let sets = [RangeSet {
            ranges: vec![Range::new("10.42.0.0/24".parse().unwrap(), None, None, None).unwrap()],
        }];
        let mut tx = store.lock("net").unwrap();
        allocate(
            &mut *tx,
            &sets,
            &Attachment::new("c1", "eth0"),
            &[],
            &|_| true,
        )
        .unwrap();
        drop(tx);
        let d = dir.path().join("net");
        assert_eq!(
            fs::read_to_string(d.join("10.42.0.2")).unwrap(),
            "c1\r\neth0"
        );
        assert_eq!(
            fs::read_to_string(d.join("last_reserved_ip.0")).unwrap(),
            "10.42.0.2"
        );
        assert!(d.join("lock").exists());
        let mut tx = store.lock("net").unwrap();
        assert_eq!(
            release(&mut *tx, &Attachment::new("c1", "eth0"))
                .unwrap()
                .len(),
            1
        );
        assert!(!d.join("10.42.0.2").exists());
        assert!(store.lock("../x").is_err());
    }

    #[test]
    fn concurrent_allocations_never_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::new(dir.path()));
        // .2 to .41: 40 addresses for 60 allocators.
        let sets = Arc::new([RangeSet {
            ranges: vec![
                Range::new(
                    "10.42.0.0/24".parse().unwrap(),
                    None,
                    Some("10.42.0.41".parse().unwrap()),
                    None,
                )
                .unwrap(),
            ],
        }]);
        let handles: Vec<_> = (0..60)
            .map(|i| {
                let store = Arc::clone(&store);
                let sets = Arc::clone(&sets);
                std::thread::spawn(move || {
                    // A separate FileStore per thread: separate lock file handles, as
                    // separate plugin processes have.
                    let store = FileStore::new(store.root.clone());
                    let mut tx = store.lock("net").unwrap();
                    allocate(
                        &mut *tx,
                        &*sets,
                        &Attachment::new(format!("c{i}"), "eth0"),
                        &[],
                        &|_| true,
                    )
                    .map(|a| a[0].addr)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok: Vec<IpAddr> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let unique: HashSet<IpAddr> = ok.iter().copied().collect();
        assert_eq!(ok.len(), 40);
        assert_eq!(unique.len(), 40);
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, Error::Exhausted { .. }))
        );
    }
}
