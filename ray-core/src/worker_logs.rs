//! Worker output kept per worker on the node that ran it (for `ray-rs logs` and the dashboard's
//! log page), besides being forwarded to the driver.
//!
//! Each worker's stdout and stderr go to `worker-<pid>.out` and `worker-<pid>.err` in the node's
//! log directory (a `ray-rs` node: `<temp-dir>/logs/workers/`), a line at a time, as the worker
//! wrote them (no prefix; a `:task_name:NAME` or `:actor_name:NAME` line, as Ray writes, marks
//! where the worker started another function or became an actor). Bounded: a file that reaches
//! [`MAX_FILE_BYTES`] is renamed to `worker-<pid>.out.1` (replacing the older one) and a new file
//! begins, so a worker keeps at most `2 * MAX_FILE_BYTES` per stream; the files of the newest
//! [`KEEP_EXITED`] exited workers are kept, older ones removed.
//!
//! Readers ask by *logical* offsets: bytes the stream ever wrote, which keep growing across
//! rotations, so a follower polling with the last offset it got never reads a line twice, and
//! is told how many bytes it missed when it fell behind a rotation.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A worker log file's size at which it is rotated.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Exited workers whose log files are kept.
pub const KEEP_EXITED: usize = 64;

/// Most bytes of one stream in one reply.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// What a reader asks for: a worker's output from some offsets on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// The worker's process id.
    pub pid: u32,
    /// Logical offset in its stdout to read from (`None`: the oldest byte kept).
    pub out_from: Option<u64>,
    /// The same for stderr.
    pub err_from: Option<u64>,
    /// Most bytes per stream in the reply (capped at [`MAX_CHUNK_BYTES`]).
    pub max_bytes: usize,
}

impl LogQuery {
    /// Everything kept of `pid`'s output, up to [`MAX_CHUNK_BYTES`] per stream.
    pub fn all(pid: u32) -> Self {
        LogQuery {
            pid,
            out_from: None,
            err_from: None,
            max_bytes: MAX_CHUNK_BYTES,
        }
    }
}

/// Some of one stream's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// Logical offset of `text`'s first byte.
    pub from: u64,
    /// Logical offset after `text`: where to read next.
    pub to: u64,
    /// Bytes written to the stream so far (more to read while `to < end`).
    pub end: u64,
    /// Bytes asked for that were rotated away before they were read.
    pub skipped: u64,
    /// Whole lines (a line longer than the reply's limit comes in pieces).
    pub text: String,
}

/// A worker's output, as a node answers for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogReply {
    /// The worker's process id.
    pub pid: u32,
    /// The node it runs or ran on.
    pub node_id: u32,
    /// Whether it still runs (more output may come).
    pub alive: bool,
    /// Its stdout.
    pub out: StreamChunk,
    /// Its stderr.
    pub err: StreamChunk,
}

#[derive(Default)]
struct Book {
    /// Bytes moved to the `.1` file and before, by (pid, stderr).
    rotated: HashMap<(u32, bool), u64>,
    /// Workers that exited, oldest first.
    exited: VecDeque<u32>,
}

/// The node's worker log directory.
pub(crate) struct WorkerLogs {
    dir: PathBuf,
    book: Mutex<Book>,
    /// Removed when dropped (a single-node driver's private directory).
    owned: bool,
}

impl std::fmt::Debug for WorkerLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerLogs")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            Error::io(
                format!("creating the worker log directory {}", dir.display()),
                e,
            )
        })
}

