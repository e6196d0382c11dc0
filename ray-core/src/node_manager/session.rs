//! Resumable node sessions: a control session between two nodes outlives a broken
//! connection (issue 11: "a dropped connection only makes it suspect").
//!
//! Both ends number the frames they send on a session (acknowledgements aside) and keep those
//! the other end has not acknowledged yet. Each end counts the frames it received and tells
//! the other (`SessionAck`, written by the writer task at most every [`ACK_PERIOD`] while
//! there is something to acknowledge), which then forgets them. When the connection breaks,
//! the node that opened the session connects again and names the session and how many frames
//! it received; the other end answers how many it received; each writer sends again what the
//! other end did not get, in order, then goes on. So no message between two live nodes is
//! lost or doubled by a broken connection, and the state machines on both ends never see the
//! break: only the placement of new work avoids the node meanwhile (it is *suspect*).
//!
//! A node is dead only when etcd says so (its lease expired): then the sessions go for good.
//! A session also ends if the other end does not know it any more (it started again), if it
//! cannot be resumed for [`MAX_SUSPECT`], or if more than [`MAX_UNACKED`] bytes wait for an
//! acknowledgement: its work is then handled as lost with the node.
//!
//! This module does no I/O of its own decision: the writer task writes what it is given to the
//! stream it is given; opening connections is the caller's (`links.rs`, `remote.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How often a writer acknowledges what its reader received, at most.
pub(crate) const ACK_PERIOD: Duration = Duration::from_millis(100);

/// A session whose connection cannot be made again for this long is given up.
pub(crate) const MAX_SUSPECT: Duration = Duration::from_secs(60);

/// Frames smaller than this are gathered into one write.
const GATHER: usize = 64 * 1024;

/// Bytes sent and not acknowledged after which a session is given up.
pub(crate) const MAX_UNACKED: usize = 512 << 20;

/// What the reader and the writer of one session share.
pub(crate) struct Counters {
    /// Frames received from the other end (acknowledgements aside).
    pub received: AtomicU64,
    /// Frames of ours the other end said it received.
    pub acked: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Arc<Counters> {
        Arc::new(Counters {
            received: AtomicU64::new(0),
            acked: AtomicU64::new(0),
        })
    }

    /// A frame that is not an acknowledgement arrived.
    pub(crate) fn count_received(&self) {
        self.received.fetch_add(1, Ordering::AcqRel);
    }

    /// The other end acknowledged `n` frames.
    pub(crate) fn acknowledged(&self, n: u64) {
        self.acked.fetch_max(n, Ordering::AcqRel);
    }
}

/// A connection for the writer: the stream, and how many of our frames the other end had
/// received when it was made.
pub(crate) struct Attach<W> {
    pub stream: W,
    pub peer_received: u64,
}

/// Frames sent and not acknowledged yet, numbered from `first`.
#[derive(Default)]
pub(crate) struct Unacked {
    frames: VecDeque<Vec<u8>>,
    first: u64,
    bytes: usize,
}

impl Unacked {
    /// Keeps `frame`; returns its number.
    pub(crate) fn push(&mut self, frame: Vec<u8>) -> u64 {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        self.first + self.frames.len() as u64 - 1
    }

    /// Forgets the frames numbered below `n` (the other end has them).
    pub(crate) fn trim(&mut self, n: u64) {
        while self.first < n {
            let Some(f) = self.frames.pop_front() else {
                self.first = n;
                return;
            };
            self.bytes -= f.len();
            self.first += 1;
        }
    }

