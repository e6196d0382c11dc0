//! Per-task and per-actor options: resources, retries, restarts, concurrency.

use crate::actor::{ActorClass, RemoteActor};
use crate::bundles::BundleRef;
use crate::placement::PlacementGroup;
use crate::protocol::{ActorExt, ActorName, TaskExt};
use crate::resources::{Amount, ResourceRequest};
use std::ops::Deref;

/// Items a streaming task or call may produce ahead of the caller taking them, unless its
/// options say otherwise (see [`TaskOptions::stream_backpressure`]).
pub const DEFAULT_STREAM_BACKPRESSURE: u32 = 16;

/// A resource amount: integers and floats alike, so `.num_cpus(2)` and `.num_cpus(0.5)` both
/// compile.
pub trait ResourceAmount {
    /// The amount as `f64`.
    fn to_f64(self) -> f64;
}

macro_rules! amount_from {
    ($($t:ty),*) => {$(
        impl ResourceAmount for $t {
            fn to_f64(self) -> f64 { self as f64 }
        }
    )*};
}
amount_from!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64);

/// Sets a task's or actor's amount of a resource, or records why it cannot be. As in Ray,
/// amounts above 1 must be whole (a task holds 2 CPUs, or a share of one).
fn set_amount(slot: &mut Amount, error: &mut Option<String>, what: &str, x: f64) {
    match Amount::from_f64(x) {
        Ok(_) if x > 1.0 && x.fract() != 0.0 => {
            *error = Some(format!(
                "{what} = {x}: amounts above 1 must be whole numbers (as in Ray); use {} or {}, \
                 or a fraction below 1",
                x.floor(),
                x.ceil()
            ))
        }
        Ok(a) => *slot = a,
        Err(e) => *error = Some(format!("{what} = {x}: {e}")),
    }
}

/// Options of one task call, as generated code passes them to the runtime.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct RawTaskOptions {
    pub resources: ResourceRequest,
    pub max_retries: u32,
    /// An invalid option, reported when the result is read.
    pub error: Option<String>,
    pub(crate) ext: TaskExt,
}

impl RawTaskOptions {
    /// `num_returns = n` (the macro checks `n >= 1` and the tuple).
    pub fn num_returns(&mut self, n: u32) {
        self.ext.returns.extra = n.saturating_sub(1);
    }
    /// `streaming`.
    pub fn streaming(&mut self) {
        self.ext.returns.stream = Some(DEFAULT_STREAM_BACKPRESSURE);
    }
    /// `retry_exceptions = true`.
    pub fn retry_exceptions(&mut self, yes: bool) {
        self.ext.retry_exceptions = yes;
    }
    /// `max_calls = n`.
    pub fn max_calls(&mut self, n: u32) {
        self.ext.max_calls = n;
    }
}

impl Default for RawTaskOptions {
    /// Ray's defaults: 1 CPU, 3 retries.
    fn default() -> Self {
        RawTaskOptions {
            resources: ResourceRequest {
                cpu: Amount::ONE,
                ..Default::default()
            },
            max_retries: 3,
            error: None,
            ext: TaskExt::default(),
        }
    }
}

/// The resource setters of task and actor options (both have `resources` and `error`); an
/// invalid amount is kept in `error` and reported when the result is read.
macro_rules! resource_setters {
    ($($options:ty),*) => {$(
        impl $options {
            pub fn num_cpus(&mut self, x: f64) {
                set_amount(&mut self.resources.cpu, &mut self.error, "num_cpus", x)
            }
            pub fn num_gpus(&mut self, x: f64) {
                set_amount(&mut self.resources.gpu, &mut self.error, "num_gpus", x)
            }
            pub fn resource(&mut self, name: &str, x: f64) {
                let mut a = Amount::ZERO;
                set_amount(&mut a, &mut self.error, name, x);
                self.resources.set_custom(name, a);
            }
        }
    )*};
}
resource_setters!(RawTaskOptions, RawActorOptions);

/// Options of one actor, as generated code passes them to the runtime.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct RawActorOptions {
    pub resources: ResourceRequest,
    pub max_restarts: u32,
    /// 0: the default (1 call at a time; 1000 interleaved calls for an async actor).
    pub max_concurrency: u32,
    pub error: Option<String>,
    pub(crate) ext: ActorExt,
    /// `Lifetime::Detached` was asked for.
    pub(crate) detached: bool,
    /// The name's namespace, if one was given (else the job's).
    pub(crate) namespace: Option<String>,
}

impl RawActorOptions {
    /// `max_task_retries = n`.
    pub fn max_task_retries(&mut self, n: u32) {
        self.ext.max_task_retries = n;
    }
}

