//! Drivers on other machines: a session over an authenticated TLS stream (ray-net has already
//! checked the cluster token and protocol), set up with [`NodeMessage::Hello`], the driver's
//! executable shipped if this node does not have it, then the worker protocol.
//!
//! A remote driver is a client like a worker that shares no memory with the node: values it
//! receives are sent inline, large values it puts are moved into the store here. When its
//! connection ends, its job ends.

use super::runtime::Inner;
use super::state::NodeState;
use crate::codec;

use crate::ids::{NodeId, ProcId};
use crate::log;
use crate::protocol::node::{DriverInfo, Handshake, NodeMessage, NodeRefusal, PeerRole};
use crate::protocol::worker::{FromWorker, ToWorker};
use crate::transport::{self, Conn, HELLO_MAX, HELLO_TIMEOUT, MAX_FROM_WORKER, StreamOutbox};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Largest piece of a shipped executable.
pub(crate) const BINARY_CHUNK: usize = 4 << 20;

/// Worker output waiting to be written to a driver on another machine past which more is left
/// out, until half of it waits (other messages waiting do not count). What is left out is
/// counted and reported to the driver when it reads again, so a driver that stopped reading
/// (suspended, say) does not make its node hold its workers' output without bound. Ray's
/// publisher keeps at most 10 MiB of log messages for a subscriber.
pub(crate) const DRIVER_LOG_BACKLOG: usize = 16 << 20;

/// Everything waiting to be written to a driver (replies and output) past which its next
/// request is not read until it drains: a driver that sends without reading cannot make its
/// node queue replies without bound. Requests read before are still answered in full (a `get`
/// of a large value is sent whole).
pub(crate) const DRIVER_REPLY_BACKLOG: usize = 64 << 20;

/// How long replies may stay over [`DRIVER_REPLY_BACKLOG`] before the node warns that the
/// driver is not reading.
const DRIVER_SLOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends a line of worker output to a driver attached here, over its connection `conn`. Past
/// [`DRIVER_LOG_BACKLOG`] waiting the line is left out (the worker's log file on its node
/// keeps it), until half of that waits; the driver is then told how much it missed, before
/// the next line.
pub(super) fn send_log(conn: &Conn, driver: ProcId, stderr: bool, line: Vec<u8>) {
    let msg = ToWorker::Log { stderr, line };
    let Conn::Stream(outbox) = conn else {
        let _ = conn.send(&msg);
        return;
    };
    if let Some((lines, bytes)) = outbox.take_left_out(DRIVER_LOG_BACKLOG) {
        log::info!("driver {driver} reads again; {lines} lines of worker output were left out");
        let notice = ToWorker::Log {
            stderr: true,
            line: left_out_notice(lines, bytes).into_bytes(),
        };
        let _ = outbox.send(&notice);
    }
    match outbox.send_unless_backlogged(&msg, DRIVER_LOG_BACKLOG) {
        Ok(Some(1)) => log::warn!(
            "driver {driver} reads slower than its workers print: their output is left out \
             while more than {} MiB waits for it (the workers' log files keep it)",
            DRIVER_LOG_BACKLOG >> 20
        ),
        Ok(_) => {}
        Err(e) => log::error!("cannot send a line of worker output to {driver}: {e}"),
    }
}

/// What a driver prints when worker output was left out while it did not read.
fn left_out_notice(lines: u64, bytes: u64) -> String {
    format!(
        "[ray WARN] {lines} lines ({:.1} MiB) of worker output were not sent to this driver \
         while it was not reading (more than {} MiB waited for it); each worker's log file on \
         its node keeps its latest output: `ray-rs logs <pid>`\n",
        bytes as f64 / (1 << 20) as f64,
        DRIVER_LOG_BACKLOG >> 20
    )
}

/// An executable this node has, verified; `pin` keeps it in the cache while a job uses it.
pub struct CachedBinary {
    /// Where it is.
    pub path: PathBuf,
    /// Dropped when the job ends.
    pub pin: Box<dyn std::any::Any + Send + Sync>,
}

