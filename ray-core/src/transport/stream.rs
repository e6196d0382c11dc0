//! A connection's outgoing frames over a stream that is not a local socket (TLS to another
//! node, or to a driver on another machine): encoded by whoever sends, queued, and written in
//! order by the connection's writer task.
//!
//! The queue counts its bytes. A peer that stops reading would otherwise make it grow without
//! bound, so its owner holds back what may wait: a driver's connection stops reading the
//! driver's requests while their replies pile up ([`StreamOutbox::wait_until_below`]), and
//! worker output for a driver is left out past a backlog and counted
//! ([`StreamOutbox::send_unless_backlogged`]), as Ray's publisher drops log messages past
//! 10 MiB buffered for a subscriber.

use crate::codec;
use crate::error::Result;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Outgoing frames of a connection; clones are handles of the same queue.
#[derive(Clone)]
pub(crate) struct StreamOutbox {
    tx: mpsc::UnboundedSender<Queued>,
    shared: Arc<Shared>,
}

/// A frame in the queue, and whether [`StreamOutbox::send_unless_backlogged`] sent it (it
/// counts in that backlog until taken).
type Queued = (Vec<u8>, bool);

/// What the handles and the receiving end share.
#[derive(Default)]
struct Shared {
    closed: AtomicBool,
    /// Memory held by the frames sent and not yet taken by the writer (their capacity, which
    /// encoding may have left up to twice their length).
    queued: AtomicUsize,
    /// The part of `queued` that [`StreamOutbox::send_unless_backlogged`] sent.
    droppable: AtomicUsize,
    /// Tasks in [`StreamOutbox::wait_until_below`]: the writer wakes them only if there are
    /// any, so taking a frame costs no lock otherwise.
    waiting: AtomicUsize,
    taken: tokio::sync::Notify,
    left_out: Mutex<LeftOut>,
}

/// What [`StreamOutbox::send_unless_backlogged`] left out.
#[derive(Default)]
struct LeftOut {
    /// Messages since they were last taken ([`StreamOutbox::take_left_out`]).
    messages: u64,
    /// Their frames' bytes.
    bytes: u64,
    /// Messages left out in all.
    in_all: u64,
}

/// The receiving end, drained by the connection's writer task: taking a frame counts it out
/// of the queue.
pub(crate) struct OutboxRx {
    rx: mpsc::UnboundedReceiver<Queued>,
    shared: Arc<Shared>,
}

impl OutboxRx {
    /// The next frame, waiting for one; `None` once every handle is gone.
    pub(crate) async fn recv(&mut self) -> Option<Vec<u8>> {
        let (frame, droppable) = self.rx.recv().await?;
        self.took(frame.capacity(), droppable);
        Some(frame)
    }

    /// The next frame if one is queued.
    pub(crate) fn try_recv(&mut self) -> std::result::Result<Vec<u8>, mpsc::error::TryRecvError> {
        let (frame, droppable) = self.rx.try_recv()?;
        self.took(frame.capacity(), droppable);
        Ok(frame)
    }

    /// Whether no frame is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    fn took(&self, len: usize, droppable: bool) {
        if droppable {
            self.shared.droppable.fetch_sub(len, Ordering::Relaxed);
        }
        self.shared.queued.fetch_sub(len, Ordering::SeqCst);
        if self.shared.waiting.load(Ordering::SeqCst) > 0 {
            self.shared.taken.notify_waiters();
        }
    }
}

impl StreamOutbox {
    /// An outbox and the receiving end its writer task drains.
    pub(crate) fn new() -> (Self, OutboxRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let outbox = StreamOutbox {
            tx,
            shared: shared.clone(),
        };
        (outbox, OutboxRx { rx, shared })
    }

