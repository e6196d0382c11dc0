//! Named actors: the table of names, and creating and finding actors by name.
//!
//! A name is unique in its namespace while its actor lives (pending, restarting or alive);
//! it is free again once the actor is dead or out of scope. The table sits behind
//! [`NameTable`], so that a cluster can back it with a shared store whose compare-and-swap
//! makes `claim` atomic across nodes; [`LocalNames`] is the single-node table. In a cluster
//! the node's table answers for its own actors at once and the cluster's directory
//! ([`super::name_directory`]) decides the rest.

use super::control::Answer;
use super::state::NodeState;
use crate::error::{Error, Result};
use crate::ids::{ActorId, IdMap, JobId, ProcId};
use crate::log;
use crate::protocol::worker::ControlReply;
use crate::protocol::{ActorName, ActorSpec};
use std::collections::BTreeMap;

/// Longest namespace a node accepts from another process.
const MAX_NAMESPACE: usize = 1024;

/// Where actor names live.
pub(crate) trait NameTable: Send {
    /// Registers `name` for `actor` (of `class`) unless a live actor has it: then `Err` with
    /// the holder and its class.
    fn claim(
        &mut self,
        name: &ActorName,
        actor: ActorId,
        class: &str,
    ) -> Result<(), (ActorId, String)>;
    /// The actor that has `name`, and its class.
    fn lookup(&self, name: &ActorName) -> Option<(ActorId, String)>;
    /// The actor is gone: its name (if it had one) is free.
    fn release(&mut self, actor: ActorId);
    /// Every name, in one namespace or all, sorted.
    fn list(&self, namespace: Option<&str>) -> Vec<ActorName>;
}

/// The names of one node's actors.
#[derive(Default)]
pub(crate) struct LocalNames {
    by_name: BTreeMap<ActorName, (ActorId, String)>,
    by_actor: IdMap<ActorId, ActorName>,
}

impl NameTable for LocalNames {
    fn claim(
        &mut self,
        name: &ActorName,
        actor: ActorId,
        class: &str,
    ) -> Result<(), (ActorId, String)> {
        if let Some((holder, class)) = self.by_name.get(name) {
            return Err((*holder, class.clone()));
        }
        self.by_name
            .insert(name.clone(), (actor, class.to_string()));
        self.by_actor.insert(actor, name.clone());
        Ok(())
    }

    fn lookup(&self, name: &ActorName) -> Option<(ActorId, String)> {
        self.by_name.get(name).cloned()
    }

    fn release(&mut self, actor: ActorId) {
        if self.by_actor.is_empty() {
            return;
        }
        if let Some(name) = self.by_actor.remove(&actor) {
            self.by_name.remove(&name);
        }
    }

    fn list(&self, namespace: Option<&str>) -> Vec<ActorName> {
        self.by_name
            .keys()
            .filter(|n| namespace.is_none_or(|ns| n.namespace == ns))
            .cloned()
            .collect()
    }
}

/// The name table and the jobs' namespaces.
pub(crate) struct Names {
    pub table: Box<dyn NameTable>,
    /// Where a job's names without a namespace go (`Config::namespace`); a job not here has
    /// an anonymous one of its own.
    namespaces: IdMap<JobId, String>,
    /// The cluster's directory, when the node is a cluster's.
    pub shared: super::name_directory::Shared,
}

impl Names {
    pub(crate) fn new() -> Self {
        Names {
            table: Box::new(LocalNames::default()),
            namespaces: IdMap::default(),
            shared: Default::default(),
        }
    }

    /// The namespace `job` set, if it did.
    pub(crate) fn namespace_of(&self, job: JobId) -> Option<String> {
        self.namespaces.get(&job).cloned()
    }

    /// The namespace of `job`'s names: the one it set, else an anonymous one of its own.
    fn namespace(&self, job: Option<JobId>) -> String {
        match job {
            Some(job) => self
                .namespaces
                .get(&job)
                .cloned()
                .unwrap_or_else(|| format!("anonymous-{job}")),
            None => "anonymous".into(),
        }
    }

    /// The name with its namespace filled in (the asker's job's).
    fn resolve(&self, mut name: ActorName, job: Option<JobId>) -> ActorName {
        if name.namespace.is_empty() {
            name.namespace = self.namespace(job);
        }
        name
    }

    /// A job ended: its namespace setting goes.
    pub(crate) fn job_ended(&mut self, job: JobId) {
        self.namespaces.remove(&job);
    }
}

