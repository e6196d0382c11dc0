//! This node's data sessions at its peers, and the transfers over them: pulling an object's
//! bytes into this node's store in chunks (resuming after a broken connection from the last
//! chunk received), and fetching a job's executable into the binary cache. A data session
//! is opened like a control session ([`super::links`]) and carries only `DataRequest`s, so
//! that a large transfer never delays a control message.
//!
//! The other side, serving data requests, is [`super::data_session`].

use super::links::{Opening, next_reply, open_session};
use super::remote::CachedBinary;
use super::runtime::Inner;
use crate::error::{Error, Result};
use crate::ids::{JobId, NodeId, ObjectId};
use crate::log;
use crate::object_store::{Arena, PAD};
use crate::protocol::node::{DATA_HEADER_MAX, DataReply, DataRequest};
use crate::transport::StreamOutbox;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes requested at a time.
const CHUNK: u64 = 8 << 20;
/// Times a transfer is resumed after its connection broke.
const RESUMES: u32 = 3;

/// What a request on a data session received.
#[derive(Debug)]
pub(super) enum Received {
    /// This many bytes were written where the request's [`Sink::Store`] said.
    Stored(u64),
    /// The bytes themselves ([`Sink::Memory`]).
    Bytes(Vec<u8>),
}

/// Where the bytes of a reply go.
pub(super) enum Sink {
    /// Into this node's store at `offset` (exactly the length asked for), inside the region
    /// `target` guards.
    Store {
        target: Arc<PullTarget>,
        offset: u64,
    },
    /// Into memory, at most the length asked for (pieces of an executable).
    Memory,
}

/// The part of this node's store a pull writes to, `[start, end)`. A data session's reader
/// writes a chunk there only while it holds `open` and finds it true, one chunk at a time; the
/// pull sets it false before its region is sealed or given back, so no byte lands in a region
/// after its pull ended, and no two write windows over the region are ever open at once.
pub(super) struct PullTarget {
    open: tokio::sync::Mutex<bool>,
    start: u64,
    end: u64,
}

impl PullTarget {
    /// The store range `[start, end)` of one pull; `None` if it overflows.
    pub(super) fn new(start: u64, len: u64) -> Option<Arc<PullTarget>> {
        Some(Arc::new(PullTarget {
            open: tokio::sync::Mutex::new(true),
            start,
            end: start.checked_add(len)?,
        }))
    }

    /// Whether `[offset, offset + len)` lies inside the target.
    fn holds(&self, offset: u64, len: u64) -> bool {
        offset >= self.start && offset.checked_add(len).is_some_and(|end| end <= self.end)
    }
}

/// What a request's reply brings: the bytes (or where they were put), the serving node's
/// reason for sending none, or (outer `Err`) a broken session.
type Answer = std::result::Result<Received, String>;

/// A request waiting for its reply. It stays until the reply came even when its requester
/// went away, so the reader knows how many bytes follow the reply and skips them.
struct Waiter {
    len: u64,
    sink: Sink,
    tx: tokio::sync::oneshot::Sender<Answer>,
}

/// This node's data session at another node: requests by number, replies matched to them.
pub(crate) struct DataLink {
    outbox: StreamOutbox,
    next: AtomicU64,
    waiting: Mutex<Option<HashMap<u64, Waiter>>>,
    /// Stops the session's reader ([`DataLink::shut`]).
    stop: tokio::sync::Notify,
}

impl DataLink {
    /// Sends a request for `len` bytes whose reply goes to `sink`; the returned receiver gets
    /// the answer (dropping it abandons the request; its bytes are then skipped).
    fn ask(
        &self,
        len: u64,
        sink: Sink,
        make: impl FnOnce(u64) -> DataRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<Answer>> {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let Some(w) = w.as_mut() else {
                return Err(broken("the data session is closed"));
            };
            w.insert(req, Waiter { len, sink, tx });
        }
        self.outbox.send(&make(req))?;
        Ok(rx)
    }

