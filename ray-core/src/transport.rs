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

/// Outgoing queue of one worker connection on the node manager side. `send` only encodes into a
/// buffer and wakes the connection's writer task, so it is cheap to call under the node
/// manager's lock; the writer sends everything queued in one write.
#[derive(Clone)]
pub(crate) struct Outbox {
    inner: Arc<OutboxInner>,
}

struct OutboxInner {
    buf: Mutex<Vec<u8>>,
    notify: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Outbox {
            inner: Arc::new(OutboxInner {
                buf: Mutex::new(Vec::new()),
                notify: tokio::sync::Notify::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn send<M: Serialize>(&self, msg: &M) {
        if self.inner.closed.load(Ordering::Relaxed) {
            return;
        }
        {
            let mut buf = self.inner.buf.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = codec::encode_frame(msg, &mut buf) {
                tracing::error!("cannot encode a message to a worker: {e}");
                return;
            }
        }
        self.inner.notify.notify_one();
    }

    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.notify.notify_one();
    }

    /// Runs until the connection closes: writes whatever is queued.
    pub(crate) async fn run_writer<W: tokio::io::AsyncWrite + Unpin>(self, mut w: W) {
        let mut out = Vec::new();
        loop {
            self.inner.notify.notified().await;
            {
                let mut buf = self.inner.buf.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::swap(&mut *buf, &mut out);
            }
            if !out.is_empty() {
                if w.write_all(&out).await.is_err() {
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
