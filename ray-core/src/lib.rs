//! Runtime of ray for Rust: node manager (scheduler, worker pool, object directory), worker
//! processes, transport, `ObjectRef`s and actor handles. Users depend on the `ray` facade
//! crate, which re-exports this and adds the `#[ray::remote]` macro.

#![warn(missing_docs)]

mod actor;
mod api;
mod codec;
mod config;
mod context;
mod driver;
mod error;
mod gpu_detect;
mod head;
mod ids;
mod object_ref;
mod object_store;
mod options;
mod pod;
mod protocol;
mod refcount;
mod registry;
mod resources;
mod setup_hook;
mod slot;
mod submit;
mod transport;
mod worker;

pub use actor::{ActorClass, ActorHandle, RemoteActor};
pub use api::{
    Readable, Storable, get, get_all, get_gpu_ids, get_with_timeout, init, is_initialized, kill,
    put, shutdown, wait,
};
pub use config::Config;
pub use error::{Error, Result};
pub use head::spawn::ENV_GPU_IDS;
pub use ids::{ActorId, ObjectId};
pub use object_ref::{AnyObjectRef, GetFuture, IntoArg, ObjectRef, Waitable};
pub use options::{ActorOptions, RemoteFunction, ResourceAmount, TaskOptions};
pub use pod::{PodView, get_slice, put_slice};

