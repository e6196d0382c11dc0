//! Framed messages over Unix domain sockets.
//!
//! The node manager listens on an abstract-namespace Unix socket (Linux: no file to clean up),
//! named per runtime; workers connect to it and authenticate with a per-runtime token. The
//! node manager side is tokio; the worker side uses plain blocking sockets and threads, since a
//! worker mostly runs user code.

use crate::codec;
use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Largest frame accepted (guards against garbage on the socket).
const MAX_FRAME: usize = 1 << 31;

pub(crate) fn bind_abstract(name: &str) -> Result<UnixListener> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| Error::io("naming the socket", e))?;
    let listener = UnixListener::bind_addr(&addr)
        .map_err(|e| Error::io(format!("binding socket @{name}"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("configuring the socket", e))?;
    Ok(listener)
}

pub(crate) fn connect_abstract(name: &str) -> std::io::Result<UnixStream> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixStream::connect_addr(&addr)
}

/// Reads one frame's payload (tokio side). `Ok(None)` at a clean end of stream.
pub(crate) async fn read_frame_async<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(Some(()))
}

/// Reads one frame's payload (blocking side). `Ok(None)` at a clean end of stream.
pub(crate) fn read_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(Some(()))
}

/// Blocking writer shared by the threads of a worker. Frames are encoded and written under one
/// lock, so messages leave in the order `send` was called.
pub(crate) struct BlockingSender {
    inner: Mutex<(UnixStream, Vec<u8>)>,
}

impl BlockingSender {
    pub(crate) fn new(stream: UnixStream) -> Self {
        BlockingSender {
            inner: Mutex::new((stream, Vec::with_capacity(4096))),
        }
    }

    pub(crate) fn send<M: Serialize>(&self, msg: &M) -> Result<()> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (stream, buf) = &mut *guard;
        buf.clear();
        codec::encode_frame(msg, buf)?;
        let r = stream
            .write_all(buf)
            .map_err(|e| Error::io("writing to the node manager", e));
        if buf.capacity() > 1 << 20 {
            *buf = Vec::with_capacity(4096);
        }
        r
    }
}

/// Outgoing queue of one worker connection on the node manager side.
///
/// `send` never blocks: when nothing is queued it writes the frame to the socket itself with a
/// non-blocking write (the common case: no thread hand-off on the way out); whatever does not
/// fit is queued for the connection's writer task, which also takes every later frame until the
/// queue is empty again, so frames always leave in order.
#[derive(Clone)]
pub(crate) struct Outbox {
    inner: Arc<OutboxInner>,
}

struct OutboxInner {
    state: Mutex<OutboxState>,
    notify: tokio::sync::Notify,
    closed: AtomicBool,
    /// The same socket, for direct non-blocking writes.
    direct: UnixStream,
}

struct OutboxState {
    queued: Vec<u8>,
    /// The writer task owns the socket's output until `queued` is empty.
    writer_busy: bool,
    scratch: Vec<u8>,
}

impl Outbox {
    /// `direct` must be a non-blocking handle on the connection's socket.
    pub(crate) fn new(direct: UnixStream) -> Self {
        Outbox {
            inner: Arc::new(OutboxInner {
                state: Mutex::new(OutboxState {
                    queued: Vec::new(),
                    writer_busy: false,
                    scratch: Vec::new(),
                }),
                notify: tokio::sync::Notify::new(),
                closed: AtomicBool::new(false),
                direct,
            }),
        }
    }

    pub(crate) fn send<M: Serialize>(&self, msg: &M) {
        if self.inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.writer_busy || !st.queued.is_empty() {
            if let Err(e) = codec::encode_frame(msg, &mut st.queued) {
                tracing::error!("cannot encode a message to a worker: {e}");
            }
            return;
        }
        let OutboxState {
            queued,
            writer_busy,
            scratch,
        } = &mut *st;
        scratch.clear();
        if let Err(e) = codec::encode_frame(msg, scratch) {
            tracing::error!("cannot encode a message to a worker: {e}");
            return;
        }
        let mut done = 0;
        while done < scratch.len() {
            match (&self.inner.direct).write(&scratch[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.inner.closed.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
        if done < scratch.len() {
            queued.extend_from_slice(&scratch[done..]);
            *writer_busy = true;
            drop(st);
            self.inner.notify.notify_one();
        } else if scratch.capacity() > 1 << 20 {
            *scratch = Vec::new();
        }
    }

    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.notify.notify_one();
    }

    /// Runs until the connection closes: writes what `send` queued.
    pub(crate) async fn run_writer<W: tokio::io::AsyncWrite + Unpin>(self, mut w: W) {
        let mut out = Vec::new();
        loop {
            self.inner.notify.notified().await;
            loop {
                {
                    let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
                    if st.queued.is_empty() {
                        st.writer_busy = false;
                        break;
                    }
                    st.writer_busy = true;
                    std::mem::swap(&mut st.queued, &mut out);
                }
                if w.write_all(&out).await.is_err() {
                    self.inner.closed.store(true, Ordering::Relaxed);
                    return;
                }
                out.clear();
                if out.capacity() > 1 << 20 {
                    out = Vec::new();
                }
            }
            if self.inner.closed.load(Ordering::Relaxed) {
                let _ = w.shutdown().await;
                return;
            }
        }
    }
}

pub(crate) fn decode_frame<M: DeserializeOwned>(buf: &[u8]) -> Result<M> {
    codec::decode_frame(buf)
}
