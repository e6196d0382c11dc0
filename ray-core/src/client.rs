//! A process's client of its node manager over a connection: the worker's (over its socket
//! pair) and, in a cluster, a remote driver's (over TLS). Requests carry a number; replies
//! complete the callback registered under it. How bytes travel is a [`MessageSink`].

use crate::codec::{Data, Encoded, Value};
use crate::context::{self, Client, GetToken};
use crate::error::{Error, Result};
use crate::ids::{ActorId, JobId, ObjectId, RefId};
use crate::log;
use crate::object_store;
use crate::protocol::worker::{Control, ControlReply, FromWorker, ToWorker};
use crate::protocol::{ActorSpec, ActorTaskSpec, TaskSpec};
use crate::refcount::{LocalCounts, Transition};
use crate::slot::Slot;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a client's messages go.
pub(crate) trait MessageSink: Send + Sync + 'static {
    /// Sends one message, in order with the others.
    fn send(&self, msg: &FromWorker) -> Result<()>;
    /// Sends several messages in order (with one write where the sink can).
    fn send_many(&self, msgs: &[FromWorker]) -> Result<()> {
        msgs.iter().try_for_each(|m| self.send(m))
    }
    /// Ends the connection after a failed `send` (its stream may be cut inside a frame), so
    /// its reader sees the end too. A worker's sink need not: it exits.
    fn abort(&self) {}
    /// Writes raw bytes between frames (attack tests).
    #[cfg(feature = "testing")]
    fn send_raw(&self, bytes: &[u8]) -> Result<()>;
}

impl<W: std::io::Write + Send + 'static> MessageSink for crate::transport::BlockingSender<W> {
    fn send(&self, msg: &FromWorker) -> Result<()> {
        crate::transport::BlockingSender::send(self, msg)
    }

    #[cfg(feature = "testing")]
    fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        crate::transport::BlockingSender::send_raw(self, bytes)
    }
}

/// Why a failed write lost the connection, as later errors quote it (an I/O error without its
/// "I/O error in the ray runtime", which the quoting error says already).
fn lost_reason(e: &Error) -> String {
    match e {
        Error::Io {
            context, message, ..
        } => format!("{context}: {message}"),
        e => e.to_string(),
    }
}

/// What a client does when its connection is lost.
#[derive(Clone, Copy)]
pub(crate) enum OnLost {
    /// A worker exits (its node manager is gone), with this code.
    Exit(i32),
    /// A remote driver fails what waits and every later call.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    Fail,
    /// A remote driver's direct session to an actor's node: the same, and its calls go
    /// through the home node from then on.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    Direct,
}

pub(crate) enum Reply {
    Get(Result<Vec<Value>>),
    Wait(Vec<u32>),
    Alloc(Result<u64>),
    Control(Result<ControlReply>),
}

type Pending = Box<dyn FnOnce(Reply) + Send>;

/// A request whose caller stopped waiting: its reply, when it comes, is released unread.
///
/// The callback runs on the thread that reads the node's messages, so the releases are sent
/// from another: a send may wait for the node to read, and a driver's node stops reading it
/// while replies wait for it unread (`node_manager/remote.rs::read_driver`).
fn discard_reply(ids: Vec<ObjectId>) -> Pending {
    Box::new(move |r| {
        let (Reply::Get(Ok(values)), Some(c)) = (r, context::try_client()) else {
            return;
        };
        let nothing_held = values
            .iter()
            .all(|v| v.contained.is_empty() && !matches!(v.data, Data::Shm { .. }));
        if nothing_held {
            return;
        }
        let release = move || c.transfer_done(&ids, &values);
        if let Err(e) = std::thread::Builder::new()
            .name("ray-release".into())
            .spawn(release)
        {
            log::warn!("cannot start a thread to release an abandoned reply: {e}");
        }
    })
}

