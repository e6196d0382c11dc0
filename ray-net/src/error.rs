//! The crate's one error type.
//!
//! No variant ever carries the auth token, a proof derived from it, or text that could contain
//! either (token parse errors report lengths and positions only).

use std::path::PathBuf;
use std::time::Duration;

/// Why a handshake was refused, as sent to the peer in a refusal message and reported locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The peer's proof did not match this side's cluster token.
    WrongToken,
    /// The peer speaks another protocol version.
    Version {
        /// The version the refused side sent.
        peer: u32,
        /// The version the refusing side speaks.
        expected: u32,
    },
    /// The peer belongs to another cluster.
    ClusterId {
        /// The cluster id the refused side sent.
        peer: String,
        /// The refusing side's cluster id.
        expected: String,
    },
    /// Anything else (a malformed message, a role that is not accepted here...).
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::WrongToken => write!(f, "wrong cluster token"),
            Refusal::Version { peer, expected } => {
                write!(f, "protocol version {peer}, expected {expected}")
            }
            Refusal::ClusterId { peer, expected } => {
                // Quoted and escaped: the peer chose that text, and it goes into logs.
                write!(f, "different cluster id: {peer:?}, expected {expected:?}")
            }
            Refusal::Other(reason) => write!(f, "{reason}"),
        }
    }
}

/// Errors of `ray-net`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// This side refused the peer during the handshake (the peer was told why).
    #[error("refused {peer}: {reason}")]
    RefusedPeer {
        /// The peer's address.
        peer: String,
        /// Which check failed.
        reason: Refusal,
    },
    /// The peer refused this side during the handshake.
    #[error("refused by {peer}: {reason}")]
    RefusedByPeer {
        /// The peer's address.
        peer: String,
        /// Which check failed, as the peer reported it.
        reason: Refusal,
    },
    /// A frame announced more bytes than allowed here.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The peer closed the connection.
    #[error("connection closed by the peer {during}")]
    Closed {
        /// What was in progress.
        during: &'static str,
    },
    /// The TLS handshake plus the ray-net handshake did not finish in time.
    #[error("handshake with {peer} did not complete within {timeout:?}")]
    HandshakeTimeout {
        /// The peer's address.
        peer: String,
        /// The limit in force.
        timeout: Duration,
    },
    /// A handshake message could not be decoded.
    #[error("malformed handshake message from {peer}: {detail}")]
    Malformed {
        /// The peer's address.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// A rustls error (configuration or protocol).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A PEM input could not be used.
    #[error("{what}: {detail}")]
    Pem {
        /// Which input (file name or role).
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The auth token's text form is invalid (the message never includes the text).
    #[error("{source_name} is not a ray-rs cluster token: {detail}")]
    BadToken {
        /// Where the text came from (`RAY_RS_AUTH_TOKEN` or a file name).
        source_name: String,
        /// What is wrong, by length or position only.
        detail: String,
    },
    /// The token file is unusable (wrong owner, permissions, a symlink...).
    #[error("auth token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No token in `RAY_RS_AUTH_TOKEN` nor in the token file.
    #[error(
        "no cluster auth token: set RAY_RS_AUTH_TOKEN (e.g. RAY_RS_AUTH_TOKEN=$(cat {path}) on the head's machine) or create {path}"
    )]
    NoToken {
        /// The token file looked at.
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("the system random number generator failed")]
    Random,
}

impl NetError {
    /// An [`NetError::Io`] with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NetError::Io {
            context: context.into(),
            source,
        }
    }

    /// The refusal, when this error is a handshake refusal by either side.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            NetError::RefusedPeer { reason, .. } | NetError::RefusedByPeer { reason, .. } => {
                Some(reason)
            }
            _ => None,
        }
    }
}
