//! Requests from the threads of the process the node manager runs in (the driver in
//! single-node mode): blocking `get` and `wait`, and futures for `.await`.
//!
//! A blocked thread registers a request whose answer wakes it, then reads the directory
//! itself; a timeout removes the request. Deadlines saturate: a timeout too large to add to
//! the clock means "forever".

use super::NodeManager;
use super::requests::{Reply, ReqKind};
use super::state::NodeState;
use crate::codec::Value;
use crate::error::{Error, Result};
use crate::ids::{ObjectId, RequestKey};
use crate::slot::Slot;
use std::sync::Arc;
use std::time::Duration;

impl NodeManager {
    /// Blocks until every object is done; values in the order asked.
    pub(crate) fn get_local(
        &self,
        ids: &[ObjectId],
        timeout: Option<Duration>,
    ) -> Result<Vec<Value>> {
        let collect = |st: &mut NodeState| {
            if st.shutting_down {
                return Some(Err(Error::shut_down()));
            }
            let driver = st.driver();
            st.collect_values(ids, Some(driver)).transpose()
        };
        match self.block_local(ids, ReqKind::Get, 0, timeout, collect) {
            Ok(r) => r,
            Err(what) => Err(Error::Timeout {
                what,
                timeout: timeout.unwrap_or_default(),
            }),
        }
    }

    /// Ready flags once `num_returns` are ready or time is up.
    pub(crate) fn wait_local(
        &self,
        ids: &[ObjectId],
        num_returns: usize,
        timeout: Option<Duration>,
    ) -> Vec<bool> {
        let enough = |st: &mut NodeState| {
            let flags = st.ready_flags(ids);
            (flags.iter().filter(|f| **f).count() >= num_returns || st.shutting_down)
                .then_some(flags)
        };
        self.block_local(ids, ReqKind::Wait, num_returns, timeout, enough)
            .unwrap_or_else(|_| self.lock().ready_flags(ids))
    }

    /// Blocks the calling thread until `done` gives an answer: checks at once, else registers a
    /// request on `ids` and checks again when it completes, times out or the node shuts down.
    /// `Err` (what was waited for) when time ran out.
    fn block_local<R>(
        &self,
        ids: &[ObjectId],
        kind: ReqKind,
        num_returns: usize,
        timeout: Option<Duration>,
        mut done: impl FnMut(&mut NodeState) -> Option<R>,
    ) -> Result<R, String> {
        let (slot, key) = {
            let first = self.run(|st| {
                if let Some(r) = done(st) {
                    return Err(r);
                }
                let slot = Arc::new(Slot::new());
                let reply = Reply::Local(slot.clone());
                let key = st.add_request(ids.to_vec(), kind, num_returns, reply, None);
                Ok((slot, key))
            });
            match first {
                Err(r) => return Ok(r),
                Ok(pending) => pending,
            }
        };
        let woken = slot.wait(timeout).is_some();
        self.run(|st| {
            if !woken {
                if let Some(key) = key {
                    st.remove_request(key);
                }
            }
            done(st).ok_or_else(|| st.describe_wait(ids))
        })
    }

    /// A future on one object: its slot, and the request to cancel if the future is dropped.
    pub(crate) fn get_async(&self, id: ObjectId) -> (Arc<Slot<Result<Value>>>, Option<RequestKey>) {
        self.run(|st| {
            let slot = Arc::new(Slot::new());
            if st.shutting_down {
                slot.fill(Err(Error::shut_down()));
                return (slot, None);
            }
            let driver = st.driver();
            let key = match st.collect_values(&[id], Some(driver)) {
                Ok(Some(mut v)) => {
                    slot.fill(Ok(v.pop().expect("one value")));
                    None
                }
                Err(e) => {
                    slot.fill(Err(e));
                    None
                }
                Ok(None) => {
                    let reply = Reply::Async(slot.clone());
                    st.add_request(vec![id], ReqKind::Get, 0, reply, None)
                }
            };
            (slot, key)
        })
    }

    /// A future was dropped: forget its request.
    pub(crate) fn cancel_local(&self, key: RequestKey) {
        self.run(|st| {
            st.remove_request(key);
        });
    }
}
