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
use crate::object_store::PAD;
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::node::{DataReply, DataRequest, NodeMessage, PeerRole};
use crate::protocol::worker::{FromWorker, ToWorker};
use crate::transport::{self, HELLO_MAX, MAX_TO_WORKER, StreamOutbox};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

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
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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
    send_msg(&mut stream, &hello).await?;
    let mut buf = Vec::new();
    match transport::read_frame_async(&mut stream, &mut buf, HELLO_MAX).await? {
        Some(()) => {
            match codec::decode_frame::<NodeMessage>(&buf).map_err(std::io::Error::other)? {
                NodeMessage::Welcome { received, .. } => Ok((stream, received)),
                NodeMessage::Refused { reason } => Err(std::io::Error::other(Refused(format!(
                    "{node} refused this node: {reason}"
                )))),
                other => Err(std::io::Error::other(format!("{node} answered {other:?}"))),
            }
        }
        None => Err(std::io::ErrorKind::UnexpectedEof.into()),
    }
}

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
                    if suspect_since.take().is_some() {
                        log::warn!("the session with {node} was made again: nothing was lost");
                        n.run(|st| st.peer_resumed(node));
                    }
                    connected_once = true;
                    pause = std::time::Duration::from_millis(50);
                    Some((stream, peer_received))
                }
                // Never reached, or it refuses (it started again, or this incarnation is
                // fenced): the work there is lost.
                Err(e) if !connected_once || e.get_ref().is_some_and(|r| r.is::<Refused>()) => {
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

/// This node's data session at another node: requests by number, replies matched to them.
pub(crate) struct DataLink {
    outbox: StreamOutbox,
    next: AtomicU64,
    waiting: Mutex<Option<HashMap<u64, tokio::sync::oneshot::Sender<DataReply>>>>,
}

impl DataLink {
    /// Sends a request and waits for its reply.
    async fn request(&self, make: impl FnOnce(u64) -> DataRequest) -> Result<DataReply> {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let Some(w) = w.as_mut() else {
                return Err(broken("the data session is closed"));
            };
            w.insert(req, tx);
        }
        self.outbox.send(&make(req))?;
        rx.await.map_err(|_| broken("the data session ended"))
    }

    fn fail_all(&self) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

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
    let link = Arc::new(DataLink {
        outbox,
        next: AtomicU64::new(1),
        waiting: Mutex::new(Some(HashMap::new())),
    });
    let link = inner.set_data_link(node, link);
    let (rd, wr) = tokio::io::split(stream);
    tokio::spawn(StreamOutbox::run_writer(rx, wr));
    let reader_link = link.clone();
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut rd = tokio::io::BufReader::with_capacity(256 * 1024, rd);
        let mut buf = Vec::new();
        while let Ok(Some(())) =
            transport::read_frame_async(&mut rd, &mut buf, (CHUNK as usize) + 4096).await
        {
            let Ok(DataReply::Bytes { req, result }) = codec::decode_frame::<DataReply>(&buf)
            else {
                break;
            };
            let tx = reader_link
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|w| w.remove(&req));
            if let Some(tx) = tx {
                let _ = tx.send(DataReply::Bytes { req, result });
            }
        }
        reader_link.fail_all();
        if let Some(n) = weak.upgrade() {
            n.forget_data_link(node, &reader_link);
        }
    });
    Ok(link)
}

/// Chunk requests a pull keeps in flight on its data session, so the sending node reads the
/// next chunk while this one travels.
const PULL_WINDOW: usize = 8;

/// Copies `len` bytes of object `id` from `from` into `region` of this node's store, then
/// tells the state machine. Up to [`PULL_WINDOW`] chunks are asked for at once and written as
/// they arrive, in order. A broken connection resumes from the last chunk received.
pub(super) async fn pull(inner: Arc<Inner>, id: ObjectId, from: NodeId, len: u64, region: u64) {
    log::debug!("pulling object {id} ({len} bytes) from {from}");
    let mut offset = 0u64;
    let mut resumes = 0;
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
        let mut asked = offset;
        let mut inflight = std::collections::VecDeque::new();
        let broke = loop {
            while inflight.len() < PULL_WINDOW && asked < len {
                let want = CHUNK.min(len - asked);
                let (link, at) = (link.clone(), asked);
                let reply = tokio::spawn(async move {
                    link.request(|req| DataRequest::Fetch {
                        req,
                        id,
                        offset: at,
                        len: want,
                    })
                    .await
                });
                inflight.push_back((at, want, reply));
                asked += want;
            }
            let Some((at, want, reply)) = inflight.pop_front() else {
                break 'pull Ok(());
            };
            let reply = reply
                .await
                .unwrap_or_else(|e| Err(broken(&format!("the request failed: {e}"))));
            match reply {
                Ok(DataReply::Bytes {
                    result: Ok(bytes), ..
                }) if bytes.len() as u64 == want => {
                    if let Err(e) = inner.arena().write(region + PAD + at, &[&bytes]) {
                        break 'pull Err(e);
                    }
                    offset = at + want;
                    inner.count_pulled(want);
                }
                Ok(DataReply::Bytes {
                    result: Ok(bytes), ..
                }) => {
                    break 'pull Err(Error::object_lost(
                        id,
                        format!("{from} sent {} bytes, {want} were asked for", bytes.len()),
                    ));
                }
                Ok(DataReply::Bytes { result: Err(e), .. }) => {
                    break 'pull Err(Error::object_lost(
                        id,
                        format!("{from} cannot send it: {e}"),
                    ));
                }
                Err(e) => break e,
            }
        };
        for (_, _, reply) in inflight {
            reply.abort();
        }
        if resumes >= RESUMES {
            break Err(broke);
        }
        resumes += 1;
        log::warn!("pulling object {id} from {from}: {broke}; resuming at byte {offset}");
    };
    log::debug!("pulled object {id} from {from}: {result:?}");
    inner.run(|st| st.pull_done(id, region, result));
}

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
        let reply = link
            .request(|req| DataRequest::FetchBinary {
                req,
                sha256,
                offset,
                len: want,
            })
            .await
            .map_err(|e| e.to_string())?;
        let DataReply::Bytes { result, .. } = reply;
        let bytes = result?;
        if bytes.is_empty() {
            return Err(format!("{from} sent nothing at byte {offset} of {size}"));
        }
        upload.write(&bytes)?;
        offset += bytes.len() as u64;
    }
    upload.finish()
}
