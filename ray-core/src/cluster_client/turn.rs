//! Who reads a remote driver's connection: a thread blocked on a reply reads it itself, the
//! reader thread reads while nothing waits.
//!
//! A synchronous call's round trip crosses several processes, and on an idle machine each
//! thread that has to wake up costs tens of microseconds. If the reader thread always read the
//! node's messages, every reply would wake it and then the thread waiting for it. Instead, a
//! thread about to block on a reply reads the connection itself ([`Turn::wait`]) and handles
//! every message that comes until its own reply has, so the reply wakes only it:
//!
//! - When it is done and nothing else awaits a reply, the turn stays free ([`Reader::Idle`]):
//!   the next call takes it at no cost, so a loop of synchronous calls wakes no other thread.
//!   Meanwhile the reader thread looks every [`TICK`] whether a message (worker output) came,
//!   and takes the turn back once a whole tick passed without a call. (While a waiting thread
//!   reads, the reader thread waits untimed, so a long `get` costs it nothing.)
//! - When the reader thread has the turn, an asking thread signals it out of its `poll` (while
//!   the request is still on its way, off the call's path) and is handed the turn.
//! - When other requests still await replies (another thread's, or an `async` get's), the
//!   turn goes back to the reader thread.
//!
//! One waiting thread reads at a time. Others wait on their slots as before: whoever reads
//! fills them. Whenever the turn cannot move (the reader thread is blocked in the middle of a
//! message, or writing worker output to a stdout nobody reads), the asking thread just waits
//! on its slot, which the reader thread fills: the hand-over is only ever a shortcut.

use super::ReaderOutput;
use crate::client::ProcessClient;
use crate::protocol::worker::ToWorker;
use crate::slot::{Poke, Slot};
use crate::transport::{self, MAX_TO_WORKER};
use crate::wakeup::Wakeup;
use std::io::BufReader;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How often the reader thread looks at a connection nobody reads ([`Reader::Idle`]).
const TICK: Duration = Duration::from_millis(10);

/// Who reads the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reader {
    /// The reader thread.
    Thread,
    /// The waiting thread holding this ticket.
    Waiter(u64),
    /// Nobody: the last waiting thread is done and nothing awaits a reply. The next waiting
    /// thread takes the turn at once; the reader thread looks every [`TICK`].
    Idle,
}

struct TurnState {
    reader: Reader,
    /// A waiting thread that asked for the turn (its ticket), and how to wake it when given.
    asked: Option<(u64, Arc<dyn Poke>)>,
    /// The connection ended: nobody reads any more.
    ended: bool,
    /// How many times a waiting thread took a free turn (the reader thread gives the turn
    /// back to itself after a tick without one).
    taken: u64,
    /// The reader thread waits, untimed, for a waiting thread to be done reading: that
    /// thread wakes it when it leaves the turn free.
    parked: bool,
}

/// The connection's reading end and the frame being read: held by whoever reads.
struct ReadEnd {
    rd: BufReader<ray_net::BlockingReader>,
    buf: Vec<u8>,
}

