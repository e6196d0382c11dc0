//! A driver joining a cluster: `ray::init` with `RAY_ADDRESS` (or `Config::address`).
//!
//! The driver connects to the node at that address over TLS, proves it knows the cluster token
//! (ray-net's handshake: the token itself never crosses the wire), introduces its program
//! (build fingerprint, SHA-256 of its executable) and sends the executable if the node asks
//! for it. It then talks to that node as a worker talks to its own, without shared memory:
//! values travel inline, and the output of its workers comes back over the connection.

use crate::client::{MessageSink, OnLost, ProcessClient};
use crate::codec;
use crate::error::{Error, Result};
use crate::ids::{JobId, NodeId, ProcId};
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::node::{DriverInfo, NodeMessage, PeerRole};
use crate::protocol::worker::FromWorker;
use crate::transport::{self, BlockingSender, HELLO_MAX};
use std::io::Read;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

mod direct;
mod turn;
pub(crate) use direct::DirectCalls;
pub(crate) use turn::Turn;

/// How long joining may take (connect, handshake, shipping the executable).
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Pieces of the executable sent at a time.
const CHUNK: usize = 4 << 20;

/// A driver's session with its node.
pub(crate) struct ClusterSession {
    pub client: Arc<ProcessClient>,
    sink: Arc<TlsSink>,
    pub proc: ProcId,
    pub job: JobId,
    pub node: NodeId,
}

/// Messages to the node: the calling thread encrypts and writes each one itself (no hand-off
/// to another thread, so no wake-up on the way out).
struct TlsSink {
    sender: BlockingSender<ray_net::BlockingWriter>,
    closed: AtomicBool,
    /// What the reading thread is doing, so that a stalled write can say whose fault it is.
    reader: Arc<ReaderOutput>,
}

/// Whether the thread reading the node's messages is inside a write of worker output to this
/// program's stdout or stderr, and since when: a program whose own output nobody reads blocks
/// that thread, its node then stops reading it, and the stall that follows is the driver's
/// doing, not the node's.
struct ReaderOutput {
    start: Instant,
    /// Milliseconds from `start` to the moment the current write began, plus one (0: none).
    since_ms: AtomicU64,
    /// The current write goes to stderr (else stdout).
    stderr: AtomicBool,
}

impl ReaderOutput {
    fn new() -> Self {
        ReaderOutput {
            start: Instant::now(),
            since_ms: AtomicU64::new(0),
            stderr: AtomicBool::new(false),
        }
    }

    /// Runs `write` (a write of worker output to stderr or stdout), marked as under way.
    fn writing<T>(&self, stderr: bool, write: impl FnOnce() -> T) -> T {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.stderr.store(stderr, Ordering::Relaxed);
        self.since_ms.store(ms + 1, Ordering::Relaxed);
        let r = write();
        self.since_ms.store(0, Ordering::Relaxed);
        r
    }

    /// How long the current write of output has been under way, and where to.
    fn blocked(&self) -> Option<(Duration, &'static str)> {
        let since = self.since_ms.load(Ordering::Relaxed).checked_sub(1)?;
        let now = self.start.elapsed();
        let stream = if self.stderr.load(Ordering::Relaxed) {
            "stderr"
        } else {
            "stdout"
        };
        Some((now.saturating_sub(Duration::from_millis(since)), stream))
    }
}

/// `err`, from a write to the node, with the cause named when this driver's own reading
/// thread has been blocked writing worker output for at least half the stall limit (`reader`):
/// the node stopped reading this driver because this driver stopped reading the node.
fn blame_stall(err: Error, reader: Option<(Duration, &'static str)>) -> Error {
    match (err, reader) {
        (
            Error::Io {
                context,
                message,
                kind: kind @ std::io::ErrorKind::TimedOut,
            },
            Some((blocked, stream)),
        ) if blocked >= SEND_STALL / 2 => Error::Io {
            context,
            message: format!(
                "{message}, because this driver stopped reading the node first: its thread \
                 that reads the node's messages has been blocked for {} s writing worker \
                 output to this program's {stream}, and a node stops reading a driver while \
                 {} MiB of replies wait for it. Read the program's {stream} (or redirect it \
                 to a file)",
                blocked.as_secs(),
                crate::node_manager::remote::DRIVER_REPLY_BACKLOG >> 20
            ),
            kind,
        },
        (err, _) => err,
    }
}

/// How long the node may accept under 64 KiB of a message (`ray_net::STALL_MIN_BYTES`) before
/// this driver gives its session up: a node that stopped reading (wedged, or paused far past
/// its lease) must not block the calling thread for good. Far above any pause of a live node
/// (leases are 10 s by default).
const SEND_STALL: Duration = Duration::from_secs(60);

impl TlsSink {
    fn write(&self, msg: &FromWorker) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.sender
            .send(msg)
            .map_err(|e| blame_stall(e, self.reader.blocked()))
    }

    /// After a failed write: the stream is cut inside a record, so no TLS close can follow.
    fn abort(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.sender.with_stream(|w| w.abort());
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            self.sender.with_stream(|w| w.close());
        }
    }
}