/// The node's cache of drivers' executables, by SHA-256 (the `ray-rs` daemon's).
pub trait BinaryStore: Send + Sync + 'static {
    /// The verified executable with this hash, if the cache has it.
    fn find(&self, sha256: &[u8; 32]) -> Result<Option<CachedBinary>, String>;
    /// Starts receiving the executable with this hash and size.
    fn upload(&self, sha256: [u8; 32], size: u64) -> Result<Box<dyn BinaryUpload>, String>;
}

/// An executable being received.
pub trait BinaryUpload: Send {
    /// The next piece.
    fn write(&mut self, chunk: &[u8]) -> Result<(), String>;
    /// All pieces were written: verify the hash, and the executable is ready.
    fn finish(self: Box<Self>) -> Result<CachedBinary, String>;
}

pub(super) async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &NodeMessage,
) -> std::io::Result<()> {
    let mut frame = Vec::new();
    codec::encode_frame(msg, &mut frame).map_err(std::io::Error::other)?;
    w.write_all(&frame).await?;
    w.flush().await
}

async fn recv<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<NodeMessage> {
    let mut buf = Vec::new();
    match tokio::time::timeout(HELLO_TIMEOUT, transport::read_frame_async(r, &mut buf, max)).await {
        Ok(Ok(Some(()))) => codec::decode_frame(&buf).map_err(std::io::Error::other),
        Ok(Ok(None)) => Err(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Receives the driver's executable in chunks into the cache.
async fn receive_binary<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    store: &dyn BinaryStore,
    info: &DriverInfo,
) -> Result<CachedBinary, NodeRefusal> {
    let bad = |reason: String| NodeRefusal::BadBinary { reason };
    let mut upload = store.upload(info.sha256, info.size).map_err(bad)?;
    send(stream, &NodeMessage::NeedBinary)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let mut received = 0u64;
    loop {
        let frame_max = BINARY_CHUNK + 64;
        match recv(stream, frame_max)
            .await
            .map_err(|e| bad(e.to_string()))?
        {
            NodeMessage::BinaryChunk(bytes) => {
                received = received.saturating_add(bytes.len() as u64);
                if received > info.size {
                    return Err(bad(format!(
                        "more than the announced {} bytes were sent",
                        info.size
                    )));
                }
                upload.write(&bytes).map_err(bad)?;
            }
            NodeMessage::BinaryDone => break,
            other => return Err(bad(format!("unexpected {other:?} while receiving it"))),
        }
    }
    upload.finish().map_err(bad)
}

/// Serves a session on `stream` (a driver's, or another node's control or data session)
/// until it ends.
pub(crate) async fn serve_session<S>(
    node: Weak<Inner>,
    mut stream: S,
    cluster_id: String,
    store: Arc<dyn BinaryStore>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hello = match recv(&mut stream, HELLO_MAX).await {
        Ok(m) => m,
        Err(e) => {
            log::warn!("a driver's session did not start: {e}");
            return;
        }
    };
    let mut handshake = Handshake::AwaitingHello;
    let refusal = match handshake.receive(&hello, &cluster_id) {
        Ok((PeerRole::Driver, Some(info))) if info.size > 0 => Ok(info),
        Ok((PeerRole::Node, _)) => {
            let NodeMessage::Hello {
                node: Some((peer, data)),
                incarnation,
                session,
                resume,
                received,
                ..
            } = hello
            else {
                return;
            };
            if data {
                super::data_session::serve_data(node, stream, peer, store).await;
            } else {
                let hello = PeerHello {
                    incarnation,
                    session,
                    resume,
                    received,
                };
                serve_peer(node, stream, peer, hello).await;
            }
            return;
        }
        Ok((PeerRole::Direct, _)) => {
            serve_direct(node, stream, hello).await;
            return;
        }
        Ok(_) => Err(NodeRefusal::NoHello),
        Err(reason) => Err(reason),
    };
    let info = match refusal {
        Ok(info) => info,
        Err(reason) => {
            log::warn!("a driver was refused: {reason}");
            let _ = send(&mut stream, &NodeMessage::Refused { reason }).await;
            return;
        }
    };
    let binary = match store.find(&info.sha256) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => receive_binary(&mut stream, &*store, &info).await,
        Err(reason) => Err(NodeRefusal::BadBinary { reason }),
    };
    let binary = match binary {
        Ok(b) => b,
        Err(reason) => {
            log::warn!("driver pid {} was refused: {reason}", info.pid);
            let _ = send(&mut stream, &NodeMessage::Refused { reason }).await;
            return;
        }
    };
    let Some(n) = node.upgrade() else { return };
    let attached = n.run(|st| st.attach_driver(&info, binary.path, binary.pin));
    let Some((proc, job)) = attached else {
        let reason = NodeRefusal::Unavailable {
            reason: "the node is shutting down".into(),
        };
        let _ = send(&mut stream, &NodeMessage::Refused { reason }).await;
        return;
    };
    log::info!("driver pid {} attached as {proc} ({job})", info.pid);
    if let Err(e) = serve_attached(node, n, stream, proc, job, NodeState::driver_gone).await {
        log::warn!("driver pid {} left during its welcome: {e}", info.pid);
    }
}

/// Welcomes a driver's session attached here as `proc` (of `job`), then serves it until its
/// connection ends; `ended` lets go of what it held (also when the welcome fails).
async fn serve_attached<S>(
    node: Weak<Inner>,
    n: Arc<Inner>,
    mut stream: S,
    proc: ProcId,
    job: crate::ids::JobId,
    ended: fn(&mut NodeState, ProcId),
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let welcome = NodeMessage::Welcome {
        node: proc.node,
        proc: Some(proc),
        job: Some(job),
        received: 0,
    };
    if let Err(e) = send(&mut stream, &welcome).await {
        n.run(|st| ended(st, proc));
        return Err(e);
    }
    let (outbox, rx) = StreamOutbox::new();
    n.add_connection(proc, Conn::Stream(outbox.clone()));
    drop(n);
    let (rd, wr) = tokio::io::split(stream);
    tokio::spawn(StreamOutbox::run_writer(rx, wr));
    read_driver(node.clone(), proc, rd, outbox).await;
    if let Some(n) = node.upgrade() {
        n.run(|st| ended(st, proc));
    }
    Ok(())
}

/// How long a direct session's hello waits for its ticket, which the driver's home node
/// sends this node on another connection.
const TICKET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves a remote driver's direct session (`docs/direct-actor-calls.md`): checked against
/// the ticket its home node sent here, then served as a narrowed session of that node
/// (`direct.rs`) until it ends.
async fn serve_direct<S>(node: Weak<Inner>, mut stream: S, hello: NodeMessage)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let NodeMessage::DirectHello {
        home,
        driver,
        job,
        actor,
        ticket,
        ..
    } = hello
    else {
        return;
    };
    let deadline = tokio::time::Instant::now() + TICKET_WAIT;
    let arrived = Arc::new(crate::slot::Slot::new());
    let attached = loop {
        let Some(n) = node.upgrade() else { return };
        match n.run(|st| st.attach_direct(home, driver, job, actor, &ticket, &arrived)) {
            Ok(Some(proc)) => break Ok((n, proc)),
            Ok(None) => {}
            Err(reason) => break Err(reason),
        }
        drop(n);
        // The ticket travels from the home node on another connection: wait for the next
        // ticket to arrive here, then look again.
        let next = std::future::poll_fn(|cx| arrived.poll_take(cx));
        if tokio::time::timeout_at(deadline, next).await.is_err() {
            break Err(NodeRefusal::Unavailable {
                reason: format!(
                    "no valid ticket from {home} for this direct session (unknown, used or \
                     expired)"
                ),
            });
        }
    };
    let (n, proc) = match attached {
        Ok(a) => a,
        Err(reason) => {
            log::warn!("a direct session of driver {driver} was refused: {reason}");
            let _ = send(&mut stream, &NodeMessage::Refused { reason }).await;
            return;
        }
    };
    log::info!("driver {driver} opened a direct session to {actor} here as {proc}");
    let _ = serve_attached(node, n, stream, proc, job, NodeState::peer_gone).await;
}

