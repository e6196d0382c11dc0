//! The state machine in a cluster, driven by hand like the tests above, with peers faked by
//! hand: what is sent to them (`Harness::to_nodes`), what they answer, what is pulled from
//! them, and a peer that goes away.

use super::*;

// ----- the cluster: peers faked by hand --------------------------------------------------

const PEER: NodeId = NodeId(2);

fn capacity(pairs: &[(&str, f64)]) -> std::collections::BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

impl Harness {
    /// A node whose driver's executable is known by hash, so its work may go to peers.
    fn in_cluster(resources: NodeResources) -> Harness {
        let mut h = Harness::new(resources);
        h.st.jobs.set_binary(JOB, [7; 32], 1234);
        h
    }

    /// A peer publishes its resources (total, available).
    fn peer_publishes(&mut self, node: NodeId, total: &[(&str, f64)], available: &[(&str, f64)]) {
        let (t, a) = (capacity(total), capacity(available));
        self.with(|st| st.node_update(node, None, &t, &a, &Default::default(), 1));
    }

    /// `node` opens a session here as incarnation 1, registered in etcd first (with no
    /// resources, unless it published some).
    fn peer_attaches(&mut self, node: NodeId) -> ProcId {
        if !self.st.cluster.is_registered(node, 1) {
            let none = Default::default();
            self.with(|st| st.node_update(node, None, &none, &none, &Default::default(), 1));
        }
        self.with(|st| st.attach_peer(node, 1)).expect("attached")
    }

    fn ssd_task(&mut self) -> TaskSpec {
        let mut spec = self.task(DRIVER, "m::on_ssd", vec![]);
        spec.resources.custom = vec![("ssd".into(), Amount::ONE)];
        spec
    }

    /// The requests sent to `node` since the last call.
    fn sent_to_node(&mut self, node: NodeId) -> Vec<FromWorker> {
        let (mine, rest) = std::mem::take(&mut self.to_nodes)
            .into_iter()
            .partition(|(n, _)| *n == node);
        self.to_nodes = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    /// The `Get` this node sent to `node` for `task`'s result: its request number.
    fn result_request(sent: &[FromWorker], task: ObjectId) -> u64 {
        sent.iter()
            .find_map(|m| match m {
                FromWorker::Get { req, ids, .. } if ids == &[task] => Some(*req),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Get for {task} in {sent:?}"))
    }

    fn peer_answers(&mut self, node: NodeId, req: u64, result: Result<Value, Error>) {
        self.with(|st| {
            st.peer_reply(
                node,
                ToWorker::GetReply {
                    req,
                    result: result.map(|v| vec![v]),
                },
            )
        });
    }
}

#[test]
fn a_task_that_fits_no_local_resource_goes_to_a_peer_and_its_result_comes_back() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 2.0), ("ssd", 1.0)],
    );
    for round in 0..3u64 {
        let spec = h.ssd_task();
        let t = h.submit(DRIVER, spec);
        assert!(h.started.is_empty(), "nothing runs here");
        let sent = h.sent_to_node(PEER);
        if round == 0 {
            assert!(
                matches!(&sent[0], FromWorker::Job { job, sha256, size: 1234, .. } if *job == JOB && *sha256 == [7; 32]),
                "the job is announced first: {sent:?}"
            );
        }
        assert!(
            sent.iter()
                .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t)),
            "round {round}: the task went to the peer: {sent:?}"
        );
        let req = Harness::result_request(&sent, t);
        h.peer_answers(PEER, req, Ok(value(round)));
        assert_eq!(h.value_of(t), Some(round));
        // The peer's published availability never changed (the task was shorter than its
        // publication period): the next one still goes there.
    }
    assert_eq!(h.st.tasks.len(), 0, "nothing left behind");
}

/// The tasks sent to `node` (`SubmitTask`) among `sent`.
fn submitted(sent: &[FromWorker]) -> Vec<ObjectId> {
    sent.iter()
        .filter_map(|m| match m {
            FromWorker::SubmitTask(s) => Some(s.task),
            _ => None,
        })
        .collect()
}

