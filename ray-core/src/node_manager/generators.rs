//! Streaming tasks and calls (Ray's generators): items handed to the caller as they are
//! produced, with bounded backpressure.
//!
//! [`Generators`] owns one [`Stream`] per streaming call, keyed by the call's own object (the
//! generator, which completes when the stream ends). Each `Yield` makes the item an object held
//! by the caller; the caller takes items in order with `StreamNext`, answered at once or when
//! the item comes. A producer more than `backpressure` items ahead of the caller is answered
//! (allowed to go on) only when the caller catches up. A retried call yields its items again:
//! those already received are dropped. When the caller drops the generator, items it did not
//! take are freed and the producer is never held back again.
//!
//! A streaming call sent to another node keeps its stream there, owned by this node's
//! session: the caller's `StreamNext` is passed on to that node (`Stream::remote`), and each
//! item it answers with is an object of that node, which this node borrows for the caller
//! (one hold there per answer, released when this node's entry goes). This node releases the
//! call's own object there only when the caller drops the generator, so the items stay there
//! until then.

use super::control::Answer;
use super::peers::PeerWait;
use super::state::NodeState;
use crate::codec::Value;
use crate::error::{Error, Result};
use crate::ids::{IdMap, NodeId, ObjectId, ProcId, RefId};
use crate::log;
use crate::protocol::worker::{Control, ControlReply, FromWorker, StreamItem, ToWorker};

pub(crate) struct Stream {
    owner: ProcId,
    /// Items produced and not yet taken, at most (0: no bound).
    backpressure: u32,
    items: Vec<ObjectId>,
    /// Items taken by the owner.
    taken: u64,
    /// The call ended: `Some(true)` done, `Some(false)` failed.
    ended: Option<bool>,
    /// The owner dropped the generator: items are no longer kept.
    abandoned: bool,
    /// Owner requests waiting for an item: (index, where to answer).
    waiting: Vec<(u64, Answer)>,
    /// The producer's `Yield` waiting for the owner to catch up.
    held: Option<(ProcId, u64)>,
    /// The call runs on this node: its stream is there, and `StreamNext` goes there.
    remote: Option<NodeId>,
    /// That node was lost: its items with it (a node rejoining under the same id knows
    /// nothing of the stream).
    remote_lost: bool,
}

#[derive(Default)]
pub(crate) struct Generators {
    map: IdMap<ObjectId, Stream>,
}

impl Generators {
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

impl NodeState {
    /// At submission of a streaming call.
    pub(super) fn open_stream(&mut self, owner: ProcId, task: ObjectId, backpressure: u32) {
        self.generators.map.insert(
            task,
            Stream {
                owner,
                backpressure,
                items: Vec::new(),
                taken: 0,
                ended: None,
                abandoned: false,
                waiting: Vec::new(),
                held: None,
                remote: None,
                remote_lost: false,
            },
        );
    }

