//! Resource amounts, requests, and one node's accounting of them.
//!
//! Amounts are fixed point with four decimals (as Ray's 0.0001 granularity), so fractional
//! GPUs add up exactly. GPUs are handed out by id: a request of `n >= 1` GPUs takes `n` whole
//! devices, a fraction below 1 shares one device with other fractions.

use crate::bundles::{BundleRef, Bundles};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

const SCALE: u64 = 10_000;

/// A non-negative resource amount with four decimals.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Amount(u64);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);
    /// One unit.
    pub const ONE: Amount = Amount(SCALE);

    /// Converts `x`, rejecting negative, NaN and infinite amounts with a message saying so.
    pub fn from_f64(x: f64) -> Result<Amount, String> {
        if x.is_nan() {
            return Err("NaN is not a resource amount; use a number >= 0 such as 1 or 0.5".into());
        }
        if x.is_infinite() || x > 1e12 {
            return Err(format!("{x} is too large for a resource amount"));
        }
        if x < 0.0 {
            return Err(format!("{x} is negative; resource amounts must be >= 0"));
        }
        Ok(Amount((x * SCALE as f64).round() as u64))
    }

    pub(crate) fn whole(n: usize) -> Amount {
        Amount(n as u64 * SCALE)
    }

    /// The amount as a float.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    pub(crate) fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    pub(crate) fn saturating_add(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }

    pub(crate) fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn is_whole(self) -> bool {
        self.0 % SCALE == 0
    }

    pub(crate) fn units(self) -> usize {
        (self.0 / SCALE) as usize
    }

    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    pub(crate) fn from_raw(raw: u64) -> Amount {
        Amount(raw)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_whole() {
            write!(f, "{}", self.0 / SCALE)
        } else {
            write!(f, "{}", self.as_f64())
        }
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a task or actor needs while it runs.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, Debug)]
pub struct ResourceRequest {
    pub(crate) cpu: Amount,
    pub(crate) gpu: Amount,
    /// Custom resources, sorted by name, no zero amounts.
    pub(crate) custom: Vec<(String, Amount)>,
    /// Taken from a bundle of a placement group instead of the node.
    pub(crate) bundle: Option<Box<BundleRef>>,
}

/// The largest amount of one resource a request may name (what `Amount::from_f64` accepts).
const MAX_REQUEST: u64 = 1_000_000_000_000 * SCALE;