#[test]
fn work_sent_to_a_peer_counts_there_and_queues_behind_it_up_to_the_pipeline_depth() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(
        PEER,
        &[("CPU", 1.0), ("ssd", 1.0)],
        &[("CPU", 1.0), ("ssd", 1.0)],
    );
    let depth = crate::node_manager::cluster::PIPELINE as usize;
    let tasks: Vec<ObjectId> = (0..depth + 1)
        .map(|_| {
            let spec = h.ssd_task();
            h.submit(DRIVER, spec)
        })
        .collect();
    let sent = h.sent_to_node(PEER);
    assert_eq!(
        submitted(&sent),
        tasks[..depth],
        "one fits there now; the next {} queue behind it there (the peer runs them in turn)",
        depth - 1
    );
    // A stale publication (from before the first task) does not make room for the last.
    h.peer_publishes(
        PEER,
        &[("CPU", 1.0), ("ssd", 1.0)],
        &[("CPU", 1.0), ("ssd", 1.0)],
    );
    assert!(h.sent_to_node(PEER).is_empty(), "{depth} in flight there");
    assert!(h.failed(tasks[depth]).is_none(), "it waits here");
    let req = Harness::result_request(&sent, tasks[0]);
    h.peer_answers(PEER, req, Ok(value(1)));
    let sent = h.sent_to_node(PEER);
    assert_eq!(
        submitted(&sent),
        vec![tasks[depth]],
        "the last goes once the first is back"
    );
}

#[test]
fn a_publication_made_while_this_nodes_task_ran_there_does_not_hold_back_the_next() {
    let mut h = Harness::in_cluster(cpus(1));
    let total = capacity(&[("CPU", 1.0), ("ssd", 1.0)]);
    h.peer_publishes(
        PEER,
        &[("CPU", 1.0), ("ssd", 1.0)],
        &[("CPU", 1.0), ("ssd", 1.0)],
    );
    let spec = h.ssd_task();
    let first = h.submit(DRIVER, spec);
    let sent = h.sent_to_node(PEER);
    assert_eq!(submitted(&sent), vec![first]);
    let req = Harness::result_request(&sent, first);
    h.peer_answers(PEER, req, Ok(value(1)));
    // The peer published while the first ran: nothing free, all of it used by this node's
    // task. That publication arrives after the result.
    let busy = capacity(&[("CPU", 0.0), ("ssd", 0.0)]);
    let by: std::collections::BTreeMap<u64, _> =
        [(u64::from(h.st.node.as_u32()), total.clone())].into();
    h.with(|st| {
        let mine = by.get(&u64::from(st.node.as_u32())).unwrap();
        st.node_update(PEER, None, &total, &busy, mine, 1)
    });
    let spec = h.ssd_task();
    let second = h.submit(DRIVER, spec);
    let sent = h.sent_to_node(PEER);
    assert_eq!(
        submitted(&sent),
        vec![second],
        "what was in use there was this node's own, and it is back"
    );
    let req = Harness::result_request(&sent, second);
    h.peer_answers(PEER, req, Ok(value(2)));
    // Now busy with another node's work: the next waits here until that ends.
    h.with(|st| st.node_update(PEER, None, &total, &busy, &Default::default(), 1));
    let spec = h.ssd_task();
    let third = h.submit(DRIVER, spec);
    assert!(
        submitted(&h.sent_to_node(PEER)).is_empty(),
        "the peer is busy with others' work"
    );
    assert!(h.failed(third).is_none(), "it waits here");
    h.peer_publishes(
        PEER,
        &[("CPU", 1.0), ("ssd", 1.0)],
        &[("CPU", 1.0), ("ssd", 1.0)],
    );
    assert_eq!(submitted(&h.sent_to_node(PEER)), vec![third]);
}

#[test]
fn a_task_another_node_sent_runs_here_and_is_never_passed_on() {
    // This node's CPU is busy; node 3 has room (and this node's own work queues there).
    const OTHER: NodeId = NodeId(3);
    let mut h = Harness::in_cluster(cpus(1));
    let (_w, _busy) = busy_worker(&mut h);
    h.peer_publishes(OTHER, &[("CPU", 4.0)], &[("CPU", 4.0)]);
    // Node 2 sends one of its job's tasks here (it thought this node had room).
    let session = h.peer_attaches(PEER);
    let peer_driver = ProcId::driver(PEER);
    let peer_job = JobId::of_driver(peer_driver);
    h.msg(
        session,
        FromWorker::Job {
            job: peer_job,
            fingerprint: FINGERPRINT,
            sha256: [9; 32],
            size: 1,
            namespace: None,
        },
    );
    h.with(|st| {
        let binary = crate::node_manager::remote::CachedBinary {
            path: "/bin/false".into(),
            pin: Box::new(()),
        };
        st.job_ready(peer_job, Ok(binary))
    });
    let mut theirs = h.task(peer_driver, "m::work", vec![]);
    theirs.job = peer_job;
    let theirs_id = theirs.task;
    h.msg(session, FromWorker::SubmitTask(theirs));
    assert!(!h.disconnected.contains(&session), "a valid submission");
    assert!(
        submitted(&h.sent_to_node(OTHER)).is_empty(),
        "not passed on, though node 3 has room: node 3 would refuse work under node 2's ids"
    );
    assert!(
        h.st.tasks.contains(theirs_id),
        "it waits here for this node's CPU"
    );
    // A task of this node's own goes to node 3.
    let spec = h.task(DRIVER, "m::work", vec![]);
    let own = h.submit(DRIVER, spec);
    assert_eq!(submitted(&h.sent_to_node(OTHER)), vec![own]);
}

