//! Placement groups: reserving bundles of resources, and what runs in them.
//!
//! [`PlacementGroups`] owns every group from creation to removal. A group is pending until
//! all its bundles fit in the node's free resources at once; then they are reserved together
//! (each bundle becomes a pool in [`crate::bundles`]) and its `ready` object completes. Tasks
//! and actors that ask for a bundle take from its pool, and wait while the group is pending.
//! A group that can never be reserved fails its `ready` object with `Infeasible` at once. On
//! one node every strategy puts all bundles here, so `StrictSpread` fits one bundle only.

use super::state::NodeState;
use crate::codec::{self, Value};
use crate::error::Error;
use crate::ids::{IdMap, PlacementGroupId, ProcId};
use crate::placement::PlacementStrategy;
use crate::protocol::PlacementGroupSpec;
use crate::protocol::worker::ControlReply;
use crate::resources::{Allocation, Amount, ResourceRequest};
use std::collections::VecDeque;

pub(crate) struct Group {
    spec: PlacementGroupSpec,
    reserved: bool,
}

#[derive(Default)]
pub(crate) struct PlacementGroups {
    map: IdMap<PlacementGroupId, Group>,
    /// Groups waiting for resources, in creation order.
    pending: VecDeque<PlacementGroupId>,
}

fn unit() -> Value {
    codec::encode(&()).expect("() encodes").value
}

impl NodeState {
    pub(super) fn placement_group_exists(&self, group: PlacementGroupId) -> bool {
        self.placement.map.contains_key(&group)
    }

    /// A new group: infeasible ones fail at once, others wait for their resources.
    pub(super) fn create_placement_group(
        &mut self,
        from: ProcId,
        spec: PlacementGroupSpec,
    ) -> ControlReply {
        let ready = spec.ready;
        self.objects.create_pending(ready, from);
        for b in &spec.bundles {
            self.need_gpus(b);
        }
        if let Err(e) = self.placement_feasible(&spec) {
            self.complete_object(ready, Err(e));
            return ControlReply::Done;
        }
        let id = spec.id;
        self.placement.map.insert(
            id,
            Group {
                spec,
                reserved: false,
            },
        );
        self.placement.pending.push_back(id);
        self.schedule();
        ControlReply::Done
    }

    /// Whether the group can ever be reserved on this node.
    fn placement_feasible(&self, spec: &PlacementGroupSpec) -> Result<(), Error> {
        let invalid = |message: String| Error::InvalidArgument {
            what: "placement group".into(),
            message,
        };
        if spec.bundles.is_empty() {
            return Err(invalid(
                "it has no bundles: give at least one, e.g. `[ray::Bundle::new().num_cpus(1)]`"
                    .into(),
            ));
        }
        for (i, b) in spec.bundles.iter().enumerate() {
            if b.bundle.is_some() {
                return Err(invalid(format!(
                    "bundle {i} asks to be placed in another placement group's bundle"
                )));
            }
            if b.cpu.is_zero() && b.gpu.is_zero() && b.custom.is_empty() {
                return Err(invalid(format!(
                    "bundle {i} is empty: a bundle reserves some resource, e.g. \
                     `ray::Bundle::new().num_cpus(1)`"
                )));
            }
        }
        let name = |what: String| format!("placement group {} ({what})", spec.id);
        let nodes = 1;
        if spec.strategy == PlacementStrategy::StrictSpread && spec.bundles.len() > nodes {
            return Err(Error::Infeasible {
                name: name("STRICT_SPREAD".into()),
                requested: format!(
                    "{} bundles on {} different nodes",
                    spec.bundles.len(),
                    spec.bundles.len()
                ),
                available: format!("{nodes} node (single-node mode)"),
            });
        }
        for (i, b) in spec.bundles.iter().enumerate() {
            if let Err(missing) = self.resources.check_feasible(b) {
                return Err(Error::Infeasible {
                    name: name(format!("bundle {i}")),
                    requested: missing,
                    available: self.resources.describe_total(),
                });
            }
        }
        // Every bundle is on this node: together they must fit in it.
        let mut sum = ResourceRequest::default();
        let (mut whole_gpus, mut gpu_shares) = (0u64, 0u64);
        for b in &spec.bundles {
            sum.cpu = Amount::from_raw(sum.cpu.raw() + b.cpu.raw());
            // Whole GPUs are devices of their own; fractions may share devices.
            if b.gpu >= Amount::ONE {
                whole_gpus += b.gpu.units() as u64;
            } else {
                gpu_shares += b.gpu.raw();
            }
            for (n, a) in &b.custom {
                let have = sum
                    .custom
                    .iter()
                    .find(|(m, _)| m == n)
                    .map(|(_, x)| *x)
                    .unwrap_or_default();
                sum.set_custom(n, Amount::from_raw(have.raw() + a.raw()));
            }
        }
        let devices = whole_gpus + gpu_shares.div_ceil(Amount::ONE.raw());
        sum.gpu = Amount::from_raw(devices * Amount::ONE.raw());
        if let Err(missing) = self.resources.check_feasible(&sum) {
            return Err(Error::Infeasible {
                name: name(format!("{:?}, all bundles on one node", spec.strategy)),
                requested: missing,
                available: self.resources.describe_total(),
            });
        }
        Ok(())
    }

