//! The node's temp dir (`--temp-dir`, default `/tmp/ray-rs`): created 0700, refused when owned
//! by another user or a symlink; pid files and process checks.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{CliError, Result};

/// The default temp dir.
pub const DEFAULT_TEMP_DIR: &str = "/tmp/ray-rs";

/// Creates `dir` with mode 0700, or checks an existing one: a real directory (not a symlink)
/// owned by this user; its mode is tightened to 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CliError::io(format!("creating {}", parent.display()), e))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CliError::io(format!("creating {}", dir.display()), e)),
            }
            check_existing(dir)
        }
        Err(e) => Err(CliError::io(format!("examining {}", dir.display()), e)),
        Ok(_) => check_existing(dir),
    }
}

fn check_existing(dir: &Path) -> Result<()> {
    let unsafe_dir = |reason: String| CliError::Unsafe {
        path: dir.to_path_buf(),
        reason,
    };
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| CliError::io(format!("examining {}", dir.display()), e))?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("is a symlink; refusing to use it".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("exists and is not a directory".into()));
    }
    let uid = ray_net::token::effective_uid();
    if meta.uid() != uid {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not by this user (uid {uid}); refusing to use it (choose another --temp-dir)",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| CliError::io(format!("chmod 700 {}", dir.display()), e))?;
    }
    Ok(())
}

/// Paths inside a node's temp dir.
#[derive(Debug, Clone)]
pub struct NodeDir {
    /// The temp dir itself.
    pub root: PathBuf,
}

impl NodeDir {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NodeDir { root: root.into() }
    }
    /// `logs/`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The daemon's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("ray-rs.pid")
    }
    /// The etcd child's pid file.
    pub fn etcd_pid_file(&self) -> PathBuf {
        self.root.join("etcd.pid")
    }
    /// The etcd child's data.
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    /// The token file.
    pub fn token_file(&self) -> PathBuf {
        self.root.join(ray_net::TOKEN_FILE_NAME)
    }
    /// The running node's description (`node.json`: address, node id, cluster id).
    pub fn node_file(&self) -> PathBuf {
        self.root.join("node.json")
    }
    /// The binary cache.
    pub fn binaries(&self) -> PathBuf {
        self.root.join("binaries")
    }
    /// Each worker's output (`worker-<pid>.out|.err`).
    pub fn worker_logs(&self) -> PathBuf {
        self.logs().join("workers")
    }
    /// The head's dashboard URL (without the token), while it runs.
    pub fn dashboard_url_file(&self) -> PathBuf {
        self.root.join("dashboard_url")
    }
    /// The node's metrics URL (without the token), while it runs.
    pub fn metrics_url_file(&self) -> PathBuf {
        self.root.join("metrics_url")
    }
}

/// Writes `pid` to `path` (mode 0600).
pub fn write_pid(path: &Path, pid: u32) -> Result<()> {
    crate::pki::write_file(path, format!("{pid}\n").as_bytes(), 0o600)
}

/// Reads a pid file; `None` when it does not exist.
pub fn read_pid(path: &Path) -> Result<Option<i32>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok().filter(|p: &i32| *p > 0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::io(format!("reading {}", path.display()), e)),
    }
}

/// Whether `pid` is a live (not zombie) process whose command name is `comm`.
pub fn process_alive(pid: i32, comm: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ..." where comm may contain spaces and parentheses.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let name = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start().chars().next().unwrap_or('?');
    name == comm && state != 'Z' && state != 'X'
}
