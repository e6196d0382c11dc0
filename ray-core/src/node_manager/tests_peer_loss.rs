//! The state machine in a cluster when a peer is lost (issue 11): work sent there runs again
//! elsewhere, actors start again, results are rebuilt from lineage, dead incarnations are
//! fenced. Peers faked by hand, as in the parent module.

use super::*;

const PEER2: NodeId = NodeId(3);

#[test]
fn a_task_lost_with_its_node_runs_again_on_another_within_max_retries() {
    let mut h = Harness::in_cluster(cpus(1));
    for peer in [PEER, PEER2] {
        h.peer_publishes(
            peer,
            &[("CPU", 1.0), ("ssd", 1.0)],
            &[("CPU", 1.0), ("ssd", 1.0)],
        );
    }
    let mut spec = h.ssd_task();
    spec.max_retries = 1;
    let t = h.submit(DRIVER, spec);
    let first = if h
        .sent_to_node(PEER)
        .iter()
        .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t))
    {
        PEER
    } else {
        PEER2
    };
    let second = if first == PEER { PEER2 } else { PEER };
    h.to_nodes.clear();
    h.with(|st| st.peer_unreachable(first, "connection reset"));
    let sent = h.sent_to_node(second);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t)),
        "retried on the other peer: {sent:?}"
    );
    assert!(h.failed(t).is_none(), "not failed yet");
    // That node is lost too: its one retry is used up.
    h.with(|st| st.peer_unreachable(second, "connection reset"));
    match h.failed(t) {
        Some(Error::NodeDied {
            attempts, cause, ..
        }) => {
            assert_eq!(attempts, 2);
            assert!(cause.contains("connection reset"), "{cause}");
        }
        other => panic!("expected NodeDied, got {other:?}"),
    }
    assert_eq!(h.st.tasks.len(), 0, "nothing left behind");
}

/// An actor that needs `ssd` (only peers have it), created by the driver here.
fn ssd_actor(h: &mut Harness, max_restarts: u32) -> ActorId {
    let mut spec = actor_spec(h, DRIVER, max_restarts);
    spec.resources.custom = vec![("ssd".into(), Amount::ONE)];
    let a = spec.actor;
    h.with(|st| st.create_actor(DRIVER, spec));
    a
}

fn created_on(h: &mut Harness, node: NodeId, a: ActorId) -> bool {
    h.sent_to_node(node)
        .iter()
        .any(|m| matches!(m, FromWorker::CreateActor(s) if s.actor == a))
}

#[test]
fn an_actor_lost_with_its_node_starts_again_on_another_and_its_running_call_fails() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(
        PEER,
        &[("CPU", 1.0), ("ssd", 1.0)],
        &[("CPU", 1.0), ("ssd", 1.0)],
    );
    let a = ssd_actor(&mut h, 1);
    assert!(created_on(&mut h, PEER, a), "placed on the peer");
    let running = call(&mut h, a, "incr");
    assert!(
        h.sent_to_node(PEER)
            .iter()
            .any(|m| matches!(m, FromWorker::SubmitActorTask(s) if s.task == running))
    );
    // The peer is lost; another has room.
    h.peer_publishes(
        PEER2,
        &[("CPU", 1.0), ("ssd", 1.0)],
        &[("CPU", 1.0), ("ssd", 1.0)],
    );
    h.with(|st| st.peer_unreachable(PEER, "connection reset"));
    match h.failed(running) {
        Some(Error::ActorDied {
            restarting, cause, ..
        }) => {
            assert!(restarting, "{cause}");
            assert!(cause.contains("restarting (1 of 1"), "{cause}");
        }
        other => panic!("expected ActorDied, got {other:?}"),
    }
    assert!(
        created_on(&mut h, PEER2, a),
        "started again on the other peer"
    );
    // Later calls go to the new instance.
    let later = call(&mut h, a, "incr");
    let sent = h.sent_to_node(PEER2);
    let req = Harness::result_request(&sent, later);
    h.peer_answers(PEER2, req, Ok(value(1)));
    assert_eq!(h.value_of(later), Some(1));
    // Lost again: no restarts left, so the actor is dead and says why.
    h.with(|st| st.peer_unreachable(PEER2, "connection reset"));
    let after = call(&mut h, a, "incr");
    match h.failed(after) {
        Some(Error::ActorDied {
            restarting, cause, ..
        }) => {
            assert!(!restarting);
            assert!(cause.contains("is gone"), "{cause}");
        }
        other => panic!("expected ActorDied, got {other:?}"),
    }
}