impl Default for RawActorOptions {
    /// Actors hold no CPU while alive (as in Ray), no restarts, the default concurrency.
    fn default() -> Self {
        RawActorOptions {
            resources: ResourceRequest::default(),
            max_restarts: 0,
            max_concurrency: 0,
            error: None,
            ext: ActorExt::default(),
            detached: false,
            namespace: None,
        }
    }
}

/// How long an actor lives (Ray's `lifetime` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lifetime {
    /// Until no handle to it is left (or `ray::kill`), and at most as long as its driver.
    #[default]
    NonDetached,
    /// In a cluster, beyond its driver, until `ray::kill`. A single-node driver has no cluster
    /// to leave it in: creating one there fails with [`Error::NeedsCluster`](crate::Error).
    Detached,
}

/// Checks a name or namespace as Ray does: not empty, not only spaces.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!(
            "{what} cannot be an empty string (or only spaces): give a name such as \"ledger\""
        ));
    }
    Ok(())
}

fn bundle_ref(pg: &PlacementGroup, bundle: Option<u32>) -> Result<BundleRef, String> {
    if let Some(i) = bundle {
        if i as usize >= pg.bundle_count() {
            return Err(format!(
                "bundle index {i} is out of range: placement group {} has {} bundle(s), \
                 indices 0 to {}",
                pg.id(),
                pg.bundle_count(),
                pg.bundle_count().saturating_sub(1)
            ));
        }
    }
    Ok(BundleRef {
        group: pg.id(),
        index: bundle,
    })
}

/// A remote function, implemented by `#[ray::remote]` on a `fn` for the type it generates.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a ray remote function",
    label = "add `#[ray::remote]` to it"
)]
pub trait RemoteFunction {
    /// Registered name: module path and function name.
    const NAME: &'static str;
    #[doc(hidden)]
    type Caller: From<RawTaskOptions> + AsMut<RawTaskOptions>;
    #[doc(hidden)]
    fn __default_options() -> RawTaskOptions;
}

/// Per-call options of a task: `add::options().num_cpus(0.5).max_retries(0).remote(1, 2)`.
///
/// Dereferences to the task's typed `remote(..)`.
pub struct TaskOptions<F: RemoteFunction> {
    caller: F::Caller,
}

impl<F: RemoteFunction> TaskOptions<F> {
    #[doc(hidden)]
    pub fn __new() -> Self {
        TaskOptions {
            caller: F::Caller::from(F::__default_options()),
        }
    }

    /// CPUs the task holds while it runs (default 1). Fractions below 1 share a CPU; amounts
    /// above 1 must be whole, as in Ray: with `1.5` the result reads as
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub fn num_cpus(mut self, amount: impl ResourceAmount) -> Self {
        self.caller.as_mut().num_cpus(amount.to_f64());
        self
    }

    /// GPUs the task holds while it runs (default 0). A fraction below 1 shares one GPU;
    /// amounts above 1 must be whole.
    pub fn num_gpus(mut self, amount: impl ResourceAmount) -> Self {
        self.caller.as_mut().num_gpus(amount.to_f64());
        self
    }

    /// An amount of a custom resource declared in [`Config::resource`](crate::Config::resource)
    /// (whole above 1, like CPUs and GPUs).
    pub fn resource(mut self, name: &str, amount: impl ResourceAmount) -> Self {
        self.caller.as_mut().resource(name, amount.to_f64());
        self
    }

    /// How often the task is retried when its worker process dies (default 3).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.caller.as_mut().max_retries = n;
        self
    }

    /// Whether a panic is retried like a crash, within `max_retries` (default false; Ray's
    /// `retry_exceptions=True`).
    pub fn retry_exceptions(mut self, yes: bool) -> Self {
        self.caller.as_mut().ext.retry_exceptions = yes;
        self
    }

    /// After this many calls of this function, a worker is replaced by a fresh process (for
    /// native code that leaks); 0, the default, never replaces it.
    pub fn max_calls(mut self, n: u32) -> Self {
        self.caller.as_mut().ext.max_calls = n;
        self
    }

    /// Runs the task in a bundle of a placement group: `Some(i)` in bundle `i`, `None` in
    /// any bundle that fits (Ray's `placement_group_bundle_index=-1`). It then holds the
    /// bundle's resources instead of the node's, and waits until the group is reserved.
    pub fn placement_group(mut self, pg: &PlacementGroup, bundle: Option<u32>) -> Self {
        let raw = self.caller.as_mut();
        match bundle_ref(pg, bundle) {
            Ok(b) => raw.resources.bundle = Some(Box::new(b)),
            Err(e) => raw.error = Some(e),
        }
        self
    }

    /// For a streaming task: how many items it may produce that the caller has not taken yet
    /// before it waits (default 16; 0: no limit).
    pub fn stream_backpressure(mut self, items: u32) -> Self {
        let returns = &mut self.caller.as_mut().ext.returns;
        if returns.stream.is_some() {
            returns.stream = Some(items);
        }
        self
    }
}

