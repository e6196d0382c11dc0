//! Objects across nodes, seen from one node: entries for objects owned elsewhere (borrowed),
//! and values whose bytes are on another node (`Data::Remote`), pulled here when a process of
//! this node needs them.
//!
//! An object's owner is the node of the process that made its id ([`ObjectId::node`]): its
//! entry there is the one that counts. Another node that meets the id (in a task's arguments,
//! in a value its process decoded) makes a borrowed entry, asks the owner for the value and
//! counts as one holder at the owner until its entry goes. A value whose bytes are in another
//! node's store is copied into this node's store (one pull per object at a time, by the
//! runtime, in chunks, outside the state lock) before anything here reads it; nodes asking
//! for it are told where it is instead.

use super::effects::Effect;
use super::objects::{ObjState, Waiter};
use super::requests::Reply;
use super::state::NodeState;
use crate::codec::{Data, Value};
use crate::error::{Error, Result};
use crate::ids::{NodeId, ObjectId, RefId};
use crate::log;
use crate::object_store::PAD;
use crate::protocol::Arg;
use crate::protocol::worker::FromWorker;

impl NodeState {
    /// Sends `msg` to node `node` (over this node's session there).
    pub(super) fn send_node(&mut self, node: NodeId, msg: FromWorker) {
        self.effects.push(Effect::SendNode(node, msg));
    }

    /// Makes sure an entry exists for `id`: a borrowed one if another node owns it and this
    /// node does not know it yet (its value is asked for at once). False if the id is unknown
    /// and this node owns it (the object is gone).
    pub(super) fn know(&mut self, id: ObjectId) -> bool {
        if self.objects.get(id).is_some() {
            return true;
        }
        let owner = id.node();
        if owner == self.node || id.is_null() {
            return false;
        }
        if !self.cluster.knows(owner) {
            return false;
        }
        self.objects.create_borrowed(id, owner);
        self.send_node(owner, FromWorker::AddRef(RefId::Object(id)));
        self.ask_for_value(owner, id);
        true
    }

    /// Whether `id`'s bytes are here (or it failed); if they are on another node, starts
    /// copying them here. Waiters registered on the entry hear when they arrive.
    pub(super) fn ensure_local(&mut self, id: ObjectId) -> bool {
        let Some(e) = self.objects.get(id) else {
            return true;
        };
        if e.is_local() {
            return true;
        }
        if !e.pulling {
            if let ObjState::Ready(Value {
                data: Data::Remote { node, len },
                ..
            }) = e.state
            {
                self.start_pull(id, node, len);
            }
        }
        false
    }

    /// Starts copying here every argument in `args` whose bytes are on another node, and
    /// registers `waiter` on each (once per occurrence, or with `once` once per object);
    /// returns how many it waits for.
    pub(super) fn fetch_args(&mut self, args: &[Arg], waiter: Waiter, once: bool) -> usize {
        if self.cluster.is_empty() {
            return 0;
        }
        let mut missing = 0;
        for arg in args {
            if let Arg::Ref(id) = arg {
                if !self.ensure_local(*id) {
                    if let Some(e) = self.objects.get_mut(*id) {
                        if !once || !e.waiters.contains(&waiter) {
                            e.waiters.push(waiter);
                        }
                        missing += 1;
                    }
                }
            }
        }
        missing
    }

    /// A value that just arrived is on another node: the waiters that only want to know it is
    /// done (nodes asking for it, tasks and pending actors, which are placed first and fetch
    /// their arguments where they run) hear now; the others after it is pulled here.
    pub(super) fn wait_for_pull(&mut self, id: ObjectId, waiters: Vec<Waiter>) -> Vec<Waiter> {
        let (now, later): (Vec<Waiter>, Vec<Waiter>) = waiters.into_iter().partition(|w| match w {
            Waiter::Request(k) => self.request_accepts_remote(*k),
            Waiter::Task(_) => true,
            Waiter::Actor(a) => self.actors.is_pending(*a),
        });
        if !later.is_empty() {
            if let Some(e) = self.objects.get_mut(id) {
                e.waiters.extend(later);
            }
            self.ensure_local(id);
        }
        now
    }

    fn start_pull(&mut self, id: ObjectId, from: NodeId, len: u64) {
        let me = crate::ids::ProcId::driver(self.node);
        match self.alloc(me, PAD + len) {
            Ok(region) => {
                if let Some(e) = self.objects.get_mut(id) {
                    e.pulling = true;
                }
                self.effects.push(Effect::Pull {
                    id,
                    from,
                    len,
                    region,
                });
            }
            Err(e) => self.pull_done(id, 0, Err(e)),
        }
    }

    /// The runtime finished copying `id` into `region` (or failed): the value is local now,
    /// and its waiters hear.
    pub(crate) fn pull_done(&mut self, id: ObjectId, region: u64, result: Result<()>) {
        let Some(e) = self.objects.get_mut(id) else {
            // Freed while it was being copied.
            self.abandon_region(region);
            return;
        };
        e.pulling = false;
        let ObjState::Ready(Value {
            data: Data::Remote { node, len },
            ..
        }) = e.state
        else {
            self.abandon_region(region);
            return;
        };
        match result {
            Ok(()) => {
                self.seal_region(region);
                let e = self.objects.get_mut(id).expect("present");
                let ObjState::Ready(v) = std::mem::replace(&mut e.state, ObjState::Pending) else {
                    unreachable!("checked Ready above")
                };
                e.state = ObjState::Ready(Value {
                    data: Data::Shm {
                        region,
                        pad: PAD as u32,
                        len,
                    },
                    contained: v.contained,
                });
                self.store_resident(id);
                self.objects.add_bytes(len);
            }
            Err(err) => {
                self.abandon_region(region);
                log::warn!("copying object {id} from {node} failed: {err}");
                if self.rebuild_after_failed_pull(id, node, &err.to_string()) {
                    return;
                }
                let lost = Error::object_lost(id, format!("copying it from {node} failed: {err}"));
                if let Some(e) = self.objects.get_mut(id) {
                    e.state = ObjState::Failed(lost);
                }
            }
        }
        let waiters = self
            .objects
            .get_mut(id)
            .map(|e| std::mem::take(&mut e.waiters))
            .unwrap_or_default();
        self.notify(id, waiters);
    }

    /// Whether the request's reader is content with a value that is on another node.
    fn request_accepts_remote(&self, key: crate::ids::RequestKey) -> bool {
        match self.requests.reply_of(key) {
            Some(Reply::Remote { proc, .. }) => self.is_peer_session(*proc),
            _ => false,
        }
    }
}
