//! Resources reserved by placement groups: one pool per bundle.
//!
//! A placement group's bundles are reserved out of the node's free resources
//! ([`NodeResources::try_acquire`](crate::resources::NodeResources::try_acquire) per bundle,
//! by `node_manager/placement.rs`); what a bundle reserved becomes a pool here, with the GPU
//! ids it got. A task or actor scheduled into a bundle ([`BundleRef`] in its request) takes
//! from that pool (or from the first bundle of the group that fits, when no index is given)
//! and gives back to it; when the group is removed, what its bundles reserved goes back to the
//! node.

use crate::ids::{IdMap, PlacementGroupId};
use crate::resources::{Allocation, Amount, ResourceRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where in a placement group a task or actor runs: one bundle, or any of them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub(crate) struct BundleRef {
    pub group: PlacementGroupId,
    /// `None`: any bundle that fits (Ray's bundle index -1).
    pub index: Option<u32>,
}

impl fmt::Display for BundleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "in bundle {i} of placement group {}", self.group),
            None => write!(f, "in placement group {}", self.group),
        }
    }
}

/// What one bundle reserved and what of it is free.
#[derive(Debug)]
struct Pool {
    /// The node's allocation that backs the bundle (given back when the group goes).
    reserved: Allocation,
    cpu_free: u64,
    /// (GPU id, free share of it).
    gpu_free: Vec<(usize, Amount)>,
    custom_free: BTreeMap<String, Amount>,
}

impl Pool {
    fn new(reserved: Allocation) -> Pool {
        Pool {
            cpu_free: reserved.cpu.raw(),
            gpu_free: reserved.gpus.clone(),
            custom_free: reserved.custom.iter().cloned().collect(),
            reserved,
        }
    }

    fn try_acquire(&mut self, req: &ResourceRequest) -> Option<Vec<(usize, Amount)>> {
        if req.cpu.raw() > self.cpu_free {
            return None;
        }
        for (name, amount) in &req.custom {
            if self.custom_free.get(name).copied().unwrap_or_default() < *amount {
                return None;
            }
        }
        let gpus = self.pick_gpus(req.gpu)?;
        self.cpu_free -= req.cpu.raw();
        for (name, amount) in &req.custom {
            if let Some(free) = self.custom_free.get_mut(name) {
                *free = Amount::from_raw(free.raw() - amount.raw());
            }
        }
        for (id, amount) in &gpus {
            if let Some((_, free)) = self.gpu_free.iter_mut().find(|(i, _)| i == id) {
                *free = Amount::from_raw(free.raw() - amount.raw());
            }
        }
        Some(gpus)
    }

    /// Whole GPUs take devices the bundle holds entirely; a fraction takes a share of one.
    fn pick_gpus(&self, want: Amount) -> Option<Vec<(usize, Amount)>> {
        if want.is_zero() {
            return Some(Vec::new());
        }
        if want >= Amount::ONE {
            let ids: Vec<(usize, Amount)> = self
                .gpu_free
                .iter()
                .filter(|(_, free)| *free >= Amount::ONE)
                .map(|(id, _)| (*id, Amount::ONE))
                .take(want.units())
                .collect();
            return (ids.len() == want.units()).then_some(ids);
        }
        self.gpu_free
            .iter()
            .filter(|(_, free)| *free >= want)
            .min_by_key(|(id, free)| (free.raw(), *id))
            .map(|(id, _)| vec![(*id, want)])
    }

    fn release(&mut self, alloc: &Allocation) {
        self.cpu_free += alloc.cpu.raw();
        for (name, amount) in &alloc.custom {
            if let Some(free) = self.custom_free.get_mut(name) {
                *free = Amount::from_raw(free.raw() + amount.raw());
            }
        }
        for (id, amount) in &alloc.gpus {
            if let Some((_, free)) = self.gpu_free.iter_mut().find(|(i, _)| i == id) {
                *free = Amount::from_raw(free.raw() + amount.raw());
            }
        }
    }
}

