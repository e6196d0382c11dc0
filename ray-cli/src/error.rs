//! The crate's one error type. Messages never contain the auth token.

use std::path::PathBuf;

/// Errors of `ray-cli` (the `ray-rs` command and its daemon).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The node manager could not start or failed.
    #[error("node manager: {0}")]
    NodeManager(String),
    /// A command-line value is invalid.
    #[error("invalid {flag} value `{value}`: {reason}")]
    BadArg {
        /// The flag.
        flag: &'static str,
        /// The offending value (or the offending part of it).
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory is unsafe to use (owner, permissions, symlink).
    #[error("{path}: {reason}")]
    Unsafe {
        /// The path.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A connection or handshake error from ray-net.
    #[error(transparent)]
    Net(#[from] ray_net::NetError),
    /// etcd answered with an error, or could not be reached.
    #[error("etcd {endpoint}: {detail}")]
    Etcd {
        /// The etcd endpoint.
        endpoint: String,
        /// What happened.
        detail: String,
    },
    /// `etcd` is not installed.
    #[error(
        "`etcd` was not found on PATH; install it (Debian/Ubuntu: `apt-get install etcd-server`, or scripts/install-cluster-deps.sh) or point to a running one with --etcd URL"
    )]
    EtcdMissing,
    /// The etcd child process failed to start or exited.
    #[error("etcd (started by this node) {detail}; its log: {log}")]
    EtcdChild {
        /// What happened.
        detail: String,
        /// Its log file.
        log: PathBuf,
    },
    /// An HTTP exchange with etcd's gateway was malformed or too large.
    #[error("HTTP {endpoint}: {detail}")]
    Http {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// Generating or using certificates failed.
    #[error("certificates: {0}")]
    Pki(String),
    /// The head (or a node) answered a request with an error.
    #[error("{peer} answered: {message}")]
    Remote {
        /// Who answered.
        peer: String,
        /// Its error message.
        message: String,
    },
    /// A protocol message could not be decoded.
    #[error("malformed message from {peer}: {detail}")]
    Protocol {
        /// Who sent it.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// A node is already running under this temp dir.
    #[error(
        "a ray-rs node is already running under {temp_dir} (pid {pid}); stop it with `ray-rs stop --temp-dir {temp_dir}`"
    )]
    AlreadyRunning {
        /// The temp dir.
        temp_dir: PathBuf,
        /// The running daemon's pid.
        pid: i32,
    },
    /// The background daemon failed before it was ready.
    #[error("the node daemon failed: {message} (log: {log})")]
    Daemon {
        /// Its error message.
        message: String,
        /// Its log file.
        log: PathBuf,
    },
    /// The binary cache refused or failed an operation.
    #[error("binary cache: {0}")]
    Cache(String),
    /// A cached binary no longer has the content its name promises; it was removed.
    #[error("cached binary {hash} was modified on disk (its SHA-256 is now {actual}); removed it")]
    Tampered {
        /// The expected hash (hex).
        hash: String,
        /// The hash found (hex).
        actual: String,
    },
    /// What a command names does not exist (an unknown actor, task or worker pid).
    #[error("found no {what}: {detail}")]
    NotFound {
        /// What was looked for.
        what: String,
        /// Where it was looked for, and how to find what exists.
        detail: String,
    },
    /// A received binary does not match its expected hash.
    #[error("received binary does not match its SHA-256: expected {expected}, got {actual}")]
    HashMismatch {
        /// The expected hash (hex).
        expected: String,
        /// The computed hash (hex).
        actual: String,
    },
}

impl CliError {
    /// A [`CliError::Io`] with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = CliError> = std::result::Result<T, E>;
