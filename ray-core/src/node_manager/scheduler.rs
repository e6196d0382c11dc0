//! Scheduling on this node: which queued task or pending actor gets resources next, and the
//! node's GPU count.
//!
//! [`ReadyQueue`] holds tasks whose arguments are ready, one FIFO per resource shape (Ray's
//! scheduling classes), so a task that does not fit does not hold up smaller tasks behind it,
//! and a pass costs O(shapes + dispatched), not O(queue). [`Scheduler`] adds the guard that
//! makes `schedule` re-entrant: a pass started while one runs becomes one more round of it.

use super::actors::ActorState;
use super::effects::Effect;
use super::objects::Waiter;
use super::state::NodeState;
use super::workers::Assignment;
use crate::error::Error;
use crate::ids::{ActorId, ObjectId};
use crate::log;
use crate::resources::{Allocation, NodeResources, ResourceRequest};
use std::collections::VecDeque;

#[derive(Default)]
pub(crate) struct Scheduler {
    pub queue: ReadyQueue,
    running: bool,
    again: bool,
    gpu_detection_started: bool,
}

#[derive(Default)]
pub(crate) struct ReadyQueue {
    shapes: Vec<(ResourceRequest, VecDeque<ObjectId>)>,
}

impl ReadyQueue {
    pub(crate) fn push(&mut self, shape: &ResourceRequest, task: ObjectId) {
        match self.shapes.iter_mut().find(|(s, _)| s == shape) {
            Some((_, q)) => q.push_back(task),
            None => self.shapes.push((shape.clone(), VecDeque::from([task]))),
        }
    }

    /// Takes, in order, every queued task that fits the free resources now.
    pub(crate) fn take_fitting(
        &mut self,
        resources: &mut NodeResources,
    ) -> Vec<(ObjectId, Allocation)> {
        let mut out = Vec::new();
        for (shape, queue) in &mut self.shapes {
            while !queue.is_empty() {
                match resources.try_acquire(shape) {
                    Some(alloc) => out.push((queue.pop_front().expect("non-empty"), alloc)),
                    None => break,
                }
            }
        }
        self.shapes.retain(|(_, q)| !q.is_empty());
        out
    }

    /// The queued tasks of each shape that did not fit here, in order, shape by shape.
    pub(crate) fn waiting(&self) -> Vec<(ResourceRequest, Vec<ObjectId>)> {
        self.shapes
            .iter()
            .map(|(s, q)| (s.clone(), q.iter().copied().collect()))
            .collect()
    }

    /// Removes one task (it went elsewhere).
    pub(crate) fn remove(&mut self, task: ObjectId) {
        self.retain(|t| *t != task);
    }

    /// Keeps only the tasks for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&ObjectId) -> bool) {
        for (_, q) in &mut self.shapes {
            q.retain(|t| keep(t));
        }
        self.shapes.retain(|(_, q)| !q.is_empty());
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shapes.iter().map(|(_, q)| q.len()).sum()
    }
}

impl NodeState {
    /// Gives resources to pending actors and queued tasks, in order, while they fit.
    pub(crate) fn schedule(&mut self) {
        if self.scheduler.running {
            self.scheduler.again = true;
            return;
        }
        self.scheduler.running = true;
        loop {
            self.scheduler.again = false;
            if !self.shutting_down {
                self.schedule_placement_groups();
                self.schedule_actors();
                for (task, alloc) in self.scheduler.queue.take_fitting(&mut self.resources) {
                    self.assign_task(task, alloc);
                }
                self.spill_to_peers();
            }
            if !self.scheduler.again {
                break;
            }
        }
        self.scheduler.running = false;
    }

    /// Queued tasks that do not fit here now go to peers with room (Ray's spillback), in order
    /// per shape; the rest keep waiting here.
    fn spill_to_peers(&mut self) {
        if self.cluster.is_empty() {
            return;
        }
        for (shape, tasks) in self.scheduler.queue.waiting() {
            for task in tasks {
                // A task another node sent runs here (it fits here, that node chose this one;
                // and a node may submit only under its own ids).
                let args = match self.tasks.get(task) {
                    Some(t) if task.node() == self.node && !self.stream_started_here(task) => {
                        t.spec.args.clone()
                    }
                    _ => continue,
                };
                let Some(node) = self.place_elsewhere(&shape, &args, true) else {
                    break;
                };
                if !self.forward_task(task, node) {
                    break;
                }
                self.scheduler.queue.remove(task);
            }
        }
    }

