//! The ready queue: tasks whose arguments are ready, waiting for resources.
//!
//! One FIFO per resource shape (Ray's scheduling classes), so a task that does not fit does not
//! hold up smaller tasks behind it, and a pass costs O(shapes + dispatched), not O(queue).

use crate::ids::ObjectId;
use crate::resources::{Allocation, NodeResources, ResourceRequest};
use std::collections::VecDeque;

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