/// A process's client: messages over its connection to its node manager.
pub(crate) struct ProcessClient {
    pub(crate) pid: u32,
    pub(crate) sender: Box<dyn MessageSink>,
    refs: Mutex<LocalCounts>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Parts of large `get` replies received so far, by request.
    parts: Mutex<HashMap<u64, Vec<Value>>>,
    next_req: AtomicU64,
    pub(crate) gpu_ids: Mutex<Vec<usize>>,
    job: JobId,
    on_lost: OnLost,
    /// Why the connection was lost, once it was (said by every call made after).
    lost: std::sync::OnceLock<String>,
    /// The driver is leaving the cluster: the connection's end is expected, not an error.
    leaving: AtomicBool,
    /// A remote driver's connection, which a thread waiting on a reply reads itself.
    #[cfg(feature = "cluster")]
    turn: std::sync::OnceLock<Arc<crate::cluster_client::Turn>>,
    /// A remote driver's direct actor calls.
    #[cfg(feature = "cluster")]
    direct: std::sync::OnceLock<Arc<crate::cluster_client::DirectCalls>>,
}

impl ProcessClient {
    pub(crate) fn new(
        pid: u32,
        sender: Box<dyn MessageSink>,
        gpu_ids: Vec<usize>,
        job: JobId,
        on_lost: OnLost,
    ) -> Self {
        ProcessClient {
            pid,
            sender,
            refs: Mutex::new(LocalCounts::default()),
            pending: Mutex::new(HashMap::new()),
            parts: Mutex::new(HashMap::new()),
            next_req: AtomicU64::new(1),
            gpu_ids: Mutex::new(gpu_ids),
            job,
            on_lost,
            lost: std::sync::OnceLock::new(),
            leaving: AtomicBool::new(false),
            #[cfg(feature = "cluster")]
            turn: std::sync::OnceLock::new(),
            #[cfg(feature = "cluster")]
            direct: std::sync::OnceLock::new(),
        }
    }

    /// From now on this driver calls actors on other nodes directly.
    #[cfg(feature = "cluster")]
    pub(crate) fn call_directly(&self, direct: Arc<crate::cluster_client::DirectCalls>) {
        let _ = self.direct.set(direct);
    }

    /// Its direct sessions close (the driver leaves).
    #[cfg(feature = "cluster")]
    pub(crate) fn close_direct(&self) {
        if let Some(d) = self.direct.get() {
            d.close();
        }
    }

