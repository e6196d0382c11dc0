//! The runtime's side of talking to other nodes: this node's sessions at its peers (a control
//! session for requests, a data session for bulk transfers, so that a large transfer never
//! delays a control message), opened on first use through the daemon's [`Connector`]
//! (TLS and the cluster token), and the transfers themselves: pulling an object's bytes into
//! this node's store in chunks (resuming after a broken connection from the last chunk
//! received), and fetching a job's executable into the binary cache.
//!
//! The other side — sessions other nodes hold here, and serving their data requests — is in
//! [`super::remote`].

use super::remote::{BinaryStore, CachedBinary};
use super::runtime::Inner;
use super::session;
use crate::codec;
use crate::error::{Error, Result};
use crate::ids::{JobId, NodeId, ObjectId};
use crate::log;
use crate::object_store::{Arena, PAD};
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::node::{
    DATA_HEADER_MAX, DataReply, DataRequest, NodeMessage, NodeRefusal, PeerRole,
};
use crate::protocol::worker::{FromWorker, ToWorker};
use crate::transport::{self, HELLO_MAX, MAX_TO_WORKER, StreamOutbox};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A stream to another node, authenticated by the daemon (TLS, cluster token).
pub trait PeerStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> PeerStream for T {}

/// What opening a stream to a node returns.
pub type Connecting = Pin<Box<dyn Future<Output = std::io::Result<Box<dyn PeerStream>>> + Send>>;

/// How this node reaches the others (the `ray-rs` daemon's TLS client).
pub trait Connector: Send + Sync + 'static {
    /// An authenticated stream to node `node`.
    fn connect(&self, node: NodeId) -> Connecting;
}

/// What the runtime needs to take part in a cluster.
pub(crate) struct ClusterIo {
    pub connector: Arc<dyn Connector>,
    pub cluster_id: String,
    pub binaries: Arc<dyn BinaryStore>,
    /// The cluster's directory of actor names.
    pub names: Arc<dyn super::name_directory::NameDirectory>,
    /// This node's incarnation (its sessions at peers say it).
    pub incarnation: u64,
}

/// Bytes requested at a time.
const CHUNK: u64 = 8 << 20;
/// Times a transfer is resumed after its connection broke.
const RESUMES: u32 = 3;

async fn send_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &NodeMessage) -> std::io::Result<()> {
    let mut frame = Vec::new();
    codec::encode_frame(msg, &mut frame).map_err(std::io::Error::other)?;
    w.write_all(&frame).await?;
    w.flush().await
}

/// A node answered a session's hello with a refusal (as opposed to a connection that failed).
#[derive(Debug)]
struct Refused {
    /// The node that refused, as messages name it.
    by: String,
    reason: NodeRefusal,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} refused this node: {}", self.by, self.reason)
    }
}

/// How long a node asks again while a peer says it has not seen this node's incarnation in
/// etcd: its watch shows a new record well within this on a live cluster.
const REGISTRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The refusal `e` carries, if a node refused (rather than a connection failing).
fn refusal(e: &std::io::Error) -> Option<&Refused> {
    e.get_ref().and_then(|r| r.downcast_ref::<Refused>())
}

/// The node has not seen this node's incarnation in etcd yet: asking again may succeed.
fn not_registered(e: &std::io::Error) -> bool {
    refusal(e).is_some_and(|r| matches!(r.reason, NodeRefusal::NotRegistered { .. }))
}

impl std::error::Error for Refused {}

/// Which session to open at a node, and from where to resume it.
#[derive(Clone, Copy)]
enum Opening {
    /// The data session (bulk transfers; not resumed: a transfer resumes on its own).
    Data,
    /// The control session `session` (new, or resumed having received `received` frames).
    Control {
        session: u64,
        resume: bool,
        received: u64,
    },
}

