//! The node manager's side of the object store: allocation, sealing, spilling and restoring.
//! (The shared memory itself is [`Arena`].)
//!
//! [`Store`] owns the allocator and the regions handed to writers but not sealed yet. Its
//! invariants: a region is sealed at most once, only by the process it was allocated to, and
//! only with a value that fits it; every size is checked arithmetic, so no request can wrap
//! the allocator. Spill files live in a directory of this node's own making ([`SpillDir`]),
//! private to its user, and are read back only if they are exactly as long as written.
//!
//! Unlike the rest of the state machine, this module does synchronous local I/O: it copies
//! into the shared memory it owns and reads and writes its spill files, because a `get` of a
//! spilled object must restore it before it can answer.

use super::objects::ObjState;
use super::state::NodeState;
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{ObjectId, ProcId};
use crate::log;
use crate::object_store::{Allocator, Arena, PAD};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct Store {
    pub arena: Arc<Arena>,
    alloc: Allocator,
    /// Regions allocated to a writer and not sealed yet: region → (writer, size).
    pending: HashMap<u64, (ProcId, u64)>,
    /// Objects in the store, oldest first: the spill order. May hold ids that left since.
    resident: VecDeque<ObjectId>,
    spill: SpillDir,
    /// Freed ranges whose pages are still in memory, for the next objects (offset → len).
    warm: BTreeMap<u64, u64>,
    warm_bytes: u64,
    warm_limit: u64,
    pub spilled: u64,
    pub restored: u64,
}

impl Store {
    pub(crate) fn new(arena: Arc<Arena>, spill: SpillDir) -> Self {
        let alloc = Allocator::new(arena.capacity());
        // Half the store, at most 4 GiB: a node that received or made a 1 GiB object keeps
        // its pages for the next one (a 1 GiB pull into fresh pages spends most of its time
        // faulting them in: 1.03 GB/s node to node with a 1 GiB limit, 1.72 with this one).
        let warm_limit = (arena.capacity() / 2).min(4 << 30);
        Store {
            arena,
            alloc,
            pending: HashMap::new(),
            resident: VecDeque::new(),
            spill,
            warm: BTreeMap::new(),
            warm_bytes: 0,
            warm_limit,
            spilled: 0,
            restored: 0,
        }
    }

    pub(crate) fn used(&self) -> u64 {
        self.alloc.used()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.alloc.capacity()
    }

    /// Frees a region. Its pages stay in memory for the next object while the free-but-resident
    /// bytes are under the limit; past it, every such range is given back to the system.
    fn free(&mut self, region: u64, size: u64) {
        let Some(size) = Allocator::rounded(size) else {
            return;
        };
        self.alloc.free(region, size);
        self.warm.insert(region, size);
        self.warm_bytes += size;
        if self.warm_bytes > self.warm_limit {
            for (off, len) in std::mem::take(&mut self.warm) {
                self.arena.punch(off, len);
            }
            self.warm_bytes = 0;
        }
    }

    /// A range was allocated again: it is no longer free-but-resident.
    fn take_warm(&mut self, start: u64, rounded: u64) {
        let end = start + rounded;
        let overlapping: Vec<(u64, u64)> = self
            .warm
            .range(..end)
            .filter(|(off, len)| **off + **len > start)
            .map(|(o, l)| (*o, *l))
            .collect();
        for (off, len) in overlapping {
            self.warm.remove(&off);
            self.warm_bytes -= len;
            if off < start {
                self.warm.insert(off, start - off);
                self.warm_bytes += start - off;
            }
            if off + len > end {
                self.warm.insert(end, off + len - end);
                self.warm_bytes += off + len - end;
            }
        }
    }

    /// Frees the unsealed regions of a writer that died.
    pub(crate) fn free_proc(&mut self, proc: ProcId) {
        let regions: Vec<(u64, u64)> = self
            .pending
            .iter()
            .filter(|(_, (p, _))| *p == proc)
            .map(|(r, (_, size))| (*r, *size))
            .collect();
        for (region, size) in regions {
            self.pending.remove(&region);
            self.free(region, size);
        }
    }

