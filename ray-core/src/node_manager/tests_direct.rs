//! Direct actor calls (`direct.rs`), both ends driven by hand: the home node's ticket,
//! `DirectCall` and `DirectDone` from a remote driver; the actor's node's tickets, direct
//! sessions, their narrowed rules and the order of their calls with the home node's.

use super::*;
use crate::node_manager::control::Answer;
use crate::node_manager::objects::ObjState;
use crate::protocol::Ticket;
use crate::protocol::worker::{Control, ControlReply};

const PEER: NodeId = NodeId(2);

fn peer_address() -> std::net::SocketAddr {
    "10.77.0.2:7001".parse().expect("an address")
}

fn ssd() -> std::collections::BTreeMap<String, f64> {
    [("ssd".to_string(), 1.0), ("CPU".to_string(), 1.0)].into()
}

/// A remote driver attached here.
fn remote_driver(h: &mut Harness) -> ProcId {
    let info = crate::protocol::node::DriverInfo {
        fingerprint: FINGERPRINT,
        sha256: [3; 32],
        size: 10,
        pid: 77,
        name: "far".into(),
        namespace: None,
    };
    h.with(|st| st.attach_driver(&info, "/nonexistent".into(), Box::new(())))
        .expect("attached")
        .0
}

/// The home node's side: a peer with an `ssd` at a known address, a remote driver, and an
/// actor of that driver placed on the peer.
fn home_with_actor_on_peer() -> (Harness, ProcId, ActorId) {
    let mut h = Harness::new(cpus(1));
    let addr = Some(peer_address());
    h.with(|st| st.node_update(PEER, addr, &ssd(), &ssd(), &Default::default(), 1));
    let d = remote_driver(&mut h);
    let mut spec = actor_spec(&mut h, d, 0);
    spec.job = h.st.job_of(d).expect("its job");
    spec.resources.custom = vec![("ssd".into(), Amount::ONE)];
    let a = spec.actor;
    h.msg(d, FromWorker::CreateActor(spec));
    let sent = h.sent_to_node_direct(PEER);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::CreateActor(s) if s.actor == a)),
        "the actor went to the peer: {sent:?}"
    );
    (h, d, a)
}