#[test]
fn a_request_no_node_could_ever_fit_is_infeasible_naming_every_node() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 2.0), ("ssd", 1.0)],
    );
    let mut spec = h.ssd_task();
    spec.resources.custom = vec![("tpu".into(), Amount::ONE)];
    let t = h.submit(DRIVER, spec);
    match h.failed(t) {
        Some(Error::Infeasible {
            requested,
            available,
            ..
        }) => {
            assert_eq!(requested, "tpu: 1");
            assert!(available.contains("CPU: 1"), "{available}");
            assert!(
                available.contains("node 2: CPU: 2, GPU: 0, ssd: 1"),
                "{available}"
            );
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
    assert!(h.sent_to_node(PEER).is_empty());
}

#[test]
fn a_task_that_fits_only_when_a_busy_peer_frees_up_waits_then_goes() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 1.0), ("ssd", 0.0)],
    );
    let spec = h.ssd_task();
    let t = h.submit(DRIVER, spec);
    assert!(h.failed(t).is_none(), "feasible: it waits");
    assert!(h.sent_to_node(PEER).is_empty());
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 2.0), ("ssd", 1.0)],
    );
    let sent = h.sent_to_node(PEER);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t))
    );
}

#[test]
fn work_on_a_peer_that_becomes_unreachable_runs_again_elsewhere() {
    let mut h = Harness::in_cluster(cpus(1));
    let (w, busy) = busy_worker(&mut h);
    h.peer_publishes(PEER, &[("CPU", 4.0)], &[("CPU", 4.0)]);
    let spec = h.task(DRIVER, "m::spill", vec![]);
    let t = h.submit(DRIVER, spec);
    let sent = h.sent_to_node(PEER);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t)),
        "no room here: it spilled to the peer: {sent:?}"
    );
    h.with(|st| st.peer_unreachable(PEER, "connection reset"));
    assert_eq!(h.dropped_nodes, vec![PEER]);
    assert!(h.failed(t).is_none(), "not failed: it waits here");
    h.msg(
        w,
        FromWorker::TaskDone {
            task: busy,
            result: Ok(value(0)),
        },
    );
    assert!(
        matches!(h.executing(w), Some(Execute::Task { task, .. }) if task == t),
        "it runs here once the local worker is free"
    );
    // A late answer from the lost peer changes nothing.
    let req = Harness::result_request(&sent, t);
    h.peer_answers(PEER, req, Ok(value(99)));
    assert!(h.value_of(t).is_none());
}

#[test]
fn a_peer_may_only_submit_work_under_its_own_ids_for_a_job_it_announced() {
    let mut h = Harness::in_cluster(cpus(2));
    let session = h.peer_attaches(PEER);
    // Work under an id this node made (as if node 2 forged it) is a violation.
    let mut forged = h.task(DRIVER, "m::forged", vec![]);
    forged.job = JobId::of_driver(ProcId::driver(PEER));
    h.msg(session, FromWorker::SubmitTask(forged));
    assert!(h.disconnected.contains(&session), "the session was dropped");
    assert!(h.started.is_empty(), "nothing ran");

    // Work of a job it never announced: also refused.
    let session = h.peer_attaches(PEER);
    let peer_driver = ProcId::driver(PEER);
    let mut unknown = h.task(peer_driver, "m::unknown", vec![]);
    unknown.job = JobId::of_driver(peer_driver);
    h.msg(session, FromWorker::SubmitTask(unknown));
    assert!(h.disconnected.contains(&session));
    assert!(h.started.is_empty(), "nothing ran");
}