/// Opens a session at `node` and returns the stream past its welcome, with the number of
/// frames the node says it received on it (a resumed control session; 0 otherwise).
async fn open_session(
    inner: &Arc<Inner>,
    node: NodeId,
    opening: Opening,
) -> std::io::Result<(Box<dyn PeerStream>, u64)> {
    let (connector, cluster_id, incarnation) = {
        let io = inner.cluster_io();
        let io = io.ok_or_else(|| std::io::Error::other("this node is not in a cluster"))?;
        (io.connector.clone(), io.cluster_id.clone(), io.incarnation)
    };
    let mut stream = connector.connect(node).await?;
    let (data, session, resume, received) = match opening {
        Opening::Data => (true, 0, false, 0),
        Opening::Control {
            session,
            resume,
            received,
        } => (false, session, resume, received),
    };
    let hello = NodeMessage::Hello {
        version: PROTOCOL_VERSION,
        cluster_id,
        role: PeerRole::Node,
        driver: None,
        node: Some((inner.node_id(), data)),
        incarnation,
        session,
        resume,
        received,
    };
    let received = answer_to_hello(&mut stream, &node, &hello).await?;
    Ok((stream, received))
}

/// Sends `hello` to `node` and reads its answer: the frames it says it received on the
/// session (a welcome), or the refusal as an error ([`Refused`]).
async fn answer_to_hello<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    node: &(dyn std::fmt::Display + Sync),
    hello: &NodeMessage,
) -> std::io::Result<u64> {
    send_msg(stream, hello).await?;
    let mut buf = Vec::new();
    // A node that accepted the connection and never answers the hello would hold the session
    // (and every message queued for it) in the opening forever; its reconnection loop retries.
    let answer = tokio::time::timeout(
        WELCOME_WAIT,
        transport::read_frame_async(stream, &mut buf, HELLO_MAX),
    )
    .await
    .map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "{node} did not answer this node's hello within {} s",
                WELCOME_WAIT.as_secs()
            ),
        )
    })?;
    match answer? {
        Some(()) => {
            match codec::decode_frame::<NodeMessage>(&buf).map_err(std::io::Error::other)? {
                NodeMessage::Welcome { received, .. } => Ok(received),
                NodeMessage::Refused { reason } => Err(std::io::Error::other(Refused {
                    by: node.to_string(),
                    reason,
                })),
                other => Err(std::io::Error::other(format!("{node} answered {other:?}"))),
            }
        }
        None => Err(std::io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Opens a new control session on `stream` (a node connection past its token handshake) as
/// incarnation `incarnation` of node `node` of cluster `cluster_id`, and says how the node at
/// the other end answered: `Ok(Ok(()))` for a welcome, `Ok(Err(why))` for a refusal. For the
/// project's tests of what a node accepts from a member that claims to be another (feature
/// `testing`, never enabled for users).
#[cfg(feature = "testing")]
pub async fn hello_as_node<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    cluster_id: &str,
    node: u32,
    incarnation: u64,
) -> std::io::Result<std::result::Result<(), String>> {
    let hello = NodeMessage::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: cluster_id.to_string(),
        role: PeerRole::Node,
        driver: None,
        node: Some((NodeId(node), false)),
        incarnation,
        session: session::new_session_id(),
        resume: false,
        received: 0,
    };
    match answer_to_hello(stream, &"the node", &hello).await {
        Ok(_) => Ok(Ok(())),
        Err(e) => match refusal(&e) {
            Some(r) => Ok(Err(r.to_string())),
            None => Err(e),
        },
    }
}

