//! The node manager's side of the object store: allocation, sealing, spilling and restoring.
//! (The shared memory itself is `object_store::Arena`.)

use super::HeadState;
use super::objects::ObjState;
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{DRIVER, ObjectId, ProcIndex};
use crate::object_store::{Allocator, Arena, PAD};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) struct Store {
    pub arena: Arc<Arena>,
    alloc: Allocator,
    /// Regions allocated to a writer and not sealed yet: region → (writer, size).
    pending: HashMap<u64, (ProcIndex, u64)>,
    /// Objects in the store, oldest first: the spill order. May hold ids that left since.
    resident: VecDeque<ObjectId>,
    spill_dir: PathBuf,
    /// Freed ranges whose pages are still in memory, for the next objects (offset → len).
    warm: BTreeMap<u64, u64>,
    warm_bytes: u64,
    warm_limit: u64,
    pub spilled: u64,
    pub restored: u64,
}

impl Store {
    pub(crate) fn new(arena: Arc<Arena>, spill_dir: PathBuf) -> Self {
        let alloc = Allocator::new(arena.capacity());
        let warm_limit = (arena.capacity() / 4).min(1 << 30);
        Store {
            arena,
            alloc,
            pending: HashMap::new(),
            resident: VecDeque::new(),
            spill_dir,
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
    pub(crate) fn free(&mut self, region: u64, size: u64) {
        let size = Allocator::rounded(size);
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
    fn take_warm(&mut self, start: u64, size: u64) {
        let end = start + Allocator::rounded(size);
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
    pub(crate) fn free_proc(&mut self, proc: ProcIndex) {
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

    fn spill_path(&self, id: ObjectId) -> PathBuf {
        self.spill_dir.join(format!("{id}"))
    }

    /// Removes the spill directory and everything in it (at shutdown).
    pub(crate) fn remove_spill_dir(&self) {
        if self.spill_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.spill_dir) {
                tracing::warn!(
                    "cannot remove the spill directory {}: {e}",
                    self.spill_dir.display()
                );
            }
        }
    }

    pub(crate) fn spill_dir(&self) -> &std::path::Path {
        &self.spill_dir
    }
}

impl HeadState {
    /// A region of `size` bytes for `proc` to write an object into, spilling other objects to
    /// disk if that is what it takes.
    pub(crate) fn alloc(&mut self, proc: ProcIndex, size: u64) -> Result<u64> {
        loop {
            if let Some(region) = self.store.alloc.alloc(size) {
                self.store.take_warm(region, size);
                self.store.pending.insert(region, (proc, size));
                return Ok(region);
            }
            if !self.spill_one() {
                return Err(Error::ObjectStoreFull {
                    requested: size,
                    used: self.store.used(),
                    capacity: self.store.capacity(),
                });
            }
        }
    }

    /// Checks that a stored value names a region allocated and not yet sealed, and seals it.
    pub(crate) fn seal(&mut self, value: &Value) -> Result<()> {
        if let Data::Shm { region, pad, len } = value.data {
            match self.store.pending.remove(&region) {
                Some((_, size)) if size >= pad as u64 + len => {}
                Some((p, size)) => {
                    self.store.pending.insert(region, (p, size));
                    return Err(Error::ObjectLost {
                        id: format!("region {region}"),
                        reason: format!(
                            "a value of {len} bytes does not fit the {size} bytes allocated"
                        ),
                    });
                }
                None => {
                    return Err(Error::ObjectLost {
                        id: format!("region {region}"),
                        reason: "the value names a store region that was not allocated to it"
                            .into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// A sealed value just became an object (`stored`) or nobody wants it.
    pub(crate) fn stored(&mut self, id: ObjectId, value: &Value, wanted: bool) {
        if let Data::Shm { region, pad, len } = value.data {
            if wanted {
                self.store.resident.push_back(id);
            } else {
                self.store.free(region, pad as u64 + len);
            }
        }
    }

    /// Releases what a freed object occupied.
    pub(crate) fn release_storage(&mut self, id: ObjectId, state: &ObjState) {
        match state {
            ObjState::Ready(Value {
                data: Data::Shm { region, pad, len },
                ..
            }) => {
                self.store.free(*region, *pad as u64 + *len);
            }
            ObjState::Spilled { .. } => {
                let _ = std::fs::remove_file(self.store.spill_path(id));
            }
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
            let path = self.store.spill_path(id);
            let written = std::fs::create_dir_all(&self.store.spill_dir).and_then(|_| {
                std::fs::write(&path, self.store.arena.slice(region + pad as u64, len))
            });
            if let Err(e) = written {
                tracing::error!("cannot spill object {id} to {}: {e}", path.display());
                self.store.resident.push_back(id);
                return false;
            }
            let entry = self.objects.get_mut(id).expect("present");
            let ObjState::Ready(v) = std::mem::replace(&mut entry.state, ObjState::Pending) else {
                unreachable!()
            };
            entry.state = ObjState::Spilled {
                len,
                contained: v.contained,
            };
            self.store.free(region, pad as u64 + len);
            self.store.spilled += 1;
            tracing::debug!("spilled object {id} ({len} bytes) to {}", path.display());
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
        let path = self.store.spill_path(id);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::io(format!("restoring spilled object {id}"), e))?;
        let region = self.alloc(DRIVER, PAD + len)?;
        if let Err(e) = self.store.arena.write(region + PAD, &[&bytes]) {
            self.store.pending.remove(&region);
            self.store.free(region, PAD + len);
            return Err(e);
        }
        self.store.pending.remove(&region);
        let _ = std::fs::remove_file(&path);
        let entry = self.objects.get_mut(id).expect("present");
        let ObjState::Spilled { contained, .. } =
            std::mem::replace(&mut entry.state, ObjState::Pending)
        else {
            unreachable!()
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
    /// process until it releases it.
    pub(crate) fn load(
        &mut self,
        id: ObjectId,
        reader: Option<ProcIndex>,
    ) -> Result<Option<Value>> {
        let state = self.objects.get(id).map(|e| &e.state);
        match state {
            None => {
                return Err(Error::ObjectLost {
                    id: id.to_string(),
                    reason: "no such object: it was freed or belongs to an earlier ray runtime"
                        .into(),
                });
            }
            Some(ObjState::Pending) => return Ok(None),
            Some(ObjState::Failed(e)) => return Err(e.clone()),
            Some(ObjState::Spilled { .. }) => self.restore(id)?,
            Some(ObjState::Ready(_)) => {}
        }
        let entry = self.objects.get_mut(id).expect("present");
        let ObjState::Ready(v) = &entry.state else {
            unreachable!("restored")
        };
        let v = v.clone();
        if let (Some(p), Data::Shm { .. }) = (reader, &v.data) {
            entry.mapped.add(p);
        }
        Ok(Some(v))
    }

    /// A process finished reading objects it was handed from the store (an object nobody
    /// references any more is freed now, not before).
    pub(crate) fn release_mapped(&mut self, proc: ProcIndex, ids: &[ObjectId]) {
        for id in ids {
            if let Some(freed) = self.objects.unmap(*id, proc) {
                self.object_freed(*id, freed);
            }
        }
    }

    /// (spilled, restored) counts, for tests and stats.
    pub(crate) fn spill_stats(&self) -> (u64, u64) {
        (self.store.spilled, self.store.restored)
    }
}