#[test]
fn a_large_result_stays_on_the_peer_and_is_pulled_once_when_read_here() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 2.0), ("ssd", 1.0)],
    );
    let spec = h.ssd_task();
    let t = h.submit(DRIVER, spec);
    let sent = h.sent_to_node(PEER);
    let req = Harness::result_request(&sent, t);
    let len = 1 << 20;
    let remote = Value {
        data: Data::Remote { node: PEER, len },
        contained: vec![],
    };
    h.peer_answers(PEER, req, Ok(remote));
    assert!(
        !h.sent_to_node(PEER)
            .iter()
            .any(|m| matches!(m, FromWorker::DelRef(RefId::Object(o)) if *o == t)),
        "held there while this node holds it"
    );
    // Two readers here: one pull.
    let a = h.driver_wait(vec![t], ReqKind::Get, Duration::from_secs(60));
    let b = h.driver_wait(vec![t], ReqKind::Get, Duration::from_secs(60));
    let [(id, from, pulled, region)] = h.pulls[..] else {
        panic!("one pull for two readers: {:?}", h.pulls)
    };
    assert_eq!((id, from, pulled), (t, PEER, len));
    assert!(a.try_take().is_none() && b.try_take().is_none());
    h.with(|st| st.pull_done(t, region, Ok(())));
    assert!(
        a.try_take().is_some() && b.try_take().is_some(),
        "both readers woken"
    );
    // Dropping it here lets the peer drop its copy.
    h.with(|st| {
        let _ = st.del_ref(DRIVER, RefId::Object(t));
    });
    assert!(
        h.sent_to_node(PEER)
            .iter()
            .any(|m| matches!(m, FromWorker::DelRef(RefId::Object(o)) if *o == t)),
        "the peer was told"
    );
}

/// A result of `PEER`'s making that stays there: `len` bytes.
fn result_on_peer(h: &mut Harness, len: u64) -> ObjectId {
    let spec = h.ssd_task();
    let t = h.submit(DRIVER, spec);
    let sent = h.sent_to_node(PEER);
    let req = Harness::result_request(&sent, t);
    let remote = Value {
        data: Data::Remote { node: PEER, len },
        contained: vec![],
    };
    h.peer_answers(PEER, req, Ok(remote));
    t
}

#[test]
fn a_task_goes_to_the_peer_holding_its_argument_without_copying_it_here() {
    let mut h = Harness::in_cluster(cpus(4));
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 2.0), ("ssd", 1.0)],
    );
    let arg = result_on_peer(&mut h, 1 << 20);
    // It fits here too, but its argument's bytes are on the peer, which has room.
    let spec = h.task(DRIVER, "m::reads", vec![Arg::Ref(arg)]);
    let t = h.submit(DRIVER, spec);
    let sent = h.sent_to_node(PEER);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t)),
        "sent to the data: {sent:?}"
    );
    assert!(h.pulls.is_empty(), "nothing copied here: {:?}", h.pulls);
    assert!(h.started.is_empty(), "nothing started here");
}

#[test]
fn a_task_run_here_waits_holding_its_resources_while_its_argument_is_copied_here() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 2.0), ("ssd", 1.0)],
    );
    let arg = result_on_peer(&mut h, 1 << 20);
    // The peer is full now (as it publishes), so the task runs here.
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 0.0), ("ssd", 1.0)],
    );
    let spec = h.task(DRIVER, "m::reads", vec![Arg::Ref(arg)]);
    let t = h.submit(DRIVER, spec);
    assert!(
        !h.sent_to_node(PEER)
            .iter()
            .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t))
    );
    let [(id, from, _, region)] = h.pulls[..] else {
        panic!("one pull: {:?}", h.pulls)
    };
    assert_eq!((id, from), (arg, PEER));
    assert!(
        h.started.is_empty(),
        "no worker before the argument is here"
    );
    assert!(
        matches!(
            h.st.tasks.get(t).map(|te| &te.state),
            Some(crate::node_manager::tasks::TaskState::Fetching { .. })
        ),
        "fetching, holding its CPU"
    );
    h.with(|st| st.pull_done(arg, region, Ok(())));
    let w = h.connect_all()[0];
    match h.executing(w) {
        Some(Execute::Task { task, args, .. }) => {
            assert_eq!(task, t);
            assert!(
                matches!(args[0], Data::Shm { len, .. } if len == 1 << 20),
                "the copy here: {:?}",
                args[0]
            );
        }
        other => panic!("expected the task, got {other:?}"),
    }
}