/// How long a node's answer to this node's hello may take (it comes at once from a live one).
const WELCOME_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens this node's control session at `node`: messages queued in the returned outbox leave
/// once it is open; replies go to the state machine. The session outlives a broken
/// connection ([`super::session`]): the node is only suspect while it is made again, until
/// etcd declares the node dead (the state machine then closes the outbox), the node refuses
/// the session (it started again), or [`session::MAX_SUSPECT`] passed.
pub(super) fn open_control(inner: &Arc<Inner>, node: NodeId) -> StreamOutbox {
    let (outbox, rx) = StreamOutbox::new();
    let weak = Arc::downgrade(inner);
    let out = outbox.clone();
    inner.handle.spawn(async move {
        let counters = session::Counters::new();
        let (attach, attached) = tokio::sync::mpsc::unbounded_channel();
        let ack = |n| session::frame(&FromWorker::SessionAck { received: n });
        let mut writer = tokio::spawn(session::run_writer(rx, attached, counters.clone(), ack));
        let id = session::new_session_id();
        let mut connected_once = false;
        let mut suspect_since: Option<std::time::Instant> = None;
        let mut unregistered_since: Option<std::time::Instant> = None;
        let mut pause = std::time::Duration::from_millis(50);
        let why = loop {
            if out.is_closed() || writer.is_finished() {
                break "it was closed here".to_string();
            }
            let Some(n) = weak.upgrade() else { return };
            let received = counters.received.load(Ordering::Acquire);
            let opening = Opening::Control {
                session: id,
                resume: connected_once,
                received,
            };
            let opened = open_session(&n, node, opening).await;
            let stream = match opened {
                Ok((stream, peer_received)) => {
                    if unregistered_since.take().is_some() {
                        n.run(|st| st.peer_resumed(node));
                    }
                    if suspect_since.take().is_some() {
                        log::warn!("the session with {node} was made again: nothing was lost");
                        n.run(|st| st.peer_resumed(node));
                    }
                    connected_once = true;
                    pause = std::time::Duration::from_millis(50);
                    Some((stream, peer_received))
                }
                // It has not seen this incarnation in etcd yet (this node is new, or started
                // again, and its watch lags): ask again for a while. No new work goes there
                // meanwhile (it is suspect, as while a broken session is made again).
                Err(e)
                    if not_registered(&e)
                        && unregistered_since
                            .get_or_insert_with(|| {
                                n.run(|st| st.peer_suspect(node));
                                std::time::Instant::now()
                            })
                            .elapsed()
                            < REGISTRATION_WAIT =>
                {
                    log::debug!("{e}; asking again");
                    None
                }
                // Never reached, or it refuses (it started again, or this incarnation is
                // fenced): the work there is lost.
                Err(e) if !connected_once || refusal(&e).is_some() => {
                    break e.to_string();
                }
                Err(e) => {
                    log::debug!("making the session with {node} again: {e}");
                    None
                }
            };
            drop(n);
            if let Some((stream, peer_received)) = stream {
                let (rd, wr) = tokio::io::split(stream);
                let attached = session::Attach {
                    stream: Box::new(wr) as Box<dyn AsyncWrite + Unpin + Send>,
                    peer_received,
                };
                if attach.send(attached).is_err() {
                    break "its writer ended".to_string();
                }
                let broke = tokio::select! {
                    why = read_control_replies(&weak, node, rd, &counters) => why,
                    end = &mut writer => break format!("the session ended ({end:?})"),
                };
                let Some(n) = weak.upgrade() else { return };
                log::warn!(
                    "the session with {node} broke ({broke}); {node} is suspect until the \
                     session is made again or etcd declares it dead"
                );
                n.run(|st| st.peer_suspect(node));
                suspect_since = Some(std::time::Instant::now());
            }
            if suspect_since.is_some_and(|t| t.elapsed() > session::MAX_SUSPECT) {
                break format!("it could not be reached for {:?}", session::MAX_SUSPECT);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        };
        writer.abort();
        let closed_here = out.is_closed();
        out.close();
        if let Some(n) = weak.upgrade() {
            n.forget_node(node, &out);
            if !closed_here {
                log::warn!("the session with {node} ended: {why}");
                n.run(|st| st.peer_unreachable(node, &why));
            }
        }
    });
    outbox
}

async fn read_control_replies<R: AsyncRead + Unpin>(
    weak: &Weak<Inner>,
    node: NodeId,
    rd: R,
    counters: &session::Counters,
) -> String {
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::new();
    loop {
        match transport::read_frame_async(&mut rd, &mut buf, MAX_TO_WORKER).await {
            Ok(Some(())) => {}
            Ok(None) => return "the connection was closed".into(),
            Err(e) => return e.to_string(),
        }
        let msg: ToWorker = match codec::decode_frame(&buf) {
            Ok(m) => m,
            Err(e) => return format!("a reply that does not decode: {e}"),
        };
        if let ToWorker::SessionAck { received } = msg {
            counters.acknowledged(received);
            continue;
        }
        counters.count_received();
        let Some(n) = weak.upgrade() else {
            return "the node is stopping".into();
        };
        n.run(|st| st.peer_reply(node, msg));
        if buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
    }
}

/// What a request on a data session received.
#[derive(Debug)]
pub(super) enum Received {
    /// This many bytes were written where the request's [`Sink::Store`] said.
    Stored(u64),
    /// The bytes themselves ([`Sink::Memory`]).
    Bytes(Vec<u8>),
}

/// Where the bytes of a reply go.
pub(super) enum Sink {
    /// Into this node's store at `offset` (exactly the length asked for), inside the region
    /// `target` guards.
    Store {
        target: Arc<PullTarget>,
        offset: u64,
    },
    /// Into memory, at most the length asked for (pieces of an executable).
    Memory,
}

/// The part of this node's store a pull writes to, `[start, end)`. A data session's reader
/// writes a chunk there only while it holds `open` and finds it true, one chunk at a time; the
/// pull sets it false before its region is sealed or given back, so no byte lands in a region
/// after its pull ended, and no two write windows over the region are ever open at once.
pub(super) struct PullTarget {
    open: tokio::sync::Mutex<bool>,
    start: u64,
    end: u64,
}

impl PullTarget {
    /// The store range `[start, end)` of one pull; `None` if it overflows.
    pub(super) fn new(start: u64, len: u64) -> Option<Arc<PullTarget>> {
        Some(Arc::new(PullTarget {
            open: tokio::sync::Mutex::new(true),
            start,
            end: start.checked_add(len)?,
        }))
    }

    /// Whether `[offset, offset + len)` lies inside the target.
    fn holds(&self, offset: u64, len: u64) -> bool {
        offset >= self.start && offset.checked_add(len).is_some_and(|end| end <= self.end)
    }
}

/// What a request's reply brings: the bytes (or where they were put), the serving node's
/// reason for sending none, or (outer `Err`) a broken session.
type Answer = std::result::Result<Received, String>;

/// A request waiting for its reply. It stays until the reply came even when its requester
/// went away, so the reader knows how many bytes follow the reply and skips them.
struct Waiter {
    len: u64,
    sink: Sink,
    tx: tokio::sync::oneshot::Sender<Answer>,
}

/// This node's data session at another node: requests by number, replies matched to them.
pub(crate) struct DataLink {
    outbox: StreamOutbox,
    next: AtomicU64,
    waiting: Mutex<Option<HashMap<u64, Waiter>>>,
    /// Stops the session's reader ([`DataLink::shut`]).
    stop: tokio::sync::Notify,
}

impl DataLink {
    /// Sends a request for `len` bytes whose reply goes to `sink`; the returned receiver gets
    /// the answer (dropping it abandons the request; its bytes are then skipped).
    fn ask(
        &self,
        len: u64,
        sink: Sink,
        make: impl FnOnce(u64) -> DataRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<Answer>> {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let Some(w) = w.as_mut() else {
                return Err(broken("the data session is closed"));
            };
            w.insert(req, Waiter { len, sink, tx });
        }
        self.outbox.send(&make(req))?;
        Ok(rx)
    }

    fn take(&self, req: u64) -> Option<Waiter> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|w| w.remove(&req))
    }

    fn fail_all(&self) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Ends the session: its reader stops (between two reads; a chunk it was writing is left
    /// unfinished) and every request waiting on it fails.
    fn shut(&self) {
        self.stop.notify_one();
    }

    /// The answer to a request of this session, waited for at most [`DATA_WAIT`]: a peer that
    /// keeps the connection open and never answers (wedged, or hostile) would otherwise hold
    /// the pull's region of the store, and the resources of the task waiting for it, forever.
    /// On that timeout the session is shut (a retry opens a new one).
    async fn answer(&self, reply: tokio::sync::oneshot::Receiver<Answer>) -> Result<Answer> {
        match tokio::time::timeout(DATA_WAIT, reply).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(broken("the data session ended")),
            Err(_) => {
                self.shut();
                Err(broken(&format!(
                    "no answer in {} s; the data session was closed",
                    DATA_WAIT.as_secs()
                )))
            }
        }
    }
}