    fn schedule_actors(&mut self) {
        let mut still_pending = VecDeque::new();
        while let Some(a) = self.actors.pending.pop_front() {
            let Some(entry) = self.actors.get(a) else {
                continue;
            };
            if !matches!(entry.state, ActorState::Pending) {
                continue;
            }
            let args = entry.ctor_args.clone().unwrap_or_default();
            let req = entry.resources.clone();
            let job = entry.job;
            if self.register_deps(&args, Waiter::Actor(a), true) > 0 {
                still_pending.push_back(a);
                continue;
            }
            match self.resources.try_acquire(&req) {
                // It would start here: first its arguments on other nodes are copied here.
                Some(alloc) if self.fetch_args(&args, Waiter::Actor(a), true) > 0 => {
                    self.resources.release(&alloc);
                    still_pending.push_back(a);
                }
                Some(alloc) => {
                    let key = alloc.gpu_ids();
                    match self.start_worker(job, key, Some(Assignment::Actor(a))) {
                        Some(proc) => {
                            let entry = self.actors.get_mut(a).expect("present");
                            entry.alloc = Some(alloc);
                            entry.state = ActorState::Starting(proc);
                        }
                        None => {
                            self.resources.release(&alloc);
                            let err = Error::WorkerStartFailed {
                                cause: format!("{job} is not running on {}", self.node),
                            };
                            self.actor_dead(a, err);
                        }
                    }
                }
                None if self.place_actor_elsewhere(a) => {}
                None => still_pending.push_back(a),
            }
        }
        self.actors.pending = still_pending;
    }

    /// Counts GPUs in the background the first time something asks for one.
    pub(super) fn need_gpus(&mut self, req: &ResourceRequest) {
        if req.gpu.is_zero() || self.resources.gpus_known() || self.scheduler.gpu_detection_started
        {
            return;
        }
        self.scheduler.gpu_detection_started = true;
        if self.settings.can_detect_gpus {
            self.effects.push(Effect::DetectGpus);
        } else {
            self.resources.set_gpus(0);
        }
    }

    /// The GPU count is known: judge the GPU requests that waited for it.
    pub(crate) fn gpus_detected(&mut self, n: usize) {
        self.resources.set_gpus(n);
        log::info!("detected {n} GPU(s)");
        for t in self.tasks.waiting_for_gpus() {
            let Some(te) = self.tasks.get(t) else {
                continue;
            };
            if let Err(missing) = self.resources.check_feasible(&te.spec.resources) {
                let err = Error::Infeasible {
                    name: te.spec.function.clone(),
                    requested: missing,
                    available: self.resources.describe_total(),
                };
                self.finish_task(t, Err(err));
            }
        }
        let NodeState {
            scheduler, tasks, ..
        } = self;
        scheduler.queue.retain(|t| tasks.contains(*t));
        let actors: Vec<ActorId> = self.actors.pending.iter().copied().collect();
        for a in actors {
            let Some(entry) = self.actors.get(a) else {
                continue;
            };
            if let Err(missing) = self.resources.check_feasible(&entry.resources) {
                let err = Error::Infeasible {
                    name: entry.class.clone(),
                    requested: missing,
                    available: self.resources.describe_total(),
                };
                self.actor_dead(a, err);
            }
        }
        self.schedule();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Amount;

    #[test]
    fn a_big_task_does_not_block_small_ones() {
        let mut node = NodeResources::new(2, 0, &[]);
        let big = ResourceRequest {
            cpu: Amount::from_f64(2.0).unwrap(),
            ..Default::default()
        };
        let small = ResourceRequest {
            cpu: Amount::ONE,
            ..Default::default()
        };
        let mut q = ReadyQueue::default();
        let hold = node.try_acquire(&small).unwrap();
        q.push(&big, ObjectId(1));
        q.push(&small, ObjectId(2));
        q.push(&small, ObjectId(3));
        let got: Vec<_> = q
            .take_fitting(&mut node)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(got, vec![ObjectId(2)]);
        assert_eq!(q.len(), 2);
        node.release(&hold);
    }
}
