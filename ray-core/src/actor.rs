//! Actor handles and the traits `#[ray::remote]` implements for actor classes.

use crate::codec;
use crate::context;
use crate::generator::ObjectRefGenerator;
use crate::ids::{ActorId, ObjectId, RefId};
use crate::object_ref::ObjectRef;
use crate::options::RawActorOptions;
use crate::protocol::{ActorTaskSpec, Returns};
use crate::refcount;
use crate::submit::ArgsBuilder;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

/// Implemented by `#[ray::remote]` on an actor's `struct`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a ray actor class",
    label = "`{Self}` needs `#[ray::remote]` on its struct definition",
    note = "an actor needs `#[ray::remote]` on both `struct {Self}` and its `impl {Self}` block"
)]
pub trait ActorClass: Sized + 'static {
    #[doc(hidden)]
    fn __default_options() -> RawActorOptions;
    #[doc(hidden)]
    fn __into_instance(self) -> ActorInstance;
}

/// Implemented by `#[ray::remote]` on an actor's `impl` block.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no remote methods",
    label = "`{Self}` needs `#[ray::remote]` on its `impl` block",
    note = "an actor needs `#[ray::remote]` on both `struct {Self}` and its `impl {Self}` block"
)]
pub trait RemoteActor: ActorClass {
    /// Registered name: module path and type name.
    const NAME: &'static str;
    /// It has `async fn` methods: its calls interleave on an async runtime in its worker.
    #[doc(hidden)]
    const ASYNC: bool = false;
    #[doc(hidden)]
    type Creator: From<RawActorOptions> + AsMut<RawActorOptions>;
    #[doc(hidden)]
    type Methods: From<RawActorHandle> + AsRef<RawActorHandle> + Send + Sync + 'static;
}

/// An actor instance living in its worker.
#[doc(hidden)]
pub enum ActorInstance {
    /// Methods run one at a time on one thread.
    Single(Box<dyn Any>),
    /// Methods run on `max_concurrency` threads: `&self` methods concurrently.
    Threaded {
        instance: Box<dyn Any + Send + Sync>,
        max_concurrency: u32,
    },
}

impl ActorInstance {
    pub fn single<T: 'static>(value: T) -> Self {
        ActorInstance::Single(Box::new(value))
    }
    pub fn threaded<T: Send + Sync + 'static>(value: T, max_concurrency: u32) -> Self {
        ActorInstance::Threaded {
            instance: Box::new(value),
            max_concurrency,
        }
    }
}

/// The untyped part of an actor handle: its id and class, reference-counted.
#[doc(hidden)]
pub struct RawActorHandle {
    id: ActorId,
    class: &'static str,
}

impl RawActorHandle {
    pub(crate) fn adopt(id: ActorId, class: &'static str) -> Self {
        RawActorHandle { id, class }
    }

    /// Submits a method call. Calls from one caller run in the order they were made.
    pub fn call<R>(&self, method: &'static str, args: ArgsBuilder) -> ObjectRef<R> {
        ObjectRef::adopt(self.submit(method, args, Returns::default()))
    }

    /// Submits a call of a method with `num_returns = n`: the ids of its `n` results.
    pub fn call_returns(&self, method: &'static str, args: ArgsBuilder, n: u32) -> Vec<ObjectId> {
        let extra = n.saturating_sub(1);
        let returns = Returns {
            extra,
            stream: None,
        };
        crate::submit::returns_of(self.submit(method, args, returns), extra)
    }

    /// Submits a call of a streaming method.
    pub fn call_stream<T>(&self, method: &'static str, args: ArgsBuilder) -> ObjectRefGenerator<T> {
        let returns = Returns {
            extra: 0,
            stream: Some(crate::options::DEFAULT_STREAM_BACKPRESSURE),
        };
        crate::generator::generator_of(self.submit(method, args, returns))
    }

    fn submit(&self, method: &'static str, args: ArgsBuilder, returns: Returns) -> ObjectId {
        let client = match context::client() {
            Ok(c) => c,
            Err(_) => return ObjectId::NULL,
        };
        let task = ObjectId::new_returns(1 + returns.extra);
        let (args, _pins) = args.finish();
        let args = match args {
            Ok(a) => a,
            Err(e) => {
                for id in crate::submit::returns_of(task, returns.extra) {
                    client.put(id, Err(e.clone()));
                }
                return task;
            }
        };
        client.submit_actor_task(ActorTaskSpec {
            actor: self.id,
            task,
            method: method.to_string(),
            args,
            returns,
        });
        task
    }
}

impl Clone for RawActorHandle {
    fn clone(&self) -> Self {
        refcount::inc(RefId::Actor(self.id));
        RawActorHandle {
            id: self.id,
            class: self.class,
        }
    }
}

impl Drop for RawActorHandle {
    fn drop(&mut self) {
        refcount::dec(RefId::Actor(self.id));
    }
}

/// A handle to an actor: call its methods with `handle.method(args..)`, each returning an
/// `ObjectRef`. `Clone + Send + Sync` and serializable, so tasks and other actors can call it
/// too. The actor exits when every handle is gone, or at once with [`kill`](crate::kill).
///
/// Calls made through handles of one process run in the order they were made.
pub struct ActorHandle<A: RemoteActor> {
    methods: A::Methods,
    _class: PhantomData<fn() -> A>,
}

impl<A: RemoteActor> ActorHandle<A> {
    pub(crate) fn from_raw(raw: RawActorHandle) -> Self {
        ActorHandle {
            methods: A::Methods::from(raw),
            _class: PhantomData,
        }
    }

    pub(crate) fn raw(&self) -> &RawActorHandle {
        self.methods.as_ref()
    }

    /// The actor's id.
    pub fn actor_id(&self) -> ActorId {
        self.raw().id
    }
}

impl<A: RemoteActor> Deref for ActorHandle<A> {
    type Target = A::Methods;
    fn deref(&self) -> &A::Methods {
        &self.methods
    }
}

impl<A: RemoteActor> Clone for ActorHandle<A> {
    fn clone(&self) -> Self {
        Self::from_raw(self.raw().clone())
    }
}

impl<A: RemoteActor> fmt::Debug for ActorHandle<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorHandle<{}>({})", A::NAME, self.raw().id)
    }
}

impl<A: RemoteActor> Serialize for ActorHandle<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !codec::note_contained(RefId::Actor(self.raw().id)) {
            refcount::escaped(RefId::Actor(self.raw().id));
        }
        self.raw().id.serialize(s)
    }
}

impl<'de, A: RemoteActor> Deserialize<'de> for ActorHandle<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = ActorId::deserialize(d)?;
        refcount::inc(RefId::Actor(id));
        Ok(Self::from_raw(RawActorHandle::adopt(id, A::NAME)))
    }
}