    /// Encodes `msg` and queues it. Sending on a closed outbox does nothing.
    pub(crate) fn send<M: Serialize>(&self, msg: &M) -> Result<()> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut frame = Vec::new();
        codec::encode_frame(msg, &mut frame)?;
        self.push(frame, false);
        Ok(())
    }

    fn push(&self, frame: Vec<u8>, droppable: bool) {
        let len = frame.capacity();
        if droppable {
            self.shared.droppable.fetch_add(len, Ordering::Relaxed);
        }
        self.shared.queued.fetch_add(len, Ordering::SeqCst);
        // Failing only once the receiving end is gone, which marked the outbox closed.
        if self.tx.send((frame, droppable)).is_err() {
            if droppable {
                self.shared.droppable.fetch_sub(len, Ordering::Relaxed);
            }
            self.shared.queued.fetch_sub(len, Ordering::SeqCst);
        }
    }

    /// Queues an encoded frame as it is (tests of the writers).
    #[cfg(test)]
    pub(crate) fn send_frame(&self, frame: Vec<u8>) {
        self.push(frame, false);
    }

    /// Sends `msg` unless more than `backlog` bytes of what this method sent wait for the
    /// writer already (other frames do not count: worker output is not left out because a
    /// large reply is being written). Once it left something out, it sends again only when at
    /// most half of `backlog` waits, so a reader that keeps up only in part is told of what
    /// it missed now and then, not every few lines. What it leaves out is counted until
    /// [`take_left_out`](Self::take_left_out). `None` if sent (or closed), else how many
    /// messages this outbox left out in all, this one included.
    pub(crate) fn send_unless_backlogged<M: Serialize>(
        &self,
        msg: &M,
        backlog: usize,
    ) -> Result<Option<u64>> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut frame = Vec::new();
        codec::encode_frame(msg, &mut frame)?;
        let mut left_out = self.left_out();
        let limit = if left_out.messages > 0 {
            backlog / 2
        } else {
            backlog
        };
        if self.queued_droppable() <= limit {
            drop(left_out);
            self.push(frame, true);
            return Ok(None);
        }
        left_out.messages = left_out.messages.saturating_add(1);
        left_out.bytes = left_out.bytes.saturating_add(frame.len() as u64);
        left_out.in_all = left_out.in_all.saturating_add(1);
        Ok(Some(left_out.in_all))
    }

    /// How many messages, and how many bytes, [`send_unless_backlogged`] left out since the
    /// last time they were taken, once at most half of `backlog` waits (`None`: none, or
    /// more waits).
    ///
    /// [`send_unless_backlogged`]: Self::send_unless_backlogged
    pub(crate) fn take_left_out(&self, backlog: usize) -> Option<(u64, u64)> {
        let mut left_out = self.left_out();
        if left_out.messages == 0 || self.queued_droppable() > backlog / 2 {
            return None;
        }
        let taken = (left_out.messages, left_out.bytes);
        (left_out.messages, left_out.bytes) = (0, 0);
        Some(taken)
    }

    fn left_out(&self) -> std::sync::MutexGuard<'_, LeftOut> {
        self.shared
            .left_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The part of [`queued`](Self::queued) that
    /// [`send_unless_backlogged`](Self::send_unless_backlogged) sent.
    pub(crate) fn queued_droppable(&self) -> usize {
        self.shared.droppable.load(Ordering::Relaxed)
    }

    /// Memory held by frames sent and not yet taken by the writer.
    pub(crate) fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }

    /// Waits until at most `limit` bytes wait for the writer (or the outbox closed).
    pub(crate) async fn wait_until_below(&self, limit: usize) {
        if self.queued() <= limit {
            return;
        }
        /// Counts this task out of `waiting` however the wait ends (a dropped future too).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.shared.waiting);
        loop {
            let taken = self.shared.taken.notified();
            tokio::pin!(taken);
            // Registered before the check, so a frame taken after it wakes us.
            taken.as_mut().enable();
            if self.queued() <= limit || self.is_closed() {
                break;
            }
            taken.await;
        }
    }

    /// Whether `other` is a handle of this same outbox.
    pub(crate) fn same(&self, other: &StreamOutbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether [`close`](Self::close) was called (or the writer went).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Nothing more is sent; the writer ends once what is queued is written.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let _ = self.tx.send((Vec::new(), false));
        if self.shared.waiting.load(Ordering::SeqCst) > 0 {
            self.shared.taken.notify_waiters();
        }
    }

    /// Writes queued frames to `w` until the outbox is closed (an empty frame marks the end)
    /// or the stream fails. Small frames queued together go out in one write (one TLS record
    /// and one system call instead of one per frame); a large frame is written as it is.
    pub(crate) async fn run_writer<W: tokio::io::AsyncWrite + Unpin>(mut rx: OutboxRx, mut w: W) {
        /// Frames are gathered up to this size; larger ones are not copied.
        const GATHER: usize = 64 * 1024;
        let mut batch: Vec<u8> = Vec::new();
        let mut end = false;
        while let Some(frame) = rx.recv().await {
            if frame.is_empty() {
                break;
            }
            let mut next = Some(frame);
            while let Some(frame) = next.take() {
                if frame.len() >= GATHER {
                    if (!batch.is_empty() && w.write_all(&batch).await.is_err())
                        || w.write_all(&frame).await.is_err()
                    {
                        end = true;
                        break;
                    }
                    batch.clear();
                } else {
                    batch.extend_from_slice(&frame);
                }
                if batch.len() >= GATHER {
                    break;
                }
                match rx.try_recv() {
                    Ok(f) if f.is_empty() => end = true,
                    Ok(f) => next = Some(f),
                    Err(_) => {}
                }
            }
            if !batch.is_empty() && w.write_all(&batch).await.is_err() {
                break;
            }
            batch.clear();
            if end || (rx.is_empty() && w.flush().await.is_err()) {
                break;
            }
        }
        let _ = w.shutdown().await;
    }
}

