//! Identifiers of objects, actors and processes.
//!
//! An id is a `u64`: the high 24 bits are the index of the process that made it (the driver is
//! 0, workers get theirs from the node manager), the low 40 bits a per-process counter. Ids are
//! therefore unique across the cluster without coordination.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Index of a process in the cluster: 0 is the driver.
pub(crate) type ProcIndex = u32;
pub(crate) const DRIVER: ProcIndex = 0;

static THIS_PROC: AtomicU32 = AtomicU32::new(DRIVER);
static COUNTER: AtomicU64 = AtomicU64::new(1);

/// Sets this process's index (called once at worker start).
pub(crate) fn set_this_proc(index: ProcIndex) {
    THIS_PROC.store(index, Ordering::Relaxed);
}

/// A fresh id, unique in the cluster.
pub(crate) fn next_id() -> u64 {
    let proc = THIS_PROC.load(Ordering::Relaxed) as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (proc << 40) | (n & ((1 << 40) - 1))
}

/// Identifies an object (and the task that produces it).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId(pub(crate) u64);

/// Identifies an actor.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorId(pub(crate) u64);

impl ObjectId {
    pub(crate) fn new() -> Self {
        ObjectId(next_id())
    }
}

impl ActorId {
    pub(crate) fn new() -> Self {
        ActorId(next_id())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ObjectId({:x}:{})",
            self.0 >> 40,
            self.0 & ((1 << 40) - 1)
        )
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ActorId({:x}:{})",
            self.0 >> 40,
            self.0 & ((1 << 40) - 1)
        )
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Hasher for maps keyed by ids, task keys and process indices: these are counters, so a
/// multiply-and-shift mix is enough (SipHash's protection against chosen keys is not needed).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_process_index_and_are_unique() {
        let a = next_id();
        let b = next_id();
        assert_ne!(a, b);
        assert_eq!(a >> 40, 0);
    }
}
