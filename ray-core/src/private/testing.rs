//! Hooks for the project's own attack tests and fuzz targets (feature `testing`). They give
//! task code nothing it could not do by hand — a worker can find its socket in
//! `/proc/self/fd` and write bytes to it — only the encoding of the messages it would forge.

use crate::codec::{self, Value};
use crate::error::{Error, Result};
use crate::ids::{ActorId, ObjectId, RefId};
use crate::protocol::worker::FromWorker;

/// Writes raw bytes on this worker's connection to its node manager, as hostile task code
/// could (between the worker's own messages, never inside one).
pub fn send_raw(bytes: &[u8]) -> Result<()> {
    crate::worker::send_raw(bytes)
}

fn frame(msg: &FromWorker) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_frame(msg, &mut out).expect("a forged message encodes");
    out
}

fn inline(x: u64) -> Value {
    codec::encode(&x).expect("encodes").value
}

/// A frame putting `value` under `id` (an id the sender may not own).
pub fn forged_put(id: ObjectId, value: u64) -> Vec<u8> {
    frame(&FromWorker::Put {
        id,
        result: Ok(inline(value)),
    })
}

/// A frame reporting `value` as the result of `task`.
pub fn forged_task_done(task: ObjectId, value: u64) -> Vec<u8> {
    frame(&FromWorker::TaskDone {
        task,
        result: Ok(inline(value)),
    })
}

/// A frame dropping a reference to `id`.
pub fn forged_del_ref(id: ObjectId) -> Vec<u8> {
    frame(&FromWorker::DelRef(RefId::Object(id)))
}

/// A frame killing `actor`.
pub fn forged_kill(actor: ActorId) -> Vec<u8> {
    frame(&FromWorker::KillActor { actor })
}

/// A second hello.
pub fn forged_hello() -> Vec<u8> {
    frame(&FromWorker::Hello {
        version: crate::protocol::PROTOCOL_VERSION,
        fingerprint: crate::registry::fingerprint(),
        pid: std::process::id(),
    })
}

/// Asks this process's node manager for a store region of `size` bytes, as `put` does.
pub fn alloc(size: u64) -> Result<u64> {
    crate::context::client()?.alloc(size)
}

/// The id of an object, as a number (for passing ids into tasks).
pub fn id_bits(id: ObjectId) -> u128 {
    id.0
}

/// An object id from [`id_bits`].
pub fn id_from_bits(bits: u128) -> ObjectId {
    ObjectId(bits)
}

/// The running node manager's objects and bytes (driver only).
pub fn objects() -> Result<(usize, u64)> {
    crate::driver::current()
        .and_then(|d| d.node.as_ref().map(|n| n.lock().object_stats()))
        .ok_or_else(Error::shut_down)
}

/// An actor's id as a number.
pub fn actor_bits(id: ActorId) -> u128 {
    id.0
}

/// The actor id whose number an object id made from [`id_from_bits`] carries.
pub fn actor_id(id: ObjectId) -> ActorId {
    ActorId(id.0)
}

/// Fuzzing the frame reader: reads frames from `data` under each limit and decodes them as
/// worker messages, as the node manager's reader does. Must never panic or allocate more than
/// the bytes given.
pub fn fuzz_frames(data: &[u8]) {
    use crate::transport::{HELLO_MAX, MAX_FROM_WORKER, read_frame};
    for max in [HELLO_MAX, MAX_FROM_WORKER] {
        let mut r = data;
        let mut buf = Vec::new();
        while let Ok(Some(())) = read_frame(&mut r, &mut buf, max) {
            assert!(buf.len() <= data.len(), "no more than what came");
            let _ = crate::transport::decode_frame::<FromWorker>(&buf);
        }
    }
}

pub use crate::node_manager::fuzz::{NodeFuzzer, fuzz_seeds};