impl WorkerLogs {
    /// Uses `dir` (made 0700 when missing), removing worker logs a previous node left there.
    pub(crate) fn open(dir: &Path) -> Result<Arc<WorkerLogs>> {
        if !dir.is_dir() {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            make_private_dir(dir)?;
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("worker-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Arc::new(WorkerLogs {
            dir: dir.to_path_buf(),
            book: Mutex::default(),
            owned: false,
        }))
    }

    /// A new private directory `ray-rs-logs-<pid>-<random>` in `root`, removed when the last
    /// user of it is gone (a single-node driver with a dashboard).
    pub(crate) fn private(root: &Path) -> Result<Arc<WorkerLogs>> {
        let dir = root.join(format!(
            "ray-rs-logs-{}-{:016x}",
            std::process::id(),
            crate::sys::random_u64()
        ));
        make_private_dir(&dir)?;
        Ok(Arc::new(WorkerLogs {
            dir,
            book: Mutex::default(),
            owned: true,
        }))
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, pid: u32, is_err: bool) -> PathBuf {
        self.dir.join(format!(
            "worker-{pid}.{}",
            if is_err { "err" } else { "out" }
        ))
    }

    fn backup(&self, pid: u32, is_err: bool) -> PathBuf {
        let mut p = self.path(pid, is_err).into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    /// A writer of a new worker's stream (a file of an earlier process with the same pid is
    /// replaced). `None`, with a warning, when the file cannot be made.
    pub(crate) fn writer(self: &Arc<Self>, pid: u32, is_err: bool) -> Option<LogWriter> {
        let path = self.path(pid, is_err);
        let mut book = self.book();
        book.rotated.remove(&(pid, is_err));
        book.exited.retain(|p| *p != pid);
        let _ = std::fs::remove_file(self.backup(pid, is_err));
        let file = open_new(&path);
        drop(book);
        match file {
            Ok(file) => Some(LogWriter {
                logs: self.clone(),
                pid,
                is_err,
                file,
                size: 0,
            }),
            Err(e) => {
                crate::log::warn!(
                    "worker pid {pid}'s output is not kept in {}: {e}",
                    path.display()
                );
                None
            }
        }
    }

    /// A worker exited: its files stay among the newest [`KEEP_EXITED`].
    pub(crate) fn exited(&self, pid: u32) {
        let mut book = self.book();
        book.exited.push_back(pid);
        while book.exited.len() > KEEP_EXITED {
            let Some(old) = book.exited.pop_front() else {
                break;
            };
            for is_err in [false, true] {
                book.rotated.remove(&(old, is_err));
                let _ = std::fs::remove_file(self.path(old, is_err));
                let _ = std::fs::remove_file(self.backup(old, is_err));
            }
        }
    }

    /// Whether any output of `pid` is kept here.
    pub(crate) fn has(&self, pid: u32) -> bool {
        self.path(pid, false).exists() || self.path(pid, true).exists()
    }

    /// Reads `pid`'s output as `query` asks; `None` when nothing of it is kept here.
    pub(crate) fn read(&self, query: &LogQuery) -> Option<(StreamChunk, StreamChunk)> {
        let max = query.max_bytes.clamp(1, MAX_CHUNK_BYTES);
        let book = self.book();
        if !self.has(query.pid) {
            return None;
        }
        let out = self.read_stream(&book, query.pid, false, query.out_from, max);
        let err = self.read_stream(&book, query.pid, true, query.err_from, max);
        Some((out, err))
    }

    fn read_stream(
        &self,
        book: &Book,
        pid: u32,
        is_err: bool,
        from: Option<u64>,
        max: usize,
    ) -> StreamChunk {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let rotated = book.rotated.get(&(pid, is_err)).copied().unwrap_or(0);
        let (cur, bak) = (self.path(pid, is_err), self.backup(pid, is_err));
        let cur_len = size(&cur);
        let bak_len = if rotated > 0 {
            size(&bak).min(rotated)
        } else {
            0
        };
        let first = rotated - bak_len;
        let end = rotated + cur_len;
        let asked = from.unwrap_or(first).min(end);
        let skipped = first.saturating_sub(asked);
        let start = asked.max(first);
        let want = ((end - start) as usize).min(max);
        let mut bytes = Vec::with_capacity(want);
        if start < rotated {
            read_range(
                &bak,
                start - first,
                want.min((rotated - start) as usize),
                &mut bytes,
            );
        }
        if bytes.len() < want {
            let at = (start + bytes.len() as u64).saturating_sub(rotated);
            let left = want - bytes.len();
            read_range(&cur, at, left, &mut bytes);
        }
        // Whole lines only: a line being written now comes next time; a line longer than the
        // limit comes in pieces.
        if bytes.last().is_some_and(|b| *b != b'\n') {
            match bytes.iter().rposition(|b| *b == b'\n') {
                Some(i) => bytes.truncate(i + 1),
                None if bytes.len() < max => bytes.clear(),
                None => {}
            }
        }
        StreamChunk {
            from: start,
            to: start + bytes.len() as u64,
            end,
            skipped,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

impl Drop for WorkerLogs {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn open_new(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn read_range(path: &Path, at: u64, len: usize, out: &mut Vec<u8>) {
    let Ok(mut f) = File::open(path) else { return };
    if f.seek(SeekFrom::Start(at)).is_err() {
        return;
    }
    let _ = f.take(len as u64).read_to_end(out);
}

/// Appends one worker stream's lines to its file, rotating it at [`MAX_FILE_BYTES`].
pub(crate) struct LogWriter {
    logs: Arc<WorkerLogs>,
    pid: u32,
    is_err: bool,
    file: File,
    size: u64,
}

impl LogWriter {
    /// Writes `line` and a newline (one `write` when possible, so readers see whole lines).
    pub(crate) fn line(&mut self, line: &[u8]) {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > MAX_FILE_BYTES {
            self.rotate();
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        if self.file.write_all(&buf).is_ok() {
            self.size += len;
        }
    }

    fn rotate(&mut self) {
        let logs = self.logs.clone();
        let mut book = logs.book();
        let path = logs.path(self.pid, self.is_err);
        if std::fs::rename(&path, logs.backup(self.pid, self.is_err)).is_err() {
            return;
        }
        match open_new(&path) {
            Ok(f) => {
                *book.rotated.entry((self.pid, self.is_err)).or_default() += self.size;
                self.file = f;
                self.size = 0;
            }
            Err(e) => crate::log::warn!("rotating {}: {e}", path.display()),
        }
    }
}

/// A worker's output from `logs`, or an error saying why there is none.
pub(crate) fn local_logs(
    logs: Option<&WorkerLogs>,
    node_id: u32,
    alive: bool,
    query: &LogQuery,
) -> Result<LogReply> {
    let Some(logs) = logs else {
        return Err(Error::InvalidArgument {
            what: format!("worker pid {}", query.pid),
            message: "this node keeps no worker output (a driver keeps it only with a dashboard; \
                      a ray-rs node always does)"
                .into(),
        });
    };
    match logs.read(query) {
        Some((out, err)) => Ok(LogReply {
            pid: query.pid,
            node_id,
            alive,
            out,
            err,
        }),
        None => Err(Error::InvalidArgument {
            what: format!("worker pid {}", query.pid),
            message: format!(
                "no worker with that pid ran on node {node_id} (or its output was removed: the \
                 newest {} exited workers' logs are kept); `ray-rs list workers` lists workers",
                KEEP_EXITED
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ray-rs-worker-logs-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn lines_come_back_by_offset_whole_and_once() {
        let dir = scratch("offsets");
        let logs = WorkerLogs::open(&dir).unwrap();
        let mut w = logs.writer(42, false).unwrap();
        w.line(b"one");
        w.line(b"two");
        let (out, err) = logs.read(&LogQuery::all(42)).unwrap();
        assert_eq!(out.text, "one\ntwo\n");
        assert_eq!((out.from, out.to, out.end), (0, 8, 8));
        assert_eq!(err.text, "");
        w.line(b"three");
        let q = LogQuery {
            out_from: Some(out.to),
            ..LogQuery::all(42)
        };
        let (out, _) = logs.read(&q).unwrap();
        assert_eq!(out.text, "three\n");
        // A partial line is not returned until whole.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("worker-42.out"))
            .unwrap()
            .write_all(b"half")
            .unwrap();
        let (out2, _) = logs
            .read(&LogQuery {
                out_from: Some(out.to),
                ..LogQuery::all(42)
            })
            .unwrap();
        assert_eq!(out2.text, "");
        assert!(logs.read(&LogQuery::all(7)).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotation_bounds_the_files_and_offsets_keep_growing() {
        let dir = scratch("rotate");
        let logs = WorkerLogs::open(&dir).unwrap();
        let mut w = logs.writer(9, true).unwrap();
        let line = vec![b'x'; 1023];
        let n = (3 * MAX_FILE_BYTES / 1024) as usize;
        for _ in 0..n {
            w.line(&line);
        }
        let total = n as u64 * 1024;
        let cur = std::fs::metadata(dir.join("worker-9.err")).unwrap().len();
        let bak = std::fs::metadata(dir.join("worker-9.err.1")).unwrap().len();
        assert!(
            cur <= MAX_FILE_BYTES && bak <= MAX_FILE_BYTES,
            "{cur} {bak}"
        );
        let (_, err) = logs
            .read(&LogQuery {
                err_from: Some(0),
                ..LogQuery::all(9)
            })
            .unwrap();
        assert_eq!(err.end, total);
        assert_eq!(err.skipped, total - cur - bak);
        assert_eq!(err.from, total - cur - bak);
        assert_eq!(err.text.len(), MAX_CHUNK_BYTES);
        // Following from the end of that chunk reads on, across the rotated file.
        let mut at = err.to;
        while at < total {
            let (_, e) = logs
                .read(&LogQuery {
                    err_from: Some(at),
                    ..LogQuery::all(9)
                })
                .unwrap();
            assert_eq!(e.skipped, 0);
            assert!(e.to > at);
            at = e.to;
        }
        // Exited workers beyond the limit lose their files.
        logs.exited(9);
        for pid in 1000..1000 + KEEP_EXITED as u32 {
            logs.writer(pid, false).unwrap().line(b"x");
            logs.exited(pid);
        }
        assert!(!logs.has(9));
        assert!(logs.has(1000 + KEEP_EXITED as u32 - 1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_private_directory_goes_with_its_last_user() {
        let root = scratch("private");
        std::fs::create_dir_all(&root).unwrap();
        let logs = WorkerLogs::private(&root).unwrap();
        let dir = logs.dir.clone();
        logs.writer(1, false).unwrap().line(b"x");
        assert!(dir.is_dir());
        drop(logs);
        assert!(!dir.exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