impl<F: RemoteFunction> Deref for TaskOptions<F> {
    type Target = F::Caller;
    fn deref(&self) -> &F::Caller {
        &self.caller
    }
}

/// Options of one actor: `Counter::options().num_gpus(1).remote(0)`.
///
/// Dereferences to the actor's typed `remote(..)` constructor.
pub struct ActorOptions<A: RemoteActor> {
    creator: A::Creator,
}

impl<A: RemoteActor> ActorOptions<A> {
    #[doc(hidden)]
    pub fn __new() -> Self {
        ActorOptions {
            creator: A::Creator::from(<A as ActorClass>::__default_options()),
        }
    }

    /// CPUs the actor holds for its whole life (default 0). Whole above 1, as for tasks.
    pub fn num_cpus(mut self, amount: impl ResourceAmount) -> Self {
        self.creator.as_mut().num_cpus(amount.to_f64());
        self
    }

    /// GPUs the actor holds for its whole life (default 0). Whole above 1, as for tasks.
    pub fn num_gpus(mut self, amount: impl ResourceAmount) -> Self {
        self.creator.as_mut().num_gpus(amount.to_f64());
        self
    }

    /// An amount of a custom resource (whole above 1).
    pub fn resource(mut self, name: &str, amount: impl ResourceAmount) -> Self {
        self.creator.as_mut().resource(name, amount.to_f64());
        self
    }

    /// Registers the actor under `name`, unique in its namespace: other code gets a handle
    /// with [`ray::get_actor`](crate::get_actor), from any task or actor. A second live actor
    /// with the same name cannot be made (its calls fail with
    /// [`Error::ActorNameTaken`](crate::Error::ActorNameTaken), naming the holder) unless
    /// [`get_if_exists`](Self::get_if_exists) is set. The name is free again once the actor
    /// is dead or all its handles are dropped.
    pub fn name(mut self, name: &str) -> Self {
        let raw = self.creator.as_mut();
        if let Err(e) = check_name("an actor name", name) {
            raw.error = Some(e);
        }
        raw.ext.name = Some(Box::new(ActorName {
            namespace: String::new(),
            name: name.to_string(),
        }));
        self
    }

    /// The namespace of the actor's name (default: the job's, see
    /// [`Config::namespace`](crate::Config::namespace)).
    pub fn namespace(mut self, namespace: &str) -> Self {
        let raw = self.creator.as_mut();
        if let Err(e) = check_name("a namespace", namespace) {
            raw.error = Some(e);
        }
        raw.namespace = Some(namespace.to_string());
        self
    }

    /// With a [`name`](Self::name): if a live actor of this class already has the name, the
    /// handle returned is that actor's (and nothing new is started); otherwise a new one is
    /// made. Ray's `get_if_exists=True`.
    pub fn get_if_exists(mut self, yes: bool) -> Self {
        self.creator.as_mut().ext.get_if_exists = yes;
        self
    }

    /// How long the actor lives; see [`Lifetime`].
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.creator.as_mut().detached = lifetime == Lifetime::Detached;
        self
    }

    /// How often the actor is restarted when its process dies (default: the struct's
    /// `max_restarts`, else 0).
    pub fn max_restarts(mut self, n: u32) -> Self {
        self.creator.as_mut().max_restarts = n;
        self
    }

    /// How often a call that was running when the actor's process died is run again on the
    /// restarted actor (default 0: it fails with `ActorDied { restarting: true, .. }`).
    pub fn max_task_retries(mut self, n: u32) -> Self {
        self.creator.as_mut().ext.max_task_retries = n;
        self
    }

    /// How many calls an async actor interleaves (default 1000). For a threaded actor
    /// (`max_concurrency` on its struct) this sets how many of its threads take calls, at most
    /// the struct's number.
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.creator.as_mut().max_concurrency = n.max(1);
        self
    }

    /// Places the actor in a bundle of a placement group (see
    /// [`TaskOptions::placement_group`]); it holds the bundle's resources for its life.
    pub fn placement_group(mut self, pg: &PlacementGroup, bundle: Option<u32>) -> Self {
        let raw = self.creator.as_mut();
        match bundle_ref(pg, bundle) {
            Ok(b) => raw.resources.bundle = Some(Box::new(b)),
            Err(e) => raw.error = Some(e),
        }
        self
    }
}

impl<A: RemoteActor> Deref for ActorOptions<A> {
    type Target = A::Creator;
    fn deref(&self) -> &A::Creator {
        &self.creator
    }
}