/// Helpers for the code `#[ray::remote]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::actor::{ActorInstance, RawActorHandle};
    pub use crate::codec::Encoded;
    pub use crate::options::{RawActorOptions, RawTaskOptions};
    pub use crate::registry::{ACTORS, ActorEntry, Args, TASKS, TaskEntry};
    pub use crate::setup_hook::{WORKER_SETUP, WorkerSetup};
    pub use crate::submit::{ArgsBuilder, create_actor, encode_return, submit_task};
    pub use linkme;

    use crate::error::{Error, Result};

    /// The error for a method name an actor does not have.
    pub fn unknown_method(actor: &str, method: &str) -> Error {
        Error::InvalidArgument {
            what: "actor method".into(),
            message: format!("`{actor}` has no remote method `{method}`"),
        }
    }

    /// The actor instance as its concrete type.
    pub fn downcast_mut<T: 'static>(this: &mut dyn std::any::Any) -> Result<&mut T> {
        this.downcast_mut::<T>()
            .ok_or_else(|| Error::InvalidArgument {
                what: "actor instance".into(),
                message: format!("the actor is not a `{}`", std::any::type_name::<T>()),
            })
    }

    /// The actor instance as its concrete type.
    pub fn downcast_ref<T: 'static>(this: &dyn std::any::Any) -> Result<&T> {
        this.downcast_ref::<T>()
            .ok_or_else(|| Error::InvalidArgument {
                what: "actor instance".into(),
                message: format!("the actor is not a `{}`", std::any::type_name::<T>()),
            })
    }

    /// Statistics of the running driver: (live objects, bytes of their values).
    pub fn object_stats() -> Option<(usize, u64)> {
        crate::driver::current().map(|d| d.head.object_stats())
    }

    /// Object store statistics of the running driver: (bytes in use, capacity, objects
    /// spilled so far, objects restored so far, spill directory).
    pub fn store_stats() -> Option<(u64, u64, u64, u64, std::path::PathBuf)> {
        crate::driver::current().map(|d| {
            let st = d.head.lock();
            let (spilled, restored) = st.spill_stats();
            (
                st.store.used(),
                st.store.capacity(),
                spilled,
                restored,
                st.store.spill_dir().to_path_buf(),
            )
        })
    }

    /// Process ids of the current workers (driver only).
    pub fn worker_pids() -> Vec<u32> {
        crate::driver::current()
            .map(|d| d.head.worker_pids())
            .unwrap_or_default()
    }

    /// Turns a constructed actor into its running instance. Bounded by `RemoteActor` (not
    /// `ActorClass`) so that a missing struct attribute is reported once, at the impl.
    pub fn into_instance<A: crate::RemoteActor>(actor: A) -> ActorInstance {
        crate::ActorClass::__into_instance(actor)
    }

    /// The running instance of an actor with `max_concurrency > 1`: its `&self` methods run
    /// on several threads at once, hence `Send + Sync`.
    pub fn threaded_instance<A: Send + Sync + 'static>(
        actor: A,
        max_concurrency: u32,
    ) -> ActorInstance {
        ActorInstance::threaded(actor, max_concurrency)
    }

    pub use wire::Wire;

    /// `add.remote(1, 2)`, as Python writes it, is a compile error that says to write
    /// `add::remote(1, 2)`, instead of rustc's "no method named `remote` found for fn item".
    ///
    /// `#[ray::remote]` on a `fn` imports these traits anonymously into the function's module:
    /// they give every function and closure with 0 to 8 parameters a `remote` method whose
    /// bound is never met, with the message. Only `Fn` types get it, so `name::options()
    /// .remote(..)` and actor handles are untouched.
    pub mod python {
        /// Never implemented: requiring it is the error message.
        #[diagnostic::on_unimplemented(
            message = "a ray task is called as `name::remote(..)`, with `::`; `name.remote(..)` is Python's syntax",
            label = "write `::remote` here",
            note = "`#[ray::remote]` adds `name::remote(args..)` and `name::options()` to the function, which stays a plain Rust function"
        )]
        pub trait CalledWithColons {}

        // Written out rather than generated by a `macro_rules!`, so that the error's note
        // shows one signature instead of a macro invocation.

        /// Gives `Fn` types with 0 parameters a `remote` method that is a compile error.
        pub trait Remote0<R> {
            /// Never compiles: write `name::remote(..)`.
            fn remote(&self)
            where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn() -> R, R> Remote0<R> for F {}

        /// Gives `Fn` types with 1 parameters a `remote` method that is a compile error.
        pub trait Remote1<A1, R> {
            /// Never compiles: write `name::remote(..)`.
            fn remote<X1>(&self, _: X1)
            where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn(A1) -> R, A1, R> Remote1<A1, R> for F {}

        /// Gives `Fn` types with 2 parameters a `remote` method that is a compile error.
        pub trait Remote2<A1, A2, R> {
            /// Never compiles: write `name::remote(..)`.
            fn remote<X1, X2>(&self, _: X1, _: X2)
            where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn(A1, A2) -> R, A1, A2, R> Remote2<A1, A2, R> for F {}

        /// Gives `Fn` types with 3 parameters a `remote` method that is a compile error.
        pub trait Remote3<A1, A2, A3, R> {
            /// Never compiles: write `name::remote(..)`.
            fn remote<X1, X2, X3>(&self, _: X1, _: X2, _: X3)
            where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn(A1, A2, A3) -> R, A1, A2, A3, R> Remote3<A1, A2, A3, R> for F {}

        /// Gives `Fn` types with 4 parameters a `remote` method that is a compile error.
        pub trait Remote4<A1, A2, A3, A4, R> {
            /// Never compiles: write `name::remote(..)`.
            fn remote<X1, X2, X3, X4>(&self, _: X1, _: X2, _: X3, _: X4)
            where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn(A1, A2, A3, A4) -> R, A1, A2, A3, A4, R> Remote4<A1, A2, A3, A4, R> for F {}

        /// Gives `Fn` types with 5 parameters a `remote` method that is a compile error.
        pub trait Remote5<A1, A2, A3, A4, A5, R> {
            /// Never compiles: write `name::remote(..)`.
            fn remote<X1, X2, X3, X4, X5>(&self, _: X1, _: X2, _: X3, _: X4, _: X5)
            where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn(A1, A2, A3, A4, A5) -> R, A1, A2, A3, A4, A5, R> Remote5<A1, A2, A3, A4, A5, R> for F {}

        /// Gives `Fn` types with 6 parameters a `remote` method that is a compile error.
        pub trait Remote6<A1, A2, A3, A4, A5, A6, R> {
            /// Never compiles: write `name::remote(..)`.
            fn remote<X1, X2, X3, X4, X5, X6>(&self, _: X1, _: X2, _: X3, _: X4, _: X5, _: X6)
            where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn(A1, A2, A3, A4, A5, A6) -> R, A1, A2, A3, A4, A5, A6, R>
            Remote6<A1, A2, A3, A4, A5, A6, R> for F
        {
        }

        /// Gives `Fn` types with 7 parameters a `remote` method that is a compile error.
        pub trait Remote7<A1, A2, A3, A4, A5, A6, A7, R> {
            /// Never compiles: write `name::remote(..)`.
            #[allow(clippy::too_many_arguments)]
            fn remote<X1, X2, X3, X4, X5, X6, X7>(
                &self,
                _: X1,
                _: X2,
                _: X3,
                _: X4,
                _: X5,
                _: X6,
                _: X7,
            ) where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn(A1, A2, A3, A4, A5, A6, A7) -> R, A1, A2, A3, A4, A5, A6, A7, R>
            Remote7<A1, A2, A3, A4, A5, A6, A7, R> for F
        {
        }

        /// Gives `Fn` types with 8 parameters a `remote` method that is a compile error.
        pub trait Remote8<A1, A2, A3, A4, A5, A6, A7, A8, R> {
            /// Never compiles: write `name::remote(..)`.
            #[allow(clippy::too_many_arguments)]
            fn remote<X1, X2, X3, X4, X5, X6, X7, X8>(
                &self,
                _: X1,
                _: X2,
                _: X3,
                _: X4,
                _: X5,
                _: X6,
                _: X7,
                _: X8,
            ) where
                Self: CalledWithColons,
            {
            }
        }
        impl<F: Fn(A1, A2, A3, A4, A5, A6, A7, A8) -> R, A1, A2, A3, A4, A5, A6, A7, A8, R>
            Remote8<A1, A2, A3, A4, A5, A6, A7, A8, R> for F
        {
        }
    }

    /// How generated code moves a parameter or result type `T` between processes, with one
    /// readable compile error when `T` cannot travel.
    ///
    /// `#[ray::remote]` cannot know whether a type implements serde's traits, so its code never
    /// names those bounds. Operations go through `Wire::<T>::new()`: method lookup picks the
    /// serde implementation when `T: Serialize + DeserializeOwned` and an unreachable stand-in
    /// otherwise (autoref specialization; every `T` here is concrete). A single check per type,
    /// `Wire::<T>::PROBE.check().require()`, then reports what is missing, at the type.
    pub mod wire {
        use super::{Args, ArgsBuilder, Encoded};
        use crate::error::Result;
        use crate::object_ref::IntoArg;
        use serde::Serialize;
        use serde::de::DeserializeOwned;
        use std::marker::PhantomData;

        /// A parameter or result type of a remote function or method.
        pub struct Wire<T>(PhantomData<fn() -> T>);

        impl<T> Clone for Wire<T> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<T> Copy for Wire<T> {}

        #[allow(clippy::new_without_default)]
        impl<T> Wire<T> {
            /// The receiver of `push`, `decode` and `encode`.
            pub const fn new() -> Self {
                Wire(PhantomData)
            }
        }

        impl<T: 'static> Wire<T> {
            /// The receiver of `check()`: three references deep, so that method lookup tries
            /// the four possible answers in order.
            pub const PROBE: &'static &'static &'static Wire<T> = &&&Wire(PhantomData);
        }

        /// The traits of this module, imported anonymously: `use ::ray::__private::wire::traits::*;`.
        pub mod traits {
            pub use super::{
                CheckBoth as _, CheckDeserialize as _, CheckNeither as _, CheckSerialize as _,
            };
            pub use super::{Serde as _, Unreachable as _};
        }

        /// Moving values of a serializable type: the one used whenever the program compiles.
        pub trait Serde<T> {
            /// Adds an argument to a call.
            fn push<A: IntoArg<T>>(self, args: &mut ArgsBuilder, arg: A);
            /// Decodes the next argument of a call.
            fn decode(self, args: &mut Args) -> Result<T>;
            /// Encodes a result.
            fn encode(self, value: &T) -> Result<Encoded>;
        }

        impl<T: Serialize + DeserializeOwned> Serde<T> for Wire<T> {
            fn push<A: IntoArg<T>>(self, args: &mut ArgsBuilder, arg: A) {
                args.push::<T, A>(arg)
            }
            fn decode(self, args: &mut Args) -> Result<T> {
                args.next::<T>()
            }
            fn encode(self, value: &T) -> Result<Encoded> {
                super::encode_return(value)
            }
        }

        /// Stand-in for a type that cannot travel, so that `check()` reports it once instead
        /// of every use failing too. Never runs: such a program does not compile.
        pub trait Unreachable<T> {
            /// Never called.
            fn push<A: IntoArg<T>>(self, args: &mut ArgsBuilder, arg: A);
            /// Never called.
            fn decode(self, args: &mut Args) -> Result<T>;
            /// Never called.
            fn encode(self, value: &T) -> Result<Encoded>;
        }

        impl<T> Unreachable<T> for &Wire<T> {
            fn push<A: IntoArg<T>>(self, _: &mut ArgsBuilder, _: A) {
                unreachable!("a type that cannot travel is a compile error")
            }
            fn decode(self, _: &mut Args) -> Result<T> {
                unreachable!("a type that cannot travel is a compile error")
            }
            fn encode(self, _: &T) -> Result<Encoded> {
                unreachable!("a type that cannot travel is a compile error")
            }
        }

        /// `T` implements `Serialize` and `Deserialize`.
        pub trait CheckBoth {
            /// The answer.
            fn check(self) -> Transferable;
        }
        impl<T: Serialize + DeserializeOwned> CheckBoth for &&&Wire<T> {
            fn check(self) -> Transferable {
                Transferable
            }
        }

        /// `T` implements `Serialize` only.
        pub trait CheckSerialize<T> {
            /// The answer.
            fn check(self) -> MissingDeserialize<T>;
        }
        impl<T: Serialize> CheckSerialize<T> for &&Wire<T> {
            fn check(self) -> MissingDeserialize<T> {
                MissingDeserialize(PhantomData)
            }
        }

        /// `T` implements `Deserialize` only.
        pub trait CheckDeserialize<T> {
            /// The answer.
            fn check(self) -> MissingSerialize<T>;
        }
        impl<T: DeserializeOwned> CheckDeserialize<T> for &Wire<T> {
            fn check(self) -> MissingSerialize<T> {
                MissingSerialize(PhantomData)
            }
        }

        /// `T` implements neither.
        pub trait CheckNeither<T> {
            /// The answer.
            fn check(self) -> MissingBoth<T>;
        }
        impl<T> CheckNeither<T> for Wire<T> {
            fn check(self) -> MissingBoth<T> {
                MissingBoth(PhantomData)
            }
        }

        /// The type can travel.
        pub struct Transferable;
        impl Transferable {
            /// Nothing to report.
            pub fn require(self) {}
        }

        /// The type lacks `Deserialize`.
        pub struct MissingDeserialize<T>(PhantomData<fn() -> T>);
        impl<T> MissingDeserialize<T> {
            /// A compile error naming the type and `Deserialize`.
            pub fn require(self)
            where
                T: SerdeDeserialize,
            {
            }
        }

        /// The type lacks `Serialize`.
        pub struct MissingSerialize<T>(PhantomData<fn() -> T>);
        impl<T> MissingSerialize<T> {
            /// A compile error naming the type and `Serialize`.
            pub fn require(self)
            where
                T: SerdeSerialize,
            {
            }
        }

        /// The type lacks both.
        pub struct MissingBoth<T>(PhantomData<fn() -> T>);
        impl<T> MissingBoth<T> {
            /// A compile error naming the type, `Serialize` and `Deserialize`.
            pub fn require(self)
            where
                T: SerdeSerializeAndDeserialize,
            {
            }
        }

        /// Never implemented: requiring it is the error message.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot travel between ray processes: it does not implement `serde::Serialize`",
            label = "parameters and results of remote functions must implement `Serialize` and `Deserialize`",
            note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to your type (for a container such as `Vec<T>`, to its element type)"
        )]
        pub trait SerdeSerialize {}

        /// Never implemented: requiring it is the error message.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot travel between ray processes: it does not implement `serde::Deserialize`",
            label = "parameters and results of remote functions must implement `Serialize` and `Deserialize`",
            note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to your type (for a container such as `Vec<T>`, to its element type)"
        )]
        pub trait SerdeDeserialize {}

        /// Never implemented: requiring it is the error message.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot travel between ray processes: it implements neither `serde::Serialize` nor `serde::Deserialize`",
            label = "parameters and results of remote functions must implement `Serialize` and `Deserialize`",
            note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to your type (for a container such as `Vec<T>`, to its element type)"
        )]
        pub trait SerdeSerializeAndDeserialize {}
    }
}
