//! The object directory, and reference counting across processes.
//!
//! [`ObjectDirectory`] owns every object's state, who holds references to it, what pins it,
//! and who waits for it. Its invariant: an entry exists while someone holds it, something pins
//! it, or a process is reading it from the store; [`ObjectDirectory::take_if_unreferenced`] is
//! the one place an entry leaves. The handlers below apply the messages that change counts,
//! and free what becomes unreferenced with a work list (never recursion: a chain of a million
//! objects, each holding the previous one, frees in constant stack).

use super::state::NodeState;
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{ActorId, IdMap, NodeId, ObjectId, ProcId, RefId, RequestKey};
use crate::protocol::Arg;

/// Per-process reference counts (a process counts once per `AddRef`).
#[derive(Debug, Default)]
pub(crate) struct Holders(Vec<(ProcId, u32)>);

impl Holders {
    pub(crate) fn one(proc: ProcId) -> Self {
        Holders(vec![(proc, 1)])
    }

    pub(crate) fn add(&mut self, proc: ProcId) {
        match self.0.iter_mut().find(|(p, _)| *p == proc) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.0.push((proc, 1)),
        }
    }

    /// Removes one count of `proc`; false if it held none.
    pub(crate) fn remove(&mut self, proc: ProcId) -> bool {
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
    pub(crate) fn remove_all(&mut self, proc: ProcId) -> bool {
        let before = self.0.len();
        self.0.retain(|(p, _)| *p != proc);
        self.0.len() != before
    }

    pub(crate) fn contains(&self, proc: ProcId) -> bool {
        self.0.iter().any(|(p, _)| *p == proc)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The holding processes.
    pub(crate) fn procs(&self) -> impl Iterator<Item = ProcId> + '_ {
        self.0.iter().map(|(p, _)| *p)
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
    Request(RequestKey),
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
    /// Owned by another node: this entry borrows it (its owner counts this node as a holder
    /// until the entry goes).
    pub held_at: Option<NodeId>,
    /// Its bytes are being copied here from the node that has them.
    pub pulling: bool,
}

impl ObjectEntry {
    /// Nobody holds it, nothing pins it, and no process is reading it from the store.
    fn unreferenced(&self) -> bool {
        self.holders.is_empty() && self.pins == 0 && self.mapped.is_empty()
    }

    pub(crate) fn is_done(&self) -> bool {
        !matches!(self.state, ObjState::Pending)
    }

    /// Done, and its bytes (if any) are on this node.
    pub(crate) fn is_local(&self) -> bool {
        match &self.state {
            ObjState::Pending => false,
            ObjState::Ready(v) => !matches!(v.data, Data::Remote { .. }),
            ObjState::Spilled { .. } | ObjState::Failed(_) => true,
        }
    }

    /// Whether the store may move it to disk now.
    pub(crate) fn spillable(&self) -> bool {
        self.in_use == 0 && self.mapped.is_empty()
    }

    /// The references the object's value contains.
    fn contained(self) -> Vec<RefId> {
        match self.state {
            ObjState::Ready(v) => v.contained,
            ObjState::Spilled { contained, .. } => contained,
            _ => Vec::new(),
        }
    }
}

#[derive(Default)]
pub(crate) struct ObjectDirectory {
    map: IdMap<ObjectId, ObjectEntry>,
    bytes: u64,
}

impl ObjectDirectory {
    /// A new pending object (a task's return, or a value about to be put), held by `holder`.
    /// False if the id is taken.
    pub(crate) fn create_pending(&mut self, id: ObjectId, holder: ProcId) -> bool {
        match self.map.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(ObjectEntry {
                    state: ObjState::Pending,
                    holders: Holders::one(holder),
                    pins: 0,
                    in_use: 0,
                    mapped: Holders::default(),
                    waiters: Vec::new(),
                    held_at: None,
                    pulling: false,
                });
                true
            }
        }
    }

    /// An entry for an object owned by node `owner`, about to be held or pinned here. False if
    /// the id is known here already.
    pub(crate) fn create_borrowed(&mut self, id: ObjectId, owner: NodeId) -> bool {
        match self.map.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(ObjectEntry {
                    state: ObjState::Pending,
                    holders: Holders::default(),
                    pins: 0,
                    in_use: 0,
                    mapped: Holders::default(),
                    waiters: Vec::new(),
                    held_at: Some(owner),
                    pulling: false,
                });
                true
            }
        }
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
            self.bytes += v.local_len();
        }
        entry.state = match result {
            Ok(v) => ObjState::Ready(v),
            Err(e) => ObjState::Failed(e),
        };
        Some(std::mem::take(&mut entry.waiters))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ObjectId, &ObjectEntry)> {
        self.map.iter()
    }

    pub(crate) fn get(&self, id: ObjectId) -> Option<&ObjectEntry> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: ObjectId) -> Option<&mut ObjectEntry> {
        self.map.get_mut(&id)
    }

    pub(crate) fn add_holder(&mut self, id: ObjectId, proc: ProcId) -> bool {
        match self.map.get_mut(&id) {
            Some(e) => {
                e.holders.add(proc);
                true
            }
            None => false,
        }
    }

    /// Removes one reference of `proc`. `Err` if it held none; `Ok(Some)` if that freed it.
    pub(crate) fn remove_holder(
        &mut self,
        id: ObjectId,
        proc: ProcId,
    ) -> Result<Option<ObjectEntry>, ()> {
        let entry = self.map.get_mut(&id).ok_or(())?;
        if !entry.holders.remove(proc) {
            return Err(());
        }
        Ok(self.take_if_unreferenced(id))
    }

    /// A process finished reading it from the store. `Err` if it was not reading it;
    /// `Ok(Some)` if that was the last use.
    pub(crate) fn unmap(&mut self, id: ObjectId, proc: ProcId) -> Result<Option<ObjectEntry>, ()> {
        let entry = self.map.get_mut(&id).ok_or(())?;
        if !entry.mapped.remove(proc) {
            return Err(());
        }
        Ok(self.take_if_unreferenced(id))
    }

    pub(crate) fn pin(&mut self, id: ObjectId) -> bool {
        match self.map.get_mut(&id) {
            Some(e) => {
                e.pins = e.pins.saturating_add(1);
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
    pub(crate) fn remove_proc(&mut self, proc: ProcId) -> Vec<(ObjectId, ObjectEntry)> {
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
                ObjState::Ready(v) => self.bytes -= v.local_len(),
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

    /// A value became local (pulled here): its bytes count.
    pub(crate) fn add_bytes(&mut self, n: u64) {
        self.bytes += n;
    }

    /// Bytes of ready values held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl NodeState {
    pub(crate) fn add_ref(&mut self, from: ProcId, id: RefId) {
        match id {
            RefId::Object(o) => {
                // A reference to another node's object makes this node borrow it.
                self.know(o);
                self.objects.add_holder(o, from);
            }
            RefId::Actor(a) => {
                self.know_actor(a);
                self.actors.add_holder(a, from);
            }
        }
    }

    /// `from` dropped its last reference. Dropping one it does not hold breaks the protocol.
    pub(crate) fn del_ref(&mut self, from: ProcId, id: RefId) -> Result<(), String> {
        match id {
            RefId::Object(o) => match self.objects.remove_holder(o, from) {
                Ok(Some(freed)) => self.object_freed(o, freed),
                Ok(None) => {}
                Err(()) => return Err(format!("DelRef of object {o}, which it does not hold")),
            },
            RefId::Actor(a) => {
                if !self.actors.remove_holder(a, from) {
                    return Err(format!("DelRef of actor {a}, which it does not hold"));
                }
                self.check_actor_scope(a);
            }
        }
        Ok(())
    }

    /// Whether `proc` holds a reference to `id` (what it may pass on, kill or call).
    pub(super) fn holds(&self, proc: ProcId, id: RefId) -> bool {
        match id {
            RefId::Object(o) => self
                .objects
                .get(o)
                .is_some_and(|e| e.holders.contains(proc)),
            RefId::Actor(a) => self.actors.held_by(a, proc),
        }
    }

    pub(super) fn pin_ref(&mut self, id: RefId) -> bool {
        match id {
            RefId::Object(o) => self.objects.pin(o),
            RefId::Actor(a) => self.actors.pin(a),
        }
    }

    /// Unpins each reference on the work list, freeing what that leaves unreferenced and
    /// adding the references inside freed objects to the list.
    pub(super) fn release_refs(&mut self, mut work: Vec<RefId>) {
        while let Some(id) = work.pop() {
            match id {
                RefId::Object(o) => {
                    if let Some(freed) = self.objects.unpin(o) {
                        self.dropped(o, &freed);
                        work.extend(freed.contained());
                        work.extend(self.lineage_released(o));
                    }
                }
                RefId::Actor(a) => {
                    self.actors.unpin(a);
                    self.check_actor_scope(a);
                }
            }
        }
    }

    /// An object left the directory: give back its storage and what it kept alive.
    pub(super) fn object_freed(&mut self, id: ObjectId, entry: ObjectEntry) {
        self.dropped(id, &entry);
        let mut refs = entry.contained();
        refs.extend(self.lineage_released(id));
        self.release_refs(refs);
    }

    /// What an object that left the directory held outside it: its storage, and its owner's
    /// count of this node as a holder.
    fn dropped(&mut self, id: ObjectId, entry: &ObjectEntry) {
        self.release_storage(id, &entry.state);
        if let Some(owner) = entry.held_at {
            self.send_node(
                owner,
                crate::protocol::worker::FromWorker::DelRef(RefId::Object(id)),
            );
        }
    }

    /// Pins what task arguments refer to, until the task is done; referenced objects are also
    /// kept in memory (not spilled) meanwhile. On error nothing stays pinned.
    pub(super) fn pin_args(&mut self, args: &[Arg]) -> Result<()> {
        let mut pinned: Vec<RefId> = Vec::new();
        let mut in_use: Vec<ObjectId> = Vec::new();
        let mut lost = None;
        'args: for arg in args {
            let ids: Vec<RefId> = match arg {
                Arg::Ref(id) => vec![RefId::Object(*id)],
                Arg::Value(v) => v.contained.clone(),
            };
            for id in ids {
                if self.pin_ref(id) {
                    pinned.push(id);
                } else if let RefId::Object(o) = id {
                    lost = Some(o);
                    break 'args;
                }
            }
            if let Arg::Ref(id) = arg {
                if let Some(e) = self.objects.get_mut(*id) {
                    e.in_use += 1;
                    in_use.push(*id);
                }
            }
        }
        let Some(o) = lost else { return Ok(()) };
        for id in in_use {
            if let Some(e) = self.objects.get_mut(id) {
                e.in_use -= 1;
            }
        }
        self.release_refs(pinned);
        Err(Error::object_lost(
            o,
            "an argument refers to an object that was freed or belongs to an earlier ray runtime",
        ))
    }

    pub(super) fn unpin_args(&mut self, args: &[Arg]) {
        let mut work = Vec::new();
        for arg in args {
            match arg {
                Arg::Ref(id) => {
                    if let Some(e) = self.objects.get_mut(*id) {
                        e.in_use = e.in_use.saturating_sub(1);
                    }
                    work.push(RefId::Object(*id));
                }
                Arg::Value(v) => work.extend(v.contained.iter().copied()),
            }
        }
        self.release_refs(work);
    }

    /// Registers `waiter` on every argument not yet done; returns how many. A task waits for
    /// each occurrence (it counts them down); an actor (`once`) is registered once per object,
    /// since it checks its arguments again when woken.
    pub(super) fn register_deps(&mut self, args: &[Arg], waiter: Waiter, once: bool) -> usize {
        let mut missing = 0;
        for arg in args {
            if let Arg::Ref(id) = arg {
                if let Some(e) = self.objects.get_mut(*id) {
                    if !e.is_done() {
                        if !once || !e.waiters.contains(&waiter) {
                            e.waiters.push(waiter);
                        }
                        missing += 1;
                    }
                }
            }
        }
        missing
    }

    /// Argument data in order (restored from disk if spilled), or the error of a failed
    /// argument. Objects in the store stay there while the task is pending (`in_use`).
    pub(super) fn resolve_args(&mut self, args: &[Arg]) -> Result<Vec<Data>> {
        let mut out = Vec::with_capacity(args.len());
        for arg in args {
            match arg {
                Arg::Value(v) => out.push(v.data.clone()),
                Arg::Ref(id) => match self.load(*id, None)? {
                    Some(v) => out.push(v.data),
                    None => {
                        return Err(Error::object_lost(
                            *id,
                            "an argument was not ready when its task was dispatched",
                        ));
                    }
                },
            }
        }
        Ok(out)
    }

    /// Checks a value a process sent as an object's result: a value in the store must name
    /// exactly a region allocated to `from` and not sealed yet (which seals it), and every
    /// reference inside must be one `from` holds. `Err` describes the violation.
    pub(crate) fn accept_value(&mut self, from: ProcId, value: &Value) -> Result<(), String> {
        // Only node managers say where on another node a value lives (`store.rs::located`): a
        // process that did would choose where this node pulls from and how much it reserves.
        if let Data::Remote { node, .. } = value.data {
            return Err(format!(
                "a value said to be in the store of {node}, which only nodes send"
            ));
        }
        for r in &value.contained {
            if !r.is_null() && !self.holds(from, *r) {
                return Err(format!(
                    "a value containing a reference it does not hold ({r:?})"
                ));
            }
        }
        self.seal(from, value)
    }

    /// Sets an object's value (or error), tells its waiters, and pins what it contains. A value
    /// that is on another node is pulled here first for the waiters that need its bytes.
    pub(super) fn complete_object(&mut self, id: ObjectId, result: Result<Value>) {
        self.on_completed(id, &result);
        let (contained, data) = match &result {
            Ok(v) => (v.contained.clone(), Some(v.clone())),
            Err(_) => (Vec::new(), None),
        };
        let remote = matches!(
            &data,
            Some(Value {
                data: Data::Remote { .. },
                ..
            })
        );
        let waiters = self.objects.complete(id, result);
        if let Some(v) = &data {
            self.stored(id, v, waiters.is_some());
        }
        if let Some(waiters) = waiters {
            for c in contained {
                self.pin_ref(c);
            }
            let waiters = if remote {
                self.wait_for_pull(id, waiters)
            } else {
                waiters
            };
            self.notify(id, waiters);
        }
    }

    pub(super) fn notify(&mut self, id: ObjectId, waiters: Vec<Waiter>) {
        let mut sched = false;
        let failed = matches!(
            self.objects.get(id).map(|e| &e.state),
            Some(ObjState::Failed(_))
        );
        for w in waiters {
            match w {
                Waiter::Task(t) => sched |= self.dependency_done(t),
                Waiter::Actor(a) => {
                    if self.actors.is_pending(a) {
                        sched = true;
                    } else {
                        self.pump_actor(a);
                    }
                }
                Waiter::Request(k) => self.request_progress(k, failed),
            }
        }
        if sched {
            self.schedule();
        }
    }

    /// `ray::put` of an object `from` made.
    pub(crate) fn put(&mut self, from: ProcId, id: ObjectId, result: Result<Value>) {
        if self.objects.create_pending(id, from) {
            self.complete_object(id, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use bytes::Bytes;

    fn value(n: usize) -> Value {
        Value {
            data: Data::Inline(Bytes::from(vec![0u8; n])),
            contained: vec![],
        }
    }

    const P0: ProcId = ProcId::new(NodeId(1), 0);
    const P3: ProcId = ProcId::new(NodeId(1), 3);

    #[test]
    fn objects_live_while_held_or_pinned() {
        let mut d = ObjectDirectory::default();
        let id = ObjectId(1);
        assert!(d.create_pending(id, P0));
        assert!(!d.create_pending(id, P3), "an id is created once");
        assert!(d.pin(id));
        assert_eq!(d.complete(id, Ok(value(10))), Some(vec![]));
        assert_eq!(d.bytes(), 10);
        assert!(matches!(d.remove_holder(id, P0), Ok(None)), "still pinned");
        assert!(d.unpin(id).is_some(), "freed when the last pin goes");
        assert_eq!(d.bytes(), 0);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_process_cannot_drop_what_it_does_not_hold() {
        let mut d = ObjectDirectory::default();
        d.create_pending(ObjectId(1), P0);
        assert!(d.remove_holder(ObjectId(1), P3).is_err());
        assert!(d.unmap(ObjectId(1), P3).is_err());
        assert!(d.remove_holder(ObjectId(9), P0).is_err());
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_dead_process_releases_everything_it_held() {
        let mut d = ObjectDirectory::default();
        d.create_pending(ObjectId(1), P3);
        d.create_pending(ObjectId(2), P3);
        d.add_holder(ObjectId(2), P0);
        let freed = d.remove_proc(P3);
        assert_eq!(freed.len(), 1);
        assert!(d.get(ObjectId(2)).is_some());
    }

    #[test]
    fn completing_an_unwanted_object_drops_the_value() {
        let mut d = ObjectDirectory::default();
        d.create_pending(ObjectId(1), P0);
        let _ = d.remove_holder(ObjectId(1), P0);
        assert!(d.complete(ObjectId(1), Ok(value(4))).is_none());
        assert_eq!(d.bytes(), 0);
    }
}
