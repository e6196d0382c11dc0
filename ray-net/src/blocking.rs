//! A client's TLS connection used from plain threads once the async handshake is done.
//!
//! A driver's calls are synchronous: its thread encrypts and writes a request itself instead of
//! handing it to a runtime thread, which saves a thread wake-up per call (the largest cost of a
//! round trip on an idle machine). [`into_blocking`] turns the stream of a [`crate::connect`]ed
//! [`crate::Connection`] into a [`BlockingReader`] (one thread reads) and a [`BlockingWriter`]
//! (writes from any thread, one at a time); both share the rustls connection under a lock that
//! is never held across a system call, so a reader blocked on the socket never stops a writer.
//!
//! A writer may have a stall limit ([`BlockingWriter::set_stall_limit`]): a peer that stops
//! reading then fails the write instead of blocking the writing thread for good.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_rustls::TlsStream;

/// Plaintext is encrypted this much at a time, so the lock is held briefly.
const SEAL_CHUNK: usize = 256 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

type Shared = Arc<Mutex<rustls::ClientConnection>>;

fn lock(conn: &Shared) -> MutexGuard<'_, rustls::ClientConnection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reading half: plaintext as [`Read`]; `Ok(0)` once the peer has closed.
pub struct BlockingReader {
    conn: Shared,
    sock: TcpStream,
    raw: Vec<u8>,
    fed: usize,
}

/// The writing half: [`Write`] encrypts and sends.
pub struct BlockingWriter {
    conn: Shared,
    sock: TcpStream,
    sealed: Vec<u8>,
    /// See [`BlockingWriter::set_stall_limit`].
    stall: Option<Duration>,
    /// A write failed part-way: the TLS stream is cut inside a record, so nothing more can be
    /// sent on it.
    broken: bool,
}

/// Splits a client connection's stream (past [`crate::connect`]'s handshake) into blocking halves.
/// Plaintext the connection has already received stays readable.
pub fn into_blocking(
    stream: TlsStream<tokio::net::TcpStream>,
) -> io::Result<(BlockingReader, BlockingWriter)> {
    let TlsStream::Client(stream) = stream else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a server's stream cannot be made a blocking client",
        ));
    };
    let (tcp, mut conn) = stream.into_inner();
    let tcp = tcp.into_std()?;
    tcp.set_nonblocking(false)?;
    // Each write is sealed in chunks below; rustls need not cap what it buffers.
    conn.set_buffer_limit(None);
    let conn = Arc::new(Mutex::new(conn));
    let reader = BlockingReader {
        conn: conn.clone(),
        sock: tcp.try_clone()?,
        raw: Vec::new(),
        fed: 0,
    };
    let writer = BlockingWriter {
        conn,
        sock: tcp,
        sealed: Vec::new(),
        stall: None,
        broken: false,
    };
    Ok((reader, writer))
}

impl BlockingReader {
    /// Whether a read may return without the socket having anything new: bytes received and
    /// not yet decrypted, plaintext not yet read, or the peer's TLS close. A thread that polls
    /// the socket before it reads must read first while this is true.
    pub fn has_buffered(&self) -> bool {
        if self.fed < self.raw.len() {
            return true;
        }
        match lock(&self.conn).process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            // Let the read report it.
            Err(_) => true,
        }
    }
}

/// The socket's descriptor, to poll it (reading stays with [`Read`]).
impl std::os::fd::AsRawFd for BlockingReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }
}

impl Read for BlockingReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut conn = lock(&self.conn);
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // No plaintext: feed what was read from the socket, a record at a time, so
                // rustls's plaintext buffer never fills.
                if self.fed < self.raw.len() {
                    let mut rest = &self.raw[self.fed..];
                    let n = conn.read_tls(&mut rest)?;
                    self.fed += n;
                    conn.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "TLS took none of the bytes received",
                        ));
                    }
                    continue;
                }
            }
            self.raw.resize(READ_CHUNK, 0);
            let n = loop {
                match self.sock.read(&mut self.raw) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            self.raw.truncate(n);
            self.fed = 0;
            if n == 0 {
                // The socket ended: what rustls says about it (a close_notify or not).
                let mut conn = lock(&self.conn);
                let mut empty: &[u8] = &[];
                conn.read_tls(&mut empty)?;
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                return match conn.reader().read(out) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    r => r,
                };
            }
        }
    }
}

