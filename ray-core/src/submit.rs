//! Client-side submission helpers called by the code `#[ray::remote]` generates.

use crate::actor::{ActorHandle, RawActorHandle, RemoteActor};
use crate::codec::{self, Encoded};
use crate::context;
use crate::error::{Error, Result};
use crate::ids::{ActorId, ObjectId, RefId};
use crate::object_ref::{IntoArg, ObjectRef};
use crate::object_store;
use crate::options::{RawActorOptions, RawTaskOptions};
use crate::protocol::{ActorSpec, Arg, TaskSpec};
use crate::refcount::Pins;
use serde::Serialize;

/// Collects the arguments of one call.
#[doc(hidden)]
#[derive(Default)]
pub struct ArgsBuilder {
    args: Vec<Arg>,
    pins: Vec<Pins>,
    /// Large values passed by value are put in the store; these keep them alive until submitted.
    stored: Vec<ObjectRef<()>>,
    error: Option<Error>,
}

impl ArgsBuilder {
    pub fn with_capacity(n: usize) -> Self {
        ArgsBuilder {
            args: Vec::with_capacity(n),
            pins: Vec::new(),
            stored: Vec::new(),
            error: None,
        }
    }

    /// Adds one argument: a value is encoded now, a reference is resolved by the node manager.
    pub fn push<T: Serialize, A: IntoArg<T>>(&mut self, arg: A) {
        arg.__push_to(self)
    }

    /// Adds a value, encoded from a borrow.
    pub(crate) fn push_value<V: Serialize + ?Sized>(&mut self, v: &V) {
        match codec::encode(v) {
            Ok(Encoded { value, pins }) if (value.len() as usize) < object_store::inline_max() => {
                self.args.push(Arg::Value(value));
                self.pins.push(pins);
            }
            Ok(Encoded { value, pins }) => {
                // A large value goes to the object store once, like `ray::put`; the task gets a
                // reference to it.
                match put_value(value) {
                    Ok(r) => {
                        self.args.push(Arg::Ref(r.id()));
                        self.stored.push(r);
                    }
                    Err(e) => {
                        self.error.get_or_insert(e);
                    }
                }
                self.pins.push(pins);
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// Adds a reference, resolved to its value before the task runs.
    pub(crate) fn push_ref(&mut self, id: ObjectId) {
        self.pins.push(Pins::new(&[RefId::Object(id)]));
        self.args.push(Arg::Ref(id));
    }

    /// The arguments, and what keeps referenced objects alive until the submission has been
    /// handed to the node manager (drop it after that).
    pub(crate) fn finish(self) -> (Result<Vec<Arg>>, KeepAlive) {
        let keep = KeepAlive {
            _pins: self.pins,
            _stored: self.stored,
        };
        match self.error {
            Some(e) => (Err(e), keep),
            None => (Ok(self.args), keep),
        }
    }
}

/// Keeps the objects a submission refers to alive until it has been handed over.
pub(crate) struct KeepAlive {
    _pins: Vec<Pins>,
    _stored: Vec<ObjectRef<()>>,
}

/// Submits a task; the returned reference says `NotInitialized` if ray is not running.
#[doc(hidden)]
pub fn submit_task<R>(
    function: &'static str,
    opts: &RawTaskOptions,
    args: ArgsBuilder,
) -> ObjectRef<R> {
    let Ok(client) = context::client() else {
        return ObjectRef::null();
    };
    let task = ObjectId::new();
    let (args, _pins) = args.finish();
    let args = match (args, &opts.error) {
        (_, Some(message)) => Err(Error::InvalidArgument {
            what: format!("options of `{function}`"),
            message: message.clone(),
        }),
        (args, None) => args,
    };
    match args {
        Ok(args) => client.submit_task(TaskSpec {
            task,
            job: client.job(),
            function: function.to_string(),
            args,
            resources: opts.resources.clone(),
            max_retries: opts.max_retries,
        }),
        Err(e) => client.put(task, Err(e)),
    }
    ObjectRef::adopt(task)
}

/// Starts an actor; calls on the handle say `NotInitialized` if ray is not running.
#[doc(hidden)]
pub fn create_actor<A: RemoteActor>(opts: &RawActorOptions, args: ArgsBuilder) -> ActorHandle<A> {
    let Ok(client) = context::client() else {
        return ActorHandle::from_raw(RawActorHandle::adopt(ActorId::NULL, A::NAME));
    };
    let actor = ActorId::new();
    let (args, _pins) = args.finish();
    let args = match (args, &opts.error) {
        (_, Some(message)) => Err(Error::InvalidArgument {
            what: format!("options of actor `{}`", A::NAME),
            message: message.clone(),
        }),
        (args, None) => args,
    };
    let (args, invalid) = match args {
        Ok(a) => (a, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    client.create_actor(ActorSpec {
        actor,
        job: client.job(),
        class: A::NAME.to_string(),
        args,
        resources: opts.resources.clone(),
        max_concurrency: opts.max_concurrency.max(1),
        max_restarts: opts.max_restarts,
        invalid,
    });
    ActorHandle::from_raw(RawActorHandle::adopt(actor, A::NAME))
}

/// Stores an encoded value as a new object owned by this process.
fn put_value(value: crate::codec::Value) -> Result<ObjectRef<()>> {
    let client = context::client()?;
    let stored = object_store::place(&*client, value)?;
    let id = ObjectId::new();
    client.put(id, Ok(stored));
    Ok(ObjectRef::adopt(id))
}

/// Encodes a task's return value (in the worker).
#[doc(hidden)]
pub fn encode_return<T: Serialize>(value: &T) -> Result<Encoded> {
    codec::encode(value)
}