    /// Whether the connection was lost.
    #[cfg(feature = "cluster")]
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.get().is_some()
    }

    /// Blocks until `slot` is filled, reading the connection meanwhile if this thread can.
    #[cfg(feature = "cluster")]
    pub(crate) fn wait_for<T: Send + 'static>(&self, slot: &Arc<Slot<T>>) -> Option<T> {
        self.wait_reply(slot)
    }

    /// From now on a thread waiting on a reply reads the connection itself (see
    /// [`crate::cluster_client::Turn`]).
    #[cfg(feature = "cluster")]
    pub(crate) fn read_while_waiting(&self, turn: Arc<crate::cluster_client::Turn>) {
        let _ = self.turn.set(turn);
    }

    /// Whether any request still awaits its reply.
    #[cfg(feature = "cluster")]
    pub(crate) fn awaits_replies(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Blocks until the reply that fills `slot` has come.
    fn wait_reply<T: Send + 'static>(&self, slot: &Arc<Slot<T>>) -> Option<T> {
        #[cfg(feature = "cluster")]
        if let Some(turn) = self.turn.get() {
            return turn.wait(self, slot);
        }
        slot.wait(None)
    }

    pub(crate) fn send(&self, msg: &FromWorker) {
        // A remote driver's messages wait behind what its direct calls queued for its node.
        #[cfg(feature = "cluster")]
        if let Some(direct) = self.direct.get() {
            return direct.send_home(self, msg);
        }
        self.send_now(msg)
    }

    /// Sends `msg` now (nothing queued goes first).
    pub(crate) fn send_now(&self, msg: &FromWorker) {
        if self.lost.get().is_some() {
            return;
        }
        if let Err(e) = self.sender.send(msg) {
            // The reason first: the reader, seeing the end after `abort`, has none.
            self.connection_lost(&lost_reason(&e));
            self.sender.abort();
        }
    }

    /// Sends `msgs` in order, with one write where the connection allows.
    #[cfg(feature = "cluster")]
    pub(crate) fn send_batch(&self, msgs: &[FromWorker]) {
        if self.lost.get().is_some() || msgs.is_empty() {
            return;
        }
        if let Err(e) = self.sender.send_many(msgs) {
            self.connection_lost(&lost_reason(&e));
            self.sender.abort();
        }
    }

    /// The driver leaves the cluster: the end of its connection that follows is expected.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn leaving(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }

    /// The connection to the node manager is gone (`why`).
    pub(crate) fn connection_lost(&self, why: &str) {
        match self.on_lost {
            OnLost::Exit(code) => {
                eprintln!("ray worker: lost the node manager ({why}); exiting");
                std::process::exit(code);
            }
            OnLost::Fail | OnLost::Direct => {
                let pending: Vec<Pending> = {
                    // Under the lock `request` checks `lost` in, so no request is registered
                    // after this drain.
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    if self.lost.set(why.to_string()).is_err() {
                        return;
                    }
                    pending.drain().map(|(_, cb)| cb).collect()
                };
                if self.leaving.load(Ordering::Relaxed) {
                    crate::log::debug!("the connection to the cluster ended: {why}");
                } else if matches!(self.on_lost, OnLost::Direct) {
                    crate::log::warn!(
                        "a direct session to an actor's node ended ({why}); its actor's calls \
                         go through this driver's node from now on"
                    );
                } else {
                    crate::log::error!("lost the connection to the cluster: {why}");
                }
                let err = Error::Io {
                    context: "talking to the cluster's node".into(),
                    message: format!("the connection was lost: {why}"),
                    kind: std::io::ErrorKind::ConnectionAborted,
                };
                for cb in pending {
                    cb(Reply::Get(Err(err.clone())));
                }
            }
        }
    }

    /// A part of a large `get` reply.
    pub(crate) fn reply_part(&self, req: u64, values: Vec<Value>) {
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(req)
            .or_default()
            .extend(values);
    }

    /// The last message of a `get` reply: the values with those of its parts first.
    pub(crate) fn get_reply(&self, req: u64, result: Result<Vec<Value>>) {
        let first = self
            .parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req);
        let result = match (first, result) {
            (Some(mut first), Ok(rest)) => {
                first.extend(rest);
                Ok(first)
            }
            (_, r) => r,
        };
        self.complete(req, Reply::Get(result));
    }

    pub(crate) fn send_done(&self, task: ObjectId, result: Result<Encoded>) {
        crate::current::finished(task);
        match result {
            Ok(Encoded { value, pins, rest }) if !rest.is_empty() => {
                // Several return values: all in one message.
                let mut keep = vec![pins];
                let mut values = vec![object_store::place(self, value)];
                for e in rest {
                    values.push(object_store::place(self, e.value));
                    keep.push(e.pins);
                }
                let result = values.into_iter().collect();
                self.send(&FromWorker::TaskReturns { task, result });
                drop(keep);
            }
            Ok(Encoded { value, pins, .. }) => {
                let result = object_store::place(self, value);
                self.send(&FromWorker::TaskDone { task, result });
                drop(pins);
            }
            Err(e) => self.send(&FromWorker::TaskDone {
                task,
                result: Err(e),
            }),
        }
    }

    /// Handles `msg` if it answers a request (completing what waits for it); any other
    /// message is given back.
    pub(crate) fn take_reply(&self, msg: ToWorker) -> Option<ToWorker> {
        match msg {
            ToWorker::GetReplyPart { req, values } => self.reply_part(req, values),
            ToWorker::GetReply { req, result } => self.get_reply(req, result),
            ToWorker::WaitReply { req, ready } => self.complete(req, Reply::Wait(ready)),
            ToWorker::Allocated { req, result } => self.complete(req, Reply::Alloc(result)),
            ToWorker::ControlReply { req, result } => self.complete(req, Reply::Control(result)),
            other => return Some(other),
        }
        None
    }

    pub(crate) fn complete(&self, req: u64, reply: Reply) {
        let callback = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req);
        if let Some(cb) = callback {
            cb(reply);
        }
    }

    /// Registers a callback for the reply, then sends the request (built with its id).
    fn request(&self, callback: Pending, make: impl FnOnce(u64) -> FromWorker) -> u64 {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        if self.register(req, callback) {
            self.send(&make(req));
        }
        req
    }

    /// Like [`request`](Self::request), with `first` sent just before the request, in the
    /// same write.
    #[cfg(feature = "cluster")]
    pub(crate) fn request_after(
        &self,
        first: FromWorker,
        callback: Pending,
        make: impl FnOnce(u64) -> FromWorker,
    ) {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        if self.register(req, callback) {
            self.send_batch(&[first, make(req)]);
        }
    }

    /// Registers `callback` under `req`; false (and the callback failed) if the connection
    /// was lost.
    fn register(&self, req: u64, callback: Pending) -> bool {
        // `lost` is set under this lock (`connection_lost`): a request is either failed here
        // or registered before the loss drains what waits.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = self.lost.get() {
            drop(pending);
            callback(Reply::Get(Err(Error::Io {
                context: "talking to the cluster's node".into(),
                message: format!("the connection was lost earlier: {why}"),
                kind: std::io::ErrorKind::ConnectionAborted,
            })));
            return false;
        }
        pending.insert(req, callback);
        true
    }

    fn owned(&self, id: RefId) {
        self.refs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .owned(id);
    }
}