impl Harness {
    fn sent_to_node_direct(&mut self, node: NodeId) -> Vec<FromWorker> {
        let (mine, rest) = std::mem::take(&mut self.to_nodes)
            .into_iter()
            .partition(|(n, _)| *n == node);
        self.to_nodes = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    fn ticket(&mut self, d: ProcId, actor: ActorId, bits: u8) -> Result<ControlReply, Error> {
        let slot = Arc::new(Slot::new());
        let op = Control::DirectTicket {
            actor,
            ticket: Ticket([bits; 32]),
        };
        self.with(|st| st.control(d, Answer::Local(slot.clone()), op))
            .expect("allowed");
        slot.try_take().expect("answered at once")
    }

    fn banned(&self, p: ProcId) -> bool {
        self.st.workers.get(p).is_none_or(|w| w.banned)
    }
}

fn direct_call(h: &mut Harness, d: ProcId, a: ActorId, args: Vec<Arg>) -> ObjectId {
    let task = h.id_of(d);
    h.msg(
        d,
        FromWorker::DirectCall {
            actor: a,
            task,
            returns: Default::default(),
            args,
            at: PEER,
        },
    );
    task
}

#[test]
fn the_home_node_passes_a_drivers_ticket_to_the_actors_node_and_says_where_it_is() {
    let (mut h, d, a) = home_with_actor_on_peer();
    let reply = h.ticket(d, a, 5);
    assert_eq!(
        reply,
        Ok(ControlReply::Direct {
            node: PEER,
            address: peer_address()
        })
    );
    let sent = h.sent_to_node_direct(PEER);
    let job = h.st.job_of(d).unwrap();
    assert!(
        matches!(&sent[..], [FromWorker::DirectTicket { actor, driver, job: j, ticket }]
            if *actor == a && *driver == d && *j == job && ticket.matches(&Ticket([5; 32]))),
        "{sent:?}"
    );
    // Its Debug never shows the bits.
    assert!(!format!("{sent:?}").contains("5, 5"), "{sent:?}");
    // An actor here is not called directly: an error, not a violation.
    let (local, _) = live_actor(&mut h, 0);
    h.msg(d, FromWorker::AddRef(RefId::Actor(local)));
    assert!(matches!(
        h.ticket(d, local, 6),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(h.sent_to_node_direct(PEER).is_empty());
    assert!(!h.banned(d));
}

#[test]
fn only_a_remote_driver_holding_the_actor_gets_a_ticket() {
    let (mut h, _d, a) = home_with_actor_on_peer();
    // The local driver is no remote driver.
    let slot = Arc::new(Slot::new());
    let op = Control::DirectTicket {
        actor: a,
        ticket: Ticket([1; 32]),
    };
    let refused = h.with(|st| st.control(DRIVER, Answer::Local(slot), op));
    assert!(refused.is_err());
    // Another remote driver without a handle.
    let other = remote_driver(&mut h);
    let slot = Arc::new(Slot::new());
    let op = Control::DirectTicket {
        actor: a,
        ticket: Ticket([1; 32]),
    };
    let refused = h.with(|st| st.control(other, Answer::Local(slot), op));
    assert!(refused.unwrap_err().contains("handle"));
    assert!(h.sent_to_node_direct(PEER).is_empty(), "no ticket went out");
}

#[test]
fn a_direct_calls_answer_completes_it_at_home_as_a_forwarded_calls_would() {
    let (mut h, d, a) = home_with_actor_on_peer();
    let t = direct_call(&mut h, d, a, vec![]);
    assert!(
        h.sent_to_node_direct(PEER).is_empty(),
        "nothing is sent for a direct call"
    );
    assert!(matches!(h.state(t), Some(ObjState::Pending)));
    h.msg(
        d,
        FromWorker::DirectDone {
            task: t,
            result: Ok(vec![value(42)]),
        },
    );
    assert_eq!(h.value_of(t), Some(42));
    // Its value came inline: the peer lets its copy go, as after a forwarded call.
    let sent = h.sent_to_node_direct(PEER);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::DelRef(RefId::Object(o)) if *o == t)),
        "{sent:?}"
    );
    // A stored value stays where it is, recorded there.
    let t2 = direct_call(&mut h, d, a, vec![]);
    let stored = Value {
        data: Data::Remote {
            node: PEER,
            len: 1 << 20,
        },
        contained: vec![],
    };
    h.msg(
        d,
        FromWorker::DirectDone {
            task: t2,
            result: Ok(vec![stored]),
        },
    );
    assert_eq!(h.st.objects.get(t2).and_then(|e| e.held_at), Some(PEER));
    // A failure fails it, and lets the call's object go there.
    let t3 = direct_call(&mut h, d, a, vec![]);
    let err = Error::ActorDied {
        actor: "A".into(),
        cause: "lost".into(),
        restarting: true,
    };
    h.msg(
        d,
        FromWorker::DirectDone {
            task: t3,
            result: Err(err.clone()),
        },
    );
    assert_eq!(h.failed(t3), Some(err));
    let sent = h.sent_to_node_direct(PEER);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::DelRef(RefId::Object(o)) if *o == t3)),
        "the call's object is let go there, once done: {sent:?}"
    );
    assert!(!h.banned(d));
}

#[test]
fn a_direct_calls_references_stay_pinned_until_its_answer() {
    let (mut h, d, a) = home_with_actor_on_peer();
    let arg = h.put(d, value(7));
    let t = direct_call(&mut h, d, a, vec![Arg::Ref(arg)]);
    h.msg(d, FromWorker::DelRef(RefId::Object(arg)));
    assert_eq!(h.value_of(arg), Some(7), "pinned while the call runs");
    h.msg(
        d,
        FromWorker::DirectDone {
            task: t,
            result: Ok(vec![value(1)]),
        },
    );
    assert!(h.state(arg).is_none(), "let go after its answer");
}

#[test]
fn the_calls_a_driver_did_not_report_when_it_left_are_asked_of_their_node_by_home() {
    let (mut h, d, a) = home_with_actor_on_peer();
    let arg = h.put(d, value(7));
    let t = direct_call(&mut h, d, a, vec![Arg::Ref(arg)]);
    h.with(|st| st.driver_gone(d));
    let sent = h.sent_to_node_direct(PEER);
    let req = sent
        .iter()
        .find_map(|m| match m {
            FromWorker::Get { req, ids, .. } if *ids == [t] => Some(*req),
            _ => None,
        })
        .unwrap_or_else(|| panic!("its value asked of the peer: {sent:?}"));
    assert_eq!(h.value_of(arg), Some(7), "still pinned");
    h.with(|st| {
        st.peer_reply(
            PEER,
            ToWorker::GetReply {
                req,
                result: Ok(vec![value(1)]),
            },
        )
    });
    assert!(h.state(arg).is_none(), "let go with the answer");
    let sent = h.sent_to_node_direct(PEER);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::DelRef(RefId::Object(o)) if *o == t)),
        "its copy there let go: {sent:?}"
    );
}

