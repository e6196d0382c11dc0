//! `ray-rs`, the cluster command line, and the membership layer of the node daemon.
//!
//! See `README.md` in this crate for the decisions (etcd through its JSON gateway, the
//! handshake, certificate distribution). Modules:
//!
//! - [`args`]: the command line (DESIGN.md section 6);
//! - [`node`]: `start` (head or join, daemonized or `--block`);
//! - [`client`]: asking a node (`ask`), `status`, `stop`;
//! - [`control`]: the node's control service (join, status, state rows, worker logs) over
//!   ray-net connections;
//! - [`state`] and [`logs`]: `ray-rs list/summary/memory/timeline` and `ray-rs logs`;
//! - [`dashboard`]: the head's dashboard (every node's rows) and each node's `/metrics`;
//! - [`membership`]: node records under leases, ids by compare-and-swap, resource publishing,
//!   watches;
//! - [`host`]: this machine's resources and default address;
//! - [`fence`]: a node declared dead stops its workers and rejoins as a new incarnation;
//! - [`names`]: actor names in etcd, unique across the cluster;
//! - [`etcd`] and [`http`]: the etcd v3 client over the JSON gateway;
//! - [`etcd_server`]: the etcd child of a head;
//! - [`pki`]: the cluster CA and node certificates (rcgen);
//! - [`binary_cache`]: drivers' executables by SHA-256;
//! - [`tempdir`]: the temp dir, pid files.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod args;
pub mod binary_cache;
pub mod client;
pub mod control;
mod daemon;
pub mod dashboard;
pub mod error;
pub mod etcd;
pub mod etcd_server;
pub mod fence;
pub mod host;
pub mod http;
pub mod jobs;
pub mod logs;
pub mod membership;
pub mod names;
pub mod node;
pub mod node_manager;
pub mod pki;
pub mod state;
pub mod tempdir;

pub use error::{CliError, Result};
