//! Get and wait requests, and the CPU a blocked worker lends to the node.
//!
//! [`Requests`] owns the open requests. A request waits on the objects it needs (as a
//! [`Waiter::Request`]); when enough are done it is answered: a driver thread is woken (it
//! reads the directory itself), a driver future resolved, or a worker sent its values. A
//! worker blocked in `get`/`wait` lends its CPU to the node until the answer (as Ray does), so
//! nested tasks cannot deadlock a full node.

use super::effects::{Effect, Peer, Timer};
use super::objects::{ObjState, Waiter};
use super::state::NodeState;
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{IdMap, ObjectId, ProcId, RefId, RequestKey};
use crate::protocol::worker::ToWorker;
use crate::slot::Slot;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

/// Largest part of a reply's values in one message: larger replies are split.
pub(crate) const REPLY_CHUNK: u64 = 64 << 20;

/// Bytes a `get` may copy for the ids it lists more than once (past their first copies), past
/// which it is refused ([`NodeState::repeated_copies`]).
pub(crate) const REPEATED_GET_BYTES: u64 = 64 << 20;

/// Timeouts longer than this are "forever" (and need no timer).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) enum Reply {
    /// A driver thread blocked in `get`/`wait`: it reads the directory itself once woken.
    Local(Arc<Slot<()>>),
    /// A driver future awaiting one object.
    Async(Arc<Slot<Result<Value>>>),
    /// A worker: answer with a message.
    Remote { proc: ProcId, req: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ReqKind {
    Get,
    Wait,
}

pub(crate) struct Request {
    ids: Vec<ObjectId>,
    kind: ReqKind,
    need: usize,
    reply: Reply,
    /// The worker whose CPU is lent while it waits.
    blocked_worker: Option<ProcId>,
    timeout: Option<Duration>,
}

pub(crate) struct Requests {
    map: IdMap<RequestKey, Request>,
    next: NonZeroU64,
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            map: IdMap::default(),
            next: NonZeroU64::MIN,
        }
    }
}

impl Requests {
    fn insert(&mut self, r: Request) -> RequestKey {
        let key = RequestKey(self.next);
        self.next = self.next.checked_add(1).unwrap_or(NonZeroU64::MIN);
        self.map.insert(key, r);
        key
    }

    /// The open request a worker knows as `req`.
    fn find_remote(&self, proc: ProcId, req: u64) -> Option<RequestKey> {
        self.map.iter().find_map(|(k, r)| match r.reply {
            Reply::Remote { proc: p, req: q } if p == proc && q == req => Some(*k),
            _ => None,
        })
    }

    /// Where request `key` is answered.
    pub(super) fn reply_of(&self, key: RequestKey) -> Option<&Reply> {
        self.map.get(&key).map(|r| &r.reply)
    }

    /// Requests that lend `proc`'s CPU stop doing so (its task ended).
    pub(super) fn forget_blocked(&mut self, proc: ProcId) {
        for r in self.map.values_mut() {
            if r.blocked_worker == Some(proc) {
                r.blocked_worker = None;
            }
        }
    }