fn timeout_ms(t: Option<Duration>) -> Option<u64> {
    t.map(|d| d.as_millis().min(u64::MAX as u128) as u64)
}

impl Client for ProcessClient {
    fn submit_task(&self, spec: TaskSpec) {
        for i in 0..=spec.ext.returns.extra {
            self.owned(RefId::Object(spec.task.nth_return(i)));
        }
        self.send(&FromWorker::SubmitTask(spec));
    }

    fn create_actor(&self, spec: ActorSpec) {
        self.owned(RefId::Actor(spec.actor));
        self.send(&FromWorker::CreateActor(spec));
    }

    fn submit_actor_task(&self, spec: ActorTaskSpec) {
        for i in 0..=spec.returns.extra {
            self.owned(RefId::Object(spec.task.nth_return(i)));
        }
        #[cfg(feature = "cluster")]
        let spec = match self.direct.get() {
            Some(direct) => match direct.submit(self, spec) {
                Some(spec) => spec,
                None => return,
            },
            None => spec,
        };
        self.send(&FromWorker::SubmitActorTask(spec));
    }

    fn put(&self, id: ObjectId, result: Result<Value>) {
        self.owned(RefId::Object(id));
        self.send(&FromWorker::Put { id, result });
    }

    fn get(&self, ids: &[ObjectId], timeout: Option<Duration>) -> Result<Vec<Value>> {
        #[cfg(feature = "cluster")]
        if timeout.is_none()
            && !ids.is_empty()
            && let Some(values) = self.direct.get().and_then(|d| d.get(ids))
        {
            return Ok(values);
        }
        let slot = Arc::new(Slot::new());
        let s2 = slot.clone();
        self.request(
            Box::new(move |r| {
                if let Reply::Get(v) = r {
                    s2.fill(v)
                }
            }),
            |req| FromWorker::Get {
                req,
                ids: ids.to_vec(),
                timeout_ms: timeout_ms(timeout),
            },
        );
        match self.wait_reply(&slot) {
            Some(Err(Error::Timeout { what, .. })) => Err(Error::Timeout {
                what,
                timeout: timeout.unwrap_or_default(),
            }),
            Some(r) => r,
            None => Err(Error::shut_down()),
        }
    }

    fn get_async(&self, id: ObjectId) -> (Arc<Slot<Result<Value>>>, GetToken) {
        let slot = Arc::new(Slot::new());
        let s2 = slot.clone();
        let req = self.request(
            Box::new(move |r| {
                if let Reply::Get(v) = r {
                    s2.fill(v.and_then(|mut v| {
                        v.pop()
                            .ok_or_else(|| Error::object_lost(id, "the reply had no value"))
                    }))
                }
            }),
            |req| FromWorker::Get {
                req,
                ids: vec![id],
                timeout_ms: None,
            },
        );
        // No thread blocks on this reply to read it.
        #[cfg(feature = "cluster")]
        if let Some(turn) = self.turn.get() {
            turn.reader_needed();
        }
        (slot, NonZeroU64::new(req))
    }

