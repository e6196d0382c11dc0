//! Placement groups (Ray's `ray.util.placement_group`): resources reserved together, as
//! bundles, for the tasks and actors scheduled into them.

use crate::context;
use crate::error::{Error, Result};
use crate::ids::{ObjectId, PlacementGroupId};
use crate::object_ref::ObjectRef;
use crate::protocol::PlacementGroupSpec;
use crate::protocol::worker::Control;
use crate::resources::{Amount, ResourceRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How a placement group's bundles are spread over the cluster's nodes (Ray's strategies).
/// On a single node every bundle is on that node, so `Pack`, `Spread` and `StrictPack` all
/// reserve there, and `StrictSpread` (one node per bundle) fits only one bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PlacementStrategy {
    /// As few nodes as possible (the default).
    #[default]
    Pack,
    /// As many nodes as possible.
    Spread,
    /// All bundles on one node, or none.
    StrictPack,
    /// Each bundle on a node of its own, or none.
    StrictSpread,
}

/// One bundle of a placement group: resources reserved together on one node.
///
/// ```
/// let gpu_worker = ray::Bundle::new().num_cpus(1).num_gpus(1);
/// let with_disk = ray::Bundle::new().num_cpus(0.5).resource("disk", 1);
/// # let _ = (gpu_worker, with_disk);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    req: ResourceRequest,
    error: Option<String>,
}

impl Bundle {
    /// An empty bundle; add resources to it.
    pub fn new() -> Self {
        Self::default()
    }

    fn set(mut self, name: &str, x: f64, put: impl FnOnce(&mut ResourceRequest, Amount)) -> Self {
        match Amount::from_f64(x) {
            Ok(a) => put(&mut self.req, a),
            Err(e) => {
                self.error
                    .get_or_insert(format!("{name} = {x} in a bundle: {e}"));
            }
        }
        self
    }

    /// CPUs the bundle reserves.
    pub fn num_cpus(self, amount: impl crate::ResourceAmount) -> Self {
        self.set("num_cpus", amount.to_f64(), |r, a| r.cpu = a)
    }

    /// GPUs the bundle reserves (whole devices, or a share of one below 1).
    pub fn num_gpus(self, amount: impl crate::ResourceAmount) -> Self {
        self.set("num_gpus", amount.to_f64(), |r, a| r.gpu = a)
    }

    /// An amount of a custom resource the bundle reserves.
    pub fn resource(self, name: &str, amount: impl crate::ResourceAmount) -> Self {
        let n = name.to_string();
        self.set(name, amount.to_f64(), move |r, a| r.set_custom(&n, a))
    }

    fn describe(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        if !self.req.cpu.is_zero() {
            m.insert("CPU".into(), self.req.cpu.as_f64());
        }
        if !self.req.gpu.is_zero() {
            m.insert("GPU".into(), self.req.gpu.as_f64());
        }
        for (n, a) in &self.req.custom {
            m.insert(n.clone(), a.as_f64());
        }
        m
    }
}

/// A placement group: made by [`placement_group`], removed by [`remove_placement_group`].
/// `Clone`, `Send` and serializable, so tasks and actors can schedule into it too.
///
/// ```
/// use std::time::Duration;
///
/// #[ray::remote]
/// fn work() -> f64 {
///     ray::runtime_context().unwrap().assigned_resources().unwrap()["CPU"]
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(4))?;
///     let bundles = [ray::Bundle::new().num_cpus(1), ray::Bundle::new().num_cpus(2)];
///     let pg = ray::placement_group(bundles, ray::PlacementStrategy::Pack);
///     assert!(pg.wait(Duration::from_secs(10))?); // reserved: 3 of the 4 CPUs
///     assert_eq!(ray::available_resources()?["CPU"], 1.0);
///     let r = work::options().num_cpus(2).placement_group(&pg, Some(1)).remote();
///     assert_eq!(ray::get(&r)?, 2.0);
///     ray::remove_placement_group(&pg)?;
///     let too_big = ray::placement_group([ray::Bundle::new().num_cpus(8)], ray::PlacementStrategy::Pack);
///     assert!(matches!(ray::get(&too_big.ready()), Err(ray::Error::Infeasible { .. })));
///     ray::shutdown();
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlacementGroup {
    id: PlacementGroupId,
    ready: ObjectRef<()>,
    bundles: Vec<BTreeMap<String, f64>>,
    strategy: PlacementStrategy,
}

