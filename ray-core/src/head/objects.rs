//! The object directory: every object's state, who holds references to it, and who waits.

use crate::codec::Value;
use crate::error::Error;
use crate::ids::{ActorId, IdMap, ObjectId, ProcIndex, RefId};

/// Per-process reference counts (a process counts once per `AddRef`).
#[derive(Debug, Default)]
pub(crate) struct Holders(Vec<(ProcIndex, u32)>);

impl Holders {
    pub(crate) fn one(proc: ProcIndex) -> Self {
        Holders(vec![(proc, 1)])
    }

    pub(crate) fn add(&mut self, proc: ProcIndex) {
        match self.0.iter_mut().find(|(p, _)| *p == proc) {
            Some((_, n)) => *n += 1,
            None => self.0.push((proc, 1)),
        }
    }

    /// Removes one count of `proc`; false if it held none.
    pub(crate) fn remove(&mut self, proc: ProcIndex) -> bool {
        match self.0.iter().position(|(p, _)| *p == proc) {
            Some(i) => {
                self.0[i].1 -= 1;
                if self.0[i].1 == 0 {
                    self.0.swap_remove(i);
                }
                true
            }
            None => false,
        }
    }

    /// Removes every count of a process that died.
    pub(crate) fn remove_all(&mut self, proc: ProcIndex) -> bool {
        let before = self.0.len();
        self.0.retain(|(p, _)| *p != proc);
        self.0.len() != before
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug)]
pub(crate) enum ObjState {
    Pending,
    Ready(Value),
    /// In a file in the spill directory; restored into the store when read.
    Spilled {
        len: u64,
        contained: Vec<RefId>,
    },
    Failed(Error),
}

/// Someone to tell when an object is ready or failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Waiter {
    /// A task whose argument this is.
    Task(ObjectId),
    /// An actor whose next call (or constructor) takes this as argument.
    Actor(ActorId),
    /// A `get`/`wait` request.
    Request(u64),
}

#[derive(Debug)]
pub(crate) struct ObjectEntry {
    pub state: ObjState,
    pub holders: Holders,
    /// Pending task arguments, containing objects, and values in flight.
    pub pins: u32,
    /// Pending tasks that take this object as an argument: it must stay in memory (no spilling).
    pub in_use: u32,
    /// Processes reading it from the store right now (no spilling until they `Release`).
    pub mapped: Holders,
    pub waiters: Vec<Waiter>,
}

impl ObjectEntry {
    /// Nobody holds it, nothing pins it, and no process is reading it from the store.
    fn unreferenced(&self) -> bool {
        self.holders.is_empty() && self.pins == 0 && self.mapped.is_empty()
    }

    pub(crate) fn is_done(&self) -> bool {
        !matches!(self.state, ObjState::Pending)
    }

    /// Whether the store may move it to disk now.
    pub(crate) fn spillable(&self) -> bool {
        self.in_use == 0 && self.mapped.is_empty()
    }
}

#[derive(Default)]
pub(crate) struct ObjectDirectory {
    map: IdMap<ObjectId, ObjectEntry>,
    bytes: u64,
}

impl ObjectDirectory {
    /// A task's return object, held by the submitter.
    pub(crate) fn create_pending(&mut self, id: ObjectId, holder: ProcIndex) {
        self.map.insert(
            id,
            ObjectEntry {
                state: ObjState::Pending,
                holders: Holders::one(holder),
                pins: 0,
                in_use: 0,
                mapped: Holders::default(),
                waiters: Vec::new(),
            },
        );
    }

    /// Sets the value of a pending object; returns its waiters, or `None` if nobody wants the
    /// object any more (the value is dropped) or it already had a value.
    pub(crate) fn complete(
        &mut self,
        id: ObjectId,
        result: Result<Value, Error>,
    ) -> Option<Vec<Waiter>> {
        let entry = self.map.get_mut(&id)?;
        if entry.is_done() {
            return None;
        }
        if let Ok(v) = &result {
            self.bytes += v.len();
        }
        entry.state = match result {
            Ok(v) => ObjState::Ready(v),
            Err(e) => ObjState::Failed(e),
        };
        Some(std::mem::take(&mut entry.waiters))
    }