#[test]
fn a_call_whose_direct_session_was_lost_is_sent_again_by_home_and_awaited_there() {
    let (mut h, d, a) = home_with_actor_on_peer();
    let t = direct_call(&mut h, d, a, vec![]);
    let spec = ActorTaskSpec {
        actor: a,
        task: t,
        method: "m::Counter::incr".into(),
        args: vec![Arg::Value(value(3))],
        returns: Default::default(),
    };
    h.msg(d, FromWorker::DirectLost(spec.clone()));
    let sent = h.sent_to_node_direct(PEER);
    let req = match &sent[..] {
        [
            FromWorker::SubmitActorTask(s),
            FromWorker::Get { req, ids, .. },
        ] if s.task == t && *ids == [t] => *req,
        other => panic!("the call and a Get for it: {other:?}"),
    };
    h.with(|st| {
        st.peer_reply(
            PEER,
            ToWorker::GetReply {
                req,
                result: Ok(vec![value(5)]),
            },
        )
    });
    assert_eq!(h.value_of(t), Some(5));
    // Reported once: a second report (or a late DirectDone) is refused.
    h.msg(d, FromWorker::DirectLost(spec));
    assert!(h.banned(d));
}

#[test]
fn a_direct_done_for_a_call_not_declared_or_already_done_or_of_another_driver_is_refused() {
    let (mut h, d, a) = home_with_actor_on_peer();
    let done = |task| FromWorker::DirectDone {
        task,
        result: Ok(vec![value(1)]),
    };
    // Declared by another driver.
    let other = remote_driver(&mut h);
    let t = direct_call(&mut h, d, a, vec![]);
    h.msg(other, done(t));
    assert!(h.banned(other));
    assert!(matches!(h.state(t), Some(ObjState::Pending)), "untouched");
    // Reported twice.
    h.msg(d, done(t));
    assert_eq!(h.value_of(t), Some(1));
    h.msg(d, done(t));
    assert!(h.banned(d));
    // Never declared.
    let (mut h, d, _a) = home_with_actor_on_peer();
    let undeclared = h.id_of(d);
    h.msg(d, done(undeclared));
    assert!(h.banned(d));
    // A stored value said to be on another node than the call's.
    let (mut h, d, a) = home_with_actor_on_peer();
    let t = direct_call(&mut h, d, a, vec![]);
    let elsewhere = Value {
        data: Data::Remote {
            node: NodeId(9),
            len: 10,
        },
        contained: vec![],
    };
    h.msg(
        d,
        FromWorker::DirectDone {
            task: t,
            result: Ok(vec![elsewhere]),
        },
    );
    assert!(h.banned(d));
}

#[test]
fn a_direct_call_under_another_processs_id_is_refused_and_one_to_a_node_gone_fails() {
    let (mut h, d, a) = home_with_actor_on_peer();
    let foreign = h.id_of(DRIVER);
    h.msg(
        d,
        FromWorker::DirectCall {
            actor: a,
            task: foreign,
            returns: Default::default(),
            args: vec![],
            at: PEER,
        },
    );
    assert!(h.banned(d));
    // A node this node no longer knows (it was declared dead before the driver's session
    // there noticed): the call fails as lost with it, and the driver's report is accepted.
    let (mut h, d, a) = home_with_actor_on_peer();
    let task = h.id_of(d);
    h.msg(
        d,
        FromWorker::DirectCall {
            actor: a,
            task,
            returns: Default::default(),
            args: vec![],
            at: NodeId(9),
        },
    );
    assert!(
        matches!(h.failed(task), Some(Error::ActorDied { .. })),
        "{:?}",
        h.failed(task)
    );
    h.msg(
        d,
        FromWorker::DirectDone {
            task,
            result: Ok(vec![value(1)]),
        },
    );
    assert!(!h.banned(d));
    // A worker (not a remote driver) sends none.
    let (mut h, _d, a) = home_with_actor_on_peer();
    let task = h.id_of(DRIVER);
    h.msg(
        DRIVER,
        FromWorker::DirectCall {
            actor: a,
            task,
            returns: Default::default(),
            args: vec![],
            at: PEER,
        },
    );
    assert!(h.st.objects.get(task).is_none(), "nothing recorded");
}

// ----- at the actor's node -------------------------------------------------------------------