    /// A worker's `Yield`: item `index` of the call it runs.
    pub(super) fn stream_yield(
        &mut self,
        from: ProcId,
        req: u64,
        task: ObjectId,
        index: u64,
        item: ObjectId,
        value: Value,
    ) -> Result<(), String> {
        if !self.runs(from, task) || !self.generators.map.contains_key(&task) {
            return Err(format!(
                "an item of task {task}, which it was not given or which is not streaming"
            ));
        }
        self.fresh(from, RefId::Object(item))?;
        self.accept_value(from, &value)?;
        let driver = self.driver();
        let NodeState {
            generators,
            workers,
            ..
        } = self;
        let stream = generators.map.get_mut(&task).expect("checked above");
        let owner_gone = stream.owner != driver && workers.get(stream.owner).is_none();
        let produced = stream.items.len() as u64;
        if !(stream.abandoned || owner_gone) && index > produced {
            return Err(format!(
                "item {index} of task {task} after {produced} items (out of order)"
            ));
        }
        if index < produced || stream.abandoned || owner_gone {
            // Sent again by a retried call, or nobody will take it.
            self.stored(item, &value, false);
            self.send(
                from,
                ToWorker::ControlReply {
                    req,
                    result: Ok(ControlReply::Done),
                },
            );
            return Ok(());
        }
        let owner = stream.owner;
        stream.items.push(item);
        self.objects.create_pending(item, owner);
        self.complete_object(item, Ok(value));
        let Some(stream) = self.generators.map.get_mut(&task) else {
            return Ok(());
        };
        let ready: Vec<Answer> = {
            let (now, later) = std::mem::take(&mut stream.waiting)
                .into_iter()
                .partition(|(i, _)| *i == index);
            stream.waiting = later;
            now.into_iter().map(|(_, a)| a).collect()
        };
        for to in ready {
            let answer = self.take_item(task, index);
            self.answer(to, answer);
        }
        let Some(stream) = self.generators.map.get_mut(&task) else {
            return Ok(());
        };
        let ahead = stream.items.len() as u64 - stream.taken.min(stream.items.len() as u64);
        if stream.backpressure > 0 && ahead >= stream.backpressure as u64 {
            stream.held = Some((from, req));
        } else {
            self.send(
                from,
                ToWorker::ControlReply {
                    req,
                    result: Ok(ControlReply::Done),
                },
            );
        }
        Ok(())
    }

    /// The owner takes item `index` (it exists): the answer counts as one hold of it.
    fn take_item(&mut self, task: ObjectId, index: u64) -> Result<ControlReply> {
        let Some(stream) = self.generators.map.get_mut(&task) else {
            return Ok(ControlReply::Item(StreamItem::End));
        };
        let item = stream.items[index as usize];
        let owner = stream.owner;
        if index < stream.taken {
            // Asked again: one more hold.
            self.objects.add_holder(item, owner);
        } else {
            stream.taken = index + 1;
        }
        self.release_producer(task);
        Ok(ControlReply::Item(StreamItem::Ref(item)))
    }

    /// Lets a held producer go on if the owner has caught up (or will not take more).
    fn release_producer(&mut self, task: ObjectId) {
        let Some(stream) = self.generators.map.get_mut(&task) else {
            return;
        };
        let ahead = stream.items.len() as u64 - stream.taken.min(stream.items.len() as u64);
        let caught_up = stream.backpressure == 0 || ahead < stream.backpressure as u64;
        if caught_up || stream.abandoned {
            if let Some((proc, req)) = stream.held.take() {
                self.send(
                    proc,
                    ToWorker::ControlReply {
                        req,
                        result: Ok(ControlReply::Done),
                    },
                );
            }
        }
    }

    /// `StreamNext`: item `index` of `generator` for `from`. `None`: answered later.
    pub(super) fn stream_next(
        &mut self,
        from: ProcId,
        generator: ObjectId,
        index: u64,
        to: Answer,
    ) -> Option<Result<ControlReply>> {
        let Some(stream) = self.generators.map.get_mut(&generator) else {
            use super::objects::ObjState;
            // Never a stream (its submission failed at once), or gone.
            let item = match self.objects.get(generator).map(|e| &e.state) {
                Some(ObjState::Failed(_)) => StreamItem::Failed,
                Some(ObjState::Ready(_) | ObjState::Spilled { .. }) => StreamItem::End,
                _ => {
                    return Some(Err(Error::InvalidArgument {
                        what: "stream".into(),
                        message: format!("object {generator} is not a streaming call's"),
                    }));
                }
            };
            return Some(Ok(ControlReply::Item(item)));
        };
        if stream.owner != from {
            return Some(Err(Error::InvalidArgument {
                what: "stream".into(),
                message: "only the caller of a streaming call takes its items".into(),
            }));
        }
        if let Some(node) = stream.remote {
            if stream.remote_lost {
                return Some(Ok(ControlReply::Item(StreamItem::Failed)));
            }
            self.ask_stream_item(node, generator, index, to);
            return None;
        }
        if (index as usize) < stream.items.len() {
            return Some(self.take_item(generator, index));
        }
        match stream.ended {
            Some(true) => Some(Ok(ControlReply::Item(StreamItem::End))),
            Some(false) => Some(Ok(ControlReply::Item(StreamItem::Failed))),
            None => {
                stream.waiting.push((index, to));
                None
            }
        }
    }