impl Drop for OutboxRx {
    /// The writer is gone: whoever waits for room is not left waiting.
    fn drop(&mut self) {
        self.rx.close();
        self.shared.closed.store(true, Ordering::SeqCst);
        if self.shared.waiting.load(Ordering::SeqCst) > 0 {
            self.shared.taken.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_reader_waiting_for_room_goes_on_once_the_peer_reads_and_not_before() {
        let (outbox, rx) = StreamOutbox::new();
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(StreamOutbox::run_writer(rx, ours));
        for _ in 0..16 {
            outbox.send_frame(vec![7u8; 1 << 20]);
        }
        assert!(outbox.queued() > 8 << 20, "{}", outbox.queued());
        let waiting = outbox.clone();
        let waiter = tokio::spawn(async move { waiting.wait_until_below(1 << 20).await });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "nothing was read yet");
        let mut got = vec![0u8; 16 << 20];
        theirs.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|b| *b == 7));
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken once the frames were taken")
            .unwrap();
        assert_eq!(outbox.queued(), 0);
        outbox.close();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_waiter_is_not_left_waiting_when_the_writer_is_gone() {
        let (outbox, rx) = StreamOutbox::new();
        outbox.send_frame(vec![1u8; 4096]);
        let waiting = outbox.clone();
        let waiter = tokio::spawn(async move { waiting.wait_until_below(0).await });
        tokio::task::yield_now().await;
        drop(rx);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken when the writer went")
            .unwrap();
        assert!(outbox.is_closed());
    }

    #[test]
    fn past_its_backlog_a_message_is_left_out_and_counted_until_taken() {
        let (outbox, mut rx) = StreamOutbox::new();
        let line = vec![b'x'; 1000];
        // Other frames waiting do not count.
        outbox.send_frame(vec![0u8; 100_000]);
        assert_eq!(outbox.send_unless_backlogged(&line, 10_000).unwrap(), None);
        let mut sent = 1;
        while outbox
            .send_unless_backlogged(&line, 10_000)
            .unwrap()
            .is_none()
        {
            sent += 1;
            assert!(sent < 100, "the backlog never filled");
        }
        assert!(outbox.queued_droppable() > 10_000);
        assert_eq!(
            outbox.send_unless_backlogged(&line, 10_000).unwrap(),
            Some(2)
        );
        assert_eq!(rx.try_recv().unwrap().len(), 100_000);
        let frame_len = rx.try_recv().unwrap().len() as u64;
        while rx.try_recv().is_ok() {}
        assert_eq!(outbox.queued(), 0, "taken frames are counted out");
        assert_eq!(outbox.queued_droppable(), 0);
        assert_eq!(outbox.take_left_out(10_000), Some((2, 2 * frame_len)));
        assert_eq!(outbox.take_left_out(10_000), None);
        assert_eq!(outbox.send_unless_backlogged(&line, 10_000).unwrap(), None);
        assert_eq!(rx.try_recv().unwrap().len() as u64, frame_len);
        // Counted in all across reports.
        while outbox
            .send_unless_backlogged(&line, 10_000)
            .unwrap()
            .is_none()
        {}
        assert_eq!(
            outbox.send_unless_backlogged(&line, 10_000).unwrap(),
            Some(4)
        );
        // Nothing is sent again, nor reported, until at most half the backlog waits.
        let mut more = 0;
        while outbox.queued_droppable() > 5_000 {
            more += 1;
            assert_eq!(outbox.take_left_out(10_000), None);
            assert!(
                outbox
                    .send_unless_backlogged(&line, 10_000)
                    .unwrap()
                    .is_some()
            );
            rx.try_recv().unwrap();
        }
        assert!(more > 1, "{more}");
        assert_eq!(outbox.take_left_out(10_000).unwrap().0, 2 + more);
        assert_eq!(outbox.send_unless_backlogged(&line, 10_000).unwrap(), None);
    }
}