    /// Removes the spill directory and everything in it (at shutdown).
    pub(crate) fn remove_spill_dir(&self) {
        self.spill.remove();
    }

    pub(crate) fn spill_dir(&self) -> &Path {
        &self.spill.path
    }
}

impl NodeState {
    /// A region of `size` bytes for `proc` to write an object into, spilling other objects to
    /// disk if that is what it takes. More than the store can ever hold is `ObjectStoreFull`.
    pub(crate) fn alloc(&mut self, proc: ProcId, size: u64) -> Result<u64> {
        let full = |st: &NodeState| Error::ObjectStoreFull {
            requested: size,
            used: st.store.used(),
            capacity: st.store.capacity(),
        };
        let Some(rounded) = Allocator::rounded(size).filter(|r| *r <= self.store.capacity()) else {
            return Err(full(self));
        };
        loop {
            if let Some(region) = self.store.alloc.alloc(rounded) {
                self.store.take_warm(region, rounded);
                self.store.pending.insert(region, (proc, size));
                return Ok(region);
            }
            if !self.spill_one() {
                return Err(full(self));
            }
        }
    }

    /// Seals the region a stored value names, if it is one allocated to `from`, not sealed yet,
    /// and large enough for the value. `Err` says what was wrong.
    pub(super) fn seal(&mut self, from: ProcId, value: &Value) -> Result<(), String> {
        let Data::Shm { region, pad, len } = value.data else {
            return Ok(());
        };
        match self.store.pending.get(&region) {
            Some((owner, size)) if *owner == from => {
                if (pad as u64).checked_add(len).is_none_or(|n| n > *size) {
                    return Err(format!(
                        "a value of {pad} + {len} bytes in a store region of {size} bytes"
                    ));
                }
                self.store.pending.remove(&region);
                Ok(())
            }
            Some(_) => Err(format!(
                "a value in store region {region}, which was allocated to another process"
            )),
            None => Err(format!(
                "a value in store region {region}, which was not allocated to it or is sealed \
                 already"
            )),
        }
    }

    /// A sealed value just became an object (`wanted`) or nobody wants it.
    pub(super) fn stored(&mut self, id: ObjectId, value: &Value, wanted: bool) {
        if let Data::Shm { region, pad, len } = value.data {
            if wanted {
                self.store.resident.push_back(id);
            } else {
                self.store.free(region, pad as u64 + len);
            }
        }
    }

    /// Releases what a freed object occupied.
    pub(super) fn release_storage(&mut self, id: ObjectId, state: &ObjState) {
        self.object_left(id, state);
        match state {
            ObjState::Ready(Value {
                data: Data::Shm { region, pad, len },
                ..
            }) => {
                self.store.free(*region, *pad as u64 + *len);
            }
            ObjState::Spilled { .. } => self.store.spill.remove_file(id),
            _ => {}
        }
    }

    /// Moves the oldest object that nobody is reading to disk. False if there is none.
    fn spill_one(&mut self) -> bool {
        for _ in 0..self.store.resident.len() {
            let Some(id) = self.store.resident.pop_front() else {
                return false;
            };
            let Some(entry) = self.objects.get_mut(id) else {
                continue;
            };
            let ObjState::Ready(Value {
                data: Data::Shm { region, pad, len },
                ..
            }) = entry.state
            else {
                continue;
            };
            if !entry.spillable() {
                self.store.resident.push_back(id);
                continue;
            }
            // SAFETY: the object is sealed and in the directory: its region is not written or
            // reused while the state lock is held, and nothing is reading it (`spillable`).
            let bytes = unsafe { self.store.arena.slice(region + pad as u64, len) };
            if let Err(e) = self.store.spill.write(id, bytes) {
                log::error!("cannot spill object {id}: {e}");
                self.store.resident.push_back(id);
                return false;
            }
            let entry = self.objects.get_mut(id).expect("present");
            let ObjState::Ready(v) = std::mem::replace(&mut entry.state, ObjState::Pending) else {
                unreachable!("matched Ready above")
            };
            entry.state = ObjState::Spilled {
                len,
                contained: v.contained,
            };
            self.store.free(region, pad as u64 + len);
            self.store.spilled += 1;
            log::debug!("spilled object {id} ({len} bytes)");
            return true;
        }
        false
    }

