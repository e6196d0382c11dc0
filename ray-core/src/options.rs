//! Per-task and per-actor options: resources, retries, restarts, concurrency.

use crate::actor::{ActorClass, RemoteActor};
use crate::resources::{Amount, ResourceRequest};
use std::ops::Deref;

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
    pub max_concurrency: u32,
    pub error: Option<String>,
}

impl Default for RawActorOptions {
    /// Actors hold no CPU while alive (as in Ray), no restarts, one call at a time.
    fn default() -> Self {
        RawActorOptions {
            resources: ResourceRequest::default(),
            max_restarts: 0,
            max_concurrency: 1,
            error: None,
        }
    }
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
}

impl<A: RemoteActor> Deref for ActorOptions<A> {
    type Target = A::Creator;
    fn deref(&self) -> &A::Creator {
        &self.creator
    }
}
