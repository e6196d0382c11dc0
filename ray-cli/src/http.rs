//! A small blocking HTTP/1.1 client for etcd's JSON gateway: `POST` with a JSON body, over TCP
//! or TLS (rustls), one connection per request (`Connection: close`), every read bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::error::{CliError, Result};

/// Longest status line or header line accepted.
const MAX_LINE: usize = 8 << 10;
/// Most header lines accepted.
const MAX_HEADERS: usize = 64;

/// Where requests go.
#[derive(Clone)]
pub struct Target {
    /// `http://host:port` or `https://host:port`, for messages.
    pub url: String,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// A readable and writable byte stream (TCP or TLS over TCP).
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// An open connection: the stream, and a handle on its socket to shut it down from elsewhere.
pub struct Conn {
    /// The (possibly TLS) stream.
    pub stream: Box<dyn Stream>,
    /// The underlying socket.
    pub socket: TcpStream,
}

impl Target {
    /// Parses `http://host:port` or `https://host:port` (a trailing `/` is allowed). `tls` is
    /// required for `https`.
    pub fn parse(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self> {
        let bad = |reason: &str| CliError::BadArg {
            flag: "--etcd",
            value: url.to_string(),
            reason: format!("{reason}; expected http://HOST:PORT or https://HOST:PORT"),
        };
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("unknown scheme"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() || rest.contains('/') {
            return Err(bad("bad host"));
        }
        let tls = if https {
            Some(tls.ok_or_else(|| bad("https needs the cluster's TLS files"))?)
        } else {
            None
        };
        Ok(Target {
            url: url.trim_end_matches('/').to_string(),
            host,
            port,
            tls,
        })
    }

    fn err(&self, detail: impl Into<String>) -> CliError {
        CliError::Http {
            endpoint: self.url.clone(),
            detail: detail.into(),
        }
    }

    /// Opens a connection (TCP, then TLS for https) with `timeout` for connecting and for each
    /// read and write (`None`: reads block).
    pub fn open(&self, timeout: Option<Duration>) -> Result<Conn> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.err(format!("resolving: {e}")))?
            .collect();
        let mut last = None;
        let mut socket = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout.unwrap_or(Duration::from_secs(10))) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let socket = socket.ok_or_else(|| {
            self.err(format!(
                "connecting: {}",
                last.map(|e| e.to_string())
                    .unwrap_or_else(|| "no address".into())
            ))
        })?;
        socket
            .set_read_timeout(timeout)
            .and_then(|()| socket.set_write_timeout(timeout))
            .map_err(|e| self.err(format!("socket options: {e}")))?;
        let _ = socket.set_nodelay(true);
        let handle = socket
            .try_clone()
            .map_err(|e| self.err(format!("socket clone: {e}")))?;
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(socket),
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| self.err(format!("server name: {e}")))?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| self.err(format!("TLS: {e}")))?;
                Box::new(rustls::StreamOwned::new(conn, socket))
            }
        };
        Ok(Conn {
            stream,
            socket: handle,
        })
    }

    /// Sends `POST path` with a JSON body on `conn` and reads the status and headers. Returns
    /// the status code and a reader of the body (chunked or sized), whose reads are bounded by
    /// `max_body` in total.
    pub fn post_on(
        &self,
        conn: Conn,
        path: &str,
        body: &[u8],
        max_body: u64,
    ) -> Result<(u16, Body)> {
        let Conn { mut stream, socket } = conn;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            self.port,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .and_then(|()| stream.flush())
            .map_err(|e| self.err(format!("sending {path}: {e}")))?;
        let mut reader = BufReader::new(stream);
        let status_line = read_line(&mut reader).map_err(|e| self.err(format!("{path}: {e}")))?;
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| self.err(format!("{path}: bad status line")))?;
        let mut length = None;
        let mut chunked = false;
        for i in 0.. {
            if i > MAX_HEADERS {
                return Err(self.err(format!("{path}: too many headers")));
            }
            let line = read_line(&mut reader).map_err(|e| self.err(format!("{path}: {e}")))?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(self.err(format!("{path}: bad header line")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| self.err(format!("{path}: bad Content-Length")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
        let kind = if chunked {
            BodyKind::Chunked {
                remaining: 0,
                done: false,
            }
        } else if let Some(len) = length {
            if len > max_body {
                return Err(self.err(format!("{path}: body of {len} bytes exceeds {max_body}")));
            }
            BodyKind::Sized { remaining: len }
        } else {
            BodyKind::UntilClose
        };
        Ok((
            status,
            Body {
                reader,
                kind,
                budget: max_body,
                socket,
            },
        ))
    }

    /// `POST path` with a JSON body; returns the status and the whole body (at most
    /// `max_body` bytes).
    pub fn post(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
        max_body: u64,
    ) -> Result<(u16, Vec<u8>)> {
        let conn = self.open(Some(timeout))?;
        let (status, mut body) = self.post_on(conn, path, body, max_body)?;
        let mut out = Vec::new();
        body.read_to_end(&mut out)
            .map_err(|e| self.err(format!("{path}: reading the body: {e}")))?;
        Ok((status, out))
    }
}

fn read_line<R: BufRead>(reader: &mut R) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let n = reader
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if !buf.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long or truncated",
        ));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

enum BodyKind {
    Sized { remaining: u64 },
    Chunked { remaining: u64, done: bool },
    UntilClose,
}

/// A response body: decodes chunked transfer encoding, stops at the announced length, and
/// fails once more than its budget has been read.
pub struct Body {
    reader: BufReader<Box<dyn Stream>>,
    kind: BodyKind,
    budget: u64,
    socket: TcpStream,
}

impl Body {
    /// A handle on the socket, to shut it down from another thread (which ends a blocked read).
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let want = match &mut self.kind {
            BodyKind::Sized { remaining } => {
                if *remaining == 0 {
                    return Ok(0);
                }
                (*remaining).min(buf.len() as u64)
            }
            BodyKind::Chunked { remaining, done } => {
                if *done {
                    return Ok(0);
                }
                if *remaining == 0 {
                    let line = read_line(&mut self.reader)?;
                    let line = if line.is_empty() {
                        // The CRLF closing the previous chunk.
                        read_line(&mut self.reader)?
                    } else {
                        line
                    };
                    let size_text = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
                    })?;
                    if size == 0 {
                        *done = true;
                        return Ok(0);
                    }
                    *remaining = size;
                }
                (*remaining).min(buf.len() as u64)
            }
            BodyKind::UntilClose => buf.len() as u64,
        };
        if self.budget == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response body exceeds its limit",
            ));
        }
        let want = want.min(self.budget) as usize;
        let n = self.reader.read(&mut buf[..want])?;
        if n == 0 && !matches!(self.kind, BodyKind::UntilClose) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside the body",
            ));
        }
        self.budget -= n as u64;
        match &mut self.kind {
            BodyKind::Sized { remaining } | BodyKind::Chunked { remaining, .. } => {
                *remaining -= n as u64
            }
            BodyKind::UntilClose => {}
        }
        Ok(n)
    }
}