    /// The streaming call `generator` was sent to `node` to run: its items will be there, and
    /// what the caller asked for already is asked of `node` (a caller that dropped the
    /// generator already: `node` is told at once, so its producer is never held).
    pub(super) fn stream_sent(&mut self, generator: ObjectId, node: NodeId) {
        let Some(stream) = self.generators.map.get_mut(&generator) else {
            return;
        };
        stream.remote = Some(node);
        if stream.abandoned {
            self.send_stream_dropped(node, generator);
        }
        let Some(stream) = self.generators.map.get_mut(&generator) else {
            return;
        };
        for (index, to) in std::mem::take(&mut stream.waiting) {
            self.ask_stream_item(node, generator, index, to);
        }
    }

    /// Whether `generator`'s stream has given out or made items here: such a call is not sent
    /// to another node (its caller's next index would mean nothing there).
    pub(super) fn stream_started_here(&self, generator: ObjectId) -> bool {
        self.generators
            .map
            .get(&generator)
            .is_some_and(|s| s.remote.is_none() && (!s.items.is_empty() || s.taken > 0))
    }

    /// Whether an item that `node` answered for `generator` still has a taker here: the
    /// stream is there, not dropped, and its caller lives.
    pub(super) fn stream_wants_items(&self, generator: ObjectId) -> Option<ProcId> {
        let stream = self.generators.map.get(&generator)?;
        let owner_alive = stream.owner == self.driver() || self.workers.get(stream.owner).is_some();
        (!stream.abandoned && owner_alive).then_some(stream.owner)
    }

    /// `node` is lost: streams there fail from now on.
    pub(super) fn streams_lost_with(&mut self, node: NodeId) {
        for stream in self.generators.map.values_mut() {
            if stream.remote == Some(node) {
                stream.remote_lost = true;
            }
        }
    }

    fn send_stream_dropped(&mut self, node: NodeId, generator: ObjectId) {
        self.send_node(
            node,
            FromWorker::Control {
                req: 0,
                op: Control::StreamDropped { generator },
            },
        );
    }

    /// The process that takes `generator`'s items.
    pub(super) fn stream_owner(&self, generator: ObjectId) -> Option<ProcId> {
        self.generators.map.get(&generator).map(|s| s.owner)
    }

    /// Whether `generator`'s stream is at `node` and its caller still takes items from it
    /// (then this node's hold on the call's object there is kept).
    pub(super) fn stream_kept_at(&self, generator: ObjectId, node: NodeId) -> bool {
        self.generators
            .map
            .get(&generator)
            .is_some_and(|s| s.remote == Some(node) && !s.abandoned)
    }

    /// The streaming call's own object completed: the stream ended.
    pub(super) fn stream_ended(&mut self, generator: ObjectId, ok: bool) {
        let Some(stream) = self.generators.map.get_mut(&generator) else {
            return;
        };
        stream.ended = Some(ok);
        let item = if ok {
            StreamItem::End
        } else {
            StreamItem::Failed
        };
        let waiting = std::mem::take(&mut stream.waiting);
        let held = stream.held.take();
        if stream.abandoned {
            self.generators.map.remove(&generator);
        }
        for (_, to) in waiting {
            self.answer(to, Ok(ControlReply::Item(item)));
        }
        if let Some((proc, req)) = held {
            self.send(
                proc,
                ToWorker::ControlReply {
                    req,
                    result: Ok(ControlReply::Done),
                },
            );
        }
    }