/// The turn to read a remote driver's connection (see the module's text).
pub(crate) struct Turn {
    state: Mutex<TurnState>,
    /// The reader thread waits here while a waiting thread reads.
    given_back: Condvar,
    end: Mutex<ReadEnd>,
    socket: RawFd,
    /// Interrupts the reader thread's `poll` when a waiting thread asks.
    wake: Wakeup,
    output: Arc<ReaderOutput>,
    next_ticket: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Turn {
    /// The turn over `rd`, with the reader thread reading, and that thread started.
    pub(super) fn start(
        client: Arc<ProcessClient>,
        rd: ray_net::BlockingReader,
        output: Arc<ReaderOutput>,
    ) -> std::io::Result<Arc<Turn>> {
        let turn = Arc::new(Turn {
            state: Mutex::new(TurnState {
                reader: Reader::Thread,
                asked: None,
                ended: false,
                taken: 0,
                parked: false,
            }),
            given_back: Condvar::new(),
            socket: rd.as_raw_fd(),
            end: Mutex::new(ReadEnd {
                rd: BufReader::with_capacity(64 * 1024, rd),
                buf: Vec::new(),
            }),
            wake: Wakeup::new()?,
            output,
            next_ticket: AtomicU64::new(1),
        });
        let t = turn.clone();
        std::thread::Builder::new()
            .name("ray-cluster-reader".into())
            .spawn(move || t.reader_thread(&client))?;
        Ok(turn)
    }

    /// Blocks until `slot` is filled, reading the connection meanwhile when this thread can
    /// get the turn. Every reply fills its slot, and so does the connection's end
    /// ([`ProcessClient::connection_lost`]), so this returns once either came.
    pub(crate) fn wait<T: Send + 'static>(
        &self,
        client: &ProcessClient,
        slot: &Arc<Slot<T>>,
    ) -> Option<T> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        // Leaves the turn also when a callback run while reading panics.
        let leave = Leave {
            turn: self,
            client,
            ticket,
        };
        loop {
            if slot.is_filled() {
                break;
            }
            let mut st = lock(&self.state);
            if st.ended {
                break;
            }
            match st.reader {
                Reader::Idle => {
                    st.reader = Reader::Waiter(ticket);
                    st.taken = st.taken.wrapping_add(1);
                    drop(st);
                    self.read_until(client, &|| slot.is_filled());
                    break;
                }
                Reader::Waiter(t) if t == ticket => {
                    drop(st);
                    self.read_until(client, &|| slot.is_filled());
                    break;
                }
                // Another waiting thread reads, and fills this slot when its reply comes.
                Reader::Waiter(_) => break,
                Reader::Thread => match &st.asked {
                    None => {
                        let poke: Arc<dyn Poke> = slot.clone();
                        st.asked = Some((ticket, poke));
                        drop(st);
                        self.wake.signal();
                    }
                    Some((t, _)) if *t == ticket => drop(st),
                    // Another thread asked first: the turn is not for this one.
                    Some(_) => break,
                },
            }
            // Until the reader thread gives the turn (or the reply came meanwhile).
            slot.wait_or_poke();
        }
        drop(leave);
        slot.wait(None)
    }

    /// The waiting thread holding `ticket` is done: its request for the turn is withdrawn.
    /// The turn, if it had it, stays free when nothing awaits a reply, else goes back to the
    /// reader thread.
    fn leave(&self, client: &ProcessClient, ticket: u64) {
        let mut st = lock(&self.state);
        if matches!(st.asked, Some((t, _)) if t == ticket) {
            st.asked = None;
        }
        if st.reader == Reader::Waiter(ticket) {
            if client.awaits_replies() {
                st.reader = Reader::Thread;
                drop(st);
                self.given_back.notify_one();
            } else {
                st.reader = Reader::Idle;
                // The reader thread looks again every tick from now on.
                if st.parked {
                    drop(st);
                    self.given_back.notify_one();
                }
            }
        }
    }

    /// A request whose reply no thread will block on (an `async` get) was sent: someone must
    /// read.
    pub(crate) fn reader_needed(&self) {
        let mut st = lock(&self.state);
        if st.reader == Reader::Idle {
            st.reader = Reader::Thread;
            drop(st);
            self.given_back.notify_one();
        }
    }

    /// Whether a message may be waiting to be read on a connection nobody reads.
    fn anything_came(&self) -> bool {
        let Ok(end) = self.end.try_lock() else {
            return false; // someone reads
        };
        if !end.rd.buffer().is_empty() || end.rd.get_ref().has_buffered() {
            return true;
        }
        let mut fd = libc::pollfd {
            fd: self.socket,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `fd` is a live pollfd for the duration of the call; no wait (timeout 0).
        unsafe { libc::poll(&mut fd, 1, 0) > 0 }
    }

    /// Reads and handles messages until `done` (called by the waiting thread with the turn).
    fn read_until(&self, client: &ProcessClient, done: &dyn Fn() -> bool) {
        let mut end = lock(&self.end);
        while !done() {
            if let Err(why) = end.read_one(client, &self.output) {
                drop(end);
                self.ended(client, &why);
                return;
            }
        }
    }

    /// The connection ended: nobody reads any more, and everything waiting fails.
    fn ended(&self, client: &ProcessClient, why: &str) {
        lock(&self.state).ended = true;
        self.given_back.notify_all();
        client.connection_lost(why);
    }

    /// The reader thread: reads while it has the turn, gives it to a waiting thread that asks,
    /// and waits while that thread reads.
    fn reader_thread(&self, client: &ProcessClient) {
        // `taken` when this thread last looked at a free turn, if it did since it last waited
        // for a waiting thread.
        let mut seen = None;
        loop {
            {
                let mut st = lock(&self.state);
                loop {
                    if st.ended {
                        return;
                    }
                    match st.reader {
                        Reader::Thread => break,
                        Reader::Waiter(_) => {
                            st.parked = true;
                            st = self.given_back.wait(st).unwrap_or_else(|e| e.into_inner());
                            st.parked = false;
                            seen = None;
                        }
                        Reader::Idle => {
                            // Nobody reads: take the turn back when a message came, or when a
                            // whole tick passed without a call.
                            if seen == Some(st.taken) || self.anything_came() {
                                st.reader = Reader::Thread;
                                break;
                            }
                            seen = Some(st.taken);
                            st = self
                                .given_back
                                .wait_timeout(st, TICK)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                }
            }
            let mut end = lock(&self.end);
            let mut readable = false;
            let given = loop {
                {
                    let mut st = lock(&self.state);
                    if let Some((ticket, poke)) = st.asked.take() {
                        st.reader = Reader::Waiter(ticket);
                        break poke;
                    }
                }
                if !readable && end.rd.buffer().is_empty() && !end.rd.get_ref().has_buffered() {
                    readable = self.wake.poll(self.socket, libc::POLLIN);
                    continue;
                }
                readable = false;
                if let Err(why) = end.read_one(client, &self.output) {
                    drop(end);
                    self.ended(client, &why);
                    return;
                }
            };
            drop(end);
            given.poke();
        }
    }
}

/// Leaves the turn when dropped (see [`Turn::leave`]).
struct Leave<'a> {
    turn: &'a Turn,
    client: &'a ProcessClient,
    ticket: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.turn.leave(self.client, self.ticket);
    }
}

