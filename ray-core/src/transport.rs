//! Framed messages over Unix domain sockets.
//!
//! A worker's connection is one end of a socket pair its node manager made when it started
//! the worker (the worker inherits the other end): there is no listening socket anybody could
//! find, so only the node's own workers reach it. The node manager side is tokio; the worker
//! side uses plain blocking sockets and threads, since a worker mostly runs user code.
//!
//! Frames are a `u32` little-endian length and that many bytes. A reader never allocates the
//! announced length up front: the buffer grows as bytes arrive, up to a maximum per stream
//! (small for a peer's first message, which must also arrive within [`HELLO_TIMEOUT`]).

use crate::codec;
use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

mod stream;
pub(crate) use stream::{OutboxRx, StreamOutbox};

/// Largest first message (`Hello`) a peer may send.
pub(crate) const HELLO_MAX: usize = 4 * 1024;
/// Time a peer has to send its first message.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame a worker may send (a submission with many inline arguments, say).
pub(crate) const MAX_FROM_WORKER: usize = 1 << 30;
/// Largest frame a worker accepts from its node manager (replies are split below this).
pub(crate) const MAX_TO_WORKER: usize = u32::MAX as usize;

fn too_large(len: usize, max: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a frame of {len} bytes, more than the {max} allowed"),
    )
}

fn frame_len(len: [u8; 4], max: usize) -> std::io::Result<usize> {
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(too_large(len, max));
    }
    Ok(len)
}

/// Reads one frame's payload into `buf` (tokio side). `Ok(None)` at a clean end of stream.
pub(crate) async fn read_frame_async<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_len(len, max)?;
    buf.clear();
    // Small frames (nearly all) are read in one go; larger ones grow the buffer as their bytes
    // arrive, so an announced length is never allocated before it is sent.
    if len <= GROW_STEP {
        buf.resize(len, 0);
        r.read_exact(buf).await?;
        return Ok(Some(()));
    }
    while buf.len() < len {
        let have = buf.len();
        let step = (len - have).min(have.max(GROW_STEP));
        buf.resize(have + step, 0);
        r.read_exact(&mut buf[have..]).await?;
    }
    Ok(Some(()))
}

/// Frames up to this size are read into a buffer of their announced size at once; beyond it
/// the buffer at most doubles per read.
const GROW_STEP: usize = 64 * 1024;

/// Reads one frame's payload into `buf` (blocking side). `Ok(None)` at a clean end of stream.
pub(crate) fn read_frame<R: Read>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_len(len, max)?;
    buf.clear();
    if len <= GROW_STEP {
        buf.resize(len, 0);
        r.read_exact(buf)?;
        return Ok(Some(()));
    }
    while buf.len() < len {
        let have = buf.len();
        let step = (len - have).min(have.max(GROW_STEP));
        buf.resize(have + step, 0);
        r.read_exact(&mut buf[have..])?;
    }
    Ok(Some(()))
}

/// Blocking writer shared by the threads of a worker (over its socket) or of a cluster driver
/// (over TLS). Frames are encoded and written under one lock, so messages leave in the order
/// `send` was called.
pub(crate) struct BlockingSender<W = UnixStream> {
    inner: Mutex<(W, Vec<u8>)>,
}

impl<W: Write> BlockingSender<W> {
    pub(crate) fn new(stream: W) -> Self {
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

    /// Sends `msgs` in order with one write (frames encoded back to back).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn send_all<M: Serialize>(&self, msgs: &[M]) -> Result<()> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (stream, buf) = &mut *guard;
        buf.clear();
        for msg in msgs {
            codec::encode_frame(msg, buf)?;
        }
        let r = stream
            .write_all(buf)
            .map_err(|e| Error::io("writing to the node manager", e));
        if buf.capacity() > 1 << 20 {
            *buf = Vec::with_capacity(4096);
        }
        r
    }

    /// Runs `f` on the stream, between whole frames.
    pub(crate) fn with_stream<T>(&self, f: impl FnOnce(&mut W) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()).0)
    }

    /// Writes bytes as they are, between whole frames (attack tests).
    #[cfg(feature = "testing")]
    pub(crate) fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        self.with_stream(|s| s.write_all(bytes))
            .map_err(|e| Error::io("writing to the node manager", e))
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

    /// Sends a message (or queues it). A message that cannot be encoded is an
    /// `Error::Serialization`; sending on a closed connection does nothing.
    pub(crate) fn send<M: Serialize>(&self, msg: &M) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.writer_busy || !st.queued.is_empty() {
            let mark = st.queued.len();
            if let Err(e) = codec::encode_frame(msg, &mut st.queued) {
                st.queued.truncate(mark);
                return Err(e);
            }
            return Ok(());
        }
        let OutboxState {
            queued,
            writer_busy,
            scratch,
        } = &mut *st;
        scratch.clear();
        codec::encode_frame(msg, scratch)?;
        let mut done = 0;
        while done < scratch.len() {
            match (&self.inner.direct).write(&scratch[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.inner.closed.store(true, Ordering::Relaxed);
                    return Ok(());
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
        Ok(())
    }

    /// Closes the connection: what is queued is still written, then the socket is shut down;
    /// nothing more is read from it (its reader sees the end at once).
    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        let _ = self.inner.direct.shutdown(std::net::Shutdown::Read);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_announced_length_is_refused_without_allocating_it() {
        let mut data = (u32::MAX).to_le_bytes().to_vec();
        data.extend_from_slice(b"abc");
        let mut buf = Vec::new();
        let err = read_frame(&mut &data[..], &mut buf, MAX_FROM_WORKER).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn a_short_frame_is_an_unexpected_end_and_the_buffer_only_holds_what_came() {
        let mut data = (1000u32).to_le_bytes().to_vec();
        data.extend_from_slice(&[7u8; 10]);
        let mut buf = Vec::new();
        let err = read_frame(&mut &data[..], &mut buf, HELLO_MAX).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(buf.capacity() <= GROW_STEP);
        let mut big = (600u32 << 20).to_le_bytes().to_vec();
        big.extend_from_slice(&[1u8; 100_000]);
        let err = read_frame(&mut &big[..], &mut buf, MAX_FROM_WORKER).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(
            buf.capacity() <= 4 * 100_000,
            "grows with what arrives, not with what is announced: {}",
            buf.capacity()
        );
        let mut ok = (3u32).to_le_bytes().to_vec();
        ok.extend_from_slice(b"xyz");
        assert!(
            read_frame(&mut &ok[..], &mut buf, HELLO_MAX)
                .unwrap()
                .is_some()
        );
        assert_eq!(buf, b"xyz");
        assert!(
            read_frame(&mut &[][..], &mut buf, HELLO_MAX)
                .unwrap()
                .is_none()
        );
    }
}

/// A node manager's connection to one of its peers.
#[derive(Clone)]
pub(crate) enum Conn {
    /// A worker on this machine, over its socket pair.
    Local(Outbox),
    /// A remote client (a driver on another machine), over TLS.
    Stream(StreamOutbox),
}

impl Conn {
    pub(crate) fn send<M: Serialize>(&self, msg: &M) -> Result<()> {
        match self {
            Conn::Local(o) => o.send(msg),
            Conn::Stream(o) => o.send(msg),
        }
    }

    pub(crate) fn close(&self) {
        match self {
            Conn::Local(o) => o.close(),
            Conn::Stream(o) => o.close(),
        }
    }
}
