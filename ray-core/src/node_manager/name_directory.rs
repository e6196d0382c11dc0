//! Actor names shared by a cluster: the directory every node's names also go to.
//!
//! Single-node, the node's [`super::names::LocalNames`] is the whole truth. In a cluster a
//! name must be unique among every node's actors, so a node that creates a named actor first
//! claims the name in its own table (a conflict with one of its own actors is answered at
//! once), then in the cluster's [`NameDirectory`] (etcd, through the `ray-rs` daemon, with
//! compare-and-swap: exactly one claim of a name wins). The creation waits for that answer;
//! so does a `get_actor` that the node's own table cannot answer, and a list of names.
//!
//! The directory is I/O: the state machine asks it through [`Effect::Names`] and the answer
//! comes back as [`NodeState::name_answer`]. Records carry the actor's id and class, encoded
//! with the node protocol's codec and decoded with its bounds (a record is read from etcd,
//! which every node of the cluster can write).

use super::control::Answer;
use super::effects::Effect;
use super::state::NodeState;
use crate::error::{Error, Result};
use crate::ids::{ActorId, IdMap, ProcId};
use crate::protocol::worker::ControlReply;
use crate::protocol::{ActorName, ActorSpec};
use serde::{Deserialize, Serialize};

/// The cluster's directory of actor names, as the `ray-rs` daemon provides it. Calls block
/// (the node manager makes them from a blocking thread, never under its lock) and wait out a
/// directory that is down for a while (an etcd outage) before giving up with `Err`.
pub trait NameDirectory: Send + Sync {
    /// Stores `record` for (`namespace`, `name`) unless a record is there, attached to this
    /// node's lease (the names of a dead node's actors go with it). `Ok(None)`: claimed;
    /// `Ok(Some(r))`: `r` holds the name.
    fn claim(
        &self,
        namespace: &str,
        name: &str,
        record: &[u8],
    ) -> std::result::Result<Option<Vec<u8>>, String>;
    /// The record of (`namespace`, `name`), if any.
    fn lookup(&self, namespace: &str, name: &str) -> std::result::Result<Option<Vec<u8>>, String>;
    /// Deletes the record of (`namespace`, `name`) if it is still `record`.
    fn release(
        &self,
        namespace: &str,
        name: &str,
        record: &[u8],
    ) -> std::result::Result<(), String>;
    /// Every record in `namespace`.
    fn list(&self, namespace: &str) -> std::result::Result<Vec<Vec<u8>>, String>;
}

/// What the directory holds for a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NameRecord {
    pub name: ActorName,
    pub actor: ActorId,
    pub class: String,
}

/// Longest record accepted from the directory.
const MAX_RECORD: usize = 16 * 1024;

impl NameRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut frame = Vec::new();
        // Strings and ids only: encoding cannot fail.
        let _ = crate::codec::encode_frame(self, &mut frame);
        frame
    }

    /// A record read from the directory; `None` if it is not one (too long, malformed).
    pub(crate) fn decode(bytes: &[u8]) -> Option<NameRecord> {
        if bytes.len() < 4 || bytes.len() > MAX_RECORD {
            return None;
        }
        crate::codec::decode_frame(&bytes[4..]).ok()
    }
}

/// A question put to the directory (carried out by the runtime).
#[derive(Debug)]
pub(crate) enum NameOp {
    Claim(NameRecord),
    Lookup(ActorName),
    List(String),
    Release(NameRecord),
}

/// The directory's answer to [`NameOp`] `op`.
pub(crate) enum NameAnswer {
    /// To `Claim` and `Lookup`: the record there (none: claimed, or not found).
    Record(Option<Vec<u8>>),
    /// To `List`.
    Records(Vec<Vec<u8>>),
    /// To `Release`.
    Done,
}

/// What waits for the directory.
enum Waiting {
    /// A named actor's creation, until its name is claimed cluster-wide.
    Create {
        from: ProcId,
        spec: Box<ActorSpec>,
        to: Answer,
    },
    /// `get_actor` of a name not held by this node's actors.
    Lookup {
        from: ProcId,
        name: ActorName,
        class: String,
        to: Answer,
    },
    /// `list_named_actors`.
    List { to: Answer },
}

/// The directory side of [`super::names::Names`] (used when the node is a cluster's).
#[derive(Default)]
pub(crate) struct Shared {
    waiting: IdMap<u64, Waiting>,
    next_op: u64,
    /// The names this node claimed in the directory, by actor (released when it dies).
    claimed: IdMap<ActorId, NameRecord>,
}

impl Shared {
    fn ask(&mut self, effects: &mut Vec<Effect>, op: NameOp, waiting: Option<Waiting>) {
        self.next_op += 1;
        let id = self.next_op;
        if let Some(w) = waiting {
            self.waiting.insert(id, w);
        }
        effects.push(Effect::Names(id, op));
    }
}

fn unreachable_directory(message: String) -> Error {
    Error::Cluster {
        address: "the cluster's name directory (etcd)".into(),
        message,
    }
}

impl NodeState {
    /// A named actor's creation whose name this node's table just gave it: it waits for the
    /// cluster's directory.
    pub(super) fn claim_shared_name(
        &mut self,
        from: ProcId,
        spec: ActorSpec,
        name: ActorName,
        to: Answer,
    ) {
        let record = NameRecord {
            name,
            actor: spec.actor,
            class: spec.class.clone(),
        };
        let waiting = Waiting::Create {
            from,
            spec: Box::new(spec),
            to,
        };
        self.names
            .shared
            .ask(&mut self.effects, NameOp::Claim(record), Some(waiting));
    }

