//! This process's side of distributed reference counting.
//!
//! Every `ObjectRef`/`ActorHandle` clone or decode calls `inc`, every drop `dec`. The driver
//! applies them to the object directory directly; a worker keeps a local count per id and tells
//! the node manager only about its first reference (`AddRef`) and its last (`DelRef`). The node
//! manager frees an object when no process holds it and nothing pins it (a pending task's
//! argument, an object that contains it, a value in flight to a worker).

use crate::context;
use crate::ids::{IdMap, RefId};

pub(crate) fn inc(id: RefId) {
    if is_null(id) {
        return;
    }
    if let Some(c) = context::try_client() {
        c.add_ref(id);
    }
}

pub(crate) fn dec(id: RefId) {
    if is_null(id) {
        return;
    }
    if let Some(c) = context::try_client() {
        c.del_ref(id);
    }
}

fn is_null(id: RefId) -> bool {
    id.is_null()
}

/// A reference was serialized by code other than ray's own encoding (serde into a string, a
/// file, another program): no process may hold it while it is away, so the node manager keeps
/// the object (or actor) alive until its owner (the process that made it) exits, as Ray does.
/// Once per id per process.
pub(crate) fn escaped(id: RefId) {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashSet<RefId>>> = Mutex::new(None);
    if is_null(id) {
        return;
    }
    let Some(c) = context::try_client() else {
        return;
    };
    let first = SEEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(id);
    if first {
        if let Err(e) = c.control(crate::protocol::worker::Control::Escape(id)) {
            crate::log::debug!("keeping {id:?} alive after it escaped: {e}");
        }
    }
}

/// Holds an extra local reference to each id while alive.
pub(crate) struct Pins(Vec<RefId>);

impl Pins {
    pub(crate) fn new(ids: &[RefId]) -> Self {
        for id in ids {
            inc(*id);
        }
        Pins(ids.to_vec())
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            dec(id);
        }
    }
}

/// A worker's local counts. `inc`/`dec` return the message to send to the node manager, if
/// any; the caller sends it while still holding the lock so that messages leave in the same
/// order as the counts changed.
#[derive(Default)]
pub(crate) struct LocalCounts {
    counts: IdMap<RefId, u32>,
}

pub(crate) enum Transition {
    None,
    First,
    Last,
}

impl LocalCounts {
    /// A reference the node manager already counts for this process (we created it).
    pub(crate) fn owned(&mut self, id: RefId) -> Transition {
        *self.counts.entry(id).or_insert(0) += 1;
        Transition::None
    }

    /// A reference the node manager counted for this process in an answer. True if this
    /// process already held it: then the node's extra count must be dropped (`DelRef`), as
    /// the node counts each process once.
    pub(crate) fn adopt(&mut self, id: RefId) -> bool {
        let n = self.counts.entry(id).or_insert(0);
        *n += 1;
        *n > 1
    }

    pub(crate) fn inc(&mut self, id: RefId) -> Transition {
        let n = self.counts.entry(id).or_insert(0);
        *n += 1;
        if *n == 1 {
            Transition::First
        } else {
            Transition::None
        }
    }

    pub(crate) fn dec(&mut self, id: RefId) -> Transition {
        match self.counts.get_mut(&id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Transition::None
            }
            Some(_) => {
                self.counts.remove(&id);
                Transition::Last
            }
            None => Transition::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ObjectId;

    #[test]
    fn only_first_and_last_references_are_reported() {
        let id = RefId::Object(ObjectId(5));
        let mut c = LocalCounts::default();
        assert!(matches!(c.inc(id), Transition::First));
        assert!(matches!(c.inc(id), Transition::None));
        assert!(matches!(c.dec(id), Transition::None));
        assert!(matches!(c.dec(id), Transition::Last));
        assert!(matches!(c.dec(id), Transition::None));
        let owned = RefId::Object(ObjectId(6));
        assert!(matches!(c.owned(owned), Transition::None));
        assert!(matches!(c.dec(owned), Transition::Last));
    }
}