/// How long a data request may wait for its answer (an 8 MiB chunk; the serving node gives up
/// on a reader that takes under 64 KiB in 60 s, so a live but slow link answers well within).
const DATA_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

fn broken(why: &str) -> Error {
    Error::Io {
        context: "transferring data between nodes".into(),
        message: why.to_string(),
        kind: std::io::ErrorKind::ConnectionAborted,
    }
}

/// This node's data session at `node`, opened if needed.
pub(super) async fn data_link(inner: &Arc<Inner>, node: NodeId) -> Result<Arc<DataLink>> {
    if let Some(link) = inner.data_link(node) {
        return Ok(link);
    }
    let (stream, _) = open_session(inner, node, Opening::Data)
        .await
        .map_err(|e| Error::io(format!("opening a data session with {node}"), e))?;
    let (outbox, rx) = StreamOutbox::new();
    let new = Arc::new(DataLink {
        outbox,
        next: AtomicU64::new(1),
        waiting: Mutex::new(Some(HashMap::new())),
        stop: tokio::sync::Notify::new(),
    });
    let link = inner.set_data_link(node, new.clone());
    if !Arc::ptr_eq(&link, &new) {
        // Another pull opened one meanwhile: this stream is closed unused.
        return Ok(link);
    }
    let (rd, wr) = tokio::io::split(stream);
    tokio::spawn(StreamOutbox::run_writer(rx, wr));
    let weak = Arc::downgrade(inner);
    let arena = inner.arena().clone();
    tokio::spawn(async move {
        let why = tokio::select! {
            why = read_data_replies(&link, &arena, rd) => why,
            () = link.stop.notified() => "it was shut here".to_string(),
        };
        log::debug!("the data session with {node} ended: {why}");
        link.fail_all();
        link.outbox.close();
        if let Some(n) = weak.upgrade() {
            n.forget_data_link(node, &link);
        }
    });
    Ok(new)
}

