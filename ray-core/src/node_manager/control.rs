//! Requests of the rest of Ray's core API (`FromWorker::Control`, or the driver's direct
//! calls): who may ask what, which part answers, and how the answer travels.
//!
//! Each op is checked against its sender as the other messages are (see `mod.rs`): new ids
//! must be the sender's, references it names must be ones it holds. The parts answer at once,
//! except `StreamNext`, which waits for the stream's next item ([`super::generators`]), and,
//! in a cluster, names the node's own table cannot answer ([`super::name_directory`]).

use super::NodeManager;
use super::effects::Effect;
use super::state::NodeState;
use crate::error::{Error, Result};
use crate::ids::{ObjectId, ProcId, RefId};
use crate::protocol::worker::{Control, ControlReply, ToWorker};
use crate::slot::Slot;
use std::sync::Arc;

/// Where the answer to a control request goes.
#[derive(Clone)]
pub(crate) enum Answer {
    /// A worker: a `ControlReply` message.
    Remote { proc: ProcId, req: u64 },
    /// A thread of the process the node manager runs in (the driver), blocked on the slot.
    Local(Arc<Slot<Result<ControlReply>>>),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Remote { proc, req } => write!(f, "Remote({proc}, {req})"),
            Answer::Local(_) => f.write_str("Local"),
        }
    }
}

impl NodeState {
    /// A control request of `from`, answered through `to` (now or later). `Err` is a protocol
    /// violation (a worker asking about ids it may not use); errors of the request itself
    /// (an unknown name...) are answers.
    pub(crate) fn control(&mut self, from: ProcId, to: Answer, op: Control) -> Result<(), String> {
        let answer = match op {
            Control::CreateNamedActor(spec) => {
                self.fresh(from, RefId::Actor(spec.actor))?;
                self.check_args(from, &spec.args)?;
                if spec.ext.name.is_none() {
                    return Err("a named actor creation without a name".into());
                }
                match self.create_named_actor(from, *spec, &to) {
                    Some(reply) => Ok(reply),
                    None => return Ok(()), // answered when the cluster's directory has
                }
            }
            Control::GetActor { name, class } => {
                match self.get_named_actor(from, name, &class, &to) {
                    Some(answer) => answer,
                    None => return Ok(()),
                }
            }
            Control::ListNamedActors { namespace } => {
                match self.list_named_actors(from, namespace, &to) {
                    Some(reply) => Ok(reply),
                    None => return Ok(()),
                }
            }
            Control::KillActor { actor, no_restart } => {
                self.may_use_actor(from, actor)?;
                if no_restart {
                    self.kill_actor(actor, "killed by ray::kill");
                } else {
                    self.kill_actor_process(actor);
                }
                Ok(ControlReply::Done)
            }
            Control::Cancel {
                task,
                force,
                recursive,
            } => {
                self.may_name(from, task)?;
                self.cancel(task, force, recursive)
            }
            Control::Resources => Ok(self.resources_reply()),
            Control::Nodes => Ok(self.nodes_reply()),
            Control::State(q) => Ok(ControlReply::State(Box::new(self.state_rows(&q)))),
            Control::AssignedResources => Ok(self.assigned_resources(from)),
            Control::StreamNext { generator, index } => {
                self.may_name(from, generator)?;
                match self.stream_next(from, generator, index, to.clone()) {
                    Some(answer) => answer,
                    None => return Ok(()), // answered when the item comes
                }
            }
            Control::DirectTicket { actor, ticket } => self.direct_ticket(from, actor, ticket)?,
            Control::StreamDropped { generator } => {
                self.may_name(from, generator)?;
                if self.stream_owner(generator) == Some(from) {
                    self.stream_dropped(generator);
                }
                Ok(ControlReply::Done)
            }
            Control::CreatePlacementGroup(spec) => {
                self.fresh(from, RefId::Object(spec.ready))?;
                if spec.id.creator() != from || self.placement_group_exists(spec.id) {
                    return Err(format!(
                        "a placement group id {} that is not its own or is in use",
                        spec.id
                    ));
                }
                for bundle in &spec.bundles {
                    bundle.check_received()?;
                }
                Ok(self.create_placement_group(from, spec))
            }
            Control::RemovePlacementGroup(group) => Ok(self.remove_placement_group(group)),
            Control::Escape(id) => {
                if self.holds(from, id) {
                    self.escape(id);
                }
                Ok(ControlReply::Done)
            }
        };
        self.answer(to, answer);
        Ok(())
    }

    /// `from` names object `id` (to cancel it, read its stream): it must hold it, if it exists.
    fn may_name(&self, from: ProcId, id: ObjectId) -> Result<(), String> {
        if self.objects.get(id).is_some() && !self.holds(from, RefId::Object(id)) {
            return Err(format!(
                "a request about object {id}, which it does not hold"
            ));
        }
        Ok(())
    }

    /// Sends (or hands) an answer.
    pub(super) fn answer(&mut self, to: Answer, result: Result<ControlReply>) {
        match to {
            Answer::Remote { proc, req } => self.send(proc, ToWorker::ControlReply { req, result }),
            Answer::Local(slot) => self.effects.push(Effect::Answer(slot, result)),
        }
    }
}

impl NodeManager {
    /// A control request of the driver (`me`), blocking until answered.
    pub(crate) fn control_local(&self, me: ProcId, op: Control) -> Result<ControlReply> {
        let slot = Arc::new(Slot::new());
        let to = Answer::Local(slot.clone());
        let checked = self.run(|st| {
            if st.shutting_down {
                return Err(Error::shut_down());
            }
            st.control(me, to, op)
                .map_err(|what| Error::InvalidArgument {
                    what: "request".into(),
                    message: format!("the driver sent {what}"),
                })
        });
        checked?;
        slot.wait(None).unwrap_or_else(|| Err(Error::shut_down()))
    }
}