/// The actor's node: a live actor here, the home node's session (`PEER` plays the home
/// node), and a driver of the home node with its job.
fn actor_node() -> (Harness, ActorId, ProcId, ProcId, ProcId, JobId) {
    let mut h = Harness::new(cpus(2));
    let (a, w) = live_actor(&mut h, 0);
    let none = Default::default();
    h.with(|st| st.node_update(PEER, None, &none, &none, &Default::default(), 1));
    let home = h.with(|st| st.attach_peer(PEER, 1)).expect("attached");
    let far_driver = ProcId {
        node: PEER,
        index: 9,
    };
    let job = JobId::of_driver(far_driver);
    (h, a, w, home, far_driver, job)
}

fn ticket_from_home(h: &mut Harness, home: ProcId, a: ActorId, driver: ProcId, bits: u8) {
    h.msg(
        home,
        FromWorker::DirectTicket {
            actor: a,
            driver,
            job: JobId::of_driver(driver),
            ticket: Ticket([bits; 32]),
        },
    );
}

fn attach(
    h: &mut Harness,
    a: ActorId,
    driver: ProcId,
    job: JobId,
    bits: u8,
) -> Result<Option<ProcId>, crate::protocol::node::NodeRefusal> {
    h.with(|st| {
        st.attach_direct(
            PEER,
            driver,
            job,
            a,
            &Ticket([bits; 32]),
            &Arc::new(Slot::new()),
        )
    })
}

fn far_call(h: &mut Harness, from: ProcId, a: ActorId, task: ObjectId) {
    h.msg(
        from,
        FromWorker::SubmitActorTask(ActorTaskSpec {
            actor: a,
            task,
            method: "m::Counter::incr".into(),
            args: vec![],
            returns: Default::default(),
        }),
    );
}

/// The call last handed to the actor's worker `w`.
fn runs(h: &mut Harness, w: ProcId) -> Option<ObjectId> {
    match h.executing(w) {
        Some(Execute::ActorTask { task, .. }) => Some(task),
        _ => None,
    }
}

#[test]
fn a_ticket_opens_one_direct_session_for_its_driver_and_actor_only() {
    let (mut h, a, _w, home, d, job) = actor_node();
    let waiter = Arc::new(Slot::new());
    let early = h.with(|st| st.attach_direct(PEER, d, job, a, &Ticket([4; 32]), &waiter));
    assert_eq!(early, Ok(None), "no ticket yet");
    ticket_from_home(&mut h, home, a, d, 4);
    assert!(
        waiter.try_take().is_some(),
        "the waiting hello is woken by the ticket"
    );
    assert_eq!(attach(&mut h, a, d, job, 5), Ok(None), "another ticket");
    let other_driver = ProcId {
        node: PEER,
        index: 10,
    };
    assert_eq!(
        attach(&mut h, a, other_driver, job, 4),
        Ok(None),
        "another driver"
    );
    let other_actor = ActorId(h.id_of(DRIVER).0);
    assert_eq!(
        h.with(|st| st.attach_direct(
            PEER,
            d,
            job,
            other_actor,
            &Ticket([4; 32]),
            &Arc::new(Slot::new())
        )),
        Ok(None),
        "another actor"
    );
    let s = attach(&mut h, a, d, job, 4).unwrap().expect("opened");
    assert!(h.st.is_direct_session(s));
    assert_eq!(attach(&mut h, a, d, job, 4), Ok(None), "used once");
    // A ticket is good for a minute.
    ticket_from_home(&mut h, home, a, d, 6);
    ticket_from_home(&mut h, home, a, d, 8);
    h.advance(Duration::from_secs(59));
    assert!(attach(&mut h, a, d, job, 6).unwrap().is_some(), "59 s old");
    h.advance(Duration::from_secs(2));
    assert_eq!(attach(&mut h, a, d, job, 8), Ok(None), "61 s old");
    // At most 64 per driver: its oldest goes, not another driver's.
    let other = ProcId {
        node: PEER,
        index: 12,
    };
    ticket_from_home(&mut h, home, a, other, 20);
    for bits in 30..95u8 {
        ticket_from_home(&mut h, home, a, d, bits);
    }
    assert_eq!(attach(&mut h, a, d, job, 30), Ok(None), "the oldest went");
    assert!(attach(&mut h, a, d, job, 31).unwrap().is_some());
    let other_job = JobId::of_driver(other);
    assert!(attach(&mut h, a, other, other_job, 20).unwrap().is_some());
    // A home node may not give tickets for another node's drivers.
    let here = ProcId {
        node: NODE,
        index: 3,
    };
    ticket_from_home(&mut h, home, a, here, 7);
    assert!(h.banned(home));
}