// Several return values and streams of work sent to a peer.
#[path = "tests_remote_calls.rs"]
mod remote_calls;

// A peer is lost (issue 11).
#[path = "tests_peer_loss.rs"]
mod peer_loss;

#[test]
fn a_peers_reply_naming_a_region_of_this_nodes_store_fails_the_request_and_frees_nothing() {
    let mut h = Harness::in_cluster(cpus(1));
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 2.0), ("ssd", 1.0)],
    );
    let used = h.st.store.used();
    let spec = h.ssd_task();
    let t = h.submit(DRIVER, spec);
    let req = Harness::result_request(&h.sent_to_node(PEER), t);
    // Parts of a reply to a request nobody made are not kept.
    h.with(|st| {
        st.peer_reply(
            PEER,
            ToWorker::GetReplyPart {
                req: req + 1000,
                values: vec![value(1)],
            },
        )
    });
    assert_eq!(h.st.peers.parts_kept(), 0, "an unasked part was kept");
    let forged = Value {
        data: Data::Shm {
            region: 0,
            pad: PAD as u32,
            len: 8,
        },
        contained: vec![],
    };
    h.peer_answers(PEER, req, Ok(forged));
    let Some(Error::InvalidArgument { message, .. }) = h.failed(t) else {
        panic!("the request failed: {:?}", h.failed(t))
    };
    assert!(
        message.contains("region of this node's object store"),
        "{message}"
    );
    assert_eq!(h.st.store.used(), used, "nothing was freed or taken");
}

#[test]
fn a_peers_submission_is_refused_for_too_many_returns_ids_past_its_range_or_store_regions() {
    let mut h = Harness::in_cluster(cpus(2));
    let peer_driver = ProcId::driver(PEER);
    // 2^20 return values from one ~200-byte frame: refused before any object is made.
    let session = h.peer_attaches(PEER);
    let mut many = h.task(peer_driver, "m::many", vec![]);
    many.ext.returns.extra = 1 << 20;
    let objects = h.st.object_stats().0;
    h.msg(session, FromWorker::SubmitTask(many));
    assert!(h.disconnected.contains(&session), "the session was dropped");
    assert_eq!(h.st.object_stats().0, objects, "no object was made");
    assert!(!h.st.is_peer_session(session), "and forgotten here");

    // Return ids that would run past the creator's id range (into another process's ids).
    let session = h.peer_attaches(PEER);
    let mut past = h.task(peer_driver, "m::past", vec![]);
    past.task = ObjectId(past.task.0 | u128::from(u64::MAX - 1));
    past.ext.returns.extra = 5;
    h.msg(session, FromWorker::SubmitTask(past));
    assert!(h.disconnected.contains(&session), "the session was dropped");

    // An argument naming a region of this node's store.
    let session = h.peer_attaches(PEER);
    let region = Value {
        data: Data::Shm {
            region: 0,
            pad: PAD as u32,
            len: 8,
        },
        contained: vec![],
    };
    let shm = h.task(peer_driver, "m::shm", vec![Arg::Value(region)]);
    h.msg(session, FromWorker::SubmitTask(shm));
    assert!(h.disconnected.contains(&session), "the session was dropped");
    assert!(h.started.is_empty(), "nothing ran");
}

#[test]
fn a_peers_job_announcement_sets_a_namespace_once_and_never_for_a_job_whose_driver_is_here() {
    let mut h = Harness::in_cluster(cpus(2));
    let session = h.peer_attaches(PEER);
    let announce = |job, namespace: &str| FromWorker::Job {
        job,
        fingerprint: FINGERPRINT,
        sha256: [9; 32],
        size: 1,
        namespace: Some(namespace.into()),
    };
    // This node's own driver's job: its hello set its namespace, a peer may not.
    h.msg(session, announce(JOB, "evil"));
    assert_eq!(h.st.names.namespace_of(JOB), None);
    // A job of the peer's: the first announcement sets it, a later one does not change it.
    let peer_job = JobId::of_driver(ProcId::driver(PEER));
    h.msg(session, announce(peer_job, "first"));
    h.msg(session, announce(peer_job, "second"));
    assert_eq!(h.st.names.namespace_of(peer_job).as_deref(), Some("first"));
    assert!(h.disconnected.is_empty(), "announcing is not a violation");
}