    fn take(&self, req: u64) -> Option<Waiter> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|w| w.remove(&req))
    }

    fn fail_all(&self) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Ends the session: its reader stops (between two reads; a chunk it was writing is left
    /// unfinished) and every request waiting on it fails.
    fn shut(&self) {
        self.stop.notify_one();
    }

    /// The answer to a request of this session, waited for at most [`DATA_WAIT`]: a peer that
    /// keeps the connection open and never answers (wedged, or hostile) would otherwise hold
    /// the pull's region of the store, and the resources of the task waiting for it, forever.
    /// On that timeout the session is shut (a retry opens a new one).
    async fn answer(&self, reply: tokio::sync::oneshot::Receiver<Answer>) -> Result<Answer> {
        match tokio::time::timeout(DATA_WAIT, reply).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(broken("the data session ended")),
            Err(_) => {
                self.shut();
                Err(broken(&format!(
                    "no answer in {} s; the data session was closed",
                    DATA_WAIT.as_secs()
                )))
            }
        }
    }
}

/// How long a data request may wait for its answer (an 8 MiB chunk; the serving node gives up
/// on a reader that takes under 64 KiB in 60 s, so a live but slow link answers well within).
const DATA_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

fn broken(why: &str) -> Error {
    Error::Io {
        context: "transferring data between nodes".into(),
        message: why.to_string(),
        kind: std::io::ErrorKind::ConnectionAborted,
    }
}

/// This node's data session at `node`, opened if needed.
pub(super) async fn data_link(inner: &Arc<Inner>, node: NodeId) -> Result<Arc<DataLink>> {
    if let Some(link) = inner.data_link(node) {
        return Ok(link);
    }
    let (stream, _) = open_session(inner, node, Opening::Data)
        .await
        .map_err(|e| Error::io(format!("opening a data session with {node}"), e))?;
    let (outbox, rx) = StreamOutbox::new();
    let new = Arc::new(DataLink {
        outbox,
        next: AtomicU64::new(1),
        waiting: Mutex::new(Some(HashMap::new())),
        stop: tokio::sync::Notify::new(),
    });
    let link = inner.set_data_link(node, new.clone());
    if !Arc::ptr_eq(&link, &new) {
        // Another pull opened one meanwhile: this stream is closed unused.
        return Ok(link);
    }
    let (rd, wr) = tokio::io::split(stream);
    tokio::spawn(StreamOutbox::run_writer(rx, wr));
    let weak = Arc::downgrade(inner);
    let arena = inner.arena().clone();
    tokio::spawn(async move {
        let why = tokio::select! {
            why = read_data_replies(&link, &arena, rd) => why,
            () = link.stop.notified() => "it was shut here".to_string(),
        };
        log::debug!("the data session with {node} ended: {why}");
        link.fail_all();
        link.outbox.close();
        if let Some(n) = weak.upgrade() {
            n.forget_data_link(node, &link);
        }
    });
    Ok(new)
}

/// Reads a data session's replies until it ends (returns why): each header frame, then the
/// bytes it announces, straight to where its request said (this node's store, or memory).
/// A reply to nothing asked, or announcing another length than asked, ends the session.
async fn read_data_replies<R: AsyncRead + Unpin>(link: &DataLink, arena: &Arena, rd: R) -> String {
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut header = Vec::new();
    loop {
        let DataReply::Bytes { req, result } =
            match next_reply(&mut rd, &mut header, DATA_HEADER_MAX).await {
                Ok(reply) => reply,
                Err(why) => return why,
            };
        let Some(waiter) = link.take(req) else {
            return format!("a reply to request {req}, which was not asked");
        };
        let len = match result {
            Ok(len) => len,
            Err(why) => {
                let _ = waiter.tx.send(Err(why));
                continue;
            }
        };
        if let Err(why) = acceptable(len, waiter.len, &waiter.sink) {
            let _ = waiter.tx.send(Err(why.clone()));
            return why;
        }
        let received = match waiter.sink {
            Sink::Memory => {
                // At most what was asked for (checked above), which this node chose.
                let mut bytes = vec![0u8; len as usize];
                rd.read_exact(&mut bytes)
                    .await
                    .map(|_| Received::Bytes(bytes))
            }
            Sink::Store { target, offset } => {
                receive_into_store(&mut rd, arena, &target, offset, len)
                    .await
                    .map(|()| Received::Stored(len))
            }
        };
        match received {
            Ok(r) => {
                let _ = waiter.tx.send(Ok(r));
            }
            // The waiter goes without an answer: its session broke.
            Err(e) => return e.to_string(),
        }
    }
}

