//! Actor names in a cluster, with the cluster's directory faked by hand (its questions are in
//! `Harness::name_ops`, its answers given with `name_answer`), and detached actors.

use super::core_api::{control, dead_error};
use super::*;
use crate::node_manager::name_directory::{NameAnswer, NameOp, NameRecord};
use crate::protocol::ActorName;
use crate::protocol::worker::{Control, ControlReply};

const OTHER_NODE: NodeId = NodeId(2);

impl Harness {
    /// A peer has joined (with one CPU).
    fn peer_is_up(&mut self, node: NodeId) {
        let one: std::collections::BTreeMap<String, f64> = [("CPU".to_string(), 1.0)].into();
        self.with(|st| st.node_update(node, None, &one, &one, &Default::default(), 1));
    }
}

fn clustered() -> Harness {
    let mut h = Harness::new(cpus(2));
    h.st.cluster.member = true;
    h
}

fn name(n: &str) -> ActorName {
    ActorName {
        namespace: "ns".into(),
        name: n.into(),
    }
}

fn named_spec(h: &mut Harness, n: &str, get_if_exists: bool) -> ActorSpec {
    let mut spec = actor_spec(h, DRIVER, 0);
    spec.ext.name = Some(Box::new(name(n)));
    spec.ext.get_if_exists = get_if_exists;
    spec
}

/// The one question the directory was asked since the last call.
fn asked(h: &mut Harness) -> (u64, NameOp) {
    let mut ops = std::mem::take(&mut h.name_ops);
    assert_eq!(ops.len(), 1, "one question: {ops:?}");
    ops.pop().expect("one")
}

/// Creates a named actor and answers the directory's claim with `holder` (`None`: claimed).
fn create_named(
    h: &mut Harness,
    n: &str,
    get_if_exists: bool,
    holder: Option<NameRecord>,
) -> (ActorId, Result<ControlReply, Error>) {
    let spec = named_spec(h, n, get_if_exists);
    let new = spec.actor;
    let slot = Arc::new(Slot::new());
    let to = super::super::control::Answer::Local(slot.clone());
    h.with(|st| st.control(DRIVER, to, Control::CreateNamedActor(Box::new(spec))))
        .expect("allowed");
    assert!(slot.try_take().is_none(), "it waits for the directory");
    let (id, op) = asked(h);
    assert!(
        matches!(&op, NameOp::Claim(r) if r.actor == new && r.name == name(n)),
        "{op:?}"
    );
    let answer = NameAnswer::Record(holder.map(|r| r.encode()));
    h.with(|st| st.name_answer(id, Ok(answer)));
    (new, slot.try_take().expect("answered"))
}

fn other_nodes_actor(n: &str, class: &str) -> NameRecord {
    NameRecord {
        name: name(n),
        actor: ActorId((u128::from(OTHER_NODE.0) << 96) | 77),
        class: class.into(),
    }
}

#[test]
fn a_name_claimed_in_the_directory_makes_the_actor_and_is_released_when_it_dies() {
    let mut h = clustered();
    let (a, reply) = create_named(&mut h, "ledger", false, None);
    assert!(matches!(reply, Ok(ControlReply::Actor(x)) if x == a));
    assert!(dead_error(&h, a).is_none());
    // A second creation on this node is refused by the node's own table, without asking.
    let spec = named_spec(&mut h, "ledger", false);
    let second = spec.actor;
    let reply = control(&mut h, Control::CreateNamedActor(Box::new(spec)));
    assert!(matches!(reply, Some(Ok(ControlReply::Actor(x))) if x == second));
    assert!(h.name_ops.is_empty(), "answered here");
    assert!(matches!(
        dead_error(&h, second),
        Some(Error::ActorNameTaken { holder, .. }) if holder == a
    ));
    h.with(|st| st.kill_actor(a, "killed by ray::kill"));
    let (_, op) = asked(&mut h);
    assert!(
        matches!(&op, NameOp::Release(r) if r.actor == a),
        "released in the directory: {op:?}"
    );
}

#[test]
fn a_name_another_node_holds_is_taken_and_get_if_exists_gives_that_actor() {
    let mut h = clustered();
    h.peer_is_up(OTHER_NODE);
    let theirs = other_nodes_actor("ledger", "m::Counter");
    let (a, reply) = create_named(&mut h, "ledger", false, Some(theirs.clone()));
    assert!(matches!(reply, Ok(ControlReply::Actor(x)) if x == a));
    match dead_error(&h, a) {
        Some(Error::ActorNameTaken { holder, name, .. }) => {
            assert_eq!((holder, name.as_str()), (theirs.actor, "ledger"))
        }
        other => panic!("expected ActorNameTaken, got {other:?}"),
    }
    assert!(
        h.st.names.table.lookup(&name("ledger")).is_none(),
        "the node's table gave the name up again"
    );
    let (_, reply) = create_named(&mut h, "ledger", true, Some(theirs.clone()));
    assert!(
        matches!(reply, Ok(ControlReply::Actor(x)) if x == theirs.actor),
        "get_if_exists: the holder, {reply:?}"
    );
    assert!(h.st.actors.held_by(theirs.actor, DRIVER));
    let located: Vec<FromWorker> = std::mem::take(&mut h.to_nodes)
        .into_iter()
        .filter(|(n, _)| *n == OTHER_NODE)
        .map(|(_, m)| m)
        .collect();
    assert!(
        located
            .iter()
            .any(|m| matches!(m, FromWorker::LocateActor { actor, .. } if *actor == theirs.actor)),
        "its creator is asked where it runs: {located:?}"
    );
    // Of another class: a clear mismatch, not the actor.
    let other_class = other_nodes_actor("ledger", "m::Other");
    let (b, _) = create_named(&mut h, "ledger", true, Some(other_class));
    assert!(matches!(
        dead_error(&h, b),
        Some(Error::ActorClassMismatch { .. })
    ));
}