impl NodeState {
    /// Creates an actor with a name (`spec.ext.name`). The answer is the actor the creator now
    /// holds: the new one; with `get_if_exists`, the live one of the same class that has the
    /// name; or, if the name is taken, a new actor that is dead on arrival with the error
    /// (so that `Type::options().name(..).remote()` returns a handle whose calls say why).
    /// `None`: the answer goes to `to` once the cluster's directory decided.
    pub(super) fn create_named_actor(
        &mut self,
        from: ProcId,
        mut spec: ActorSpec,
        to: &Answer,
    ) -> Option<ControlReply> {
        let Some(name) = spec.ext.name.take() else {
            let id = spec.actor;
            self.create_actor(from, spec);
            return Some(ControlReply::Actor(id));
        };
        let name = self.names.resolve(*name, self.job_of(from));
        let taken = match self.names.table.claim(&name, spec.actor, &spec.class) {
            Ok(()) if self.in_cluster() => {
                spec.ext.name = Some(Box::new(name.clone()));
                self.claim_shared_name(from, spec, name, to.clone());
                return None;
            }
            Ok(()) => None,
            Err((holder, class)) if spec.ext.get_if_exists && class == spec.class => {
                self.actors.add_holder(holder, from);
                return Some(ControlReply::Actor(holder));
            }
            Err((holder, class)) if spec.ext.get_if_exists => Some(
                class_mismatch(&name, &spec.class, &class).unwrap_or(Error::ActorNameTaken {
                    name: name.name.clone(),
                    namespace: name.namespace.clone(),
                    holder,
                }),
            ),
            Err((holder, _)) => Some(Error::ActorNameTaken {
                name: name.name.clone(),
                namespace: name.namespace.clone(),
                holder,
            }),
        };
        if taken.is_some() {
            spec.invalid = taken;
        } else {
            spec.ext.name = Some(Box::new(name));
        }
        let id = spec.actor;
        self.create_actor(from, spec);
        Some(ControlReply::Actor(id))
    }

    /// `ray::get_actor`: the live actor named `name`, which must be a `class`. The asker
    /// holds a handle to it from now on. `None`: the cluster's directory is asked, and the
    /// answer goes to `to`.
    pub(super) fn get_named_actor(
        &mut self,
        from: ProcId,
        name: ActorName,
        class: &str,
        to: &Answer,
    ) -> Option<Result<ControlReply>> {
        let name = self.names.resolve(name, self.job_of(from));
        let found = self.names.table.lookup(&name);
        if found.is_none() && self.in_cluster() {
            self.lookup_shared_name(from, name, class, to.clone());
            return None;
        }
        Some(self.get_local_named_actor(from, name, class, found))
    }

    fn get_local_named_actor(
        &mut self,
        from: ProcId,
        name: ActorName,
        class: &str,
        found: Option<(ActorId, String)>,
    ) -> Result<ControlReply> {
        let Some((actor, found)) = found else {
            let elsewhere: Vec<String> = self
                .names
                .table
                .list(None)
                .into_iter()
                .filter(|n| n.name == name.name)
                .map(|n| format!("{:?}", n.namespace))
                .collect();
            let hint = if elsewhere.is_empty() {
                String::new()
            } else {
                format!(
                    " (an actor of that name lives in namespace {}: use `ray::get_actor_in`)",
                    elsewhere.join(", ")
                )
            };
            return Err(Error::ActorNotFound {
                name: name.name,
                namespace: name.namespace,
                hint,
            });
        };
        if let Some(e) = class_mismatch(&name, class, &found) {
            return Err(e);
        }
        self.actors.add_holder(actor, from);
        Ok(ControlReply::Actor(actor))
    }

    /// The names in `namespace` (default: the job's). `None`: the cluster's directory is
    /// asked, and the answer goes to `to`.
    pub(super) fn list_named_actors(
        &mut self,
        from: ProcId,
        namespace: Option<String>,
        to: &Answer,
    ) -> Option<ControlReply> {
        let ns = namespace.unwrap_or_else(|| self.names.namespace(self.job_of(from)));
        if self.in_cluster() {
            self.list_shared_names(ns, to.clone());
            return None;
        }
        Some(ControlReply::Names(self.names.table.list(Some(&ns))))
    }

    /// The actor is dead or gone: its name is free.
    pub(super) fn release_actor_name(&mut self, actor: ActorId) {
        self.names.table.release(actor);
        self.release_shared_name(actor);
    }

    /// The single-node driver's job's namespace (`Config::namespace`).
    pub(crate) fn set_namespace(&mut self, namespace: String) {
        let job = JobId::of_driver(self.driver());
        self.names.namespaces.insert(job, namespace);
    }

    /// `job`'s namespace as its driver set it (a remote driver's hello, or a peer announcing
    /// the job). Ignored if it is not one `Config::namespace` accepts.
    pub(crate) fn set_job_namespace(&mut self, job: JobId, namespace: &str) {
        if namespace.len() > MAX_NAMESPACE
            || crate::options::check_name("a namespace", namespace).is_err()
        {
            log::warn!("{job} announced a namespace that is not one: ignored");
            return;
        }
        self.names.namespaces.insert(job, namespace.to_string());
    }

    /// Ray's `ray.kill(actor, no_restart=False)`: the actor's process is killed; it restarts
    /// if it has restarts left.
    pub(super) fn kill_actor_process(&mut self, actor: ActorId) {
        use super::actors::ActorState;
        let Some(entry) = self.actors.get(actor) else {
            return;
        };
        match entry.state {
            ActorState::Starting(p) | ActorState::Creating(p) | ActorState::Alive(p) => {
                self.stop_worker(p, "was killed by ray::kill_and_restart".into());
            }
            ActorState::Remote(node) => {
                // Its node kills it there; the answer is not waited for.
                let op = crate::protocol::worker::Control::KillActor {
                    actor,
                    no_restart: false,
                };
                self.send_node(
                    node,
                    crate::protocol::worker::FromWorker::Control { req: 0, op },
                );
            }
            ActorState::Pending | ActorState::Locating | ActorState::Dead(_) => {}
        }
    }
}

pub(super) fn class_mismatch(name: &ActorName, expected: &str, found: &str) -> Option<Error> {
    (expected != found).then(|| Error::ActorClassMismatch {
        name: name.name.clone(),
        expected: super::short_name(expected).to_string(),
        found: found.to_string(),
    })
}