/// Reads a data session's replies until it ends (returns why): each header frame, then the
/// bytes it announces, straight to where its request said (this node's store, or memory).
/// A reply to nothing asked, or announcing another length than asked, ends the session.
async fn read_data_replies<R: AsyncRead + Unpin>(link: &DataLink, arena: &Arena, rd: R) -> String {
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut header = Vec::new();
    loop {
        match transport::read_frame_async(&mut rd, &mut header, DATA_HEADER_MAX).await {
            Ok(Some(())) => {}
            Ok(None) => return "the connection was closed".into(),
            Err(e) => return e.to_string(),
        }
        let DataReply::Bytes { req, result } = match codec::decode_frame::<DataReply>(&header) {
            Ok(reply) => reply,
            Err(e) => return format!("a reply that does not decode: {e}"),
        };
        let Some(waiter) = link.take(req) else {
            return format!("a reply to request {req}, which was not asked");
        };
        let len = match result {
            Ok(len) => len,
            Err(why) => {
                let _ = waiter.tx.send(Err(why));
                continue;
            }
        };
        if let Err(why) = acceptable(len, waiter.len, &waiter.sink) {
            let _ = waiter.tx.send(Err(why.clone()));
            return why;
        }
        let received = match waiter.sink {
            Sink::Memory => {
                // At most what was asked for (checked above), which this node chose.
                let mut bytes = vec![0u8; len as usize];
                rd.read_exact(&mut bytes)
                    .await
                    .map(|_| Received::Bytes(bytes))
            }
            Sink::Store { target, offset } => {
                receive_into_store(&mut rd, arena, &target, offset, len)
                    .await
                    .map(|()| Received::Stored(len))
            }
        };
        match received {
            Ok(r) => {
                let _ = waiter.tx.send(Ok(r));
            }
            // The waiter goes without an answer: its session broke.
            Err(e) => return e.to_string(),
        }
    }
}