/// Reads a driver's messages (on its session or a direct one) until its connection ends. While more than
/// [`DRIVER_REPLY_BACKLOG`] of replies wait for it, its next request waits unread.
async fn read_driver<R: AsyncRead + Unpin>(
    node: Weak<Inner>,
    proc: ProcId,
    rd: R,
    outbox: StreamOutbox,
) {
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::new();
    loop {
        match transport::read_frame_async(&mut rd, &mut buf, MAX_FROM_WORKER).await {
            Ok(Some(())) => {}
            Ok(None) => break,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                log::warn!("the connection of driver {proc} failed: {e}");
                break;
            }
        }
        let Some(n) = node.upgrade() else { return };
        if !super::conn::dispatch_frame(&n, proc, &mut buf) {
            break;
        }
        drop(n);
        if outbox.queued() > DRIVER_REPLY_BACKLOG {
            wait_for_driver(proc, &outbox).await;
        }
    }
}

/// Waits until at most [`DRIVER_REPLY_BACKLOG`] waits to be written to a driver; says so if
/// that takes [`DRIVER_SLOW`] (a normal driver reads a large reply faster).
async fn wait_for_driver(proc: ProcId, outbox: &StreamOutbox) {
    let drained = outbox.wait_until_below(DRIVER_REPLY_BACKLOG);
    tokio::pin!(drained);
    if tokio::time::timeout(DRIVER_SLOW, &mut drained)
        .await
        .is_ok()
    {
        return;
    }
    log::warn!(
        "driver {proc} is not reading: {} MiB have waited to be written to it for {} s; its \
         next request is not read until it reads",
        outbox.queued() >> 20,
        DRIVER_SLOW.as_secs()
    );
    drained.await;
    log::info!("driver {proc} reads again");
}