/// Whether a reply may announce `len` bytes for a request of `asked` going to `sink`: a chunk
/// of an object exactly what was asked, a piece of an executable at most that.
fn acceptable(len: u64, asked: u64, sink: &Sink) -> std::result::Result<(), String> {
    let ok = match sink {
        Sink::Store { .. } => len == asked,
        Sink::Memory => len <= asked,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the reply announced {len} bytes, {asked} were asked for"
        ))
    }
}

/// Reads `len` bytes from `rd` into this node's store at `offset`, inside `target` (or skips
/// them if the pull of `target` ended meanwhile).
async fn receive_into_store<R: AsyncRead + Unpin>(
    rd: &mut R,
    arena: &Arena,
    target: &PullTarget,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    if !target.holds(offset, len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bytes at {offset}..+{len} are outside the object being pulled"),
        ));
    }
    let open = target.open.lock().await;
    if !*open {
        let skipped = tokio::io::copy(&mut rd.take(len), &mut tokio::io::sink()).await?;
        if skipped < len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(());
    }
    // SAFETY: [offset, offset + len) lies inside the pull's region (checked above), which is
    // allocated to the pull alone and not sealed or given back while `open` is true; windows
    // over it are only opened here, under `open`'s lock, one at a time.
    let mut window = unsafe { arena.window(offset, len) }.map_err(std::io::Error::other)?;
    rd.read_exact(window.bytes()).await?;
    drop(window);
    drop(open);
    Ok(())
}

/// Chunk requests a pull keeps in flight on its data session, so the sending node reads the
/// next chunk while this one travels.
const PULL_WINDOW: usize = 8;

/// Copies `len` bytes of object `id` from `from` into `region` of this node's store, then
/// tells the state machine. Up to [`PULL_WINDOW`] chunks are asked for at once; the data
/// session's reader writes each straight into the region as it arrives. A broken connection
/// resumes from the last of the chunks received in order.
pub(super) async fn pull(inner: Arc<Inner>, id: ObjectId, from: NodeId, len: u64, region: u64) {
    log::debug!("pulling object {id} ({len} bytes) from {from}");
    let Some(target) = region
        .checked_add(PAD)
        .and_then(|start| PullTarget::new(start, len))
    else {
        let e = Error::object_lost(id, format!("{len} bytes at {region} overflow"));
        inner.run(|st| st.pull_done(id, region, Err(e)));
        return;
    };
    let mut offset = 0u64;
    let mut resumes = 0;
    let mut current: Option<Arc<DataLink>> = None;
    let result = 'pull: loop {
        if offset >= len {
            break Ok(());
        }
        let link = match data_link(&inner, from).await {
            Ok(l) => l,
            Err(e) if resumes < RESUMES => {
                resumes += 1;
                log::warn!("pulling object {id} from {from}: {e}; resuming at byte {offset}");
                continue;
            }
            Err(e) => break Err(e),
        };
        current = Some(link.clone());
        let mut asked = offset;
        let mut inflight = std::collections::VecDeque::new();
        let broke = 'chunks: loop {
            while inflight.len() < PULL_WINDOW && asked < len {
                let (at, want) = (asked, CHUNK.min(len - asked));
                let sink = Sink::Store {
                    target: target.clone(),
                    offset: target.start + at,
                };
                let fetch = |req| DataRequest::Fetch {
                    req,
                    id,
                    offset: at,
                    len: want,
                };
                match link.ask(want, sink, fetch) {
                    Ok(rx) => inflight.push_back((at, want, rx)),
                    Err(e) => break 'chunks e,
                }
                asked += want;
            }
            let Some((at, want, reply)) = inflight.pop_front() else {
                break 'pull Ok(());
            };
            match link.answer(reply).await {
                Ok(Ok(Received::Stored(n))) if n == want => {
                    offset = at + want;
                    inner.count_pulled(want);
                }
                Ok(Ok(other)) => {
                    break 'pull Err(Error::object_lost(
                        id,
                        format!("{from} answered {other:?} for {want} bytes"),
                    ));
                }
                Ok(Err(e)) => {
                    break 'pull Err(Error::object_lost(
                        id,
                        format!("{from} cannot send it: {e}"),
                    ));
                }
                Err(e) => break e,
            }
        };
        if resumes >= RESUMES {
            break Err(broke);
        }
        resumes += 1;
        log::warn!("pulling object {id} from {from}: {broke}; resuming at byte {offset}");
    };
    close_target(&target, current.as_deref()).await;
    log::debug!("pulled object {id} from {from}: {result:?}");
    inner.run(|st| st.pull_done(id, region, result));
}