/// The [`ProcessClient`]'s handle of the sink.
struct StreamSink(Arc<TlsSink>);

impl MessageSink for StreamSink {
    fn send(&self, msg: &FromWorker) -> Result<()> {
        self.0.write(msg)
    }

    fn send_many(&self, msgs: &[FromWorker]) -> Result<()> {
        if self.0.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.0
            .sender
            .send_all(msgs)
            .map_err(|e| blame_stall(e, self.0.reader.blocked()))
    }

    fn abort(&self) {
        self.0.abort();
    }

    #[cfg(feature = "testing")]
    fn send_raw(&self, _bytes: &[u8]) -> Result<()> {
        Err(Error::InvalidArgument {
            what: "send_raw".into(),
            message: "a driver has no raw socket".into(),
        })
    }
}

fn cluster_error(address: &str, message: impl std::fmt::Display) -> Error {
    Error::Cluster {
        address: address.to_string(),
        message: message.to_string(),
    }
}

/// This program's executable: its path, SHA-256 and size.
fn own_executable() -> std::io::Result<(std::path::PathBuf, [u8; 32], u64)> {
    let path = std::path::PathBuf::from("/proc/self/exe");
    let mut file = std::fs::File::open(&path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
    let mut sha = [0u8; 32];
    sha.copy_from_slice(ctx.finish().as_ref());
    Ok((path, sha, size))
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, msg: &NodeMessage) -> std::io::Result<()> {
    let mut frame = Vec::new();
    codec::encode_frame(msg, &mut frame).map_err(std::io::Error::other)?;
    w.write_all(&frame).await?;
    w.flush().await
}

async fn recv<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<NodeMessage> {
    let mut buf = Vec::new();
    match transport::read_frame_async(r, &mut buf, HELLO_MAX).await? {
        Some(()) => codec::decode_frame(&buf).map_err(std::io::Error::other),
        None => Err(std::io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Joins the cluster at `address` with `token` (its text form).
pub(crate) fn connect(
    address: &str,
    token: &str,
    namespace: Option<String>,
) -> Result<ClusterSession> {
    let token = ray_net::AuthToken::parse(token, ray_net::TOKEN_ENV)
        .map_err(|e| cluster_error(address, e))?;
    let addr = address
        .to_socket_addrs()
        .map_err(|e| {
            cluster_error(
                address,
                format!("cannot resolve it (expected HOST:PORT): {e}"),
            )
        })?
        .next()
        .ok_or_else(|| cluster_error(address, "it resolves to no address"))?;
    let (exe, sha256, size) = own_executable().map_err(|e| {
        Error::io(
            "reading this program's executable to ship it to the cluster",
            e,
        )
    })?;
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "driver".into());
    let info = DriverInfo {
        fingerprint: crate::registry::fingerprint(),
        sha256,
        size,
        pid: std::process::id(),
        name: name.clone(),
        namespace,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ray-cluster-client")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the cluster client's runtime", e))?;
    let handshake = ray_net::HandshakeConfig::new(token, None, ray_net::Role::Driver, name);
    let direct_handshake = handshake.clone();
    let join = async {
        let tls = ray_net::client_config(None, None).map_err(|e| cluster_error(address, e))?;
        let conn = ray_net::connect(addr, tls, &handshake)
            .await
            .map_err(|e| cluster_error(address, e))?;
        let cluster_id = conn.peer.cluster_id.clone().unwrap_or_default();
        let mut stream = conn.stream;
        let hello = NodeMessage::Hello {
            version: PROTOCOL_VERSION,
            cluster_id: cluster_id.clone(),
            role: PeerRole::Driver,
            driver: Some(info),
            node: None,
            incarnation: 0,
            session: 0,
            resume: false,
            received: 0,
        };
        let io = |e: std::io::Error| cluster_error(address, format!("the session broke: {e}"));
        send(&mut stream, &hello).await.map_err(io)?;
        loop {
            match recv(&mut stream).await.map_err(io)? {
                NodeMessage::NeedBinary => {
                    ship(&mut stream, &exe).await.map_err(io)?;
                }
                NodeMessage::Welcome {
                    node,
                    proc: Some(proc),
                    job: Some(job),
                    ..
                } => return Ok((stream, node, proc, job, cluster_id)),
                NodeMessage::Refused { reason } => {
                    return Err(cluster_error(
                        address,
                        format!("the node refused: {reason}"),
                    ));
                }
                other => {
                    return Err(cluster_error(address, format!("unexpected {other:?}")));
                }
            }
        }
    };
    let joined = rt.block_on(async {
        tokio::time::timeout(JOIN_TIMEOUT, join)
            .await
            .unwrap_or_else(|_| Err(cluster_error(address, "joining took over two minutes")))
    });
    // Joined: the session runs on plain threads from here (the stream leaves the runtime's
    // reactor before the runtime stops).
    let joined = joined.and_then(|(stream, node, proc, job, cluster_id)| {
        let halves = ray_net::into_blocking(stream)
            .map_err(|e| cluster_error(address, format!("the session broke: {e}")))?;
        Ok((halves, node, proc, job, cluster_id))
    });
    stop_runtime(rt);
    let ((reader, writer), node, proc, job, cluster_id) = joined?;
    let (client, sink) = run_session(reader, writer, job, OnLost::Fail, address)?;
    if direct::enabled() {
        client.call_directly(Arc::new(DirectCalls::start(
            Arc::downgrade(&client),
            node,
            proc,
            job,
            cluster_id,
            direct_handshake,
        )));
    }
    Ok(ClusterSession {
        client,
        sink,
        proc,
        job,
        node,
    })
}

/// A session over an open connection, run from plain threads: the calling thread writes
/// (giving up after [`SEND_STALL`]), and a thread waiting on a reply reads ([`Turn`]).
fn run_session(
    reader: ray_net::BlockingReader,
    mut writer: ray_net::BlockingWriter,
    job: JobId,
    on_lost: OnLost,
    address: &str,
) -> Result<(Arc<ProcessClient>, Arc<TlsSink>)> {
    writer
        .set_stall_limit(Some(SEND_STALL))
        .map_err(|e| cluster_error(address, format!("the session broke: {e}")))?;
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
        job,
        on_lost,
    ));
    let turn = turn::Turn::start(client.clone(), reader, output)
        .map_err(|e| Error::io("starting the reader of a session with a node", e))?;
    client.read_while_waiting(turn);
    Ok((client, sink))
}