    /// `get_actor` of a name this node's table does not have: asks the directory.
    pub(super) fn lookup_shared_name(
        &mut self,
        from: ProcId,
        name: ActorName,
        class: &str,
        to: Answer,
    ) {
        let waiting = Waiting::Lookup {
            from,
            name: name.clone(),
            class: class.to_string(),
            to,
        };
        self.names
            .shared
            .ask(&mut self.effects, NameOp::Lookup(name), Some(waiting));
    }

    /// `list_named_actors` in a cluster.
    pub(super) fn list_shared_names(&mut self, namespace: String, to: Answer) {
        self.names.shared.ask(
            &mut self.effects,
            NameOp::List(namespace),
            Some(Waiting::List { to }),
        );
    }

    /// The actor is gone: its name, if this node claimed it, is released in the directory.
    pub(super) fn release_shared_name(&mut self, actor: ActorId) {
        if let Some(record) = self.names.shared.claimed.remove(&actor) {
            self.names
                .shared
                .ask(&mut self.effects, NameOp::Release(record), None);
        }
    }

    /// The directory answered op `id`.
    pub(crate) fn name_answer(&mut self, id: u64, answer: std::result::Result<NameAnswer, String>) {
        let Some(waiting) = self.names.shared.waiting.remove(&id) else {
            return;
        };
        match waiting {
            Waiting::Create { from, spec, to } => {
                self.shared_claim_answered(from, *spec, to, answer)
            }
            Waiting::Lookup {
                from,
                name,
                class,
                to,
            } => {
                let result = match answer {
                    Ok(NameAnswer::Record(found)) => {
                        let found = found.as_deref().and_then(NameRecord::decode);
                        self.adopt_named(from, &name, &class, found)
                    }
                    Ok(_) => Err(unreachable_directory("an answer of the wrong kind".into())),
                    Err(e) => Err(unreachable_directory(e)),
                };
                self.answer(to, result);
            }
            Waiting::List { to } => {
                let result = match answer {
                    Ok(NameAnswer::Records(records)) => {
                        let mut names: Vec<ActorName> = records
                            .iter()
                            .filter_map(|r| NameRecord::decode(r))
                            .map(|r| r.name)
                            .collect();
                        names.sort();
                        names.dedup();
                        Ok(ControlReply::Names(names))
                    }
                    Ok(_) => Err(unreachable_directory("an answer of the wrong kind".into())),
                    Err(e) => Err(unreachable_directory(e)),
                };
                self.answer(to, result);
            }
        }
    }

    fn shared_claim_answered(
        &mut self,
        from: ProcId,
        mut spec: ActorSpec,
        to: Answer,
        answer: std::result::Result<NameAnswer, String>,
    ) {
        let actor = spec.actor;
        let name = spec.ext.name.as_deref().cloned().unwrap_or(ActorName {
            namespace: String::new(),
            name: String::new(),
        });
        let holder = match answer {
            Ok(NameAnswer::Record(None)) => None,
            Ok(NameAnswer::Record(Some(bytes))) => match NameRecord::decode(&bytes) {
                // Our own claim, answered again after a retried request.
                Some(r) if r.actor == actor => None,
                Some(r) => Some(Ok(r)),
                None => Some(Err(unreachable_directory(format!(
                    "the record of name {:?} is not one this build can read",
                    name.name
                )))),
            },
            Ok(_) => Some(Err(unreachable_directory(
                "an answer of the wrong kind".into(),
            ))),
            Err(e) => Some(Err(unreachable_directory(e))),
        };
        let Some(holder) = holder else {
            self.names.shared.claimed.insert(
                actor,
                NameRecord {
                    name,
                    actor,
                    class: spec.class.clone(),
                },
            );
            self.create_actor(from, spec);
            self.answer(to, Ok(ControlReply::Actor(actor)));
            return;
        };
        // Not ours: this node's table gives the name up again.
        self.names.table.release(actor);
        spec.ext.name = None;
        let err = match holder {
            Ok(r) if spec.ext.get_if_exists && r.class == spec.class => {
                let result = self.adopt_named(from, &name, &spec.class, Some(r));
                self.answer(to, result);
                return;
            }
            Ok(r) => super::names::class_mismatch(&name, &spec.class, &r.class)
                .filter(|_| spec.ext.get_if_exists)
                .unwrap_or(Error::ActorNameTaken {
                    name: name.name.clone(),
                    namespace: name.namespace.clone(),
                    holder: r.actor,
                }),
            Err(e) => e,
        };
        spec.invalid = Some(err);
        self.create_actor(from, spec);
        self.answer(to, Ok(ControlReply::Actor(actor)));
    }

    /// `from` gets a handle to the actor of `record`, which must be a `class`.
    fn adopt_named(
        &mut self,
        from: ProcId,
        name: &ActorName,
        class: &str,
        record: Option<NameRecord>,
    ) -> Result<ControlReply> {
        let not_found = |hint: &str| Error::ActorNotFound {
            name: name.name.clone(),
            namespace: name.namespace.clone(),
            hint: hint.to_string(),
        };
        let Some(record) = record else {
            return Err(not_found(""));
        };
        if let Some(e) = super::names::class_mismatch(name, class, &record.class) {
            return Err(e);
        }
        self.know_actor(record.actor);
        if !self.actors.contains(record.actor) {
            return Err(not_found(" (its record names a node that is gone)"));
        }
        self.actors.add_holder(record.actor, from);
        Ok(ControlReply::Actor(record.actor))
    }
}
