//! Cross-machine connections for ray-rs.
//!
//! What a driver, a node daemon and the `ray-rs` command line all need to talk to each other
//! across machines, with no gRPC/protobuf stack (a user's crate depends on this crate through
//! `ray-core`, so its dependencies stay lean: rustls with the `ring` provider and tokio):
//!
//! - [`AuthToken`]: the cluster's 256-bit secret, its text form, its file
//!   (`<temp-dir>/auth_token`, mode 0600) and `RAY_RS_AUTH_TOKEN`.
//! - [`tls`]: rustls server and client configurations from PEM files (TLS 1.3 only).
//! - [`handshake`]: the first messages on every connection: a versioned [`Hello`], then a mutual
//!   proof of knowledge of the token bound to the TLS session (see the module docs for the
//!   design), all bounded in size and time.
//! - [`blocking`]: a client connection past its handshake, used from plain threads.
//! - [`frame`]: `u32`-LE length-prefixed frames over any tokio stream, read incrementally with a
//!   configurable maximum, so an announced length is never allocated up front.
//!
//! The payload of frames after the handshake is opaque bytes: callers carry their own encoding
//! (ray-core's bincode messages) inside.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod blocking;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod tls;
pub mod token;

pub use blocking::{BlockingReader, BlockingWriter, STALL_MIN_BYTES, into_blocking};
pub use error::{NetError, Refusal};
pub use frame::{
    DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME, read_frame, read_frame_or_eof, write_frame,
};
pub use handshake::{
    Connection, DEFAULT_HANDSHAKE_TIMEOUT, HandshakeConfig, Hello, PROTOCOL_VERSION, Role, accept,
    connect,
};
pub use tls::{TlsIdentity, client_config, server_config};
pub use token::{AuthToken, TOKEN_ENV, TOKEN_FILE_NAME};

/// Result type of this crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;