impl ResourceRequest {
    /// A request as it arrived from another process: what `set_custom` and `Amount::from_f64`
    /// guarantee for requests made here (custom names sorted and distinct, no zero amounts, no
    /// amount over 1e12) must hold, since accounting relies on it (a name listed twice would
    /// be checked once and taken twice). `Err` says what was wrong.
    pub(crate) fn check_received(&self) -> Result<(), String> {
        let too_large = |a: Amount| a.0 > MAX_REQUEST;
        if too_large(self.cpu) || too_large(self.gpu) {
            return Err(format!("a resource request of more than 1e12 ({self})"));
        }
        for (i, (name, amount)) in self.custom.iter().enumerate() {
            if amount.is_zero() || too_large(*amount) {
                return Err(format!(
                    "a resource request naming {name:?} with {amount}, not in (0, 1e12]"
                ));
            }
            if i > 0 && self.custom[i - 1].0 >= *name {
                return Err(format!(
                    "a resource request whose custom resources are not sorted and distinct \
                     ({name:?} after {:?})",
                    self.custom[i - 1].0
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn set_custom(&mut self, name: &str, amount: Amount) {
        self.custom.retain(|(n, _)| n != name);
        if !amount.is_zero() {
            self.custom.push((name.to_string(), amount));
            self.custom.sort();
        }
    }
}

impl fmt::Display for ResourceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CPU: {}, GPU: {}", self.cpu, self.gpu)?;
        for (name, amount) in &self.custom {
            write!(f, ", {name}: {amount}")?;
        }
        if let Some(b) = &self.bundle {
            write!(f, " ({b})")?;
        }
        Ok(())
    }
}

/// Resources held by one running task or actor.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Allocation {
    pub cpu: Amount,
    pub gpus: Vec<(usize, Amount)>,
    pub custom: Vec<(String, Amount)>,
    /// Taken from this bundle (placement group, index) rather than from the node.
    pub bundle: Option<(crate::ids::PlacementGroupId, u32)>,
}

impl Allocation {
    pub(crate) fn gpu_ids(&self) -> Vec<usize> {
        self.gpus.iter().map(|(id, _)| *id).collect()
    }
}

/// One node's resources: totals and what is free now.
#[derive(Debug)]
pub(crate) struct NodeResources {
    total_cpu: Amount,
    /// Signed: a worker that was blocked in `get` takes its CPU back even when that
    /// oversubscribes the node for a moment (Ray does the same).
    free_cpu: i64,
    gpu_free: Vec<Amount>,
    /// False until the GPUs have been counted (see `Config::gpu_detector`).
    gpus_known: bool,
    custom_total: BTreeMap<String, Amount>,
    custom_free: BTreeMap<String, Amount>,
    /// Resources reserved by placement groups, taken out of the free amounts above.
    pub(crate) bundles: Bundles,
}

impl NodeResources {
    pub(crate) fn new(cpus: usize, gpus: usize, custom: &[(String, Amount)]) -> Self {
        let custom_total: BTreeMap<String, Amount> = custom.iter().cloned().collect();
        NodeResources {
            total_cpu: Amount::whole(cpus),
            free_cpu: Amount::whole(cpus).0 as i64,
            gpu_free: vec![Amount::ONE; gpus],
            gpus_known: true,
            custom_free: custom_total.clone(),
            custom_total,
            bundles: Bundles::default(),
        }
    }

    /// The GPU count is not known yet: requests for GPUs wait until `set_gpus`.
    pub(crate) fn gpus_unknown(mut self) -> Self {
        self.gpus_known = false;
        self
    }

    pub(crate) fn gpus_known(&self) -> bool {
        self.gpus_known
    }

    pub(crate) fn set_gpus(&mut self, n: usize) {
        self.gpu_free = vec![Amount::ONE; n];
        self.gpus_known = true;
    }

    /// (total, available) by resource name (`CPU`, `GPU`, custom ones), as numbers.
    pub(crate) fn summary(
        &self,
    ) -> (
        std::collections::BTreeMap<String, f64>,
        std::collections::BTreeMap<String, f64>,
    ) {
        let mut total = std::collections::BTreeMap::new();
        let mut avail = std::collections::BTreeMap::new();
        total.insert("CPU".to_string(), self.total_cpu.as_f64());
        avail.insert(
            "CPU".to_string(),
            (self.free_cpu.max(0) as f64) / SCALE as f64,
        );
        if !self.gpu_free.is_empty() {
            total.insert("GPU".to_string(), self.gpu_free.len() as f64);
            let free: u64 = self.gpu_free.iter().map(|a| a.0).sum();
            avail.insert("GPU".to_string(), free as f64 / SCALE as f64);
        }
        for (name, amount) in &self.custom_total {
            total.insert(name.clone(), amount.as_f64());
            let free = self.custom_free.get(name).copied().unwrap_or(Amount::ZERO);
            avail.insert(name.clone(), free.as_f64());
        }
        (total, avail)
    }

    /// What the node has in all, for messages.
    pub(crate) fn describe_total(&self) -> String {
        let mut s = format!("CPU: {}, GPU: {}", self.total_cpu, self.gpu_free.len());
        for (name, amount) in &self.custom_total {
            s.push_str(&format!(", {name}: {amount}"));
        }
        s
    }

    /// Can this request ever run here? `Err` says what was asked that cannot be had.
    pub(crate) fn check_feasible(&self, req: &ResourceRequest) -> Result<(), String> {
        if req.bundle.is_some() {
            // Judged against the bundles (`node_manager/placement.rs`).
            return Ok(());
        }
        let mut missing = Vec::new();
        if req.cpu > self.total_cpu {
            missing.push(format!("CPU: {}", req.cpu));
        }
        if req.gpu > Amount::ONE && !req.gpu.is_whole() {
            return Err(format!(
                "GPU: {} (amounts above 1 must be whole numbers of GPUs, e.g. {} or {})",
                req.gpu,
                req.gpu.units(),
                req.gpu.units() + 1
            ));
        }
        let gpus_needed = if req.gpu.is_zero() {
            0
        } else {
            req.gpu.units().max(1)
        };
        if gpus_needed > self.gpu_free.len() && self.gpus_known {
            missing.push(format!("GPU: {}", req.gpu));
        }
        for (name, amount) in &req.custom {
            let have = self.custom_total.get(name).copied().unwrap_or(Amount::ZERO);
            if *amount > have {
                missing.push(format!("{name}: {amount}"));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join(", "))
        }
    }

    /// Takes the request if it fits now.
    pub(crate) fn try_acquire(&mut self, req: &ResourceRequest) -> Option<Allocation> {
        if let Some(b) = &req.bundle {
            return self.bundles.try_acquire(req, b);
        }
        if (req.cpu.0 as i64) > self.free_cpu {
            return None;
        }
        for (name, amount) in &req.custom {
            if self.custom_free.get(name).copied().unwrap_or(Amount::ZERO) < *amount {
                return None;
            }
        }
        let gpus = self.pick_gpus(req.gpu)?;
        for (id, amount) in &gpus {
            self.gpu_free[*id].0 -= amount.0;
        }
        for (name, amount) in &req.custom {
            if let Some(free) = self.custom_free.get_mut(name) {
                free.0 -= amount.0;
            }
        }
        self.free_cpu -= req.cpu.0 as i64;
        Some(Allocation {
            cpu: req.cpu,
            gpus,
            custom: req.custom.clone(),
            bundle: None,
        })
    }

    fn pick_gpus(&self, want: Amount) -> Option<Vec<(usize, Amount)>> {
        if want.is_zero() {
            return Some(Vec::new());
        }
        if want >= Amount::ONE {
            let ids: Vec<(usize, Amount)> = self
                .gpu_free
                .iter()
                .enumerate()
                .filter(|(_, free)| **free == Amount::ONE)
                .map(|(id, _)| (id, Amount::ONE))
                .take(want.units())
                .collect();
            return (ids.len() == want.units()).then_some(ids);
        }
        // A fraction: best fit, so fractions pack onto the fewest devices.
        self.gpu_free
            .iter()
            .enumerate()
            .filter(|(_, free)| **free >= want)
            .min_by_key(|(id, free)| (free.0, *id))
            .map(|(id, _)| vec![(id, want)])
    }

    pub(crate) fn release(&mut self, alloc: &Allocation) {
        if alloc.bundle.is_some() {
            self.bundles.release(alloc);
            return;
        }
        self.free_cpu += alloc.cpu.0 as i64;
        for (id, amount) in &alloc.gpus {
            self.gpu_free[*id].0 += amount.0;
        }
        for (name, amount) in &alloc.custom {
            if let Some(free) = self.custom_free.get_mut(name) {
                free.0 += amount.0;
            }
        }
    }

    /// `(name, total, free)` of every resource the node has (CPU, GPU, custom), for
    /// `ray::cluster_resources` and `ray::available_resources`.
    pub(crate) fn amounts(&self) -> Vec<(String, f64, f64)> {
        let free_cpu = Amount(self.free_cpu.max(0) as u64);
        let gpu_free: u64 = self.gpu_free.iter().map(|a| a.0).sum();
        let mut out = vec![
            (
                "CPU".to_string(),
                self.total_cpu.as_f64(),
                free_cpu.as_f64(),
            ),
            (
                "GPU".to_string(),
                self.gpu_free.len() as f64,
                Amount(gpu_free).as_f64(),
            ),
        ];
        for (name, total) in &self.custom_total {
            let free = self.custom_free.get(name).copied().unwrap_or_default();
            out.push((name.clone(), total.as_f64(), free.as_f64()));
        }
        out
    }

    /// A worker blocked in `get` lends its CPU back to the node.
    pub(crate) fn lend_cpu(&mut self, cpu: Amount) {
        self.free_cpu += cpu.0 as i64;
    }

    /// The blocked worker resumes and takes its CPU again, even if that oversubscribes.
    pub(crate) fn reclaim_cpu(&mut self, cpu: Amount) {
        self.free_cpu -= cpu.0 as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_request_must_be_as_one_made_here() {
        let mut made = ResourceRequest::default();
        made.set_custom("b", Amount::ONE);
        made.set_custom("a", Amount::from_f64(0.5).unwrap());
        assert_eq!(made.check_received(), Ok(()));
        let mut twice = made.clone();
        twice.custom.push(("b".into(), Amount::ONE));
        assert!(
            twice
                .check_received()
                .unwrap_err()
                .contains("sorted and distinct")
        );
        let mut unsorted = made.clone();
        unsorted.custom.reverse();
        assert!(unsorted.check_received().is_err());
        let mut zero = made.clone();
        zero.custom[0].1 = Amount::ZERO;
        assert!(
            zero.check_received()
                .unwrap_err()
                .contains("not in (0, 1e12]")
        );
        let huge = ResourceRequest {
            gpu: Amount::from_raw(u64::MAX),
            ..Default::default()
        };
        assert!(
            huge.check_received()
                .unwrap_err()
                .contains("more than 1e12")
        );
        let most = ResourceRequest {
            cpu: Amount::from_f64(1e12).unwrap(),
            ..Default::default()
        };
        assert_eq!(
            most.check_received(),
            Ok(()),
            "the largest amount made here passes"
        );
    }

    fn req(cpu: f64, gpu: f64) -> ResourceRequest {
        ResourceRequest {
            cpu: Amount::from_f64(cpu).unwrap(),
            gpu: Amount::from_f64(gpu).unwrap(),
            custom: vec![],
            bundle: None,
        }
    }

    #[test]
    fn amounts_reject_bad_numbers() {
        assert!(Amount::from_f64(-1.0).unwrap_err().contains("negative"));
        assert!(Amount::from_f64(f64::NAN).unwrap_err().contains("NaN"));
        assert_eq!(Amount::from_f64(0.5).unwrap().to_string(), "0.5");
        assert_eq!(Amount::from_f64(2.0).unwrap().to_string(), "2");
    }

    #[test]
    fn whole_gpus_get_distinct_ids_and_fractions_pack() {
        let mut node = NodeResources::new(4, 2, &[]);
        let a = node.try_acquire(&req(0.0, 1.0)).unwrap();
        let b = node.try_acquire(&req(0.0, 1.0)).unwrap();
        assert_ne!(a.gpu_ids(), b.gpu_ids());
        assert!(node.try_acquire(&req(0.0, 1.0)).is_none());
        node.release(&a);
        let h1 = node.try_acquire(&req(0.0, 0.5)).unwrap();
        let h2 = node.try_acquire(&req(0.0, 0.5)).unwrap();
        assert_eq!(h1.gpu_ids(), h2.gpu_ids());
        assert!(node.try_acquire(&req(0.0, 0.25)).is_none());
    }

    #[test]
    fn gpu_requests_wait_while_the_count_is_unknown() {
        let mut node = NodeResources::new(1, 0, &[]).gpus_unknown();
        assert!(
            node.check_feasible(&req(0.0, 4.0)).is_ok(),
            "cannot judge yet"
        );
        assert!(node.try_acquire(&req(0.0, 1.0)).is_none());
        node.set_gpus(2);
        assert_eq!(node.check_feasible(&req(0.0, 4.0)).unwrap_err(), "GPU: 4");
        assert_eq!(node.try_acquire(&req(0.0, 1.0)).unwrap().gpu_ids(), vec![0]);
    }

    #[test]
    fn infeasible_requests_name_what_is_missing() {
        let node = NodeResources::new(2, 8, &[("disk".into(), Amount::ONE)]);
        assert_eq!(node.check_feasible(&req(1.0, 9.0)).unwrap_err(), "GPU: 9");
        assert!(
            node.check_feasible(&req(1.5, 1.5))
                .unwrap_err()
                .contains("whole numbers")
        );
        let mut r = req(3.0, 0.0);
        r.set_custom("disk", Amount::whole(2));
        assert_eq!(node.check_feasible(&r).unwrap_err(), "CPU: 3, disk: 2");
        assert!(node.check_feasible(&req(2.0, 8.0)).is_ok());
    }

    #[test]
    fn cpu_accounting_never_goes_over_capacity_without_blocking() {
        let mut node = NodeResources::new(2, 0, &[]);
        let a = node.try_acquire(&req(1.0, 0.0)).unwrap();
        let _b = node.try_acquire(&req(1.0, 0.0)).unwrap();
        assert!(node.try_acquire(&req(0.5, 0.0)).is_none());
        node.lend_cpu(a.cpu);
        let c = node.try_acquire(&req(1.0, 0.0)).unwrap();
        node.reclaim_cpu(a.cpu);
        assert!(
            node.try_acquire(&req(0.5, 0.0)).is_none(),
            "oversubscribed until a task ends"
        );
        node.release(&c);
        assert!(node.try_acquire(&req(0.5, 0.0)).is_none());
    }
}