    /// Brings a spilled object back into the store.
    fn restore(&mut self, id: ObjectId) -> Result<()> {
        let Some(ObjState::Spilled { len, .. }) = self.objects.get(id).map(|e| &e.state) else {
            return Ok(());
        };
        let len = *len;
        let bytes = self.store.spill.read(id, len)?;
        let me = ProcId::driver(self.node);
        let region = self.alloc(me, PAD + len)?;
        self.store.pending.remove(&region);
        if let Err(e) = self.store.arena.write(region + PAD, &[&bytes]) {
            self.store.free(region, PAD + len);
            return Err(e);
        }
        self.store.spill.remove_file(id);
        let entry = self.objects.get_mut(id).expect("present");
        let ObjState::Spilled { contained, .. } =
            std::mem::replace(&mut entry.state, ObjState::Pending)
        else {
            unreachable!("checked Spilled above")
        };
        entry.state = ObjState::Ready(Value {
            data: Data::Shm {
                region,
                pad: PAD as u32,
                len,
            },
            contained,
        });
        self.store.resident.push_back(id);
        self.store.restored += 1;
        Ok(())
    }

    /// The value of a done object, restored from disk first if needed; `None` while pending.
    /// If `reader` is given and the value is in the store, it stays pinned in memory for that
    /// process until it releases it. A spill file that cannot be read back makes the object
    /// lost (the error is kept, so every reader sees the same).
    pub(crate) fn load(&mut self, id: ObjectId, reader: Option<ProcId>) -> Result<Option<Value>> {
        match self.objects.get(id).map(|e| &e.state) {
            None => {
                return Err(Error::object_lost(
                    id,
                    "no such object: it was freed or belongs to an earlier ray runtime",
                ));
            }
            Some(ObjState::Pending) => return Ok(None),
            Some(ObjState::Failed(e)) => {
                let e = e.clone();
                self.error_read(id);
                return Err(e);
            }
            Some(ObjState::Spilled { .. }) => {
                if let Err(e) = self.restore(id) {
                    if let Error::ObjectLost { .. } = &e {
                        self.store.spill.remove_file(id);
                        if let Some(entry) = self.objects.get_mut(id) {
                            entry.state = ObjState::Failed(e.clone());
                        }
                    }
                    return Err(e);
                }
            }
            Some(ObjState::Ready(_)) => {}
        }
        let entry = self.objects.get_mut(id).expect("present");
        let ObjState::Ready(v) = &entry.state else {
            unreachable!("restored above")
        };
        let v = v.clone();
        if let (Some(p), Data::Shm { .. }) = (reader, &v.data) {
            entry.mapped.add(p);
        }
        Ok(Some(v))
    }

    /// A process finished reading objects it was handed from the store (an object nobody
    /// references any more is freed now, not before). Releasing one it was not reading
    /// breaks the protocol.
    pub(crate) fn release_mapped(&mut self, proc: ProcId, ids: &[ObjectId]) -> Result<(), String> {
        for id in ids {
            match self.objects.unmap(*id, proc) {
                Ok(Some(freed)) => self.object_freed(*id, freed),
                Ok(None) => {}
                Err(()) => return Err(format!("Release of object {id}, which it was not reading")),
            }
        }
        Ok(())
    }

    /// Values as a process that shares no memory with the node receives them: stored ones are
    /// copied out of the store inline.
    pub(super) fn inlined(&self, values: Vec<Value>) -> Vec<Value> {
        values
            .into_iter()
            .map(|v| match v.data {
                Data::Shm { region, pad, len } => {
                    // SAFETY: the value was just loaded from the directory under the state lock:
                    // its region is sealed and not freed or written while the lock is held.
                    let bytes = unsafe { self.store.arena.slice(region + pad as u64, len) };
                    Value {
                        data: Data::Inline(bytes::Bytes::copy_from_slice(bytes)),
                        contained: v.contained,
                    }
                }
                Data::Inline(_) | Data::Remote { .. } => v,
            })
            .collect()
    }