/// The pools of every reserved placement group.
#[derive(Debug, Default)]
pub(crate) struct Bundles {
    groups: IdMap<PlacementGroupId, Vec<Pool>>,
}

impl Bundles {
    /// A group's bundles were reserved from the node: these allocations, one per bundle.
    pub(crate) fn add(&mut self, group: PlacementGroupId, reserved: Vec<Allocation>) {
        self.groups
            .insert(group, reserved.into_iter().map(Pool::new).collect());
    }

    /// The group is removed: what its bundles reserved, to give back to the node.
    pub(crate) fn remove(&mut self, group: PlacementGroupId) -> Vec<Allocation> {
        self.groups
            .remove(&group)
            .map(|pools| pools.into_iter().map(|p| p.reserved).collect())
            .unwrap_or_default()
    }

    /// Takes `req` from the bundle it names (or the first that fits) if it fits now.
    pub(crate) fn try_acquire(
        &mut self,
        req: &ResourceRequest,
        at: &BundleRef,
    ) -> Option<Allocation> {
        let pools = self.groups.get_mut(&at.group)?;
        let candidates: Vec<usize> = match at.index {
            Some(i) => vec![i as usize],
            None => (0..pools.len()).collect(),
        };
        for i in candidates {
            let Some(pool) = pools.get_mut(i) else {
                continue;
            };
            if let Some(gpus) = pool.try_acquire(req) {
                return Some(Allocation {
                    cpu: req.cpu,
                    gpus,
                    custom: req.custom.clone(),
                    bundle: Some((at.group, i as u32)),
                });
            }
        }
        None
    }

    /// Gives back to its bundle what a task or actor held (nothing if the group is gone: its
    /// reservation went back to the node when it was removed).
    pub(crate) fn release(&mut self, alloc: &Allocation) {
        let Some((group, i)) = alloc.bundle else {
            return;
        };
        if let Some(pool) = self
            .groups
            .get_mut(&group)
            .and_then(|p| p.get_mut(i as usize))
        {
            pool.release(alloc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::NodeResources;

    fn req(cpu: f64, gpu: f64) -> ResourceRequest {
        ResourceRequest {
            cpu: Amount::from_f64(cpu).unwrap(),
            gpu: Amount::from_f64(gpu).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn tasks_in_a_bundle_take_from_it_and_give_back_to_it() {
        let mut node = NodeResources::new(4, 2, &[]);
        let g = PlacementGroupId(7);
        let b0 = node.try_acquire(&req(2.0, 1.0)).unwrap();
        let b1 = node.try_acquire(&req(1.0, 0.0)).unwrap();
        node.bundles.add(g, vec![b0, b1]);
        let mut in0 = req(1.0, 0.5);
        in0.bundle = Some(Box::new(BundleRef {
            group: g,
            index: Some(0),
        }));
        let a = node.try_acquire(&in0).unwrap();
        let b = node.try_acquire(&in0).unwrap();
        assert_eq!(a.gpu_ids(), b.gpu_ids(), "two halves of the bundle's GPU");
        assert!(node.try_acquire(&in0).is_none(), "bundle 0 is used up");
        let mut any = req(1.0, 0.0);
        any.bundle = Some(Box::new(BundleRef {
            group: g,
            index: None,
        }));
        let c = node.try_acquire(&any).unwrap();
        assert_eq!(c.bundle, Some((g, 1)), "the first bundle that fits");
        node.release(&a);
        assert!(node.try_acquire(&in0).is_some());
        // The node itself has 1 CPU and 1 GPU left: the bundles' part is not free.
        assert!(node.try_acquire(&req(2.0, 0.0)).is_none());
        for r in node.bundles.remove(g) {
            node.release(&r);
        }
        assert!(
            node.try_acquire(&req(4.0, 2.0)).is_some(),
            "the reservation went back to the node"
        );
        node.release(&b);
        node.release(&c);
        assert!(
            node.try_acquire(&req(0.5, 0.0)).is_none(),
            "releases into a removed bundle are ignored"
        );
    }
}