    /// Reserves the pending groups that fit now, in order (called by the scheduler).
    pub(super) fn schedule_placement_groups(&mut self) {
        if self.placement.pending.is_empty() {
            return;
        }
        let mut still = VecDeque::new();
        while let Some(id) = self.placement.pending.pop_front() {
            let Some(group) = self.placement.map.get(&id) else {
                continue;
            };
            // Judged again: the GPUs may have been counted since it was created.
            if let Err(e) = self.placement_feasible(&group.spec) {
                let ready = group.spec.ready;
                self.placement.map.remove(&id);
                self.complete_object(ready, Err(e));
                continue;
            }
            let bundles = group.spec.bundles.clone();
            let mut got: Vec<Allocation> = Vec::new();
            for b in &bundles {
                match self.resources.try_acquire(b) {
                    Some(a) => got.push(a),
                    None => break,
                }
            }
            if got.len() < bundles.len() {
                for a in &got {
                    self.resources.release(a);
                }
                still.push_back(id);
                continue;
            }
            self.resources.bundles.add(id, got);
            let group = self.placement.map.get_mut(&id).expect("present");
            group.reserved = true;
            let ready = group.spec.ready;
            self.complete_object(ready, Ok(unit()));
        }
        self.placement.pending = still;
    }

    /// Removes a group: its reservation goes back to the node; what waits to run in it fails,
    /// what runs in it is stopped.
    pub(super) fn remove_placement_group(&mut self, group: PlacementGroupId) -> ControlReply {
        let Some(g) = self.placement.map.remove(&group) else {
            return ControlReply::Done;
        };
        self.placement.pending.retain(|p| *p != group);
        let removed = |detail: &str| Error::PlacementGroupRemoved {
            group,
            detail: detail.to_string(),
        };
        if !g.reserved {
            self.complete_object(
                g.spec.ready,
                Err(removed("it was removed before its bundles were reserved")),
            );
        }
        for alloc in self.resources.bundles.remove(group) {
            self.resources.release(&alloc);
        }
        for task in self.tasks.in_group(group) {
            let name = self.producer_of(task).unwrap_or_default();
            let err = removed(&format!("task `{name}` was scheduled into it"));
            self.stop_task(task, true, Some(err));
        }
        for actor in self.actors.in_group(group) {
            let class = self
                .actors
                .get(actor)
                .map(|e| super::short_name(&e.class).to_string())
                .unwrap_or_default();
            let err = removed(&format!("actor `{class}` was placed in it"));
            self.actor_dead(actor, err);
        }
        self.schedule();
        ControlReply::Done
    }

    /// A task or actor asks for a bundle: `Err` if it can never run there.
    pub(super) fn check_placement(&self, req: &ResourceRequest, name: &str) -> Result<(), Error> {
        let Some(at) = &req.bundle else {
            return Ok(());
        };
        let Some(g) = self.placement.map.get(&at.group) else {
            return Err(Error::PlacementGroupRemoved {
                group: at.group,
                detail: format!("`{}` was scheduled into it", super::short_name(name)),
            });
        };
        let bundles: Vec<(usize, &ResourceRequest)> = match at.index {
            Some(i) => g
                .spec
                .bundles
                .get(i as usize)
                .map(|b| (i as usize, b))
                .into_iter()
                .collect(),
            None => g.spec.bundles.iter().enumerate().collect(),
        };
        let fits = |b: &ResourceRequest| {
            req.cpu <= b.cpu
                && req.gpu <= b.gpu
                && req.custom.iter().all(|(n, a)| {
                    b.custom
                        .iter()
                        .find(|(m, _)| m == n)
                        .is_some_and(|(_, have)| have >= a)
                })
        };
        if bundles.iter().any(|(_, b)| fits(b)) {
            return Ok(());
        }
        let mut plain = req.clone();
        plain.bundle = None;
        Err(Error::Infeasible {
            name: name.to_string(),
            requested: format!("{plain} {at}"),
            available: bundles
                .iter()
                .map(|(i, b)| format!("bundle {i}: {b}"))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    #[cfg(test)]
    pub(crate) fn placement_group_count(&self) -> (usize, usize) {
        (self.placement.map.len(), self.placement.pending.len())
    }
}