    /// Values as another node receives them: stored ones by where they are (this node), so
    /// that it pulls their bytes only if one of its processes needs them.
    pub(super) fn located(&self, values: Vec<Value>) -> Vec<Value> {
        values
            .into_iter()
            .map(|v| match v.data {
                Data::Shm { len, .. } => Value {
                    data: Data::Remote {
                        node: self.node,
                        len,
                    },
                    contained: v.contained,
                },
                _ => v,
            })
            .collect()
    }

    /// A large value that came inline (from a driver on another machine) goes into the store,
    /// so the node's workers read it in place; if the store cannot take it, it stays inline.
    pub(super) fn move_into_store(&mut self, value: Value) -> Value {
        let Data::Inline(bytes) = &value.data else {
            return value;
        };
        if bytes.len() < crate::object_store::inline_max() {
            return value;
        }
        let len = bytes.len() as u64;
        let me = ProcId::driver(self.node);
        let Ok(region) = self.alloc(me, PAD + len) else {
            return value;
        };
        self.store.pending.remove(&region);
        if self.store.arena.write(region + PAD, &[bytes]).is_err() {
            self.store.free(region, PAD + len);
            return value;
        }
        Value {
            data: Data::Shm {
                region,
                pad: PAD as u32,
                len,
            },
            contained: value.contained,
        }
    }

    /// A region allocated here for a pull is written: it is sealed (nobody writes it again).
    pub(super) fn seal_region(&mut self, region: u64) {
        self.store.pending.remove(&region);
    }

    /// A region allocated here for a pull is not needed (the copy failed or the object went).
    pub(super) fn abandon_region(&mut self, region: u64) {
        if let Some((_, size)) = self.store.pending.remove(&region) {
            self.store.free(region, size);
        }
    }

    /// A value just placed in the store takes its turn in the spill order.
    pub(super) fn store_resident(&mut self, id: ObjectId) {
        self.store.resident.push_back(id);
    }

