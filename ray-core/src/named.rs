//! Named actors: a handle by name, from anywhere in the job (Ray's `ray.get_actor`).

use crate::actor::{ActorHandle, RawActorHandle, RemoteActor};
use crate::context;
use crate::error::{Error, Result};
use crate::ids::RefId;
use crate::introspect::unexpected;
use crate::options::check_name;
use crate::protocol::ActorName;
use crate::protocol::worker::{Control, ControlReply};

fn lookup<A: RemoteActor>(name: &str, namespace: &str) -> Result<ActorHandle<A>> {
    let invalid = |what: &str, e: String| Error::InvalidArgument {
        what: what.into(),
        message: e,
    };
    check_name("an actor name", name).map_err(|e| invalid("actor name", e))?;
    let client = context::client()?;
    let op = Control::GetActor {
        name: ActorName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
        class: A::NAME.to_string(),
    };
    match client.control(op)? {
        ControlReply::Actor(id) => {
            client.adopt(RefId::Actor(id));
            Ok(ActorHandle::from_raw(RawActorHandle::adopt(id, A::NAME)))
        }
        other => Err(unexpected(other)),
    }
}

/// A handle to the live actor registered under `name` in the job's namespace (see
/// [`ActorOptions::name`](crate::ActorOptions::name)), typed: the actor must be an `A`, or the
/// answer is [`Error::ActorClassMismatch`]. An unknown name (never registered, or its actor
/// died) is [`Error::ActorNotFound`]. Works in the driver, in tasks and in actors.
///
/// ```
/// #[ray::remote]
/// struct Ledger {
///     total: i64,
/// }
///
/// #[ray::remote]
/// impl Ledger {
///     fn new() -> Self {
///         Ledger { total: 0 }
///     }
///     fn add(&mut self, x: i64) -> i64 {
///         self.total += x;
///         self.total
///     }
/// }
///
/// #[ray::remote]
/// fn deposit(x: i64) -> i64 {
///     let ledger = ray::get_actor::<Ledger>("ledger").unwrap(); // found by name
///     ray::get(&ledger.add(x)).unwrap()
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let ledger = Ledger::options().name("ledger").remote();
///     assert_eq!(ray::get(&deposit::remote(5))?, 5);
///     assert_eq!(ray::get(&ledger.add(1))?, 6);
///     let again = Ledger::options().name("ledger").remote(); // the name is taken
///     assert!(matches!(ray::get(&again.add(1)), Err(ray::Error::ActorNameTaken { .. })));
///     let same = Ledger::options().name("ledger").get_if_exists(true).remote();
///     assert_eq!(same.actor_id(), ledger.actor_id());
///     ray::kill(&ledger); // a dead actor's name is free again
///     assert!(matches!(ray::get_actor::<Ledger>("ledger"), Err(ray::Error::ActorNotFound { .. })));
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub fn get_actor<A: RemoteActor>(name: &str) -> Result<ActorHandle<A>> {
    lookup(name, "")
}

/// Like [`get_actor`], in the given namespace (Ray's `ray.get_actor(name, namespace=..)`).
pub fn get_actor_in<A: RemoteActor>(name: &str, namespace: &str) -> Result<ActorHandle<A>> {
    check_name("a namespace", namespace).map_err(|e| Error::InvalidArgument {
        what: "namespace".into(),
        message: e,
    })?;
    lookup(name, namespace)
}

/// Names of the live named actors in the job's namespace (Ray's
/// `ray.util.list_named_actors()`), sorted.
pub fn list_named_actors() -> Result<Vec<String>> {
    match context::client()?.control(Control::ListNamedActors { namespace: None })? {
        ControlReply::Names(names) => Ok(names.into_iter().map(|n| n.name).collect()),
        other => Err(unexpected(other)),
    }
}

/// Kills the actor's process as [`kill`](crate::kill) does, but lets it restart if it has
/// restarts left (`max_restarts`): Ray's `ray.kill(actor, no_restart=False)`. Calls it was
/// running fail with [`Error::ActorDied`] `{ restarting: true, .. }` (or run again, within
/// `max_task_retries`); later calls go to the restarted actor, which keeps its name.
pub fn kill_and_restart<A: RemoteActor>(handle: &ActorHandle<A>) -> Result<()> {
    let op = Control::KillActor {
        actor: handle.actor_id(),
        no_restart: false,
    };
    context::client()?.control(op).map(|_| ())
}
