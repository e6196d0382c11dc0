//! The first messages on every connection between ray-rs processes on different machines.
//!
//! # Design
//!
//! After the TLS 1.3 handshake, inside the TLS session, in frames of at most
//! [`HANDSHAKE_MAX_FRAME`] bytes, the whole exchange (TLS included) bounded by
//! [`HandshakeConfig::timeout`]:
//!
//! 1. client → server: [`Hello`] (magic, protocol version, role, cluster id if known, a name).
//! 2. server → client: its own `Hello`, or a refusal (protocol version, cluster id).
//! 3. client → server: `Proof(HMAC-SHA256(token, X || "client"))`, where `X` is 32 bytes of
//!    this TLS session's exporter keying material (RFC 8446 §7.5, label
//!    `EXPORTER-ray-rs-auth-v1`).
//! 4. server: checks the proof in constant time; wrong → refusal "wrong cluster token".
//!    Right → `Proof(HMAC-SHA256(token, X || "server"))`.
//! 5. client: checks the server's proof; wrong → refusal "wrong cluster token". Right →
//!    `Accept`, and both sides hand the stream to the caller.
//!
//! The token itself never crosses the wire. Each proof is bound to one TLS session: a man in the
//! middle (possible when a joining node does not have the cluster CA yet and so cannot verify the
//! server's certificate) terminates two sessions with different exporter values, so it can
//! neither compute proofs nor relay the honest ones. So both ends are authenticated by the
//! token even before the joiner has the CA. The client proves first, so an unauthenticated
//! client learns nothing from the server; a fake server learns one HMAC of a 256-bit random key,
//! which does not help guessing it.
//!
//! Refusals name the check that failed and are reported on both sides: the refused side gets
//! [`NetError::RefusedByPeer`], the refusing side [`NetError::RefusedPeer`]. Nothing runs before
//! the handshake has succeeded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::error::{NetError, Refusal};
use crate::frame::{HANDSHAKE_MAX_FRAME, read_frame, write_frame};
use crate::token::AuthToken;

/// The version of the ray-rs wire protocol spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;

/// How long the TLS handshake plus the ray-net handshake may take by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

const MAGIC: &[u8; 6] = b"ray-rs";
const EXPORTER_LABEL: &[u8] = b"EXPORTER-ray-rs-auth-v1";
const CLIENT_LABEL: &[u8] = b"ray-rs client proof";
const SERVER_LABEL: &[u8] = b"ray-rs server proof";
const MAX_STRING: usize = 1024;

const T_HELLO: u8 = 1;
const T_PROOF: u8 = 2;
const T_ACCEPT: u8 = 3;
const T_REFUSE: u8 = 4;

/// What kind of process is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A node daemon (node manager).
    Node,
    /// A driver (a user's program).
    Driver,
    /// The `ray-rs` command line (status, stop...).
    Cli,
}

impl Role {
    fn to_byte(self) -> u8 {
        match self {
            Role::Node => 1,
            Role::Driver => 2,
            Role::Cli => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Role> {
        match b {
            1 => Some(Role::Node),
            2 => Some(Role::Driver),
            3 => Some(Role::Cli),
            _ => None,
        }
    }
}

/// The first message of each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The sender's cluster id; `None` from a client that does not know it yet (a joining node).
    pub cluster_id: Option<String>,
    /// What the sender is.
    pub role: Role,
    /// A free-form name for logs (a node id, a program name); at most 1 KiB.
    pub name: String,
}

/// One side's parameters for the handshake.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// The cluster token (never sent).
    pub token: AuthToken,
    /// This side's cluster id. A server always has one; a client without one accepts the
    /// server's and learns it from its `Hello`.
    pub cluster_id: Option<String>,
    /// What this side is.
    pub role: Role,
    /// Sent in the `Hello`, for the peer's logs.
    pub name: String,
    /// Limit for the TLS handshake plus this handshake.
    pub timeout: Duration,
    /// The version announced and expected; [`PROTOCOL_VERSION`] except in tests.
    pub protocol_version: u32,
}

impl HandshakeConfig {
    /// A configuration with the default timeout and protocol version.
    pub fn new(
        token: AuthToken,
        cluster_id: Option<String>,
        role: Role,
        name: impl Into<String>,
    ) -> Self {
        HandshakeConfig {
            token,
            cluster_id,
            role,
            name: name.into(),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            protocol_version: PROTOCOL_VERSION,
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            protocol_version: self.protocol_version,
            cluster_id: self.cluster_id.clone(),
            role: self.role,
            name: self.name.clone(),
        }
    }
}