    /// Where another node reads `id`'s bytes from; it stays in memory until `read_done`.
    pub(crate) fn read_for_peer(&mut self, id: ObjectId) -> std::result::Result<PeerRead, String> {
        let reader = peer_reader(self.node);
        match self.load(id, Some(reader)) {
            Ok(Some(Value {
                data: Data::Inline(bytes),
                ..
            })) => Ok(PeerRead::Inline(bytes)),
            Ok(Some(Value {
                data: Data::Shm { region, pad, len },
                ..
            })) => Ok(PeerRead::Stored {
                start: region + pad as u64,
                len,
            }),
            Ok(Some(_)) => {
                let _ = self.release_mapped(reader, &[id]);
                Err(format!("object {id} is not on this node"))
            }
            Ok(None) => Err(format!("object {id} is not ready")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Another node finished reading `id`.
    pub(crate) fn read_done(&mut self, id: ObjectId) {
        let stored = matches!(
            self.objects.get(id).map(|e| &e.state),
            Some(ObjState::Ready(Value {
                data: Data::Shm { .. },
                ..
            }))
        );
        if stored {
            let _ = self.release_mapped(peer_reader(self.node), &[id]);
        }
    }

    /// (spilled, restored) counts, for tests and stats.
    pub(crate) fn spill_stats(&self) -> (u64, u64) {
        (self.store.spilled, self.store.restored)
    }
}

/// This node's spill directory: `ray-rs-spill-<pid>-<random>` inside a root directory, made
/// by the node itself (`mkdir` fails if anything has that name, so nothing prepared by another
/// user is ever used) with mode 0700, on the first spill. Files are created new (`O_EXCL`),
/// never through a symbolic link (`O_NOFOLLOW`), with mode 0600.
pub(crate) struct SpillDir {
    path: PathBuf,
    made: bool,
}

impl SpillDir {
    /// Checks that `root` is safe to make a private directory in: a real directory (not a
    /// symbolic link) owned by this user or root, and, if others may write to it, with the
    /// sticky bit (as `/tmp`), so that nobody else can rename or remove what we make there.
    pub(crate) fn new(root: &Path) -> Result<SpillDir> {
        let meta = std::fs::symlink_metadata(root).map_err(|e| {
            Error::io(
                format!("checking the spill directory {}", root.display()),
                e,
            )
        })?;
        let invalid = |message: String| Error::InvalidArgument {
            what: "object spilling directory".into(),
            message,
        };
        if !meta.is_dir() {
            return Err(invalid(format!(
                "{} is not a directory (a symbolic link is not accepted); choose a directory \
                 with Config::object_spilling_directory",
                root.display()
            )));
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && meta.uid() != 0 {
            return Err(invalid(format!(
                "{} belongs to uid {}, not to this user (uid {me}) or root; spill into a \
                 directory you own",
                root.display(),
                meta.uid()
            )));
        }
        let sticky = meta.mode() & libc::S_ISVTX != 0;
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(invalid(format!(
                "{} is writable by other users and has no sticky bit, so they could replace \
                 spilled data; use a directory only you can write to (or one like /tmp)",
                root.display()
            )));
        }
        let name = format!(
            "ray-rs-spill-{}-{:016x}",
            std::process::id(),
            crate::sys::random_u64()
        );
        Ok(SpillDir {
            path: root.join(name),
            made: false,
        })
    }

    fn file(&self, id: ObjectId) -> PathBuf {
        self.path.join(format!("{id}"))
    }

    fn ensure(&mut self) -> std::io::Result<()> {
        if self.made {
            return Ok(());
        }
        std::fs::DirBuilder::new().mode(0o700).create(&self.path)?;
        let meta = std::fs::symlink_metadata(&self.path)?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o777 != 0o700 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{} is not a private directory of ours", self.path.display()),
            ));
        }
        self.made = true;
        Ok(())
    }

    fn write(&mut self, id: ObjectId, bytes: &[u8]) -> std::io::Result<()> {
        self.ensure()?;
        let path = self.file(id);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        if let Err(e) = f.write_all(bytes) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(())
    }

    /// The spilled bytes of `id`, which must be exactly `len` long.
    fn read(&self, id: ObjectId, len: u64) -> Result<Vec<u8>> {
        let lost = |reason: String| Error::object_lost(id, reason);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.file(id))
            .map_err(|e| lost(format!("its spill file cannot be opened: {e}")))?;
        let on_disk = f
            .metadata()
            .map_err(|e| lost(format!("its spill file cannot be read: {e}")))?
            .len();
        if on_disk != len {
            return Err(lost(format!(
                "its spill file has {on_disk} bytes, but {len} were written: it was changed on disk"
            )));
        }
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len as usize)
            .map_err(|_| lost(format!("no memory to restore its {len} bytes")))?;
        f.take(len)
            .read_to_end(&mut bytes)
            .map_err(|e| lost(format!("its spill file cannot be read: {e}")))?;
        if bytes.len() as u64 != len {
            return Err(lost(format!(
                "its spill file ended after {} of {len} bytes",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    fn remove_file(&self, id: ObjectId) {
        if self.made {
            let _ = std::fs::remove_file(self.file(id));
        }
    }

    fn remove(&self) {
        if self.made {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                log::warn!(
                    "cannot remove the spill directory {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

/// Removes spill directories of this user left by runtimes whose process is gone.
pub(crate) fn remove_stale_spill_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("ray-rs-spill-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let ours =
            std::fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where another node reads an object's bytes.
pub(crate) enum PeerRead {
    Inline(bytes::Bytes),
    /// `len` bytes at `start` in this node's store.
    Stored {
        start: u64,
        len: u64,
    },
}

/// The reader other nodes count as while they copy from this node's store.
fn peer_reader(node: crate::ids::NodeId) -> ProcId {
    ProcId::new(node, u32::MAX)
}
