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
    /// [`Slot::poke`] was called and [`Slot::wait_or_poke`] has not returned for it yet.
    poked: bool,
}

/// Wakes a thread blocked in [`Slot::wait_or_poke`] without filling its slot (any slot type).
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) trait Poke: Send + Sync {
    fn poke(&self);
}

impl<T: Send> Poke for Slot<T> {
    fn poke(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).poked = true;
        self.cv.notify_all();
    }
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        Slot {
            state: Mutex::new(State {
                value: None,
                waker: None,
                poked: false,
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

    /// Whether a value was filled and not taken.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn is_filled(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .is_some()
    }

    /// Blocks until the slot is filled or [poked](Poke::poke) (the value stays in the slot).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn wait_or_poke(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.value.is_none() && !st.poked {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.poked = false;
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

    #[test]
    fn a_poke_ends_one_wait_without_a_value_and_a_fill_ends_it_with_one() {
        let slot = Arc::new(Slot::<u32>::new());
        let s2 = slot.clone();
        let t = std::thread::spawn(move || s2.poke());
        slot.wait_or_poke();
        t.join().unwrap();
        assert!(!slot.is_filled(), "a poke fills nothing");
        // The poke was used up: the next wait lasts until a fill.
        let s3 = slot.clone();
        let t = std::thread::spawn(move || s3.fill(7));
        slot.wait_or_poke();
        t.join().unwrap();
        assert!(slot.is_filled());
        assert_eq!(slot.wait(None), Some(7));
    }
}