    fn cancel_get(&self, id: ObjectId, token: GetToken) {
        let Some(token) = token else { return };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cb) = pending.get_mut(&token.get()) {
            *cb = discard_reply(vec![id]);
            drop(pending);
            self.send(&FromWorker::CancelGet { req: token.get() });
        }
    }

    fn transfer_done(&self, ids: &[ObjectId], values: &[Value]) {
        let stored: Vec<ObjectId> = ids
            .iter()
            .zip(values)
            .filter(|(_, v)| matches!(v.data, Data::Shm { .. }))
            .map(|(id, _)| *id)
            .collect();
        if !stored.is_empty() {
            self.send(&FromWorker::Release(stored));
        }
        for v in values {
            for id in &v.contained {
                self.send(&FromWorker::DelRef(*id));
            }
        }
    }

    fn alloc(&self, size: u64) -> Result<u64> {
        let slot = Arc::new(Slot::new());
        let s2 = slot.clone();
        self.request(
            Box::new(move |r| match r {
                Reply::Alloc(v) => s2.fill(v),
                // The connection was lost.
                Reply::Get(Err(e)) => s2.fill(Err(e)),
                _ => {}
            }),
            |req| FromWorker::Alloc { req, size },
        );
        self.wait_reply(&slot)
            .unwrap_or_else(|| Err(Error::shut_down()))
    }

    fn release(&self, ids: &[ObjectId]) {
        self.send(&FromWorker::Release(ids.to_vec()));
    }

    fn wait(&self, ids: &[ObjectId], num_returns: usize, timeout: Option<Duration>) -> Vec<bool> {
        let count = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let slot = Arc::new(Slot::new());
        let s2 = slot.clone();
        self.request(
            Box::new(move |r| match r {
                Reply::Wait(v) => s2.fill(v),
                // The connection was lost: every object failed, so each one is ready (a `get`
                // says why), as Ray counts a failed object ready.
                Reply::Get(Err(_)) => s2.fill((0..count).collect()),
                _ => {}
            }),
            |req| FromWorker::Wait {
                req,
                ids: ids.to_vec(),
                num_returns,
                timeout_ms: timeout_ms(timeout),
            },
        );
        let ready = self.wait_reply(&slot).unwrap_or_default();
        let mut flags = vec![false; ids.len()];
        for i in ready {
            if let Some(f) = flags.get_mut(i as usize) {
                *f = true;
            }
        }
        flags
    }

    fn add_ref(&self, id: RefId) {
        let mut refs = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        if let Transition::First = refs.inc(id) {
            self.send(&FromWorker::AddRef(id));
        }
    }

    fn del_ref(&self, id: RefId) {
        let mut refs = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        if let Transition::Last = refs.dec(id) {
            #[cfg(feature = "cluster")]
            if let Some(direct) = self.direct.get() {
                match id {
                    RefId::Object(o) => direct.forget(o),
                    RefId::Actor(a) => direct.forget_actor(a),
                }
                // Written with the next message to the node, or within a few ms: a loop of
                // calls then writes to its node once per batch, not once per dropped result.
                direct.defer(FromWorker::DelRef(id));
                return;
            }
            self.send(&FromWorker::DelRef(id));
        }
    }

    fn kill_actor(&self, id: ActorId) {
        self.send(&FromWorker::KillActor { actor: id });
    }

    fn gpu_ids(&self) -> Vec<usize> {
        self.gpu_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn job(&self) -> JobId {
        self.job
    }

    fn control(&self, op: Control) -> Result<ControlReply> {
        let slot = Arc::new(Slot::new());
        let s2 = slot.clone();
        self.request(
            Box::new(move |r| match r {
                Reply::Control(v) => s2.fill(v),
                // The connection was lost.
                Reply::Get(Err(e)) => s2.fill(Err(e)),
                _ => {}
            }),
            |req| FromWorker::Control { req, op },
        );
        self.wait_reply(&slot)
            .unwrap_or_else(|| Err(Error::shut_down()))
    }

    fn adopt(&self, id: RefId) {
        let mut refs = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        if refs.adopt(id) {
            self.send(&FromWorker::DelRef(id));
        }
    }
}

impl ProcessClient {
    /// Sends item `index` of the streaming call `task` and waits until the caller may take
    /// more (backpressure).
    pub(crate) fn yield_item(&self, task: ObjectId, index: u64, item: Encoded) -> Result<()> {
        let Encoded { value, pins, .. } = item;
        let value = object_store::place(self, value)?;
        let slot = Arc::new(Slot::new());
        let s2 = slot.clone();
        self.request(
            Box::new(move |r| match r {
                Reply::Control(v) => s2.fill(v),
                Reply::Get(Err(e)) => s2.fill(Err(e)),
                _ => {}
            }),
            |req| FromWorker::Yield {
                req,
                task,
                index,
                item: ObjectId::new(),
                value,
            },
        );
        drop(pins);
        self.wait_reply(&slot)
            .unwrap_or_else(|| Err(Error::shut_down()))
            .map(|_| ())
    }
}
