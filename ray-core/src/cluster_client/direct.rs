//! Direct actor calls: a remote driver calls an actor on another node straight over a session
//! of its own there, instead of through its home node (`docs/direct-actor-calls.md`).
//!
//! - The first call of an actor asks the home node for a ticket (`Control::DirectTicket`,
//!   256 random bits made here) and opens a direct session to the actor's node with it. Until
//!   that works, and for [`RETRY`] after it failed, calls go through the home node as before.
//! - A direct call is the home node's forwarded call with the home node left out: the
//!   `SubmitActorTask` and the `Get` of its values go to the actor's node, and the home node
//!   is told (`DirectCall`, then `DirectDone` with the answer), so it keeps owning the call's
//!   objects as it does for a call it forwards. A call whose arguments hold references sends
//!   `DirectCall` first and waits until the home node has it, so that the actor's node finds
//!   the references there when it borrows them.
//! - Once an actor's calls go direct, they all do (streams too): a call never overtakes an
//!   earlier one. The direct session's calls join the queue of the home node's session at the
//!   actor's node, after the calls the home node forwarded before the ticket.
//! - A value that came back inline with no references in it is kept here until its last
//!   reference is dropped, so `get` needs no other message; anything else is read through the
//!   home node.

use super::{OnLost, TlsSink, cluster_error, recv, send};
use crate::client::{ProcessClient, Reply};
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{ActorId, JobId, NodeId, ObjectId, ProcId};
use crate::log;
use crate::protocol::node::NodeMessage;
use crate::protocol::worker::{Control, ControlReply, FromWorker};
use crate::protocol::{ActorTaskSpec, Arg, PROTOCOL_VERSION, Ticket};
use crate::slot::Slot;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long after a failed attempt an actor's calls go through the home node before the next
/// (doubled after each failure in a row, up to [`RETRY_MAX`]).
const RETRY: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// How long opening a direct session may take (the call waits meanwhile: on a network where
/// the actor's node answers, it takes milliseconds).
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long what the direct calls have for the home node may wait to be written together,
/// when no other message to it comes first (off every call's path: the home node needs them
/// only for what other processes do with the results, and anything this driver sends it
/// goes after them).
const FLUSH_AFTER: Duration = Duration::from_millis(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether direct calls are used (`RAY_DIRECT_ACTOR_CALLS=0` turns them off: every call goes
/// through the home node, as before they existed).
pub(crate) fn enabled() -> bool {
    std::env::var("RAY_DIRECT_ACTOR_CALLS").map_or(true, |v| v != "0")
}

/// A driver's direct sessions and what their calls returned.
pub(crate) struct DirectCalls {
    home: Weak<ProcessClient>,
    home_node: NodeId,
    driver: ProcId,
    job: JobId,
    cluster_id: String,
    handshake: ray_net::HandshakeConfig,
    /// How each actor's calls go; the lock of an actor's mode is held while one of its calls
    /// is sent, so calls keep their order.
    actors: Mutex<HashMap<ActorId, Arc<Mutex<Mode>>>>,
    results: Arc<Mutex<HashMap<ObjectId, Held>>>,
    sessions: Mutex<Vec<Arc<Session>>>,
    closed: AtomicBool,
    to_home: Arc<HomeQueue>,
}

/// What the direct calls have for the home node (`DirectCall`, `DirectDone`, `DirectLost`,
/// and this driver's `DelRef`s):
/// written together, before any other message of this driver to its node, or by the
/// flusher thread within [`FLUSH_AFTER`]. A `DirectCall` is queued before its call is sent,
/// so the home node always reads it before the call's end, and before anything else of this
/// driver that names the call's objects.
struct HomeQueue {
    msgs: Mutex<Vec<FromWorker>>,
    /// Held while queued messages, and the message that made them go, are written.
    write: Mutex<()>,
    queued: std::sync::Condvar,
    closed: AtomicBool,
}

impl HomeQueue {
    fn push(&self, msg: FromWorker) {
        let mut msgs = lock(&self.msgs);
        msgs.push(msg);
        if msgs.len() == 1 {
            self.queued.notify_one();
        }
    }

    fn flush(&self, home: &ProcessClient) {
        let _write = lock(&self.write);
        let batch = std::mem::take(&mut *lock(&self.msgs));
        home.send_batch(&batch);
    }

    /// The flusher thread: writes what was queued, [`FLUSH_AFTER`] after the first of it.
    fn run(&self, home: &Weak<ProcessClient>) {
        loop {
            {
                let mut msgs = lock(&self.msgs);
                while msgs.is_empty() {
                    if self.closed.load(Ordering::Relaxed) {
                        return;
                    }
                    msgs = self.queued.wait(msgs).unwrap_or_else(|e| e.into_inner());
                }
            }
            std::thread::sleep(FLUSH_AFTER);
            let Some(home) = home.upgrade() else { return };
            self.flush(&home);
        }
    }
}

enum Mode {
    /// Through the home node; a direct session is tried (again) from `retry_at`, after
    /// `failed` attempts in a row.
    Relayed {
        retry_at: Option<Instant>,
        failed: u32,
    },
    Direct(Arc<Session>),
}

/// When to try again after `failed` attempts in a row.
fn retry_after(failed: u32) -> Instant {
    let wait = RETRY.saturating_mul(1 << failed.min(8).saturating_sub(1));
    Instant::now() + wait.min(RETRY_MAX)
}

/// A direct session to the node of one actor.
struct Session {
    client: Arc<ProcessClient>,
    sink: Arc<TlsSink>,
    node: NodeId,
    /// Calls sent on it whose answer (or hand-over) the home node has not been sent yet.
    open_calls: Mutex<usize>,
    reported: std::sync::Condvar,
}

impl Session {
    fn alive(&self) -> bool {
        !self.client.is_lost()
    }

    /// Waits until every call sent on this (lost) session was reported to the home node, so
    /// a call sent through it next comes after them.
    fn wait_reported(&self) {
        let mut open = lock(&self.open_calls);
        while *open > 0 {
            open = self.reported.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn call_reported(&self) {
        let mut open = lock(&self.open_calls);
        *open = open.saturating_sub(1);
        if *open == 0 {
            self.reported.notify_all();
        }
    }

    fn close(&self) {
        self.client.leaving();
        self.sink.close();
    }
}

/// A direct call's return value, as this driver has it.
enum Held {
    /// Its node has not answered yet: the slot is filled when it does.
    Waiting(Arc<Slot<()>>, Arc<Session>),
    /// Answered inline, without references: `get` returns it from here.
    Ready(Value),
    /// Read through the home node (a stored value, one holding references, or a failure).
    Home,
}

impl DirectCalls {
    /// The driver's direct calls, with the thread that writes what they queue for the home
    /// node.
    pub(super) fn start(
        home: Weak<ProcessClient>,
        home_node: NodeId,
        driver: ProcId,
        job: JobId,
        cluster_id: String,
        handshake: ray_net::HandshakeConfig,
    ) -> Self {
        let to_home = Arc::new(HomeQueue {
            msgs: Mutex::new(Vec::new()),
            write: Mutex::new(()),
            queued: std::sync::Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let (queue, weak) = (to_home.clone(), home.clone());
        if let Err(e) = std::thread::Builder::new()
            .name("ray-direct-flush".into())
            .spawn(move || queue.run(&weak))
        {
            log::warn!("cannot start the direct calls' flusher ({e}); they go through the node");
            to_home.closed.store(true, Ordering::Relaxed);
        }
        DirectCalls {
            home,
            home_node,
            driver,
            job,
            cluster_id,
            handshake,
            actors: Mutex::new(HashMap::new()),
            results: Arc::new(Mutex::new(HashMap::new())),
            sessions: Mutex::new(Vec::new()),
            closed: AtomicBool::new(to_home.closed.load(Ordering::Relaxed)),
            to_home,
        }
    }

    /// Queues `msg` for the home node (see [`HomeQueue`]): for messages nobody waits on.
    pub(crate) fn defer(&self, msg: FromWorker) {
        if self.to_home.closed.load(Ordering::Relaxed) {
            if let Some(home) = self.home.upgrade() {
                home.send_now(&msg);
            }
            return;
        }
        self.to_home.push(msg);
    }

    /// Sends `msg` to the home node after what the direct calls queued for it.
    pub(crate) fn send_home(&self, home: &ProcessClient, msg: &FromWorker) {
        let _write = lock(&self.to_home.write);
        let batch = std::mem::take(&mut *lock(&self.to_home.msgs));
        home.send_batch(&batch);
        home.send_now(msg);
    }

    /// Sends `spec` directly if its actor's calls go direct (opening the session first when
    /// it is time to try); gives it back when it must go through the home node.
    pub(crate) fn submit(
        &self,
        home: &ProcessClient,
        spec: ActorTaskSpec,
    ) -> Option<ActorTaskSpec> {
        if self.closed.load(Ordering::Relaxed) {
            return Some(spec);
        }
        let mode = lock(&self.actors)
            .entry(spec.actor)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Mode::Relayed {
                    retry_at: None,
                    failed: 0,
                }))
            })
            .clone();
        let mut mode = lock(&mode);
        if let Mode::Direct(s) = &*mode
            && !s.alive()
        {
            // Its calls in flight are handed to the home node first (`on_answer`).
            s.wait_reported();
            *mode = Mode::Relayed {
                retry_at: Some(retry_after(1)),
                failed: 0,
            };
        }
        if let Mode::Relayed { retry_at, failed } = &*mode
            && retry_at.is_none_or(|t| Instant::now() >= t)
        {
            let failed = *failed;
            *mode = match self.open(home, spec.actor) {
                Ok(s) => Mode::Direct(s),
                Err(e) => {
                    log::debug!(
                        "calls of actor {} go through the home node: {e}",
                        spec.actor
                    );
                    Mode::Relayed {
                        retry_at: Some(retry_after(failed + 1)),
                        failed: failed + 1,
                    }
                }
            };
        }
        let Mode::Direct(session) = &*mode else {
            return Some(spec);
        };
        self.send_direct(home, session.clone(), spec);
        None
    }

    fn send_direct(&self, home: &ProcessClient, session: Arc<Session>, spec: ActorTaskSpec) {
        let task = spec.task;
        let ids: Vec<ObjectId> = (0..=spec.returns.extra)
            .map(|i| task.nth_return(i))
            .collect();
        // What the home node pins for the call: its references (values inline stay here).
        let refs: Vec<Arg> = spec
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Ref(id) => Some(Arg::Ref(*id)),
                Arg::Value(v) if !v.contained.is_empty() => Some(Arg::Value(Value {
                    data: Data::Inline(bytes::Bytes::new()),
                    contained: v.contained.clone(),
                })),
                Arg::Value(_) => None,
            })
            .collect();
        let references = !refs.is_empty();
        let streaming = spec.returns.stream.is_some();
        let declare = FromWorker::DirectCall {
            actor: spec.actor,
            task,
            returns: spec.returns.clone(),
            args: refs,
            at: session.node,
        };
        let slot = Arc::new(Slot::new());
        {
            let mut results = lock(&self.results);
            for id in &ids {
                results.insert(*id, Held::Waiting(slot.clone(), session.clone()));
            }
        }
        if references {
            // The home node must have the call (and the references, sent before) when the
            // actor's node borrows them: an empty `get` comes back once it has read all.
            home.send(&declare);
            let _ = crate::context::Client::get(home, &[], None);
        } else {
            self.to_home.push(declare);
        }
        *lock(&session.open_calls) += 1;
        let answered = self.on_answer(spec.clone(), ids.clone(), slot, &session);
        session
            .client
            .request_after(FromWorker::SubmitActorTask(spec), answered, |req| {
                FromWorker::Get {
                    req,
                    ids,
                    timeout_ms: None,
                }
            });
        if streaming {
            // The home node asks the actor's node for the stream's items on its own
            // connection there: the call must be there first. An empty `get` comes back once
            // the actor's node has read it.
            let _ = crate::context::Client::get(&*session.client, &[], None);
        }
    }

    /// What runs when the actor's node answers the `Get` of call `spec`'s values `ids`, or
    /// the session ends first: the home node is told the answer (`DirectDone`), or is handed
    /// the call (`DirectLost`: it sends the call again over its own session there, which
    /// survives a broken connection; the node ignores it if it had it, and answers the home
    /// node's `Get`), so a broken direct connection loses nothing.
    fn on_answer(
        &self,
        spec: ActorTaskSpec,
        ids: Vec<ObjectId>,
        slot: Arc<Slot<()>>,
        session: &Arc<Session>,
    ) -> Box<dyn FnOnce(Reply) + Send> {
        let results = self.results.clone();
        let to_home = self.to_home.clone();
        let session = Arc::downgrade(session);
        Box::new(move |reply| {
            let Reply::Get(result) = reply else { return };
            let task = spec.task;
            let lost = matches!(
                &result,
                Err(Error::Io {
                    kind: std::io::ErrorKind::ConnectionAborted,
                    ..
                })
            );
            {
                let mut held = lock(&results);
                for (i, id) in ids.iter().enumerate() {
                    let Some(h) = held.get_mut(id) else { continue };
                    *h = match &result {
                        Ok(values) => match values.get(i) {
                            Some(v)
                                if v.contained.is_empty() && matches!(v.data, Data::Inline(_)) =>
                            {
                                Held::Ready(v.clone())
                            }
                            _ => Held::Home,
                        },
                        Err(_) => Held::Home,
                    };
                }
            }
            let report = match lost {
                true => FromWorker::DirectLost(spec),
                false => FromWorker::DirectDone { task, result },
            };
            to_home.push(report);
            if let Some(s) = session.upgrade() {
                s.call_reported();
            }
            slot.fill(());
        })
    }

    /// The values of `ids` if all are direct calls' values kept here (waiting for their
    /// answers first); `None` when any must be read through the home node.
    pub(crate) fn get(&self, ids: &[ObjectId]) -> Option<Vec<Value>> {
        // First every answer, then the values. The last call is usually answered last (an
        // actor answers its calls in order), so waiting for it from the end reads all the
        // answers in one turn instead of handing the connection over once per value.
        let mut end = ids.len();
        while end > 0 {
            let waiting = {
                let held = lock(&self.results);
                loop {
                    let Some(id) = end.checked_sub(1).map(|i| ids[i]) else {
                        break None;
                    };
                    match held.get(&id) {
                        Some(Held::Ready(_)) => end -= 1,
                        Some(Held::Waiting(slot, s)) => break Some((slot.clone(), s.clone())),
                        Some(Held::Home) | None => return None,
                    }
                }
            };
            let Some((slot, session)) = waiting else {
                break;
            };
            // This thread reads the session itself while it waits (`Turn`).
            if session.client.wait_for(&slot).is_some() {
                // Other threads may wait on the same answer.
                slot.fill(());
            }
        }
        let held = lock(&self.results);
        ids.iter()
            .map(|id| match held.get(id) {
                Some(Held::Ready(v)) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    /// The last reference to `id` here was dropped.
    pub(crate) fn forget(&self, id: ObjectId) {
        lock(&self.results).remove(&id);
    }

    /// The last handle of `actor` here was dropped: its direct session closes, unless calls
    /// still await answers on it (it then closes with the driver).
    pub(crate) fn forget_actor(&self, actor: ActorId) {
        let Some(mode) = lock(&self.actors).remove(&actor) else {
            return;
        };
        if let Mode::Direct(s) = &*lock(&mode)
            && !s.client.awaits_replies()
        {
            s.close();
        }
    }

    /// Opens a direct session to the node of `actor` (see the module's text).
    fn open(&self, home: &ProcessClient, actor: ActorId) -> Result<Arc<Session>> {
        use ring::rand::SecureRandom;
        let mut bits = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bits)
            .map_err(|_| Error::io("making a ticket", std::io::Error::other("no randomness")))?;
        let ticket = Ticket(bits);
        let op = Control::DirectTicket {
            actor,
            ticket: ticket.clone(),
        };
        let (node, address) = match crate::context::Client::control(home, op)? {
            ControlReply::Direct { node, address } => (node, address),
            other => {
                return Err(Error::InvalidArgument {
                    what: "ticket".into(),
                    message: format!("the home node answered {other:?}"),
                });
            }
        };
        let shown = address.to_string();
        let hello = NodeMessage::DirectHello {
            version: PROTOCOL_VERSION,
            cluster_id: self.cluster_id.clone(),
            home: self.home_node,
            driver: self.driver,
            job: self.job,
            actor,
            ticket,
        };
        // On a thread of its own: the calling thread may be inside an async runtime, where
        // blocking on another one panics.
        let connect = || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("starting a runtime for a direct session", e))?;
            let opened = rt.block_on(self.connect(address, &shown, hello));
            super::stop_runtime(rt);
            opened
        };
        let opened = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("ray-direct-open".into())
                .spawn_scoped(scope, connect)
                .map_err(|e| Error::io("starting a thread to open a direct session", e))?
                .join()
                .unwrap_or_else(|_| Err(cluster_error(&shown, "opening a direct session panicked")))
        });
        let (reader, writer) = opened?;
        keep_alive(&reader);
        let (client, sink) = super::run_session(reader, writer, self.job, OnLost::Direct, &shown)?;
        let session = Arc::new(Session {
            client,
            sink,
            node,
            open_calls: Mutex::new(0),
            reported: std::sync::Condvar::new(),
        });
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| s.alive());
        sessions.push(session.clone());
        log::debug!("calls of actor {actor} go directly to {node} at {address}");
        Ok(session)
    }

    /// TLS to `address`, the cluster's handshake, then `hello`: the session's two halves.
    async fn connect(
        &self,
        address: std::net::SocketAddr,
        shown: &str,
        hello: NodeMessage,
    ) -> Result<(ray_net::BlockingReader, ray_net::BlockingWriter)> {
        let open = async {
            let tls = ray_net::client_config(None, None).map_err(|e| cluster_error(shown, e))?;
            let conn = ray_net::connect(address, tls, &self.handshake)
                .await
                .map_err(|e| cluster_error(shown, e))?;
            let mut stream = conn.stream;
            let io = |e: std::io::Error| cluster_error(shown, format!("the session broke: {e}"));
            send(&mut stream, &hello).await.map_err(io)?;
            match recv(&mut stream).await.map_err(io)? {
                NodeMessage::Welcome { .. } => Ok(stream),
                NodeMessage::Refused { reason } => Err(cluster_error(
                    shown,
                    format!("the node refused a direct session: {reason}"),
                )),
                other => Err(cluster_error(shown, format!("unexpected {other:?}"))),
            }
        };
        let stream = tokio::time::timeout(OPEN_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| Err(cluster_error(shown, "opening a direct session timed out")))?;
        ray_net::into_blocking(stream)
            .map_err(|e| cluster_error(shown, format!("the session broke: {e}")))
    }

    /// The driver leaves: its direct sessions close.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.to_home.closed.store(true, Ordering::Relaxed);
        self.to_home.queued.notify_all();
        if let Some(home) = self.home.upgrade() {
            self.to_home.flush(&home);
        }
        for s in lock(&self.sessions).drain(..) {
            s.close();
        }
    }
}

/// A direct session's connection notices a node that stopped answering (a partition, a
/// machine gone) within about 15 s, even while no call is in flight: TCP keepalive probes,
/// and a limit on unacknowledged writes. A call waiting on it then reads its value through
/// the home node, which fails it once the node is declared dead.
fn keep_alive(reader: &ray_net::BlockingReader) {
    use std::os::fd::AsRawFd;
    let fd = reader.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `fd` is the live socket of `reader`; the option value is a c_int read for
        // the duration of the call.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 5);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 2);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4);
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 15_000);
}
