//! Connections that have not proved anything yet, bounded without letting a stranger block a
//! listener.
//!
//! A listener that waits while N unauthenticated connections are under way can be blocked by
//! anyone who opens N connections and says nothing (each held for the whole time limit,
//! reopened as it ends). [`PendingConnections`] bounds them the other way: a new connection
//! past the limit ends the *oldest* one still unauthenticated. A real client authenticates in
//! milliseconds, so only one that stays silent while `limit` newer connections arrive is ended.
//! Used by the cluster's node listener (`ray-cli`'s `control.rs`) and the dashboard.

use std::collections::VecDeque;
use tokio::sync::oneshot;

/// The unauthenticated connections of one listener, oldest first.
pub struct PendingConnections {
    limit: usize,
    next: u64,
    /// Dropping an entry's sender ends that connection (its receiver resolves).
    pending: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl PendingConnections {
    /// At most `limit` (at least 1) connections unauthenticated at once.
    pub fn new(limit: usize) -> Self {
        PendingConnections {
            limit: limit.max(1),
            next: 0,
            pending: VecDeque::new(),
        }
    }

    /// Registers a new connection, ending the oldest if `limit` are pending. Returns its number
    /// (for [`end`](Self::end)) and a receiver that resolves when it must stop: race it against
    /// the handshake.
    pub fn begin(&mut self) -> (u64, oneshot::Receiver<()>) {
        if self.pending.len() >= self.limit {
            self.pending.pop_front();
        }
        let (tx, rx) = oneshot::channel();
        self.next += 1;
        self.pending.push_back((self.next, tx));
        (self.next, rx)
    }

    /// The connection numbered `n` authenticated (or gave up): it no longer counts.
    pub fn end(&mut self, n: u64) {
        self.pending.retain(|(m, _)| *m != n);
    }

    /// Connections pending now.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    #[test]
    fn a_connection_past_the_limit_ends_the_oldest_one_still_pending() {
        let mut p = PendingConnections::new(64);
        let (first, mut first_ended) = p.begin();
        let (_, mut second_ended) = p.begin();
        p.end(first);
        assert_eq!(
            first_ended.try_recv(),
            Err(TryRecvError::Closed),
            "ended by finishing"
        );
        let mut rest: Vec<_> = (1..64).map(|_| p.begin().1).collect();
        assert_eq!(p.len(), 64);
        assert_eq!(second_ended.try_recv(), Err(TryRecvError::Empty));
        // One more than the limit: the oldest pending (the second; the first finished) ends.
        rest.push(p.begin().1);
        assert_eq!(second_ended.try_recv(), Err(TryRecvError::Closed));
        assert!(
            rest.iter_mut()
                .all(|r| r.try_recv() == Err(TryRecvError::Empty))
        );
        assert_eq!(p.len(), 64);
    }
}