    /// The generator's object was freed (the caller dropped it): items it did not take are
    /// freed, the producer is not held back any more.
    pub(super) fn stream_dropped(&mut self, generator: ObjectId) {
        let Some(stream) = self.generators.map.get_mut(&generator) else {
            return;
        };
        if let Some(node) = stream.remote {
            // The stream is there. Once the call ended, this node's hold on the call's object
            // there is all that keeps it: letting it go ends the stream there. Before, the
            // object stays (this node's `Get` of the result waits on it, and its reply lets it
            // go, `peers.rs::result_arrived`): the stream there is only told it was dropped.
            let first = !stream.abandoned;
            stream.abandoned = true;
            let ended = stream.ended.is_some();
            let lost = stream.remote_lost;
            if ended {
                self.generators.map.remove(&generator);
            }
            if first && !lost {
                if ended {
                    self.send_node(node, FromWorker::DelRef(RefId::Object(generator)));
                } else {
                    self.send_stream_dropped(node, generator);
                }
            }
            return;
        }
        stream.abandoned = true;
        let owner = stream.owner;
        let untaken: Vec<ObjectId> =
            stream.items[stream.taken.min(stream.items.len() as u64) as usize..].to_vec();
        stream.items.clear();
        stream.taken = 0;
        let ended = stream.ended.is_some();
        self.release_producer(generator);
        if ended {
            self.generators.map.remove(&generator);
        }
        for item in untaken {
            if let Ok(Some(freed)) = self.objects.remove_holder(item, owner) {
                self.object_freed(item, freed);
            }
        }
    }

    /// Asks `node`, where the streaming call `generator` runs, for its item `index`; `to`
    /// hears the answer. A node that is gone has no items to give: the stream failed.
    pub(super) fn ask_stream_item(
        &mut self,
        node: NodeId,
        generator: ObjectId,
        index: u64,
        to: Answer,
    ) {
        if !self.cluster.knows(node) {
            self.answer(to, Ok(ControlReply::Item(StreamItem::Failed)));
            return;
        }
        let req = self.peer_request(node, PeerWait::StreamItem { generator, to });
        self.send_node(
            node,
            FromWorker::Control {
                req,
                op: Control::StreamNext { generator, index },
            },
        );
    }

    /// `node` answered a `StreamNext` of this node's: an item there, which this node borrows
    /// for the caller (the answer was one hold there, so a second answer for an item already
    /// known here gives that hold back), or the stream's end.
    pub(super) fn stream_item_arrived(
        &mut self,
        node: NodeId,
        generator: ObjectId,
        to: Answer,
        result: Result<ControlReply>,
    ) {
        let Some(owner) = self.stream_wants_items(generator) else {
            // Dropped (or its caller gone) meanwhile: the hold the answer carried goes back.
            if let Ok(ControlReply::Item(StreamItem::Ref(item))) = result
                && item.node() == node
            {
                self.send_node(node, FromWorker::DelRef(RefId::Object(item)));
            }
            self.answer(to, Ok(ControlReply::Item(StreamItem::End)));
            return;
        };
        let result = match result {
            Ok(ControlReply::Item(StreamItem::Ref(item))) => {
                if item.node() != node {
                    log::warn!("{node} answered an item {item} of {generator} it did not make");
                    Err(Error::InvalidArgument {
                        what: "reply".into(),
                        message: format!("{node} named an item {item} it did not make"),
                    })
                } else {
                    if !self.objects.create_borrowed(item, node) {
                        self.send_node(node, FromWorker::DelRef(RefId::Object(item)));
                    } else {
                        self.ask_for_value(node, item);
                    }
                    self.objects.add_holder(item, owner);
                    Ok(ControlReply::Item(StreamItem::Ref(item)))
                }
            }
            Ok(ControlReply::Item(item)) => Ok(ControlReply::Item(item)),
            Ok(other) => Err(Error::InvalidArgument {
                what: "reply".into(),
                message: format!("{node} answered a stream's next item with {other:?}"),
            }),
            Err(e) => Err(e),
        };
        self.answer(to, result);
    }

    /// Shutdown: owners waiting for items are told.
    pub(super) fn fail_stream_waiters(&mut self) {
        let mut all = Vec::new();
        for stream in self.generators.map.values_mut() {
            all.extend(std::mem::take(&mut stream.waiting));
        }
        for (_, to) in all {
            self.answer(to, Err(Error::shut_down()));
        }
    }
}