/// Serves a connection of another node's control session: a new session, or one resumed
/// after its connection broke ([`super::session`]): then the session's process, its holdings
/// and the replies not yet received are still here, and the session goes on where it broke.
async fn serve_peer<S>(node: Weak<Inner>, mut stream: S, peer: NodeId, hello: PeerHello)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(n) = node.upgrade() else { return };
    let key = (peer, hello.incarnation, hello.session);
    let known = lock(&n.peer_sessions).get(&key).cloned();
    let session = match known {
        Some(s) => s,
        None if hello.resume => {
            return refuse(
                &mut stream,
                peer,
                "this node does not know that session any more (it started again, or the \
                 session ended): what it carried is lost",
            )
            .await;
        }
        None => match new_peer_session(&n, peer, hello) {
            Ok(s) => s,
            Err(reason) => {
                // A new incarnation ahead of this node's watch of etcd asks again: no warning.
                if matches!(reason, NodeRefusal::NotRegistered { .. }) {
                    log::info!("a session of {peer} waits for its record in etcd: {reason}");
                } else {
                    log::warn!(
                        "a session of {peer} (incarnation {}) was refused: {reason}",
                        hello.incarnation
                    );
                }
                let _ = send(&mut stream, &NodeMessage::Refused { reason }).await;
                return;
            }
        },
    };
    let proc = session.proc;
    // This connection takes over: a reader of an older one dispatches nothing more.
    let (generation, received) = {
        let mut gate = lock(&session.gate);
        *gate += 1;
        (*gate, session.counters.received.load(Ordering::Acquire))
    };
    let welcome = NodeMessage::Welcome {
        node: proc.node,
        proc: Some(proc),
        job: None,
        received,
    };
    if send(&mut stream, &welcome).await.is_err() {
        return;
    }
    log::info!(
        "{peer} {} its session here as {proc}",
        if generation == 1 { "opened" } else { "resumed" }
    );
    drop(n);
    let (rd, wr) = tokio::io::split(stream);
    let attach = super::session::Attach {
        stream: Box::new(wr) as super::session::SessionStream,
        peer_received: hello.received,
    };
    if session.attach.send(attach).is_err() {
        return;
    }
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::new();
    while let Ok(Some(())) = transport::read_frame_async(&mut rd, &mut buf, MAX_FROM_WORKER).await {
        let Some(n) = node.upgrade() else { return };
        let msg = match transport::decode_frame::<FromWorker>(&buf) {
            Ok(msg) => msg,
            Err(e) => {
                log::warn!("{peer} sent a message that does not decode: {e}");
                break;
            }
        };
        {
            let gate = lock(&session.gate);
            if *gate != generation {
                return; // a newer connection serves the session
            }
            match msg {
                FromWorker::SessionAck { received } => session.counters.acknowledged(received),
                msg => {
                    session.counters.count_received();
                    n.run(|st| st.handle(proc, msg));
                }
            }
        }
        if buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
    }
    // The connection broke; the session stays for its node's return, until that node is
    // declared dead (its process here then goes, and with it the session).
    log::info!("the connection of {peer}'s session ({proc}) broke; the session is kept");
}