    pub(crate) fn get(&self, id: ObjectId) -> Option<&ObjectEntry> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: ObjectId) -> Option<&mut ObjectEntry> {
        self.map.get_mut(&id)
    }

    pub(crate) fn add_holder(&mut self, id: ObjectId, proc: ProcIndex) -> bool {
        match self.map.get_mut(&id) {
            Some(e) => {
                e.holders.add(proc);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove_holder(&mut self, id: ObjectId, proc: ProcIndex) -> Option<ObjectEntry> {
        let entry = self.map.get_mut(&id)?;
        entry.holders.remove(proc);
        self.take_if_unreferenced(id)
    }

    /// A process finished reading it from the store; returns it if that was the last use.
    pub(crate) fn unmap(&mut self, id: ObjectId, proc: ProcIndex) -> Option<ObjectEntry> {
        self.map.get_mut(&id)?.mapped.remove(proc);
        self.take_if_unreferenced(id)
    }

    pub(crate) fn pin(&mut self, id: ObjectId) -> bool {
        match self.map.get_mut(&id) {
            Some(e) => {
                e.pins += 1;
                true
            }
            None => false,
        }
    }

    pub(crate) fn unpin(&mut self, id: ObjectId) -> Option<ObjectEntry> {
        let entry = self.map.get_mut(&id)?;
        entry.pins = entry.pins.saturating_sub(1);
        self.take_if_unreferenced(id)
    }

    /// Drops every reference a dead process held; returns the objects that became free.
    pub(crate) fn remove_proc(&mut self, proc: ProcIndex) -> Vec<(ObjectId, ObjectEntry)> {
        let touched: Vec<ObjectId> = self
            .map
            .iter_mut()
            .filter_map(|(id, e)| {
                let read = e.mapped.remove_all(proc);
                let held = e.holders.remove_all(proc);
                (read || held).then_some(*id)
            })
            .collect();
        touched
            .into_iter()
            .filter_map(|id| self.take_if_unreferenced(id).map(|e| (id, e)))
            .collect()
    }

    fn take_if_unreferenced(&mut self, id: ObjectId) -> Option<ObjectEntry> {
        if self.map.get(&id)?.unreferenced() {
            let entry = self.map.remove(&id)?;
            match &entry.state {
                ObjState::Ready(v) => self.bytes -= v.len(),
                ObjState::Spilled { len, .. } => self.bytes -= len,
                _ => {}
            }
            Some(entry)
        } else {
            None
        }
    }

    /// Number of live objects.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes of ready values held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Data;
    use bytes::Bytes;

    fn value(n: usize) -> Value {
        Value {
            data: Data::Inline(Bytes::from(vec![0u8; n])),
            contained: vec![],
        }
    }

    #[test]
    fn objects_live_while_held_or_pinned() {
        let mut d = ObjectDirectory::default();
        let id = ObjectId(1);
        d.create_pending(id, 0);
        assert!(d.pin(id));
        assert_eq!(d.complete(id, Ok(value(10))), Some(vec![]));
        assert_eq!(d.bytes(), 10);
        assert!(d.remove_holder(id, 0).is_none(), "still pinned");
        assert!(d.unpin(id).is_some(), "freed when the last pin goes");
        assert_eq!(d.bytes(), 0);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_dead_process_releases_everything_it_held() {
        let mut d = ObjectDirectory::default();
        d.create_pending(ObjectId(1), 3);
        d.create_pending(ObjectId(2), 3);
        d.add_holder(ObjectId(2), 0);
        let freed = d.remove_proc(3);
        assert_eq!(freed.len(), 1);
        assert!(d.get(ObjectId(2)).is_some());
    }

    #[test]
    fn completing_an_unwanted_object_drops_the_value() {
        let mut d = ObjectDirectory::default();
        d.create_pending(ObjectId(1), 0);
        d.remove_holder(ObjectId(1), 0);
        assert!(d.complete(ObjectId(1), Ok(value(4))).is_none());
        assert_eq!(d.bytes(), 0);
    }
}