impl ReadEnd {
    /// Reads one message from the node and handles it: replies complete what waits for them,
    /// worker output goes to this program's stdout or stderr. An error says why the
    /// connection ended.
    fn read_one(&mut self, client: &ProcessClient, output: &ReaderOutput) -> Result<(), String> {
        use std::io::Write;
        match transport::read_frame(&mut self.rd, &mut self.buf, MAX_TO_WORKER) {
            Ok(Some(())) => {}
            Ok(None) => return Err("the node closed the connection".into()),
            Err(e) => return Err(e.to_string()),
        }
        let msg: ToWorker = match transport::decode_frame(&self.buf) {
            Ok(m) => m,
            Err(e) => return Err(format!("a message that does not decode: {e}")),
        };
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        let Some(msg) = client.take_reply(msg) else {
            return Ok(());
        };
        match msg {
            ToWorker::Log { stderr, line } => output.writing(stderr, || {
                if stderr {
                    let _ = std::io::stderr().lock().write_all(&line);
                } else {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&line);
                    let _ = out.flush();
                }
            }),
            ToWorker::Exit => return Err("the node is stopping".into()),
            ToWorker::Welcome { .. }
            | ToWorker::Refused { .. }
            | ToWorker::Execute(_)
            | ToWorker::Cancel { .. }
            | ToWorker::SessionAck { .. }
            | ToWorker::ActorLocation { .. } => {}
            // Taken by `take_reply`.
            ToWorker::GetReplyPart { .. }
            | ToWorker::GetReply { .. }
            | ToWorker::WaitReply { .. }
            | ToWorker::Allocated { .. }
            | ToWorker::ControlReply { .. } => {}
        }
        Ok(())
    }
}