/// What a node's hello says of the control session it opens.
#[derive(Clone, Copy)]
struct PeerHello {
    incarnation: u64,
    session: u64,
    resume: bool,
    received: u64,
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, peer: NodeId, why: &str) {
    log::warn!("a session of {peer} was refused: {why}");
    let reason = NodeRefusal::Unavailable { reason: why.into() };
    let _ = send(stream, &NodeMessage::Refused { reason }).await;
}

/// A new control session of `peer`: its process here, its writer, and its entry (removed when
/// the writer ends, which is when the process's connection is closed: the node was declared
/// dead, or this node stops).
fn new_peer_session(
    n: &Arc<Inner>,
    peer: NodeId,
    hello: PeerHello,
) -> std::result::Result<Arc<super::session::PeerSession>, NodeRefusal> {
    use super::session;
    let proc = n.run(|st| st.attach_peer(peer, hello.incarnation))?;
    let counters = session::Counters::new();
    let (outbox, rx) = StreamOutbox::new();
    let (attach, attached) = tokio::sync::mpsc::unbounded_channel();
    let ack = |r| session::frame(&ToWorker::SessionAck { received: r });
    let writer = tokio::spawn(session::run_writer(rx, attached, counters.clone(), ack));
    let s = Arc::new(session::PeerSession {
        proc,
        counters,
        attach,
        gate: std::sync::Mutex::new(0),
    });
    let key = (peer, hello.incarnation, hello.session);
    lock(&n.peer_sessions).insert(key, s.clone());
    n.add_connection(proc, Conn::Stream(outbox));
    let weak = Arc::downgrade(n);
    tokio::spawn(async move {
        let end = writer.await;
        if let Some(n) = weak.upgrade() {
            lock(&n.peer_sessions).remove(&key);
            if !matches!(end, Ok(session::WriterEnd::Closed)) {
                // Given up (too much unacknowledged): the session is over here too.
                n.run(|st| st.peer_gone(proc));
            }
        }
    });
    Ok(s)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::worker::ToWorker;

    fn line_of(frame: &[u8]) -> (bool, String) {
        match transport::decode_frame::<ToWorker>(&frame[4..]).unwrap() {
            ToWorker::Log { stderr, line } => (stderr, String::from_utf8(line).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_driver_not_reading_misses_output_past_the_backlog_and_is_told_how_much() {
        let (outbox, mut rx) = StreamOutbox::new();
        let conn = Conn::Stream(outbox.clone());
        let driver = ProcId::new(NodeId(1), 1);
        let line =
            |i: usize| format!("(Chatty pid=7) line {i} {}\n", "x".repeat(1000)).into_bytes();
        let total = 2 * DRIVER_LOG_BACKLOG / 1000;
        for i in 0..total {
            send_log(&conn, driver, false, line(i));
        }
        // What waits is the backlog and one line more, however many lines came.
        let held = outbox.queued_droppable();
        assert!(
            held > DRIVER_LOG_BACKLOG && held < DRIVER_LOG_BACKLOG + 4096,
            "{held}"
        );
        let mut got = Vec::new();
        while let Ok(f) = rx.try_recv() {
            got.push(line_of(&f));
        }
        let kept = got.len();
        assert!(kept > 1000 && kept < total, "{kept} of {total}");
        assert!(
            got.iter()
                .all(|(e, l)| !e && l.starts_with("(Chatty pid=7) line "))
        );
        // The driver read it all: the next line comes after the notice.
        send_log(&conn, driver, false, b"(Chatty pid=7) last\n".to_vec());
        let (stderr, notice) = line_of(&rx.try_recv().unwrap());
        assert!(stderr);
        let want = format!("[ray WARN] {} lines (", total - kept);
        assert!(notice.starts_with(&want), "{notice}");
        assert!(notice.contains("`ray-rs logs <pid>`"), "{notice}");
        assert_eq!(line_of(&rx.try_recv().unwrap()).1, "(Chatty pid=7) last\n");
        assert!(rx.try_recv().is_err());
    }
}