    /// Drops the requests of a process that is gone.
    pub(super) fn remove_of(&mut self, proc: ProcId) {
        self.map
            .retain(|_, r| !matches!(r.reply, Reply::Remote { proc: p, .. } if p == proc));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

impl NodeState {
    /// A process's `Get` (`kind` Get) or `Wait` request `req` over its connection, answered on
    /// it.
    pub(crate) fn remote_request(
        &mut self,
        from: ProcId,
        req: u64,
        ids: Vec<ObjectId>,
        kind: ReqKind,
        num_returns: usize,
        timeout_ms: Option<u64>,
    ) {
        let reply = Reply::Remote { proc: from, req };
        let timeout = timeout_ms.map(Duration::from_millis);
        self.add_request(ids, kind, num_returns, reply, timeout);
    }

    /// Registers a get/wait; completes it at once if it can. Returns its key if it waits.
    pub(crate) fn add_request(
        &mut self,
        ids: Vec<ObjectId>,
        kind: ReqKind,
        num_returns: usize,
        reply: Reply,
        timeout: Option<Duration>,
    ) -> Option<RequestKey> {
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        let mut not_done = Vec::new();
        let mut any_failed = false;
        // Only other nodes take a value where it is; everyone else gets it here first.
        let peer = matches!(reply, Reply::Remote { proc, .. } if self.is_peer_session(proc));
        let here = kind == ReqKind::Get && !peer;
        for id in &distinct {
            // A process here may read another node's object: this node borrows it. (A node
            // asking here asks about what it made or what it knows is here.)
            if !peer {
                self.know(*id);
            }
            match self.objects.get(*id).map(|e| &e.state) {
                Some(ObjState::Pending) => not_done.push(*id),
                Some(ObjState::Failed(_)) | None => any_failed = true,
                Some(ObjState::Ready(_) | ObjState::Spilled { .. }) => {
                    if here && !self.ensure_local(*id) {
                        not_done.push(*id);
                    }
                }
            }
        }
        let need = match kind {
            ReqKind::Get if any_failed => 0,
            ReqKind::Get => not_done.len(),
            ReqKind::Wait => num_returns
                .min(distinct.len())
                .saturating_sub(distinct.len() - not_done.len()),
        };
        let blocked_worker = match reply {
            Reply::Remote { proc, .. } if need > 0 => Some(proc),
            _ => None,
        };
        let timeout = timeout.filter(|t| *t < FOREVER);
        let key = self.requests.insert(Request {
            ids,
            kind,
            need,
            reply,
            blocked_worker,
            timeout,
        });
        if need == 0 {
            self.complete_request(key);
            return None;
        }
        for id in not_done {
            if let Some(e) = self.objects.get_mut(id) {
                e.waiters.push(Waiter::Request(key));
            }
        }
        if let Some(proc) = blocked_worker {
            self.block_worker(proc);
        }
        if let Some(t) = timeout {
            self.effects
                .push(Effect::Timer(t, Timer::RequestTimeout(key)));
        }
        Some(key)
    }

    /// An object a request waits for is done.
    pub(super) fn request_progress(&mut self, key: RequestKey, failed: bool) {
        if let Some(r) = self.requests.map.get_mut(&key) {
            r.need = r.need.saturating_sub(1);
            if r.need == 0 || (failed && r.kind == ReqKind::Get) {
                self.complete_request(key);
            }
        }
    }

    /// A worker waits in `get`: lend its CPU to the node so other tasks can run (this is what
    /// keeps nested tasks from deadlocking when every CPU is held by a waiting task).
    fn block_worker(&mut self, proc: ProcId) {
        let Some(w) = self.workers.get_mut(proc) else {
            return;
        };
        w.blocked += 1;
        if w.blocked == 1 && !w.cpu_held.is_zero() {
            self.resources.lend_cpu(w.cpu_held);
            self.schedule();
        }
    }

    fn unblock_worker(&mut self, proc: ProcId) {
        let Some(w) = self.workers.get_mut(proc) else {
            return;
        };
        if w.blocked == 0 {
            return;
        }
        w.blocked -= 1;
        if w.blocked == 0 && !w.cpu_held.is_zero() {
            self.resources.reclaim_cpu(w.cpu_held);
        }
    }

    pub(crate) fn remove_request(&mut self, key: RequestKey) -> Option<Request> {
        let r = self.requests.map.remove(&key)?;
        if let Some(p) = r.blocked_worker {
            self.unblock_worker(p);
        }
        Some(r)
    }

    fn complete_request(&mut self, key: RequestKey) {
        let Some(r) = self.remove_request(key) else {
            return;
        };
        match r.reply {
            Reply::Local(slot) => self.effects.push(Effect::Wake(slot)),
            Reply::Async(slot) => {
                let driver = self.driver();
                let result = self.collect_values(&r.ids, Some(driver)).and_then(|v| {
                    v.and_then(|mut v| v.pop())
                        .ok_or_else(|| Error::object_lost(r.ids[0], "not ready"))
                });
                self.effects.push(Effect::Resolve(slot, result));
            }
            Reply::Remote { proc, req } => match r.kind {
                ReqKind::Get => {
                    // A process without the store gets copies; it does not map anything.
                    let remote = self.workers.get(proc).is_some_and(|w| w.remote);
                    let reader = (!remote).then_some(proc);
                    let peer = self.is_peer_session(proc);
                    let result = match self.repeated_copies(&r.ids, remote && !peer) {
                        Some(e) => Err(e),
                        None => self.collect_values(&r.ids, reader).and_then(|v| {
                            v.ok_or_else(|| Error::object_lost(r.ids[0], "not ready"))
                        }),
                    };
                    let result = match result {
                        Ok(values) if peer => Ok(self.located(values)),
                        Ok(values) if remote => Ok(self.inlined(values)),
                        other => other,
                    };
                    match result {
                        Ok(values) => self.send_values(proc, req, values),
                        Err(e) => self.send(
                            proc,
                            ToWorker::GetReply {
                                req,
                                result: Err(e),
                            },
                        ),
                    }
                }
                ReqKind::Wait => {
                    let ready = self
                        .ready_flags(&r.ids)
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| **f)
                        .map(|(i, _)| i as u32)
                        .collect();
                    self.send(proc, ToWorker::WaitReply { req, ready });
                }
            },
        }
    }

    /// Refuses a `get` whose repeated ids would copy more than [`REPEATED_GET_BYTES`]: each
    /// listing of an id is answered with its own copy of the value (the receiver counts the
    /// references inside each), so `[id; n]` of a large object would make its node queue `n`
    /// copies. What is copied: inline values, and for a process that shares no memory with
    /// this node (`copies_all`) stored ones too.
    fn repeated_copies(&self, ids: &[ObjectId], copies_all: bool) -> Option<Error> {
        if ids.len() < 2 {
            return None; // the usual get, and nothing to repeat
        }
        let mut listed: HashMap<ObjectId, u64> = HashMap::new();
        for id in ids {
            *listed.entry(*id).or_default() += 1;
        }
        // Each repeated id: how often it is listed, and the bytes its repeats copy.
        let repeated: Vec<(ObjectId, u64, u64)> = listed
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, n)| {
                let copy = match self.objects.get(id).map(|e| &e.state) {
                    Some(ObjState::Ready(v)) => match &v.data {
                        Data::Inline(b) => b.len() as u64,
                        Data::Shm { .. } | Data::Remote { .. } if copies_all => v.len(),
                        Data::Shm { .. } | Data::Remote { .. } => 0,
                    },
                    Some(ObjState::Spilled { len, .. }) if copies_all => *len,
                    _ => 0,
                };
                (id, n, copy.saturating_mul(n - 1))
            })
            .collect();
        let extra = repeated
            .iter()
            .fold(0u64, |sum, (_, _, bytes)| sum.saturating_add(*bytes));
        if extra <= REPEATED_GET_BYTES {
            return None;
        }
        // Named: the id whose repeats copy the most (the lowest of equals, for a stable message).
        let (id, n, _) = repeated
            .into_iter()
            .max_by_key(|(id, _, bytes)| (*bytes, std::cmp::Reverse(*id)))?;
        Some(Error::InvalidArgument {
            what: "get".into(),
            message: format!(
                "{id} is listed {n} times and each listing is answered with its own copy: \
                 {extra} bytes past the first copies, more than the {} MiB a get may repeat; \
                 list each object once and reuse its value",
                REPEATED_GET_BYTES >> 20
            ),
        })
    }

    /// Answers a worker's `get` with `values`, in parts of at most [`REPLY_CHUNK`] bytes so
    /// that a reply of any size fits in frames. The receiver decodes references inside these
    /// values: it is counted as a holder now and sends one `DelRef` each once decoded.
    fn send_values(&mut self, proc: ProcId, req: u64, values: Vec<Value>) {
        let inner: Vec<RefId> = values
            .iter()
            .flat_map(|v| v.contained.iter().copied())
            .collect();
        for id in inner {
            self.add_ref(proc, id);
        }
        let mut part = Vec::new();
        let mut bytes = 0u64;
        for v in values {
            let size = match &v.data {
                Data::Inline(b) => b.len() as u64,
                Data::Shm { .. } | Data::Remote { .. } => 32,
            } + 16 * v.contained.len() as u64;
            if bytes.saturating_add(size) > REPLY_CHUNK && !part.is_empty() {
                let values = std::mem::take(&mut part);
                self.send(proc, ToWorker::GetReplyPart { req, values });
                bytes = 0;
            }
            bytes = bytes.saturating_add(size);
            part.push(v);
        }
        self.send(
            proc,
            ToWorker::GetReply {
                req,
                result: Ok(part),
            },
        );
    }

    pub(super) fn send(&mut self, proc: ProcId, msg: ToWorker) {
        self.effects.push(Effect::Send(Peer::Worker(proc), msg));
    }

    /// A request's timer fired: a wait answers with what is ready, a get fails.
    pub(crate) fn expire_request(&mut self, key: RequestKey) {
        let Some(r) = self.requests.map.get(&key) else {
            return;
        };
        match r.kind {
            ReqKind::Wait => self.complete_request(key),
            ReqKind::Get => {
                let Some(r) = self.remove_request(key) else {
                    return;
                };
                if let Reply::Remote { proc, req } = r.reply {
                    let err = Error::Timeout {
                        what: self.describe_wait(&r.ids),
                        timeout: r.timeout.unwrap_or_default(),
                    };
                    self.send(
                        proc,
                        ToWorker::GetReply {
                            req,
                            result: Err(err),
                        },
                    );
                }
            }
        }
    }

    /// A worker's `get` nobody waits for any more: answered with an error if still open.
    pub(super) fn cancel_get(&mut self, proc: ProcId, req: u64) {
        if let Some(k) = self.requests.find_remote(proc, req) {
            self.remove_request(k);
            let result = Err(Error::ShutDown {
                detail: " (the get was cancelled)".into(),
            });
            self.send(proc, ToWorker::GetReply { req, result });
        }
    }

    /// What a get or wait on `ids` waits for, for messages: the task that makes the first
    /// pending object, where known.
    pub(crate) fn describe_wait(&self, ids: &[ObjectId]) -> String {
        let pending = ids
            .iter()
            .find(|id| self.objects.get(**id).is_some_and(|e| !e.is_done()))
            .or(ids.first());
        let Some(id) = pending else {
            return "nothing".into();
        };
        let first = match self.producer_of(*id) {
            Some(name) => format!("the result of `{name}` (object {id})"),
            None => format!("object {id}"),
        };
        match ids.len() {
            1 => first,
            n => format!("{n} objects, among them {first}"),
        }
    }

    /// Values of `ids` if all are done; `Err` as soon as one failed or is unknown. Values in
    /// the store are pinned in memory for `reader` until it releases them.
    pub(crate) fn collect_values(
        &mut self,
        ids: &[ObjectId],
        reader: Option<ProcId>,
    ) -> Result<Option<Vec<Value>>> {
        for id in ids {
            match self.objects.get(*id).map(|e| &e.state) {
                None => {
                    return Err(Error::object_lost(
                        *id,
                        "no such object: it was freed or belongs to an earlier ray runtime",
                    ));
                }
                Some(ObjState::Failed(e)) => {
                    let e = e.clone();
                    self.error_read(*id);
                    return Err(e);
                }
                Some(ObjState::Pending) => return Ok(None),
                Some(ObjState::Ready(_) | ObjState::Spilled { .. }) => {}
            }
        }
        let mut values = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            match self.load(*id, reader) {
                Ok(Some(v)) => values.push(v),
                Ok(None) => return Err(Error::object_lost(*id, "not ready")),
                Err(e) => {
                    if let Some(p) = reader {
                        let taken: Vec<ObjectId> = ids[..i]
                            .iter()
                            .zip(&values)
                            .filter(|(_, v)| matches!(v.data, Data::Shm { .. }))
                            .map(|(id, _)| *id)
                            .collect();
                        let _ = self.release_mapped(p, &taken);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Some(values))
    }

    /// One flag per id: done (ready or failed) or unknown.
    pub(crate) fn ready_flags(&self, ids: &[ObjectId]) -> Vec<bool> {
        ids.iter()
            .map(|id| self.objects.get(*id).is_none_or(|e| e.is_done()))
            .collect()
    }

    /// Shutdown: every driver waiter is woken (it sees the shutdown), futures fail.
    pub(super) fn fail_all_requests(&mut self) {
        let keys: Vec<RequestKey> = self.requests.map.keys().copied().collect();
        for k in keys {
            if let Some(r) = self.requests.map.remove(&k) {
                match r.reply {
                    Reply::Local(slot) => self.effects.push(Effect::Wake(slot)),
                    Reply::Async(slot) => self
                        .effects
                        .push(Effect::Resolve(slot, Err(Error::shut_down()))),
                    Reply::Remote { .. } => {}
                }
            }
        }
    }
}