/// Whether a reply may announce `len` bytes for a request of `asked` going to `sink`: a chunk
/// of an object exactly what was asked, a piece of an executable at most that.
fn acceptable(len: u64, asked: u64, sink: &Sink) -> std::result::Result<(), String> {
    let ok = match sink {
        Sink::Store { .. } => len == asked,
        Sink::Memory => len <= asked,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the reply announced {len} bytes, {asked} were asked for"
        ))
    }
}

/// Reads `len` bytes from `rd` into this node's store at `offset`, inside `target` (or skips
/// them if the pull of `target` ended meanwhile).
async fn receive_into_store<R: AsyncRead + Unpin>(
    rd: &mut R,
    arena: &Arena,
    target: &PullTarget,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    if !target.holds(offset, len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bytes at {offset}..+{len} are outside the object being pulled"),
        ));
    }
    let open = target.open.lock().await;
    if !*open {
        let skipped = tokio::io::copy(&mut rd.take(len), &mut tokio::io::sink()).await?;
        if skipped < len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(());
    }
    // SAFETY: [offset, offset + len) lies inside the pull's region (checked above), which is
    // allocated to the pull alone and not sealed or given back while `open` is true; windows
    // over it are only opened here, under `open`'s lock, one at a time.
    let mut window = unsafe { arena.window(offset, len) }.map_err(std::io::Error::other)?;
    rd.read_exact(window.bytes()).await?;
    drop(window);
    drop(open);
    Ok(())
}

/// Chunk requests a pull keeps in flight on its data session, so the sending node reads the
/// next chunk while this one travels.
const PULL_WINDOW: usize = 8;