/// An authenticated connection: frames written to and read from `stream` (with
/// [`crate::write_frame`] / [`crate::read_frame`]) are the caller's.
pub struct Connection {
    /// The TLS stream, past the handshake.
    pub stream: TlsStream<TcpStream>,
    /// The peer's `Hello`.
    pub peer: Hello,
    /// The peer's address.
    pub peer_addr: SocketAddr,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Sends one frame.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), NetError> {
        write_frame(&mut self.stream, payload).await
    }

    /// Receives one frame of at most `max` bytes.
    pub async fn recv(&mut self, max: usize) -> Result<Vec<u8>, NetError> {
        read_frame(&mut self.stream, max).await
    }
}

/// Connects to `addr` over TCP + TLS and runs the client side of the handshake.
pub async fn connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    config: &HandshakeConfig,
) -> Result<Connection, NetError> {
    let peer = addr.to_string();
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| NetError::io(format!("connecting to {addr}"), e))?;
        let _ = tcp.set_nodelay(true);
        let mut tls_stream = TlsConnector::from(tls)
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| NetError::io(format!("TLS handshake with {addr}"), e))?;
        let exporter = export(tls_stream.get_ref().1.export_keying_material(
            [0u8; 32],
            EXPORTER_LABEL,
            None,
        ))?;
        let peer_hello = client_exchange(&mut tls_stream, &exporter, config, &peer).await?;
        Ok(Connection {
            stream: TlsStream::Client(tls_stream),
            peer: peer_hello,
            peer_addr: addr,
        })
    };
    tokio::time::timeout(config.timeout, work)
        .await
        .map_err(|_| NetError::HandshakeTimeout {
            peer,
            timeout: config.timeout,
        })?
}

/// Runs the server side (TLS, then the handshake) on an accepted TCP stream.
pub async fn accept(
    tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    config: &HandshakeConfig,
) -> Result<Connection, NetError> {
    let peer_addr = tcp
        .peer_addr()
        .map_err(|e| NetError::io("reading the peer's address", e))?;
    let peer = peer_addr.to_string();
    let work = async {
        let _ = tcp.set_nodelay(true);
        let mut tls_stream = TlsAcceptor::from(tls)
            .accept(tcp)
            .await
            .map_err(|e| NetError::io(format!("TLS handshake with {peer_addr}"), e))?;
        let exporter = export(tls_stream.get_ref().1.export_keying_material(
            [0u8; 32],
            EXPORTER_LABEL,
            None,
        ))?;
        let peer_hello = server_exchange(&mut tls_stream, &exporter, config, &peer).await?;
        Ok(Connection {
            stream: TlsStream::Server(tls_stream),
            peer: peer_hello,
            peer_addr,
        })
    };
    tokio::time::timeout(config.timeout, work)
        .await
        .map_err(|_| NetError::HandshakeTimeout {
            peer,
            timeout: config.timeout,
        })?
}

fn export(result: Result<[u8; 32], rustls::Error>) -> Result<[u8; 32], NetError> {
    result.map_err(NetError::Tls)
}

/// The client side of the handshake over an established TLS stream whose exporter value is
/// `exporter`. Returns the server's `Hello`.
pub async fn client_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    exporter: &[u8; 32],
    config: &HandshakeConfig,
    peer: &str,
) -> Result<Hello, NetError> {
    send(stream, &Msg::Hello(config.hello())).await?;
    let server_hello = match recv(stream, peer).await? {
        Msg::Hello(h) => h,
        Msg::OtherVersion(version) => {
            let reason = Refusal::Version {
                peer: version,
                expected: config.protocol_version,
            };
            return refuse(stream, peer, reason).await;
        }
        Msg::Refuse(reason) => return Err(by_peer(peer, reason)),
        other => return refuse(stream, peer, unexpected("a Hello", &other)).await,
    };
    if server_hello.protocol_version != config.protocol_version {
        let reason = Refusal::Version {
            peer: server_hello.protocol_version,
            expected: config.protocol_version,
        };
        return refuse(stream, peer, reason).await;
    }
    if let (Some(ours), Some(theirs)) = (&config.cluster_id, &server_hello.cluster_id)
        && ours != theirs
    {
        let reason = Refusal::ClusterId {
            peer: theirs.clone(),
            expected: ours.clone(),
        };
        return refuse(stream, peer, reason).await;
    }
    let proof = config.token.hmac(&[exporter, CLIENT_LABEL]);
    send(stream, &Msg::Proof(proof.as_ref().to_vec())).await?;
    match recv(stream, peer).await? {
        Msg::Proof(p) if config.token.verify_hmac(&[exporter, SERVER_LABEL], &p) => {}
        Msg::Proof(_) => return refuse(stream, peer, Refusal::WrongToken).await,
        Msg::Refuse(reason) => return Err(by_peer(peer, reason)),
        other => return refuse(stream, peer, unexpected("a Proof", &other)).await,
    }
    send(stream, &Msg::Accept).await?;
    Ok(server_hello)
}

