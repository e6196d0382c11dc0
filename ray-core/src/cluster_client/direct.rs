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

use super::{OnLost, ReaderOutput, SEND_STALL, StreamSink, TlsSink, cluster_error, recv, send};
use crate::client::{ProcessClient, Reply};
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{ActorId, JobId, NodeId, ObjectId, ProcId};
use crate::log;
use crate::protocol::node::NodeMessage;
use crate::protocol::worker::{Control, ControlReply, FromWorker};
use crate::protocol::{ActorTaskSpec, Arg, PROTOCOL_VERSION, Ticket};
use crate::slot::Slot;
use crate::transport::BlockingSender;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long after a failed attempt an actor's calls go through the home node before the next.
const RETRY: Duration = Duration::from_secs(2);
/// How long opening a direct session may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

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
}

enum Mode {
    /// Through the home node; a direct session is tried (again) from `retry_at`.
    Relayed {
        retry_at: Option<Instant>,
    },
    Direct(Arc<Session>),
}

/// A direct session to the node of one actor.
struct Session {
    client: Arc<ProcessClient>,
    sink: Arc<TlsSink>,
    node: NodeId,
}

impl Session {
    fn alive(&self) -> bool {
        !self.client.is_lost()
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

/// Whether the home node has the call's `DirectCall` (else the answer waits for it: the
/// home node must hear of the call before its end).
#[derive(Default)]
struct Declared {
    sent: bool,
    answer: Option<Result<Vec<Value>>>,
}

impl DirectCalls {
    pub(super) fn new(
        home: Weak<ProcessClient>,
        home_node: NodeId,
        driver: ProcId,
        job: JobId,
        cluster_id: String,
        handshake: ray_net::HandshakeConfig,
    ) -> Self {
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
            closed: AtomicBool::new(false),
        }
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
            .or_insert_with(|| Arc::new(Mutex::new(Mode::Relayed { retry_at: None })))
            .clone();
        let mut mode = lock(&mode);
        let now = Instant::now();
        if let Mode::Direct(s) = &*mode
            && !s.alive()
        {
            *mode = Mode::Relayed {
                retry_at: Some(now + RETRY),
            };
        }
        if let Mode::Relayed { retry_at } = &*mode
            && retry_at.is_none_or(|t| now >= t)
        {
            *mode = match self.open(home, spec.actor) {
                Ok(s) => Mode::Direct(s),
                Err(e) => {
                    log::debug!(
                        "calls of actor {} go through the home node: {e}",
                        spec.actor
                    );
                    Mode::Relayed {
                        retry_at: Some(now + RETRY),
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
        let declared = Arc::new(Mutex::new(Declared::default()));
        if references {
            // The home node must have the call (and the references, sent before) when the
            // actor's node borrows them: an empty `get` comes back once it has read all.
            home.send(&declare);
            lock(&declared).sent = true;
            let _ = crate::context::Client::get(home, &[], None);
        }
        session.client.send(&FromWorker::SubmitActorTask(spec));
        let answered = self.on_answer(task, ids.clone(), slot, declared.clone(), &session);
        session.client.request(answered, |req| FromWorker::Get {
            req,
            ids,
            timeout_ms: None,
        });
        if !references {
            home.send(&declare);
            let early = {
                let mut d = lock(&declared);
                d.sent = true;
                d.answer.take()
            };
            if let Some(result) = early {
                home.send(&FromWorker::DirectDone { task, result });
            }
        }
    }

    /// What runs when the actor's node answers the `Get` of call `task`'s values `ids`.
    fn on_answer(
        &self,
        task: ObjectId,
        ids: Vec<ObjectId>,
        slot: Arc<Slot<()>>,
        declared: Arc<Mutex<Declared>>,
        session: &Session,
    ) -> Box<dyn FnOnce(Reply) + Send> {
        let results = self.results.clone();
        let home = self.home.clone();
        let node = session.node;
        let home_node = self.home_node;
        Box::new(move |reply| {
            let Reply::Get(result) = reply else { return };
            let result = result.map_err(|e| match e {
                // The session ended before the answer.
                Error::Io {
                    kind: std::io::ErrorKind::ConnectionAborted,
                    message,
                    ..
                } => Error::ActorDied {
                    actor: format!("the actor of call {task}"),
                    restarting: true,
                    cause: format!(
                        "the direct connection to its node {node} ended while the call was in \
                         flight ({message}), so it may or may not have run; later calls go \
                         through {home_node}"
                    ),
                },
                e => e,
            });
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
            let now = {
                let mut d = lock(&declared);
                if d.sent {
                    Some(result)
                } else {
                    d.answer = Some(result);
                    None
                }
            };
            if let (Some(result), Some(home)) = (now, home.upgrade()) {
                home.send(&FromWorker::DirectDone { task, result });
            }
            slot.fill(());
        })
    }

    /// The values of `ids` if all are direct calls' values kept here (waiting for their
    /// answers first); `None` when any must be read through the home node.
    pub(crate) fn get(&self, ids: &[ObjectId]) -> Option<Vec<Value>> {
        loop {
            let waiting = {
                let held = lock(&self.results);
                let mut values = Vec::with_capacity(ids.len());
                let mut waiting = None;
                for id in ids {
                    match held.get(id) {
                        Some(Held::Ready(v)) => values.push(v.clone()),
                        Some(Held::Waiting(slot, s)) => {
                            waiting = Some((slot.clone(), s.clone()));
                            break;
                        }
                        Some(Held::Home) | None => return None,
                    }
                }
                match waiting {
                    None => return Some(values),
                    Some(w) => w,
                }
            };
            let (slot, session) = waiting;
            // This thread reads the session itself while it waits (`Turn`).
            if session.client.wait_for(&slot).is_some() {
                // Other threads may wait on the same answer.
                slot.fill(());
            }
        }
    }

    /// The last reference to `id` here was dropped.
    pub(crate) fn forget(&self, id: ObjectId) {
        lock(&self.results).remove(&id);
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting a runtime for a direct session", e))?;
        let handshake = &self.handshake;
        let opened = rt.block_on(async {
            let open = async {
                let tls =
                    ray_net::client_config(None, None).map_err(|e| cluster_error(&shown, e))?;
                let conn = ray_net::connect(address, tls, handshake)
                    .await
                    .map_err(|e| cluster_error(&shown, e))?;
                let mut stream = conn.stream;
                let io =
                    |e: std::io::Error| cluster_error(&shown, format!("the session broke: {e}"));
                send(&mut stream, &hello).await.map_err(io)?;
                match recv(&mut stream).await.map_err(io)? {
                    NodeMessage::Welcome { .. } => Ok(stream),
                    NodeMessage::Refused { reason } => Err(cluster_error(
                        &shown,
                        format!("the node refused a direct session: {reason}"),
                    )),
                    other => Err(cluster_error(&shown, format!("unexpected {other:?}"))),
                }
            };
            let stream = tokio::time::timeout(OPEN_TIMEOUT, open)
                .await
                .unwrap_or_else(|_| {
                    Err(cluster_error(&shown, "opening a direct session timed out"))
                })?;
            ray_net::into_blocking(stream)
                .map_err(|e| cluster_error(&shown, format!("the session broke: {e}")))
        });
        super::stop_runtime(rt);
        let (reader, mut writer) = opened?;
        writer
            .set_stall_limit(Some(SEND_STALL))
            .map_err(|e| cluster_error(&shown, format!("the session broke: {e}")))?;
        keep_alive(&reader);
        let output = Arc::new(ReaderOutput::new());
        let sink = Arc::new(TlsSink {
            sender: BlockingSender::new(writer),
            closed: AtomicBool::new(false),
            reader: output.clone(),
        });
        let client = Arc::new(ProcessClient::new(
            std::process::id(),
            Box::new(StreamSink(sink.clone())),
            Vec::new(),
            self.job,
            OnLost::Direct,
        ));
        let turn = super::turn::Turn::start(client.clone(), reader, output)
            .map_err(|e| Error::io("starting a direct session's reader", e))?;
        client.read_while_waiting(turn);
        let session = Arc::new(Session { client, sink, node });
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| s.alive());
        sessions.push(session.clone());
        log::debug!("calls of actor {actor} go directly to {node} at {address}");
        Ok(session)
    }

    /// The driver leaves: its direct sessions close.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
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