#[test]
fn only_the_node_of_a_jobs_driver_may_end_the_job() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(PEER, &[("CPU", 1.0)], &[("CPU", 1.0)]);
    let session = ProcId {
        node: PEER,
        index: 77,
    };
    let refused = h.with(|st| st.handle_peer(session, PEER, FromWorker::JobEnded { job: JOB }));
    let err = refused.expect_err("a peer cannot end this node's job");
    assert!(err.contains("whose driver is not on"), "{err}");
    assert!(h.st.jobs.get(JOB).is_some(), "the job goes on");
}

#[test]
fn a_result_lost_with_its_node_is_rebuilt_by_running_its_task_again() {
    let mut h = Harness::in_cluster(cpus(1));
    let (w, busy) = busy_worker(&mut h);
    h.peer_publishes(PEER, &[("CPU", 4.0)], &[("CPU", 4.0)]);
    let arg = h.put(DRIVER, value(5));
    let spec = h.task(DRIVER, "m::big", vec![Arg::Ref(arg)]);
    let t = h.submit(DRIVER, spec);
    let sent = h.sent_to_node(PEER);
    let req = Harness::result_request(&sent, t);
    // The result stays in the peer's store: only its place comes back.
    let remote = Value {
        data: Data::Remote {
            node: PEER,
            len: 64 << 20,
        },
        contained: vec![],
    };
    h.peer_answers(PEER, req, Ok(remote));
    assert_eq!(h.st.lineage.len(), 1, "its recipe is kept");
    assert!(h.st.objects.get(arg).is_some(), "with its argument");
    h.with(|st| st.peer_unreachable(PEER, "connection reset"));
    assert!(h.failed(t).is_none(), "not lost: it is made again");
    h.msg(
        w,
        FromWorker::TaskDone {
            task: busy,
            result: Ok(value(0)),
        },
    );
    match h.executing(w) {
        Some(Execute::Task { task, .. }) => assert_eq!(task, t, "its task runs again here"),
        other => panic!("expected the task again, got {other:?}"),
    }
    h.msg(
        w,
        FromWorker::TaskDone {
            task: t,
            result: Ok(value(25)),
        },
    );
    assert_eq!(h.value_of(t), Some(25));
    assert_eq!(h.st.lineage.len(), 0, "a result kept here needs no recipe");
}

#[test]
fn a_value_that_cannot_be_made_again_is_lost_naming_the_node() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(PEER, &[("CPU", 4.0)], &[("CPU", 4.0)]);
    // An object the peer owns (a `put` there), known here only by its place.
    let theirs = ObjectId((u128::from(PEER.0) << 96) | 9);
    assert!(h.with(|st| st.know(theirs)));
    h.with(|st| st.peer_unreachable(PEER, "connection reset"));
    match h.failed(theirs) {
        Some(Error::ObjectLost { id, reason }) => {
            assert_eq!(id, theirs);
            assert!(reason.contains(&PEER.to_string()), "{reason}");
        }
        other => panic!("expected ObjectLost, got {other:?}"),
    }
}

/// This node's CPU busy, PEER (4 CPUs) registered as incarnation 1 with a session here, and a
/// task that went there: the session, the task, and what was sent to PEER.
fn work_at_peer(h: &mut Harness) -> (ProcId, ObjectId, Vec<FromWorker>) {
    let (_w, _busy) = busy_worker(h);
    h.peer_publishes(PEER, &[("CPU", 4.0)], &[("CPU", 4.0)]);
    let session = h
        .with(|st| st.attach_peer(PEER, 1))
        .expect("incarnation 1 is registered");
    let spec = h.task(DRIVER, "m::work", vec![]);
    let t = h.submit(DRIVER, spec);
    (session, t, h.sent_to_node(PEER))
}

