//! Identifiers of nodes, processes, objects, actors and requests.
//!
//! Ids are unique across a cluster without coordination: a [`NodeId`] is handed out once when a
//! node starts (in single-node mode, one per runtime of the driver process), a [`ProcId`] is a
//! node plus an index the node manager gives each process it starts (the driver is index 0),
//! and an [`ObjectId`] or [`ActorId`] is its creator's `ProcId` plus a counter of that process:
//!
//! ```text
//! bits 127..96  node     bits 95..64  process index     bits 63..0  per-process counter
//! ```
//!
//! So the node manager can check that a process only creates ids of its own
//! ([`ObjectId::creator`]).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

/// A node of the cluster (in single-node mode: the driver's runtime).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The id's number.
    pub fn as_u32(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// A process of the cluster: the node it runs on and its index there (0: the driver).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct ProcId {
    pub node: NodeId,
    pub index: u32,
}

/// Index of the driver process on its node.
pub(crate) const DRIVER_INDEX: u32 = 0;

impl ProcId {
    pub(crate) const fn new(node: NodeId, index: u32) -> Self {
        ProcId { node, index }
    }

    /// The driver of `node`.
    pub(crate) const fn driver(node: NodeId) -> Self {
        ProcId::new(node, DRIVER_INDEX)
    }

    fn bits(self) -> u128 {
        ((self.node.0 as u128) << 96) | ((self.index as u128) << 64)
    }

    fn from_bits(id: u128) -> Self {
        ProcId {
            node: NodeId((id >> 96) as u32),
            index: (id >> 64) as u32,
        }
    }
}

impl fmt::Debug for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proc {}.{}", self.node.0, self.index)
    }
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A job: one driver's program, with its executable and the workers that run its code. Its
/// id is its driver's process id, so it is unique in the cluster.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub(crate) ProcId);

impl JobId {
    /// The job of the driver `proc`.
    pub(crate) const fn of_driver(proc: ProcId) -> JobId {
        JobId(proc)
    }

    /// The node its driver is attached to.
    pub fn node(self) -> NodeId {
        self.0.node
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({}.{})", self.0.node.0, self.0.index)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {}.{}", self.0.node.0, self.0.index)
    }
}

/// This process's id (bits 127..64 of the ids it makes) and its counter. A worker sets it once
/// when it starts; a driver sets it at each `init`.
static THIS_PROC: AtomicU64 = AtomicU64::new(0);
static COUNTER: AtomicU64 = AtomicU64::new(1);

/// Sets the process id this process makes ids under.
pub(crate) fn set_this_proc(proc: ProcId) {
    THIS_PROC.store((proc.bits() >> 64) as u64, Ordering::Relaxed);
}

/// This process's id.
pub(crate) fn this_proc() -> ProcId {
    ProcId::from_bits((THIS_PROC.load(Ordering::Relaxed) as u128) << 64)
}

/// The id number `n` of process `proc`.
fn compose(proc: ProcId, n: u64) -> u128 {
    proc.bits() | n as u128
}

/// A fresh id, unique in the cluster.
fn next_id() -> u128 {
    compose(this_proc(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// `n` consecutive fresh ids (the first one's number; the others follow it).
fn next_ids(n: u64) -> u128 {
    compose(this_proc(), COUNTER.fetch_add(n.max(1), Ordering::Relaxed))
}

/// Identifies an object (and the task that produces it).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId(pub(crate) u128);

/// Identifies an actor.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorId(pub(crate) u128);

/// Identifies a task: the same number as the [`ObjectId`] of its (first) return value.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub(crate) u128);

/// Identifies a placement group.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlacementGroupId(pub(crate) u128);

macro_rules! id_impls {
    ($t:ident, $name:literal) => {
        #[allow(dead_code)]
        impl $t {
            pub(crate) fn new() -> Self {
                $t(next_id())
            }

            /// The id of nothing: what a reference made without a running runtime holds.
            pub(crate) const NULL: $t = $t(0);

            pub(crate) fn is_null(self) -> bool {
                self.0 == 0
            }

            /// The process that made this id.
            pub(crate) fn creator(self) -> ProcId {
                ProcId::from_bits(self.0)
            }

            /// The node whose process made this id.
            pub fn node(self) -> NodeId {
                self.creator().node
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let p = self.creator();
                write!(
                    f,
                    concat!($name, "({}.{}.{})"),
                    p.node.0, p.index, self.0 as u64
                )
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let p = self.creator();
                write!(f, "{:x}.{:x}.{:x}", p.node.0, p.index, self.0 as u64)
            }
        }
    };
}

id_impls!(ObjectId, "ObjectId");
id_impls!(ActorId, "ActorId");
id_impls!(TaskId, "TaskId");
id_impls!(PlacementGroupId, "PlacementGroupId");

impl ObjectId {
    /// The ids of `n` values returned by one call: `n` consecutive fresh ids, the first of
    /// which is also the task's id.
    pub(crate) fn new_returns(n: u32) -> Self {
        ObjectId(next_ids(n as u64))
    }

    /// The `i`-th return value of the task whose first return value is `self`.
    pub(crate) fn nth_return(self, i: u32) -> ObjectId {
        ObjectId(self.0 + i as u128)
    }

    /// The task that makes this object (for a task's first return value, the same number).
    pub(crate) fn task(self) -> TaskId {
        TaskId(self.0)
    }
}

impl TaskId {
    /// The object this task returns (its first return value).
    pub fn return_object(self) -> ObjectId {
        ObjectId(self.0)
    }
}

/// Identifies an open get/wait request of the node manager.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct RequestKey(pub NonZeroU64);

/// Hasher for maps keyed by ids, task keys and process ids: these are counters, so a
/// multiply-and-shift mix is enough (SipHash's protection against chosen keys is not needed:
/// keys of other processes' making are checked before they are inserted).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        let x = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 32);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64 ^ ((n >> 64) as u64).rotate_left(17));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by ids, with [`IdHasher`].
pub(crate) type IdMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Something reference-counted across processes: an object or an actor.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) enum RefId {
    Object(ObjectId),
    Actor(ActorId),
}

impl RefId {
    pub(crate) fn is_null(self) -> bool {
        match self {
            RefId::Object(o) => o.is_null(),
            RefId::Actor(a) => a.is_null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_creator_and_are_unique() {
        let me = ProcId::new(NodeId(7), 3);
        let a = ObjectId(compose(me, 1));
        let b = ObjectId(compose(me, 2));
        assert_ne!(a, b);
        assert_eq!(a.creator(), me);
        assert_eq!(ActorId(compose(me, 9)).creator(), me);
        assert_eq!(a.node(), NodeId(7));
        assert_eq!(ProcId::from_bits(me.bits()), me);
        assert!(!a.is_null() && ObjectId::NULL.is_null());
        assert_eq!(format!("{a}"), "7.3.1");
        assert_ne!(ObjectId::new(), ObjectId::new());
    }
}
