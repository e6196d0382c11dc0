//! A client's TLS connection used from plain threads once the async handshake is done.
//!
//! A driver's calls are synchronous: its thread encrypts and writes a request itself instead of
//! handing it to a runtime thread, which saves a thread wake-up per call (the largest cost of a
//! round trip on an idle machine). [`into_blocking`] turns the stream of a [`crate::connect`]ed
//! [`crate::Connection`] into a [`BlockingReader`] (one thread reads) and a [`BlockingWriter`]
//! (writes from any thread, one at a time); both share the rustls connection under a lock that
//! is never held across a system call, so a reader blocked on the socket never stops a writer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
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
    };
    Ok((reader, writer))
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

/// Each write encrypts all of `bytes` and sends it (blocking while the peer is not reading).
impl Write for BlockingWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        for chunk in bytes.chunks(SEAL_CHUNK) {
            self.sealed.clear();
            {
                let mut conn = lock(&self.conn);
                conn.writer().write_all(chunk)?;
                while conn.wants_write() {
                    conn.write_tls(&mut self.sealed)?;
                }
            }
            self.sock.write_all(&self.sealed)?;
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

impl BlockingWriter {
    /// Sends the TLS close and shuts the socket down both ways (the reader then sees its end).
    pub fn close(&mut self) {
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