#[test]
fn direct_calls_run_in_order_after_the_home_nodes_and_only_their_values_may_be_asked_for() {
    let (mut h, a, w, home, d, job) = actor_node();
    // The home node forwarded a call before the ticket.
    let forwarded = ObjectId(h.id_of(d).0);
    far_call(&mut h, home, a, forwarded);
    ticket_from_home(&mut h, home, a, d, 4);
    let s = attach(&mut h, a, d, job, 4).unwrap().expect("opened");
    let direct = h.id_of(d);
    far_call(&mut h, s, a, direct);
    h.msg(
        s,
        FromWorker::Get {
            req: 1,
            ids: vec![direct],
            timeout_ms: None,
        },
    );
    // Both go to the actor's worker in that order (calls of one caller are passed on in
    // order; the worker runs them one by one).
    let order: Vec<ObjectId> = h
        .sent_to(w)
        .into_iter()
        .filter_map(|m| match m {
            ToWorker::Execute(Execute::ActorTask { task, .. }) => Some(task),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![forwarded, direct]);
    for (task, v) in [(forwarded, 1), (direct, 2)] {
        h.msg(
            w,
            FromWorker::TaskDone {
                task,
                result: Ok(value(v)),
            },
        );
    }
    let replies = h.sent_to(s);
    assert!(
        replies
            .iter()
            .any(|m| matches!(m, ToWorker::GetReply { req: 1, result: Ok(v) }
            if v.len() == 1 && matches!(&v[0].data, Data::Inline(b) if b.len() == 8))),
        "{replies:?}"
    );
    // The home node sends the call again after the driver lost its session: a call it has
    // is not run twice.
    far_call(&mut h, home, a, direct);
    assert_eq!(runs(&mut h, w), None, "not run again");
    assert!(!h.banned(home));
    // The call's object is the home node's here: its DelRef lets it go.
    assert!(h.state(direct).is_some());
    h.msg(home, FromWorker::DelRef(RefId::Object(direct)));
    assert!(h.state(direct).is_none());
    assert!(!h.banned(s));
}

/// Makes a message of a direct session (its node, actor and driver).
type MakeMsg = Box<dyn Fn(&mut Harness, ActorId, ProcId) -> FromWorker>;

#[test]
fn a_direct_session_may_send_nothing_but_its_actors_calls_and_gets_of_their_values() {
    let attempts: Vec<(&str, MakeMsg)> = vec![
        (
            "a Get of another object",
            Box::new(|h: &mut Harness, _a, _d| FromWorker::Get {
                req: 1,
                ids: vec![h.id_of(DRIVER)],
                timeout_ms: None,
            }),
        ),
        (
            "a call under an id its driver did not make",
            Box::new(|h: &mut Harness, a, _d| {
                FromWorker::SubmitActorTask(ActorTaskSpec {
                    actor: a,
                    task: h.id_of(ProcId {
                        node: PEER,
                        index: 11,
                    }),
                    method: "m".into(),
                    args: vec![],
                    returns: Default::default(),
                })
            }),
        ),
        (
            "a call of another actor",
            Box::new(|h: &mut Harness, _a, d| {
                FromWorker::SubmitActorTask(ActorTaskSpec {
                    actor: ActorId(h.id_of(DRIVER).0),
                    task: h.id_of(d),
                    method: "m".into(),
                    args: vec![],
                    returns: Default::default(),
                })
            }),
        ),
        (
            "a task",
            Box::new(|h: &mut Harness, _a, d| {
                let mut spec = h.task(d, "m::f", vec![]);
                spec.job = JobId::of_driver(d);
                FromWorker::SubmitTask(spec)
            }),
        ),
        (
            "a DelRef",
            Box::new(|h: &mut Harness, _a, _d| FromWorker::DelRef(RefId::Object(h.id_of(DRIVER)))),
        ),
        (
            "a ticket",
            Box::new(|_h: &mut Harness, a, d| FromWorker::DirectTicket {
                actor: a,
                driver: d,
                job: JobId::of_driver(d),
                ticket: Ticket([1; 32]),
            }),
        ),
    ];
    for (what, make) in attempts {
        let (mut h, a, w, home, d, job) = actor_node();
        ticket_from_home(&mut h, home, a, d, 4);
        let s = attach(&mut h, a, d, job, 4).unwrap().expect("opened");
        let msg = make(&mut h, a, d);
        h.msg(s, msg);
        assert!(h.banned(s), "{what}: refused");
        assert!(!h.st.is_direct_session(s), "{what}: the session is gone");
        assert_eq!(runs(&mut h, w), None, "{what}: nothing ran");
        assert!(
            !h.banned(home),
            "{what}: the home node's session is not blamed"
        );
    }
}