/// The server side of the handshake over an established TLS stream whose exporter value is
/// `exporter`. Returns the client's `Hello`. The server's config must have a cluster id.
pub async fn server_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    exporter: &[u8; 32],
    config: &HandshakeConfig,
    peer: &str,
) -> Result<Hello, NetError> {
    let client_hello = match recv(stream, peer).await {
        Ok(Msg::Hello(h)) => h,
        Ok(Msg::OtherVersion(version)) => {
            // A Hello of another version: its version is readable, the rest may not be.
            let reason = Refusal::Version {
                peer: version,
                expected: config.protocol_version,
            };
            return refuse(stream, peer, reason).await;
        }
        Ok(other) => return refuse(stream, peer, unexpected("a Hello", &other)).await,
        Err(e @ NetError::Malformed { .. }) => {
            let reason = Refusal::Other(e.to_string());
            let _ = send(stream, &Msg::Refuse(reason)).await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if client_hello.protocol_version != config.protocol_version {
        let reason = Refusal::Version {
            peer: client_hello.protocol_version,
            expected: config.protocol_version,
        };
        return refuse(stream, peer, reason).await;
    }
    if let (Some(ours), Some(theirs)) = (&config.cluster_id, &client_hello.cluster_id)
        && ours != theirs
    {
        let reason = Refusal::ClusterId {
            peer: theirs.clone(),
            expected: ours.clone(),
        };
        return refuse(stream, peer, reason).await;
    }
    send(stream, &Msg::Hello(config.hello())).await?;
    match recv(stream, peer).await? {
        Msg::Proof(p) if config.token.verify_hmac(&[exporter, CLIENT_LABEL], &p) => {}
        Msg::Proof(_) => return refuse(stream, peer, Refusal::WrongToken).await,
        Msg::Refuse(reason) => return Err(by_peer(peer, reason)),
        other => return refuse(stream, peer, unexpected("a Proof", &other)).await,
    }
    let proof = config.token.hmac(&[exporter, SERVER_LABEL]);
    send(stream, &Msg::Proof(proof.as_ref().to_vec())).await?;
    match recv(stream, peer).await? {
        Msg::Accept => Ok(client_hello),
        Msg::Refuse(reason) => Err(by_peer(peer, reason)),
        other => refuse(stream, peer, unexpected("Accept", &other)).await,
    }
}

fn by_peer(peer: &str, reason: Refusal) -> NetError {
    NetError::RefusedByPeer {
        peer: peer.to_string(),
        reason,
    }
}

fn unexpected(wanted: &str, got: &Msg) -> Refusal {
    let got = match got {
        Msg::Hello(_) | Msg::OtherVersion(_) => "a Hello",
        Msg::Proof(_) => "a Proof",
        Msg::Accept => "Accept",
        Msg::Refuse(_) => "a refusal",
    };
    Refusal::Other(format!(
        "handshake out of order: expected {wanted}, got {got}"
    ))
}

/// Tells the peer why it is refused, closes the stream, and returns the matching error.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin, T>(
    stream: &mut S,
    peer: &str,
    reason: Refusal,
) -> Result<T, NetError> {
    let _ = send(stream, &Msg::Refuse(reason.clone())).await;
    let _ = stream.shutdown().await;
    tracing::warn!("refused {peer}: {reason}");
    Err(NetError::RefusedPeer {
        peer: peer.to_string(),
        reason,
    })
}

#[derive(Debug)]
enum Msg {
    Hello(Hello),
    /// A Hello announcing another protocol version (only the version is decoded).
    OtherVersion(u32),
    Proof(Vec<u8>),
    Accept,
    Refuse(Refusal),
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, msg: &Msg) -> Result<(), NetError> {
    write_frame(stream, &encode(msg)).await
}

async fn recv<S: AsyncRead + Unpin>(stream: &mut S, peer: &str) -> Result<Msg, NetError> {
    let frame = read_frame(stream, HANDSHAKE_MAX_FRAME).await?;
    decode(&frame).map_err(|detail| NetError::Malformed {
        peer: peer.to_string(),
        detail,
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..floor_char_boundary(s, MAX_STRING)];
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s);
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

fn encode(msg: &Msg) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match msg {
        Msg::Hello(h) => {
            out.push(T_HELLO);
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&h.protocol_version.to_le_bytes());
            out.push(h.role.to_byte());
            match &h.cluster_id {
                Some(id) => {
                    out.push(1);
                    put_str(&mut out, id);
                }
                None => out.push(0),
            }
            put_str(&mut out, &h.name);
        }
        Msg::Proof(p) => {
            out.push(T_PROOF);
            out.extend_from_slice(p);
        }
        Msg::OtherVersion(v) => {
            // Only for tests of version checks: a Hello with just the magic and a version.
            out.push(T_HELLO);
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Msg::Accept => out.push(T_ACCEPT),
        Msg::Refuse(r) => {
            out.push(T_REFUSE);
            match r {
                Refusal::WrongToken => out.push(1),
                Refusal::Version { peer, expected } => {
                    out.push(2);
                    out.extend_from_slice(&peer.to_le_bytes());
                    out.extend_from_slice(&expected.to_le_bytes());
                }
                Refusal::ClusterId { peer, expected } => {
                    out.push(3);
                    put_str(&mut out, peer);
                    put_str(&mut out, expected);
                }
                Refusal::Other(reason) => {
                    out.push(4);
                    put_str(&mut out, reason);
                }
            }
        }
    }
    out
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("message too short".to_string());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, String> {
        let b = self.take(2)?;
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        if len > MAX_STRING {
            return Err(format!("string of {len} bytes exceeds {MAX_STRING}"));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.0.len()))
        }
    }
}