impl PlacementGroup {
    /// The group's id.
    pub fn id(&self) -> PlacementGroupId {
        self.id
    }

    /// An object that is ready once every bundle is reserved, or fails with the reason it
    /// never will be ([`Error::Infeasible`], [`Error::PlacementGroupRemoved`]): wait for it
    /// with `ray::get`, `ray::wait` or `.await`.
    pub fn ready(&self) -> ObjectRef<()> {
        self.ready.clone()
    }

    /// Waits until the group is reserved: `Ok(true)` when it is, `Ok(false)` if `timeout`
    /// passes first, `Err` if it never can be (Ray's `pg.wait(timeout_seconds)`).
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        match crate::get_with_timeout(&self.ready, timeout) {
            Ok(()) => Ok(true),
            Err(Error::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// How many bundles it has.
    pub fn bundle_count(&self) -> usize {
        self.bundles.len()
    }

    /// What each bundle reserves, e.g. `{"CPU": 1.0, "GPU": 1.0}`.
    pub fn bundle_specs(&self) -> &[BTreeMap<String, f64>] {
        &self.bundles
    }

    /// Its strategy.
    pub fn strategy(&self) -> PlacementStrategy {
        self.strategy
    }
}

/// Reserves `bundles` together, placed by `strategy`; returns at once. Tasks and actors run in
/// it with `.options().placement_group(&pg, bundle)`, holding the bundle's resources instead
/// of the node's. A group that can never be reserved (a bundle larger than any node, more
/// `StrictSpread` bundles than nodes) fails its [`ready`](PlacementGroup::ready) object with
/// [`Error::Infeasible`] at once; one that does not fit now waits until it does. The group
/// lives until [`remove_placement_group`] or the end of the job.
pub fn placement_group(
    bundles: impl IntoIterator<Item = Bundle>,
    strategy: PlacementStrategy,
) -> PlacementGroup {
    let bundles: Vec<Bundle> = bundles.into_iter().collect();
    let specs = bundles.iter().map(Bundle::describe).collect();
    let Ok(client) = context::client() else {
        return PlacementGroup {
            id: PlacementGroupId::NULL,
            ready: ObjectRef::null(),
            bundles: specs,
            strategy,
        };
    };
    let ready = ObjectId::new();
    let id = PlacementGroupId::new();
    let invalid = bundles
        .iter()
        .enumerate()
        .find_map(|(i, b)| b.error.as_ref().map(|e| format!("bundle {i}: {e}")));
    let spec = PlacementGroupSpec {
        id,
        ready,
        bundles: bundles.into_iter().map(|b| b.req).collect(),
        strategy,
        name: String::new(),
    };
    match invalid {
        Some(message) => client.put(
            ready,
            Err(Error::InvalidArgument {
                what: "placement group".into(),
                message,
            }),
        ),
        None => match client.control(Control::CreatePlacementGroup(spec)) {
            // The node counts the ready object as held by this process.
            Ok(_) => client.adopt(crate::ids::RefId::Object(ready)),
            Err(e) => crate::log::debug!("creating placement group {id}: {e}"),
        },
    }
    PlacementGroup {
        id,
        ready: ObjectRef::adopt(ready),
        bundles: specs,
        strategy,
    }
}

/// Removes a placement group: its reservation goes back to the node, tasks and actors still
/// waiting to run in it fail, and those running in it are stopped (their results read as
/// [`Error::PlacementGroupRemoved`]). Removing it twice is not an error.
pub fn remove_placement_group(pg: &PlacementGroup) -> Result<()> {
    if pg.id.is_null() {
        return Err(context::never_submitted());
    }
    context::client()?
        .control(Control::RemovePlacementGroup(pg.id))
        .map(|_| ())
}