/// Marks a pull's target closed, waiting for a chunk being written into it to end first: a
/// pull that failed may still have chunks on their way. If one does not end soon (a stalled
/// peer), the data session is shut, which ends it.
async fn close_target(target: &PullTarget, link: Option<&DataLink>) {
    let mut open = match tokio::time::timeout(CLOSE_WAIT, target.open.lock()).await {
        Ok(open) => open,
        Err(_) => {
            if let Some(link) = link {
                link.shut();
            }
            target.open.lock().await
        }
    };
    *open = false;
}

/// How long a failed pull waits for a chunk still being written into its region.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes sure `job`'s executable is in the binary cache (fetching it from `from`), then tells
/// the state machine.
pub(super) async fn ensure_job(
    inner: Arc<Inner>,
    job: JobId,
    from: NodeId,
    sha256: [u8; 32],
    size: u64,
) {
    let result = fetch_binary(&inner, from, sha256, size).await;
    inner.run(|st| st.job_ready(job, result));
}

async fn fetch_binary(
    inner: &Arc<Inner>,
    from: NodeId,
    sha256: [u8; 32],
    size: u64,
) -> std::result::Result<CachedBinary, String> {
    let binaries = inner
        .cluster_io()
        .map(|c| c.binaries.clone())
        .ok_or("this node has no binary cache")?;
    if let Some(found) = binaries.find(&sha256)? {
        return Ok(found);
    }
    let mut upload = binaries.upload(sha256, size)?;
    let link = data_link(inner, from).await.map_err(|e| e.to_string())?;
    let mut offset = 0u64;
    while offset < size {
        let want = CHUNK.min(size - offset);
        let fetch = |req| DataRequest::FetchBinary {
            req,
            sha256,
            offset,
            len: want,
        };
        let asked = link
            .ask(want, Sink::Memory, fetch)
            .map_err(|e| e.to_string())?;
        let reply = link.answer(asked).await.map_err(|e| e.to_string())?;
        let bytes = match reply? {
            Received::Bytes(bytes) => bytes,
            other => return Err(format!("{from} answered {other:?}")),
        };
        if bytes.is_empty() {
            return Err(format!("{from} sent nothing at byte {offset} of {size}"));
        }
        upload.write(&bytes)?;
        offset += bytes.len() as u64;
    }
    upload.finish()
}

#[cfg(test)]
#[path = "data_links_tests.rs"]
mod tests;
