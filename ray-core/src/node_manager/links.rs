//! The runtime's side of talking to other nodes: opening this node's sessions at its peers
//! through the daemon's [`Connector`] (TLS and the cluster token) and its hello, and its
//! control session at each (requests and their replies; it outlives a broken connection).
//! The data sessions, for bulk transfers, and the transfers are [`super::data_links`].
//!
//! The other side — sessions other nodes hold here, and serving their data requests — is in
//! [`super::remote`].

use super::remote::BinaryStore;
use super::runtime::Inner;
use super::session;
use crate::codec;
use crate::ids::NodeId;
use crate::log;
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::node::{NodeMessage, NodeRefusal, PeerRole};
use crate::protocol::worker::{FromWorker, ToWorker};
use crate::transport::{self, HELLO_MAX, MAX_TO_WORKER, StreamOutbox};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
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
pub(super) enum Opening {
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
pub(super) async fn open_session(
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

/// Sends a direct session's hello (`NodeMessage::DirectHello`) naming home node `home`, one
/// of its drivers and an actor, with `ticket`, and says how the node answered, as
/// [`hello_as_node`] does. For the project's tests of forged tickets (feature `testing`).
#[cfg(feature = "testing")]
pub async fn direct_hello<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    cluster_id: &str,
    home: u32,
    ticket: [u8; 32],
) -> std::io::Result<std::result::Result<(), String>> {
    let driver = crate::ids::ProcId::new(NodeId(home), 7);
    let hello = NodeMessage::DirectHello {
        version: PROTOCOL_VERSION,
        cluster_id: cluster_id.to_string(),
        home: NodeId(home),
        driver,
        job: crate::ids::JobId::of_driver(driver),
        actor: crate::ids::ActorId((u128::from(home) << 96) | (7 << 64) | 1),
        ticket: crate::protocol::Ticket(ticket),
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

/// The next message of a session this node opened at a peer (at most `max` bytes), or why
/// the session ended.
pub(super) async fn next_reply<M, R>(rd: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<M, String>
where
    M: serde::de::DeserializeOwned,
    R: AsyncRead + Unpin,
{
    match transport::read_frame_async(rd, buf, max).await {
        Ok(Some(())) => {}
        Ok(None) => return Err("the connection was closed".into()),
        Err(e) => return Err(e.to_string()),
    }
    codec::decode_frame(buf).map_err(|e| format!("a reply that does not decode: {e}"))
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
        let msg: ToWorker = match next_reply(&mut rd, &mut buf, MAX_TO_WORKER).await {
            Ok(m) => m,
            Err(why) => return why,
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