#[test]
fn a_node_declared_dead_is_fenced_until_it_rejoins_as_a_new_incarnation() {
    let mut h = Harness::in_cluster(cpus(1));
    let (session, t, sent) = work_at_peer(&mut h);
    let req = Harness::result_request(&sent, t);
    // etcd: its lease expired.
    h.with(|st| st.node_declared_dead(PEER, "its lease expired"));
    assert!(
        h.disconnected.contains(&session),
        "its session here is closed"
    );
    assert!(h.failed(t).is_none(), "its task waits to run again here");
    // Whatever the old incarnation still says is not used: its late result is ignored...
    h.peer_answers(PEER, req, Ok(value(1)));
    assert_eq!(h.value_of(t), None, "no result from a dead incarnation");
    // ...its sessions are refused, and its records too.
    assert!(h.with(|st| st.attach_peer(PEER, 1)).is_err());
    h.peer_publishes(PEER, &[("CPU", 4.0)], &[("CPU", 4.0)]);
    assert!(
        !h.st.cluster.knows(PEER),
        "a record of the dead incarnation is ignored"
    );
    // Incarnation 2 is a node like any other.
    let (two, four) = (capacity(&[("CPU", 4.0)]), capacity(&[("CPU", 4.0)]));
    h.with(|st| st.node_update(PEER, None, &two, &four, &Default::default(), 2));
    assert!(h.st.cluster.knows(PEER));
    assert!(h.with(|st| st.attach_peer(PEER, 2)).is_ok());
    assert!(h.with(|st| st.attach_peer(PEER, 1)).is_err(), "1 is over");
}

#[test]
fn a_newer_incarnation_means_the_old_one_is_dead() {
    let mut h = Harness::in_cluster(cpus(1));
    let (_w, _busy) = busy_worker(&mut h);
    h.peer_publishes(PEER, &[("CPU", 4.0)], &[("CPU", 4.0)]);
    let spec = h.task(DRIVER, "m::work", vec![]);
    let t = h.submit(DRIVER, spec);
    assert!(!h.sent_to_node(PEER).is_empty());
    let four = capacity(&[("CPU", 4.0)]);
    h.with(|st| st.node_update(PEER, None, &four, &four, &Default::default(), 2));
    let resent = h.sent_to_node(PEER);
    assert!(
        resent
            .iter()
            .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t)),
        "the task lost with incarnation 1 goes to incarnation 2: {resent:?}"
    );
}

#[test]
fn a_hello_naming_an_incarnation_etcd_has_not_shown_is_refused_and_fences_nothing() {
    use crate::protocol::node::NodeRefusal;
    let mut h = Harness::in_cluster(cpus(1));
    let (session, t, sent) = work_at_peer(&mut h);
    assert!(!sent.is_empty(), "the task went to the peer");
    // Anyone with the token may say it is incarnation u64::MAX of the peer: refused, and the
    // peer this node knows is untouched.
    for forged in [2, u64::MAX] {
        match h.with(|st| st.attach_peer(PEER, forged)) {
            Err(NodeRefusal::NotRegistered { node, incarnation }) => {
                assert_eq!((node, incarnation), (PEER, forged));
            }
            other => panic!("expected NotRegistered, got {:?}", other.map(|_| ())),
        }
    }
    // So is a node etcd never showed.
    assert!(matches!(
        h.with(|st| st.attach_peer(PEER2, 1)),
        Err(NodeRefusal::NotRegistered { .. })
    ));
    assert!(
        !h.disconnected.contains(&session),
        "the peer's session stays"
    );
    assert!(h.st.cluster.knows(PEER));
    assert!(
        h.to_nodes.is_empty(),
        "nothing was sent again: {:?}",
        h.to_nodes
    );
    assert!(h.failed(t).is_none());
    assert!(
        h.with(|st| st.attach_peer(PEER, 1)).is_ok(),
        "incarnation 1 may still open sessions"
    );
    // Once etcd shows incarnation 2, it is the peer, and 1 is over.
    let four = capacity(&[("CPU", 4.0)]);
    h.with(|st| st.node_update(PEER, None, &four, &four, &Default::default(), 2));
    assert!(
        h.disconnected.contains(&session),
        "incarnation 1's session ends"
    );
    assert!(h.with(|st| st.attach_peer(PEER, 2)).is_ok());
    assert!(h.with(|st| st.attach_peer(PEER, 1)).is_err());
}