#[test]
fn get_actor_asks_the_directory_for_names_this_node_does_not_hold() {
    let mut h = clustered();
    h.peer_is_up(OTHER_NODE);
    let ask = |h: &mut Harness, n: &str| {
        let slot = Arc::new(Slot::new());
        let to = super::super::control::Answer::Local(slot.clone());
        let op = Control::GetActor {
            name: name(n),
            class: "m::Counter".into(),
        };
        h.with(|st| st.control(DRIVER, to, op)).expect("allowed");
        (slot, asked(h))
    };
    let (slot, (id, op)) = ask(&mut h, "nobody");
    assert!(matches!(&op, NameOp::Lookup(n) if *n == name("nobody")));
    h.with(|st| st.name_answer(id, Ok(NameAnswer::Record(None))));
    assert!(matches!(
        slot.try_take(),
        Some(Err(Error::ActorNotFound { .. }))
    ));
    let theirs = other_nodes_actor("svc", "m::Counter");
    let (slot, (id, _)) = ask(&mut h, "svc");
    h.with(|st| st.name_answer(id, Ok(NameAnswer::Record(Some(theirs.encode())))));
    assert!(matches!(slot.try_take(), Some(Ok(ControlReply::Actor(x))) if x == theirs.actor));
    // etcd unreachable past its wait: the error says where.
    let (slot, (id, _)) = ask(&mut h, "svc2");
    h.with(|st| st.name_answer(id, Err("etcd is down".into())));
    match slot.try_take() {
        Some(Err(Error::Cluster { message, .. })) => assert!(message.contains("etcd is down")),
        other => panic!("expected a cluster error, got {other:?}"),
    }
    // A record that is not one (etcd is writable by every node): not found, nothing decoded.
    let (slot, (id, _)) = ask(&mut h, "junk");
    h.with(|st| st.name_answer(id, Ok(NameAnswer::Record(Some(vec![0xff; 64])))));
    assert!(matches!(
        slot.try_take(),
        Some(Err(Error::ActorNotFound { .. }))
    ));
}

#[test]
fn a_detached_actor_outlives_its_handles_and_its_job_until_killed() {
    let mut h = clustered();
    let mut spec = actor_spec(&mut h, DRIVER, 0);
    spec.ext.detached = true;
    let a = spec.actor;
    h.with(|st| st.create_actor(DRIVER, spec));
    let w = h.connect_all()[0];
    h.msg(
        w,
        FromWorker::ActorCreated {
            actor: a,
            result: Ok(()),
        },
    );
    // A plain actor of the same job, for contrast.
    let (plain, plain_worker) = live_actor(&mut h, 0);
    h.with(|st| {
        let _ = st.del_ref(DRIVER, RefId::Actor(a));
    });
    assert!(dead_error(&h, a).is_none(), "no handle left, still alive");
    h.with(|st| st.end_job(JOB));
    assert!(dead_error(&h, a).is_none(), "its job ended, still alive");
    assert!(!h.killed.contains(&w), "its worker goes on");
    assert!(
        h.st.actors
            .get(plain)
            .is_none_or(|e| matches!(e.state, super::super::actors::ActorState::Dead(_))),
        "the plain actor died with its job"
    );
    assert!(
        h.killed.contains(&plain_worker)
            || h.sent_to(plain_worker)
                .iter()
                .any(|m| matches!(m, ToWorker::Exit)),
        "the plain actor's worker is stopped"
    );
    assert!(h.st.jobs.get(JOB).is_some_and(|j| j.driver.is_none()));
    h.with(|st| st.kill_actor(a, "killed by ray::kill"));
    assert!(
        h.st.actors
            .get(a)
            .is_none_or(|e| matches!(e.state, super::super::actors::ActorState::Dead(_))),
        "ray::kill ends it"
    );
    assert!(
        h.killed.contains(&w) || h.sent_to(w).iter().any(|m| matches!(m, ToWorker::Exit)),
        "and its worker"
    );
}

#[test]
fn a_detached_actor_needs_a_cluster() {
    let mut h = Harness::new(cpus(1));
    let mut spec = actor_spec(&mut h, DRIVER, 0);
    spec.ext.detached = true;
    let a = spec.actor;
    h.with(|st| st.create_actor(DRIVER, spec));
    assert!(matches!(
        dead_error(&h, a),
        Some(Error::NeedsCluster { .. })
    ));
    assert!(h.started.is_empty(), "nothing was started for it");
}
