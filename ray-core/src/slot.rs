//! A one-shot slot that a thread can block on or a future can await.

use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

pub(crate) struct Slot<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
}

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        Slot {
            state: Mutex::new(State {
                value: None,
                waker: None,
            }),
            cv: Condvar::new(),
        }
    }

    /// Fills the slot (a second fill replaces an untaken value) and wakes the waiter.
    pub(crate) fn fill(&self, value: T) {
        let waker = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.value = Some(value);
            st.waker.take()
        };
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Blocks until filled or until `timeout` passes (`None` on timeout). A timeout too long
    /// to add to the clock (`Duration::MAX`) waits forever.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Option<T> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut first = true;
        loop {
            if let Some(v) = st.value.take() {
                return Some(v);
            }
            if std::mem::take(&mut first) {
                // In a worker running a call, someone must read the reply.
                crate::worker::reader_needed();
            }
            match deadline {
                None => st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    st = self
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// The value, if one was filled and not taken.
    pub(crate) fn try_take(&self) -> Option<T> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .take()
    }

    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                st.waker = Some(cx.waker().clone());
                crate::worker::reader_needed();
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_times_out_then_sees_a_fill() {
        let slot = Arc::new(Slot::new());
        assert_eq!(slot.wait(Some(Duration::from_millis(10))), None::<u32>);
        let s2 = slot.clone();
        let t = std::thread::spawn(move || s2.fill(5));
        assert_eq!(slot.wait(None), Some(5));
        t.join().unwrap();
        let s3 = slot.clone();
        let t = std::thread::spawn(move || s3.fill(6));
        assert_eq!(
            slot.wait(Some(Duration::MAX)),
            Some(6),
            "no overflow: forever"
        );
        t.join().unwrap();
    }
}
