//! Client-side submission helpers called by the code `#[ray::remote]` generates.

use crate::actor::{ActorHandle, RawActorHandle, RemoteActor};
use crate::codec::{self, Encoded};
use crate::context;
use crate::error::{Error, Result};
use crate::generator::{ObjectRefGenerator, generator_of};
use crate::ids::{ActorId, ObjectId, RefId};
use crate::object_ref::{IntoArg, ObjectRef};
use crate::object_store;
use crate::options::{RawActorOptions, RawTaskOptions};
use crate::protocol::worker::{Control, ControlReply};
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
            Ok(Encoded { value, pins, .. })
                if (value.len() as usize) < object_store::inline_max() =>
            {
                self.args.push(Arg::Value(value));
                self.pins.push(pins);
            }
            Ok(Encoded { value, pins, .. }) => {
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
    ObjectRef::adopt(submit(function, opts, args))
}

/// Submits a task with `num_returns = n`: the ids of its `n` results (see
/// [`adopt_ref`]).
#[doc(hidden)]
pub fn submit_task_returns(
    function: &'static str,
    opts: &RawTaskOptions,
    args: ArgsBuilder,
) -> Vec<ObjectId> {
    let first = submit(function, opts, args);
    returns_of(first, opts.ext.returns.extra)
}

/// Submits a streaming task.
#[doc(hidden)]
pub fn submit_task_stream<T>(
    function: &'static str,
    opts: &RawTaskOptions,
    args: ArgsBuilder,
) -> ObjectRefGenerator<T> {
    generator_of(submit(function, opts, args))
}

/// The ids of a call's return values, from the first.
pub(crate) fn returns_of(first: ObjectId, extra: u32) -> Vec<ObjectId> {
    (0..=extra)
        .map(|i| {
            if first.is_null() {
                first
            } else {
                first.nth_return(i)
            }
        })
        .collect()
}

/// A reference this process holds one count of (a return value of a call it made).
#[doc(hidden)]
pub fn adopt_ref<T>(id: ObjectId) -> ObjectRef<T> {
    ObjectRef::adopt(id)
}

fn submit(function: &'static str, opts: &RawTaskOptions, args: ArgsBuilder) -> ObjectId {
    let Ok(client) = context::client() else {
        return ObjectId::NULL;
    };
    let ext = opts.ext.clone();
    let task = ObjectId::new_returns(1 + ext.returns.extra);
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
            ext,
        }),
        Err(e) => {
            for id in returns_of(task, ext.returns.extra) {
                client.put(id, Err(e.clone()));
            }
        }
    }
    task
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
    let mut ext = opts.ext.clone();
    // The node decides: a cluster's keeps it beyond the job, a single-node one refuses it.
    ext.detached = opts.detached;
    if let (Some(name), Some(ns)) = (&mut ext.name, &opts.namespace) {
        name.namespace = ns.clone();
    }
    let max_concurrency = match opts.max_concurrency {
        0 if A::ASYNC => DEFAULT_ASYNC_CONCURRENCY,
        0 => 1,
        n => n,
    };
    let named = ext.name.is_some() && invalid.is_none();
    let spec = ActorSpec {
        actor,
        job: client.job(),
        class: A::NAME.to_string(),
        args,
        resources: opts.resources.clone(),
        max_concurrency,
        max_restarts: opts.max_restarts,
        invalid,
        ext,
    };
    if !named {
        client.create_actor(spec);
        return ActorHandle::from_raw(RawActorHandle::adopt(actor, A::NAME));
    }
    // A name needs an answer: the name may be taken, or (`get_if_exists`) name another actor.
    let id = match client.control(Control::CreateNamedActor(Box::new(spec))) {
        Ok(ControlReply::Actor(id)) => {
            client.adopt(RefId::Actor(id));
            id
        }
        _ => ActorId::NULL,
    };
    ActorHandle::from_raw(RawActorHandle::adopt(id, A::NAME))
}

/// Calls an async actor interleaves unless `max_concurrency` says otherwise (Ray's default).
pub const DEFAULT_ASYNC_CONCURRENCY: u32 = 1000;

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