/// Copies `len` bytes of object `id` from `from` into `region` of this node's store, then
/// tells the state machine. Up to [`PULL_WINDOW`] chunks are asked for at once; the data
/// session's reader writes each straight into the region as it arrives. A broken connection
/// resumes from the last of the chunks received in order.
pub(super) async fn pull(inner: Arc<Inner>, id: ObjectId, from: NodeId, len: u64, region: u64) {
    log::debug!("pulling object {id} ({len} bytes) from {from}");
    let Some(target) = region
        .checked_add(PAD)
        .and_then(|start| PullTarget::new(start, len))
    else {
        let e = Error::object_lost(id, format!("{len} bytes at {region} overflow"));
        inner.run(|st| st.pull_done(id, region, Err(e)));
        return;
    };
    let mut offset = 0u64;
    let mut resumes = 0;
    let mut current: Option<Arc<DataLink>> = None;
    let result = 'pull: loop {
        if offset >= len {
            break Ok(());
        }
        let link = match data_link(&inner, from).await {
            Ok(l) => l,
            Err(e) if resumes < RESUMES => {
                resumes += 1;
                log::warn!("pulling object {id} from {from}: {e}; resuming at byte {offset}");
                continue;
            }
            Err(e) => break Err(e),
        };
        current = Some(link.clone());
        let mut asked = offset;
        let mut inflight = std::collections::VecDeque::new();
        let broke = 'chunks: loop {
            while inflight.len() < PULL_WINDOW && asked < len {
                let (at, want) = (asked, CHUNK.min(len - asked));
                let sink = Sink::Store {
                    target: target.clone(),
                    offset: target.start + at,
                };
                let fetch = |req| DataRequest::Fetch {
                    req,
                    id,
                    offset: at,
                    len: want,
                };
                match link.ask(want, sink, fetch) {
                    Ok(rx) => inflight.push_back((at, want, rx)),
                    Err(e) => break 'chunks e,
                }
                asked += want;
            }
            let Some((at, want, reply)) = inflight.pop_front() else {
                break 'pull Ok(());
            };
            match link.answer(reply).await {
                Ok(Ok(Received::Stored(n))) if n == want => {
                    offset = at + want;
                    inner.count_pulled(want);
                }
                Ok(Ok(other)) => {
                    break 'pull Err(Error::object_lost(
                        id,
                        format!("{from} answered {other:?} for {want} bytes"),
                    ));
                }
                Ok(Err(e)) => {
                    break 'pull Err(Error::object_lost(
                        id,
                        format!("{from} cannot send it: {e}"),
                    ));
                }
                Err(e) => break e,
            }
        };
        if resumes >= RESUMES {
            break Err(broke);
        }
        resumes += 1;
        log::warn!("pulling object {id} from {from}: {broke}; resuming at byte {offset}");
    };
    close_target(&target, current.as_deref()).await;
    log::debug!("pulled object {id} from {from}: {result:?}");
    inner.run(|st| st.pull_done(id, region, result));
}

/// Marks a pull's target closed, waiting for a chunk being written into it to end first: a
/// pull that failed may still have chunks on their way. If one does not end soon (a stalled
/// peer), the data session is shut, which ends it.
async fn close_target(target: &PullTarget, link: Option<&DataLink>) {
    let mut open = match tokio::time::timeout(CLOSE_WAIT, target.open.lock()).await {
        Ok(open) => open,
        Err(_) => {
            if let Some(link) = link {
                link.shut();
            }
            target.open.lock().await
        }
    };
    *open = false;
}

/// How long a failed pull waits for a chunk still being written into its region.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes sure `job`'s executable is in the binary cache (fetching it from `from`), then tells
/// the state machine.
pub(super) async fn ensure_job(
    inner: Arc<Inner>,
    job: JobId,
    from: NodeId,
    sha256: [u8; 32],
    size: u64,
) {
    let result = fetch_binary(&inner, from, sha256, size).await;
    inner.run(|st| st.job_ready(job, result));
}

async fn fetch_binary(
    inner: &Arc<Inner>,
    from: NodeId,
    sha256: [u8; 32],
    size: u64,
) -> std::result::Result<CachedBinary, String> {
    let binaries = inner
        .cluster_io()
        .map(|c| c.binaries.clone())
        .ok_or("this node has no binary cache")?;
    if let Some(found) = binaries.find(&sha256)? {
        return Ok(found);
    }
    let mut upload = binaries.upload(sha256, size)?;
    let link = data_link(inner, from).await.map_err(|e| e.to_string())?;
    let mut offset = 0u64;
    while offset < size {
        let want = CHUNK.min(size - offset);
        let fetch = |req| DataRequest::FetchBinary {
            req,
            sha256,
            offset,
            len: want,
        };
        let asked = link
            .ask(want, Sink::Memory, fetch)
            .map_err(|e| e.to_string())?;
        let reply = link.answer(asked).await.map_err(|e| e.to_string())?;
        let bytes = match reply? {
            Received::Bytes(bytes) => bytes,
            other => return Err(format!("{from} answered {other:?}")),
        };
        if bytes.is_empty() {
            return Err(format!("{from} sent nothing at byte {offset} of {size}"));
        }
        upload.write(&bytes)?;
        offset += bytes.len() as u64;
    }
    upload.finish()
}

#[cfg(test)]
#[path = "links_tests.rs"]
mod tests;
