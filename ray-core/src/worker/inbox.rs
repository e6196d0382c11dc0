//! Who reads the worker's socket: its main thread while it waits for work, a reader thread
//! when something else needs the socket read.
//!
//! A call's round trip crosses several processes, and on an idle machine each thread that has
//! to wake up costs tens of microseconds. If a reader thread always read the socket, every call
//! would wake it and then the main thread. Instead the main thread reads the socket itself
//! while it waits for work, so the next call wakes only it, and keeps the turn while it runs
//! the call ([`RUNNING`]): a short call costs no other thread anything. The reader thread takes
//! the socket over when it is needed while the main thread is busy: when a thread is about to
//! block on a reply, or a call asks whether it was cancelled ([`reader_needed`], called by
//! [`crate::slot::Slot`] and [`crate::current::is_cancelled`]). Nothing else the node manager
//! sends a busy worker needs an answer before the call ends: further calls and an exit are read
//! when the main thread next waits for work. (A timer per call was tried and dropped: arming
//! it costs a VM exit per call on a virtual machine.)
//!
//! The main thread takes the turn back when it next waits for work: at once if nobody took it,
//! else by signalling the reader thread and waiting for it to let go (off the call's path:
//! after its result was sent). Only the thread whose turn it is touches the reader state.

use super::{Job, send_job};
use crate::client::ProcessClient;
use crate::node_manager::exits::EXIT_LOST_NODE;
use crate::protocol::worker::ToWorker;
use crate::transport::{self, MAX_TO_WORKER};
use crate::wakeup::Wakeup;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// The main thread reads (it is waiting for work).
const MAIN: u8 = 0;
/// The main thread runs a call; nobody reads until someone needs it.
const RUNNING: u8 = 1;
/// The main thread asked for the turn; the reader thread gives it at its next look.
const MAIN_WANTS: u8 = 2;
/// The reader thread reads.
const READER: u8 = 3;

/// The socket's buffered reader and the frame buffer.
struct ReadState {
    reader: std::io::BufReader<UnixStream>,
    buf: Vec<u8>,
}

struct Shared {
    turn: AtomicU8,
    /// With `turned`: the main thread waits here for the reader thread to let go.
    handover: Mutex<()>,
    turned: Condvar,
    state: Mutex<ReadState>,
    /// The socket's descriptor (owned by `state`), for `poll`.
    socket: libc::c_int,
    /// Signalled to make the reader thread look at the turn.
    wake: Wakeup,
    core: Arc<ProcessClient>,
}