/// Sends this program's executable in chunks.
async fn ship<W: AsyncWrite + Unpin>(w: &mut W, exe: &std::path::Path) -> std::io::Result<()> {
    let mut file = std::fs::File::open(exe)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = NodeMessage::BinaryChunk(bytes::Bytes::copy_from_slice(&buf[..n]));
        send(w, &chunk).await?;
    }
    send(w, &NodeMessage::BinaryDone).await
}

/// Stops a runtime from a thread of its own (works inside async code too).
fn stop_runtime(rt: tokio::runtime::Runtime) {
    let t = std::thread::Builder::new()
        .name("ray-shutdown".into())
        .spawn(move || rt.shutdown_timeout(Duration::from_secs(1)));
    if let Ok(t) = t {
        let _ = t.join();
    }
}

impl ClusterSession {
    /// Leaves the cluster: the connection closes, and the node ends this job.
    pub(crate) fn close(&mut self) {
        self.client.close_direct();
        self.client.leaving();
        self.sink.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stalled() -> Error {
        Error::io(
            "writing to the node manager",
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer accepted under 64 KiB in 60 s",
            ),
        )
    }

    #[test]
    fn a_stall_while_the_reader_is_blocked_on_output_names_the_drivers_own_output() {
        let err = blame_stall(stalled(), Some((Duration::from_secs(75), "stdout")));
        let text = err.to_string();
        assert!(
            text.contains("the peer accepted under 64 KiB in 60 s")
                && text.contains("blocked for 75 s")
                && text.contains("while 64 MiB of replies wait")
                && text.contains("this program's stdout")
                && text.contains("Read the program's stdout"),
            "{text}"
        );
        assert!(matches!(
            err,
            Error::Io {
                kind: std::io::ErrorKind::TimedOut,
                ..
            }
        ));
    }

    #[test]
    fn a_stall_is_the_nodes_when_the_reader_is_free_or_only_briefly_busy() {
        let plain = stalled().to_string();
        assert_eq!(blame_stall(stalled(), None).to_string(), plain);
        let brief = blame_stall(stalled(), Some((Duration::from_secs(2), "stderr")));
        assert_eq!(brief.to_string(), plain, "a write of 2 s is not the cause");
        // Other errors pass through as they are, whatever the reader does.
        let refused = Error::io(
            "writing to the node manager",
            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        );
        let text = refused.to_string();
        let kept = blame_stall(refused, Some((Duration::from_secs(600), "stdout")));
        assert_eq!(kept.to_string(), text);
    }

    #[test]
    fn the_reader_is_marked_blocked_only_inside_a_write_of_output() {
        let output = ReaderOutput::new();
        assert!(output.blocked().is_none());
        let inside = output.writing(true, || output.blocked());
        let (for_, stream) = inside.expect("marked while writing");
        assert_eq!(stream, "stderr");
        assert!(for_ < Duration::from_secs(60));
        assert!(output.blocked().is_none(), "cleared after the write");
        assert_eq!(
            output.writing(false, || output.blocked().unwrap().1),
            "stdout"
        );
    }
}