/// Each write encrypts all of `bytes` and sends it (blocking while the peer is not reading, up
/// to the [stall limit](BlockingWriter::set_stall_limit)). After a write that failed, every
/// later one fails at once: the stream was cut inside a record.
impl Write for BlockingWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write on this connection failed part-way",
            ));
        }
        let mut progress = self.stall.map(Progress::new);
        for chunk in bytes.chunks(SEAL_CHUNK) {
            self.sealed.clear();
            {
                let mut conn = lock(&self.conn);
                conn.writer().write_all(chunk)?;
                while conn.wants_write() {
                    conn.write_tls(&mut self.sealed)?;
                }
            }
            if let Err(e) = self.send_sealed(&mut progress) {
                self.broken = true;
                return Err(e);
            }
        }
        if self.sealed.capacity() > 4 * SEAL_CHUNK {
            self.sealed = Vec::new();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fewer bytes than this accepted within the stall limit is a stall: a peer that stopped
/// reading may still let a few bytes through now and then (its kernel shrinks the buffered
/// data and reopens the window a little), which must not keep a write going for ever.
pub const STALL_MIN_BYTES: usize = 64 * 1024;

/// Blocking sends wait at most this long at a time, so the stall limit is checked this often.
const SEND_SLICE: Duration = Duration::from_secs(1);

/// The progress of one write under a stall limit.
struct Progress {
    limit: Duration,
    /// When [`STALL_MIN_BYTES`] last moved (or the write began).
    mark: Instant,
    /// Bytes moved since `mark`.
    moved: usize,
}

impl Progress {
    fn new(limit: Duration) -> Self {
        Progress {
            limit,
            mark: Instant::now(),
            moved: 0,
        }
    }

    fn moved(&mut self, n: usize) {
        self.moved += n;
        if self.moved >= STALL_MIN_BYTES {
            self.mark = Instant::now();
            self.moved = 0;
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.mark.elapsed() < self.limit {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the peer accepted under {} KiB in {} s",
                STALL_MIN_BYTES / 1024,
                self.limit.as_secs_f64()
            ),
        ))
    }
}

impl BlockingWriter {
    /// Sends `self.sealed`, under the stall limit if there is one.
    fn send_sealed(&mut self, progress: &mut Option<Progress>) -> io::Result<()> {
        let Some(progress) = progress else {
            return self.sock.write_all(&self.sealed);
        };
        let mut rest = &self.sealed[..];
        while !rest.is_empty() {
            match self.sock.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    rest = &rest[n..];
                    progress.moved(n);
                }
                // SO_SNDTIMEO: a send slice passed without room in the socket.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
            if !rest.is_empty() {
                progress.check()?;
            }
        }
        Ok(())
    }

    /// Makes a write fail with `TimedOut` once the peer has accepted under
    /// [`STALL_MIN_BYTES`] of it in `limit` (a deadline on progress, not on the whole write;
    /// `None`, the default: wait for ever), so a peer that stops reading cannot block the
    /// writing thread for good. The connection is then unusable for writing:
    /// [`abort`](Self::abort) it.
    ///
    /// ```no_run
    /// # fn f(mut writer: ray_net::BlockingWriter) -> std::io::Result<()> {
    /// writer.set_stall_limit(Some(std::time::Duration::from_secs(60)))?;
    /// # Ok(()) }
    /// ```
    pub fn set_stall_limit(&mut self, limit: Option<Duration>) -> io::Result<()> {
        self.sock
            .set_write_timeout(limit.map(|l| l.min(SEND_SLICE)))?;
        self.stall = limit;
        Ok(())
    }

    /// Shuts the socket down both ways without a TLS close (which could not be sent after a
    /// failed write): the reader sees its end.
    pub fn abort(&mut self) {
        self.broken = true;
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    /// Sends the TLS close and shuts the socket down both ways (the reader then sees its end).
    /// After a failed write, only shuts it down.
    pub fn close(&mut self) {
        if self.broken {
            self.abort();
            return;
        }
        self.sealed.clear();
        {
            let mut conn = lock(&self.conn);
            conn.send_close_notify();
            while conn.wants_write() {
                if conn.write_tls(&mut self.sealed).is_err() {
                    break;
                }
            }
        }
        let _ = self.sock.write_all(&self.sealed);
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}