/// This worker's inbox, for [`reader_needed`].
static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// The main thread's end: the next job, read by itself or queued by the reader thread.
pub(super) struct Inbox {
    shared: Arc<Shared>,
    jobs: Receiver<Job>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called before a thread blocks on a reply: if the main thread is running a call (and so not
/// reading), the reader thread reads from now on. Does nothing outside a worker.
pub(crate) fn reader_needed() {
    // A plain load first: `is_cancelled` may be asked in a tight loop.
    if let Some(s) = SHARED.get()
        && s.turn.load(Ordering::Relaxed) == RUNNING
        && s.turn
            .compare_exchange(RUNNING, READER, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        s.wake.signal();
    }
}

impl Inbox {
    /// Starts the reader thread; the main thread takes the turn when it first waits.
    pub(super) fn start(
        core: Arc<ProcessClient>,
        reader: std::io::BufReader<UnixStream>,
    ) -> std::io::Result<Inbox> {
        let wake = Wakeup::new()?;
        let socket = reader.get_ref().as_raw_fd();
        let shared = Arc::new(Shared {
            turn: AtomicU8::new(READER),
            handover: Mutex::new(()),
            turned: Condvar::new(),
            state: Mutex::new(ReadState {
                reader,
                buf: Vec::new(),
            }),
            socket,
            wake,
            core,
        });
        let _ = SHARED.set(shared.clone());
        let (tx, jobs) = std::sync::mpsc::channel();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ray-worker-reader".into())
            .spawn(move || s.reader_thread(tx))?;
        Ok(Inbox { shared, jobs })
    }

    /// The next job: one the reader thread queued, else the next one on the socket, read by
    /// this thread. `None` once the reader thread is gone. The job is then run with the turn
    /// [`RUNNING`].
    pub(super) fn next(&self) -> Option<Job> {
        let s = &self.shared;
        match self.jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        s.take_turn();
        // What the reader thread queued before it let go comes first.
        let job = match self.jobs.try_recv() {
            Ok(job) => job,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                let mut state = lock(&s.state);
                loop {
                    if let Some(job) = state.read_one(&s.core) {
                        break job;
                    }
                }
            }
        };
        s.turn.store(RUNNING, Ordering::Release);
        Some(job)
    }

    /// The queue alone, for actors whose calls are taken by other threads: the reader thread
    /// reads from now on.
    pub(super) fn into_jobs(self) -> Receiver<Job> {
        if self
            .shared
            .turn
            .compare_exchange(RUNNING, READER, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.shared.wake.signal();
        }
        self.jobs
    }
}

impl Shared {
    /// The main thread takes the turn: at once unless the reader thread has it.
    fn take_turn(&self) {
        if self
            .turn
            .compare_exchange(RUNNING, MAIN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
        let mut guard = lock(&self.handover);
        if self
            .turn
            .compare_exchange(READER, MAIN_WANTS, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake.signal();
        }
        while self.turn.load(Ordering::Acquire) != MAIN {
            guard = self.turned.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The reader thread: reads while it is its turn, lets go when asked; otherwise waits for
    /// a signal.
    fn reader_thread(&self, tx: Sender<Job>) {
        loop {
            match self.turn.load(Ordering::Acquire) {
                READER => {}
                MAIN_WANTS => {
                    let _guard = lock(&self.handover);
                    self.turn.store(MAIN, Ordering::Release);
                    self.turned.notify_all();
                    continue;
                }
                _ => {
                    // While a call runs nobody reads, but a closed connection must still end
                    // the worker at once (no orphans): its hang-up makes this thread read. (While
                    // the main thread reads, it sees the end itself and exits; the pause keeps
                    // this thread from spinning on the hang-up meanwhile.)
                    if self.wait(false)
                        && self
                            .turn
                            .compare_exchange(RUNNING, READER, Ordering::AcqRel, Ordering::Acquire)
                            .is_err()
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    continue;
                }
            }
            let mut state = lock(&self.state);
            while self.turn.load(Ordering::Acquire) == READER {
                if state.reader.buffer().is_empty() && !self.wait(true) {
                    continue;
                }
                if let Some(job) = state.read_one(&self.core) {
                    send_job(&tx, job);
                }
            }
        }
    }

    /// Waits for a signal (drained) or the socket: true when it is readable, or with
    /// `data: false` when only its end is watched, when the peer hung up.
    fn wait(&self, data: bool) -> bool {
        let events = if data { libc::POLLIN } else { libc::POLLRDHUP };
        self.wake.poll(self.socket, events)
    }
}

impl ReadState {
    /// Reads one message and handles it: a job is returned, anything else is done here. When
    /// the connection ends (the node manager exited or was killed), the worker exits at once:
    /// no orphans. A connection that breaks otherwise is a clear exit cause (code
    /// [`EXIT_LOST_NODE`]), never a silent one.
    fn read_one(&mut self, core: &ProcessClient) -> Option<Job> {
        match transport::read_frame(&mut self.reader, &mut self.buf, MAX_TO_WORKER) {
            Ok(Some(())) => {}
            Ok(None) => std::process::exit(0),
            Err(e) => {
                eprintln!("ray worker: lost the node manager: {e}; exiting");
                std::process::exit(EXIT_LOST_NODE);
            }
        }
        let msg: ToWorker = match transport::decode_frame(&self.buf) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ray worker: bad message from the node manager: {e}; exiting");
                std::process::exit(EXIT_LOST_NODE);
            }
        };
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        match core.take_reply(msg)? {
            ToWorker::Execute(e) => return Some(Job::Run(e)),
            ToWorker::Exit => return Some(Job::Exit),
            ToWorker::Cancel { task } => {
                crate::current::mark_cancelled(task);
                super::async_actor::cancel(task);
            }
            ToWorker::Welcome { .. }
            | ToWorker::Refused { .. }
            | ToWorker::Log { .. }
            | ToWorker::SessionAck { .. }
            | ToWorker::ActorLocation { .. } => {}
            // Taken by `take_reply`.
            ToWorker::GetReplyPart { .. }
            | ToWorker::GetReply { .. }
            | ToWorker::WaitReply { .. }
            | ToWorker::Allocated { .. }
            | ToWorker::ControlReply { .. } => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::OnLost;
    use crate::context::Client;
    use crate::ids::{JobId, NodeId, ObjectId, ProcId};
    use crate::protocol::worker::{Control, ControlReply, Execute, FromWorker};
    use crate::transport::BlockingSender;
    use std::io::BufReader;

    fn send(nm: &UnixStream, msg: &ToWorker) {
        let mut frame = Vec::new();
        crate::codec::encode_frame(msg, &mut frame).unwrap();
        std::io::Write::write_all(&mut &*nm, &frame).unwrap();
    }

    fn task(n: u32) -> ToWorker {
        ToWorker::Execute(Execute::Task {
            task: ObjectId::new_returns(n),
            function: format!("f{n}"),
            args: Vec::new(),
            gpu_ids: Vec::new(),
        })
    }

    fn function(job: Option<Job>) -> String {
        match job {
            Some(Job::Run(Execute::Task { function, .. })) => function,
            _ => panic!("expected a task"),
        }
    }

    /// One inbox through every change of turn (one test: `reader_needed` finds the process's
    /// only inbox).
    #[test]
    fn the_turn_moves_where_it_is_needed_and_nothing_is_lost_or_reordered() {
        let (worker, nm) = UnixStream::pair().unwrap();
        let core = Arc::new(ProcessClient::new(
            std::process::id(),
            Box::new(BlockingSender::new(worker.try_clone().unwrap())),
            Vec::new(),
            JobId::of_driver(ProcId::driver(NodeId(1))),
            OnLost::Fail,
        ));
        let inbox = Inbox::start(core.clone(), BufReader::new(worker)).unwrap();
        let turn = || inbox.shared.turn.load(Ordering::Acquire);

        // Waiting for work, the main thread reads the call itself and runs it with the turn.
        send(&nm, &task(1));
        assert_eq!(function(inbox.next()), "f1");
        assert_eq!(turn(), RUNNING);

        // A thread blocking on a reply while the call runs makes the reader thread read.
        let asker = {
            let core = core.clone();
            std::thread::spawn(move || core.control(Control::Resources))
        };
        let mut from_worker = BufReader::new(nm.try_clone().unwrap());
        let mut buf = Vec::new();
        transport::read_frame(&mut from_worker, &mut buf, 1 << 20)
            .unwrap()
            .unwrap();
        let req = match transport::decode_frame(&buf).unwrap() {
            FromWorker::Control { req, .. } => req,
            other => panic!("expected the control request, got {other:?}"),
        };
        send(
            &nm,
            &ToWorker::ControlReply {
                req,
                result: Ok(ControlReply::Done),
            },
        );
        assert_eq!(asker.join().unwrap().unwrap(), ControlReply::Done);
        assert_eq!(turn(), READER);

        // Calls the reader thread read meanwhile come first, in order, then the main thread
        // takes the turn back for the next one.
        send(&nm, &task(2));
        send(&nm, &task(3));
        assert_eq!(function(inbox.next()), "f2");
        assert_eq!(function(inbox.next()), "f3");
        // The next call comes once the main thread has taken the turn back and reads itself.
        let later = {
            let nm = nm.try_clone().unwrap();
            let shared = inbox.shared.clone();
            std::thread::spawn(move || {
                while shared.turn.load(Ordering::Acquire) != MAIN {
                    std::thread::yield_now();
                }
                send(&nm, &task(4));
            })
        };
        assert_eq!(function(inbox.next()), "f4");
        later.join().unwrap();
        assert_eq!(turn(), RUNNING);

        // Handed over for good (threaded and async actors): the reader thread reads.
        send(&nm, &ToWorker::Exit);
        let jobs = inbox.into_jobs();
        assert!(matches!(
            jobs.recv_timeout(std::time::Duration::from_secs(10)),
            Ok(Job::Exit)
        ));
        // A worker exits when its connection ends: the node manager's end stays open for the
        // rest of the test process, or the reader thread would end it.
        std::mem::forget(nm);
        std::mem::forget(jobs);
    }
}