    /// The frames numbered `n` and up, in order (after a reconnection).
    pub(crate) fn from(&self, n: u64) -> impl Iterator<Item = &Vec<u8>> {
        let skip = n.saturating_sub(self.first) as usize;
        self.frames.iter().skip(skip)
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Why a session writer stopped.
#[derive(Debug, PartialEq)]
pub(crate) enum WriterEnd {
    /// Its outbox was closed (the session is over on this side).
    Closed,
    /// Too much waited for an acknowledgement.
    Overflow,
    /// The connection broke and no other will come.
    NoConnection,
}

/// Writes `frame` to `stream` if there is one; a failed write drops the stream (the
/// connection broke: the frame stays unacknowledged and is sent again on the next one).
async fn write_to<W: AsyncWrite + Unpin>(stream: &mut Option<W>, frame: &[u8]) {
    if let Some(s) = stream {
        if s.write_all(frame).await.is_err() {
            *stream = None;
        }
    }
}

async fn flush<W: AsyncWrite + Unpin>(stream: &mut Option<W>) {
    if let Some(s) = stream {
        if s.flush().await.is_err() {
            *stream = None;
        }
    }
}

/// The writer of a session: frames from `rx` are numbered, kept until acknowledged, and
/// written to the current connection; while there is none they only wait, and each new one
/// (from `attach`) first gets again what the other end did not receive. `ack` encodes an
/// acknowledgement of what this end's reader counted.
pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(
    mut rx: crate::transport::OutboxRx,
    mut attach: mpsc::UnboundedReceiver<Attach<W>>,
    counters: Arc<Counters>,
    ack: fn(u64) -> Vec<u8>,
) -> WriterEnd {
    let mut unacked = Unacked::default();
    let mut stream: Option<W> = None;
    let mut more_connections = true;
    let mut acked_sent = u64::MAX;
    let mut tick = tokio::time::interval(ACK_PERIOD);
    loop {
        if stream.is_none() && !more_connections {
            return WriterEnd::NoConnection;
        }
        tokio::select! {
            next = attach.recv(), if more_connections => match next {
                Some(Attach { stream: s, peer_received }) => {
                    unacked.trim(peer_received.max(counters.acked.load(Ordering::Acquire)));
                    stream = Some(s);
                    for frame in unacked.from(peer_received) {
                        write_to(&mut stream, frame).await;
                    }
                    flush(&mut stream).await;
                    acked_sent = u64::MAX;
                }
                None => more_connections = false,
            },
            frame = rx.recv() => match frame {
                Some(f) if !f.is_empty() => {
                    // What is queued already goes out with it: small frames gathered into one
                    // write (one TLS record, one system call), large ones as they are.
                    let mut batch: Vec<u8> = Vec::new();
                    let mut closing = false;
                    let mut next = Some(f);
                    while let Some(f) = next.take() {
                        if f.len() >= GATHER {
                            if !batch.is_empty() {
                                write_to(&mut stream, &batch).await;
                                batch.clear();
                            }
                            write_to(&mut stream, &f).await;
                        } else {
                            batch.extend_from_slice(&f);
                        }
                        unacked.push(f);
                        if batch.len() >= GATHER {
                            write_to(&mut stream, &batch).await;
                            batch.clear();
                        }
                        match rx.try_recv() {
                            Ok(f) if !f.is_empty() => next = Some(f),
                            Ok(_) => closing = true,
                            Err(_) => {}
                        }
                    }
                    if !batch.is_empty() {
                        write_to(&mut stream, &batch).await;
                    }
                    flush(&mut stream).await;
                    if closing {
                        if let Some(s) = &mut stream {
                            let _ = s.shutdown().await;
                        }
                        return WriterEnd::Closed;
                    }
                }
                _ => {
                    if let Some(s) = &mut stream {
                        let _ = s.shutdown().await;
                    }
                    return WriterEnd::Closed;
                }
            },
            _ = tick.tick() => {
                unacked.trim(counters.acked.load(Ordering::Acquire));
                let received = counters.received.load(Ordering::Acquire);
                if stream.is_some() && received != acked_sent {
                    write_to(&mut stream, &ack(received)).await;
                    flush(&mut stream).await;
                    acked_sent = received;
                }
            }
        }
        if unacked.bytes() > MAX_UNACKED {
            return WriterEnd::Overflow;
        }
    }
}

/// The write half of a session's connection.
pub(crate) type SessionStream = Box<dyn AsyncWrite + Unpin + Send>;

/// A control session another node holds here, kept across its connections (found by node,
/// incarnation and session id).
pub(crate) struct PeerSession {
    pub proc: crate::ids::ProcId,
    pub counters: Arc<Counters>,
    pub attach: mpsc::UnboundedSender<Attach<SessionStream>>,
    /// The connection now serving it (by number): a reader of an older one stops, and only
    /// dispatches while holding this, so nothing is counted after a newer connection read
    /// the count.
    pub gate: std::sync::Mutex<u64>,
}

/// Encodes `msg` as one frame (for acknowledgements).
pub(crate) fn frame<M: serde::Serialize>(msg: &M) -> Vec<u8> {
    let mut f = Vec::new();
    // Acknowledgements are a variant and a number: encoding cannot fail.
    let _ = crate::codec::encode_frame(msg, &mut f);
    f
}

/// A new session id: unique among the sessions this process opens (a node that starts again
/// is a new incarnation, whose sessions are told apart by that).
pub(crate) fn new_session_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn ack(n: u64) -> Vec<u8> {
        // A frame the test's reader tells apart: length 8 and a u64 with the top bit set.
        let mut f = 8u32.to_le_bytes().to_vec();
        f.extend_from_slice(&(n | 1 << 63).to_le_bytes());
        f
    }

    fn data(i: u64) -> Vec<u8> {
        let mut f = 8u32.to_le_bytes().to_vec();
        f.extend_from_slice(&i.to_le_bytes());
        f
    }

    /// Reads frames of the test's format from `r`: data numbers, acknowledgements dropped.
    async fn read_numbers<R: tokio::io::AsyncRead + Unpin>(r: &mut R, want: usize) -> Vec<u64> {
        let mut out = Vec::new();
        while out.len() < want {
            let mut f = [0u8; 12];
            if r.read_exact(&mut f).await.is_err() {
                break;
            }
            let v = u64::from_le_bytes(f[4..].try_into().unwrap());
            if v & 1 << 63 == 0 {
                out.push(v);
            }
        }
        out
    }

    #[tokio::test]
    async fn what_a_broken_connection_lost_is_sent_again_in_order_and_nothing_twice() {
        let (tx, rx) = crate::transport::StreamOutbox::new();
        let (attach_tx, attach_rx) = mpsc::unbounded_channel();
        let counters = Counters::new();
        let writer = tokio::spawn(run_writer(rx, attach_rx, counters.clone(), ack));
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        attach_tx
            .send(Attach {
                stream: ours,
                peer_received: 0,
            })
            .unwrap();
        for i in 0..10 {
            tx.send_frame(data(i));
        }
        assert_eq!(
            read_numbers(&mut theirs, 10).await,
            (0..10).collect::<Vec<_>>()
        );
        // The other end acknowledged 4 of them; then the connection breaks and frames 10..15
        // are sent meanwhile.
        counters.acknowledged(4);
        drop(theirs);
        for i in 10..15 {
            tx.send_frame(data(i));
        }
        // It comes back, having received 7: 7..15 again, in order.
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        attach_tx
            .send(Attach {
                stream: ours,
                peer_received: 7,
            })
            .unwrap();
        assert_eq!(
            read_numbers(&mut theirs, 8).await,
            (7..15).collect::<Vec<_>>()
        );
        tx.send_frame(data(15));
        assert_eq!(read_numbers(&mut theirs, 1).await, vec![15]);
        drop(tx);
        assert_eq!(writer.await.unwrap(), WriterEnd::Closed);
    }

    #[test]
    fn unacked_frames_are_numbered_trimmed_and_replayed_from_any_point() {
        let mut u = Unacked::default();
        for i in 0..5u8 {
            assert_eq!(u.push(vec![i; 3]), u64::from(i));
        }
        assert_eq!(u.bytes(), 15);
        u.trim(2);
        assert_eq!(u.bytes(), 9);
        let again: Vec<u8> = u.from(3).map(|f| f[0]).collect();
        assert_eq!(again, vec![3, 4]);
        let all: Vec<u8> = u.from(0).map(|f| f[0]).collect();
        assert_eq!(all, vec![2, 3, 4], "what was trimmed is gone");
        u.trim(9);
        assert_eq!((u.bytes(), u.from(0).count()), (0, 0));
        assert_eq!(u.push(vec![9]), 9, "numbering goes on");
    }
}