fn decode(frame: &[u8]) -> Result<Msg, String> {
    let mut c = Cursor(frame);
    let msg = match c.u8()? {
        T_HELLO => {
            if c.take(MAGIC.len())? != MAGIC {
                return Err("not a ray-rs peer (bad magic)".to_string());
            }
            let protocol_version = c.u32()?;
            if protocol_version != PROTOCOL_VERSION {
                // The rest may be laid out differently: report the version only.
                return Ok(Msg::OtherVersion(protocol_version));
            }
            let role = Role::from_byte(c.u8()?).ok_or("unknown role")?;
            let cluster_id = match c.u8()? {
                0 => None,
                1 => Some(c.string()?),
                _ => return Err("bad cluster id flag".to_string()),
            };
            let name = c.string()?;
            Msg::Hello(Hello {
                protocol_version,
                cluster_id,
                role,
                name,
            })
        }
        T_PROOF => {
            let p = c.take(32)?.to_vec();
            Msg::Proof(p)
        }
        T_ACCEPT => Msg::Accept,
        T_REFUSE => Msg::Refuse(match c.u8()? {
            1 => Refusal::WrongToken,
            2 => Refusal::Version {
                peer: c.u32()?,
                expected: c.u32()?,
            },
            3 => Refusal::ClusterId {
                peer: c.string()?,
                expected: c.string()?,
            },
            4 => Refusal::Other(c.string()?),
            code => return Err(format!("unknown refusal code {code}")),
        }),
        t => return Err(format!("unknown message type {t}")),
    };
    c.end()?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: Some("abc".into()),
            role: Role::Driver,
            name: "é".repeat(600),
        };
        let Msg::Hello(back) = decode(&encode(&Msg::Hello(hello.clone()))).unwrap() else {
            panic!()
        };
        assert_eq!(back.cluster_id, hello.cluster_id);
        assert_eq!(back.name.len(), 1024);
        for r in [
            Refusal::WrongToken,
            Refusal::Version {
                peer: 3,
                expected: 2,
            },
            Refusal::ClusterId {
                peer: "a".into(),
                expected: "b".into(),
            },
            Refusal::Other("x".into()),
        ] {
            let Msg::Refuse(back) = decode(&encode(&Msg::Refuse(r.clone()))).unwrap() else {
                panic!()
            };
            assert_eq!(back, r);
        }
        let other = PROTOCOL_VERSION + 7;
        assert!(matches!(
            decode(&encode(&Msg::OtherVersion(other))),
            Ok(Msg::OtherVersion(v)) if v == other
        ));
        assert!(decode(&[T_PROOF, 1, 2]).is_err());
        assert!(decode(&[T_ACCEPT, 0]).is_err());
        assert!(decode(&[9]).is_err());
    }
}
