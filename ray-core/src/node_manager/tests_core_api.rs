//! The state machine's side of the rest of the core API (issue 12), driven by hand like the
//! tests above: names, cancel, multiple and streaming returns, retries, placement groups,
//! escaped references, unhandled errors, and who may ask for what.

use super::*;
use crate::bundles::BundleRef;
use crate::ids::PlacementGroupId;
use crate::node_manager::control::Answer;
use crate::placement::PlacementStrategy;
use crate::protocol::worker::{Control, ControlReply, StreamItem};
use crate::protocol::{ActorName, PlacementGroupSpec, Returns};

/// A control request of the driver; `None` if it is answered later.
pub(super) fn control(h: &mut Harness, op: Control) -> Option<Result<ControlReply, Error>> {
    let slot = Arc::new(Slot::new());
    let to = Answer::Local(slot.clone());
    h.with(|st| st.control(DRIVER, to, op)).expect("allowed");
    slot.try_take()
}

/// A control request of a worker; its answer, if one was sent.
fn worker_control(h: &mut Harness, w: ProcId, req: u64, op: Control) -> Option<ControlReply> {
    h.msg(w, FromWorker::Control { req, op });
    h.sent_to(w).into_iter().find_map(|m| match m {
        ToWorker::ControlReply { req: r, result } if r == req => result.ok(),
        _ => None,
    })
}

fn named(h: &mut Harness, name: &str, get_if_exists: bool) -> (ActorId, ActorId) {
    let mut spec = actor_spec(h, DRIVER, 0);
    let new = spec.actor;
    spec.ext.name = Some(Box::new(ActorName {
        namespace: String::new(),
        name: name.into(),
    }));
    spec.ext.get_if_exists = get_if_exists;
    match control(h, Control::CreateNamedActor(Box::new(spec))) {
        Some(Ok(ControlReply::Actor(a))) => (new, a),
        other => panic!("expected an actor, got {other:?}"),
    }
}

fn get_actor(h: &mut Harness, name: &str) -> Result<ActorId, Error> {
    let op = Control::GetActor {
        name: ActorName {
            namespace: String::new(),
            name: name.into(),
        },
        class: "m::Counter".into(),
    };
    match control(h, op) {
        Some(Ok(ControlReply::Actor(a))) => Ok(a),
        Some(Err(e)) => Err(e),
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn dead_error(h: &Harness, a: ActorId) -> Option<Error> {
    match h.st.actors.get(a).map(|e| &e.state) {
        Some(super::super::actors::ActorState::Dead(e)) => Some(e.clone()),
        _ => None,
    }
}

// ----- names -----------------------------------------------------------------------------

#[test]
fn names_are_unique_until_their_actor_dies() {
    let mut h = Harness::new(cpus(1));
    let (first, got) = named(&mut h, "ledger", false);
    assert_eq!(first, got);
    let (second, got) = named(&mut h, "ledger", false);
    assert_eq!(second, got, "a new actor, dead on arrival");
    match dead_error(&h, second) {
        Some(Error::ActorNameTaken { holder, name, .. }) => {
            assert_eq!((holder, name.as_str()), (first, "ledger"))
        }
        other => panic!("expected ActorNameTaken, got {other:?}"),
    }
    let (_, same) = named(&mut h, "ledger", true);
    assert_eq!(same, first, "get_if_exists gives the holder");
    assert_eq!(get_actor(&mut h, "ledger").unwrap(), first);
    h.with(|st| st.kill_actor(first, "killed by ray::kill"));
    assert!(matches!(
        get_actor(&mut h, "ledger"),
        Err(Error::ActorNotFound { .. })
    ));
    let (third, got) = named(&mut h, "ledger", false);
    assert_eq!(third, got);
    assert!(dead_error(&h, third).is_none(), "the name was free again");
}

#[test]
fn a_worker_asking_for_a_named_actor_holds_it_and_may_then_call_it() {
    let mut h = Harness::new(cpus(2));
    let (a, _) = named(&mut h, "svc", false);
    let (w, _) = busy_worker(&mut h);
    let op = Control::GetActor {
        name: ActorName {
            namespace: String::new(),
            name: "svc".into(),
        },
        class: "m::Counter".into(),
    };
    assert_eq!(
        worker_control(&mut h, w, 1, op),
        Some(ControlReply::Actor(a))
    );
    assert!(h.st.holds(w, RefId::Actor(a)));
    let op = Control::GetActor {
        name: ActorName {
            namespace: "elsewhere".into(),
            name: "svc".into(),
        },
        class: "m::Counter".into(),
    };
    h.msg(w, FromWorker::Control { req: 2, op });
    let answer = h.sent_to(w).into_iter().find_map(|m| match m {
        ToWorker::ControlReply { req: 2, result } => Some(result),
        _ => None,
    });
    match answer {
        Some(Err(Error::ActorNotFound { hint, .. })) => assert!(hint.contains("anonymous")),
        other => panic!("expected ActorNotFound, got {other:?}"),
    }
    assert!(h.disconnected.is_empty());
}

// ----- cancel ----------------------------------------------------------------------------

#[test]
fn cancel_fails_queued_tasks_tells_running_ones_and_kills_forced_ones() {
    let mut h = Harness::new(cpus(1));
    let (w, running) = busy_worker(&mut h);
    let spec = h.task(DRIVER, "m::queued", vec![]);
    let queued = h.submit(DRIVER, spec);
    control(
        &mut h,
        Control::Cancel {
            task: queued,
            force: false,
            recursive: true,
        },
    );
    assert!(
        matches!(h.failed(queued), Some(Error::TaskCancelled { how, .. }) if how.contains("before"))
    );
    control(
        &mut h,
        Control::Cancel {
            task: running,
            force: false,
            recursive: true,
        },
    );
    assert!(
        h.sent_to(w)
            .iter()
            .any(|m| matches!(m, ToWorker::Cancel { task } if *task == running))
    );
    h.msg(
        w,
        FromWorker::TaskDone {
            task: running,
            result: Ok(value(1)),
        },
    );
    assert!(
        matches!(h.failed(running), Some(Error::TaskCancelled { how, .. }) if how.contains("while"))
    );
    // Forced: the worker is killed, and the task is not retried.
    let mut h = Harness::new(cpus(1));
    let (w, t) = busy_worker(&mut h);
    control(
        &mut h,
        Control::Cancel {
            task: t,
            force: true,
            recursive: false,
        },
    );
    assert!(h.killed.contains(&w));
    h.die(w, "was killed by signal 9 (SIGKILL)");
    assert!(matches!(h.failed(t), Some(Error::TaskCancelled { how, .. }) if how.contains("force")));
    assert!(h.started.is_empty(), "no retry was started");
}

#[test]
fn a_recursive_cancel_reaches_what_a_task_submitted() {
    let mut h = Harness::new(cpus(1));
    let (w, parent) = busy_worker(&mut h);
    let spec = h.task(w, "m::child", vec![]);
    let child = h.submit(w, spec);
    control(
        &mut h,
        Control::Cancel {
            task: parent,
            force: false,
            recursive: true,
        },
    );
    assert!(matches!(h.failed(child), Some(Error::TaskCancelled { .. })));
}

#[test]
fn a_worker_may_cancel_only_what_it_holds() {
    let mut h = Harness::new(cpus(2));
    let mine = h.put(DRIVER, value(1));
    let (w, _) = busy_worker(&mut h);
    h.msg(
        w,
        FromWorker::Control {
            req: 1,
            op: Control::Cancel {
                task: mine,
                force: true,
                recursive: true,
            },
        },
    );
    assert_stopped(&h, w);
    assert_eq!(h.value_of(mine), Some(1));
}

// ----- multiple returns --------------------------------------------------------------------

#[test]
fn several_return_values_complete_together_or_fail_together() {
    let mut h = Harness::new(cpus(2));
    let (w, _) = busy_worker(&mut h);
    let mut spec = h.task(w, "m::pair", vec![]);
    h.next_id += 2;
    spec.ext.returns = Returns {
        extra: 1,
        stream: None,
    };
    let t = h.submit(w, spec);
    assert!(h.disconnected.is_empty(), "fresh ids of its own");
    let w2 = h.connect_all()[0];
    h.sent_to(w2);
    h.msg(
        w2,
        FromWorker::TaskReturns {
            task: t,
            result: Ok(vec![value(1), value(2)]),
        },
    );
    assert_eq!(
        (h.value_of(t), h.value_of(t.nth_return(1))),
        (Some(1), Some(2))
    );
    // A failure fails both; the wrong number of values breaks the protocol.
    let mut spec = h.task(DRIVER, "m::pair", vec![]);
    h.next_id += 2;
    spec.ext.returns.extra = 1;
    let t = h.submit(DRIVER, spec);
    h.msg(
        w2,
        FromWorker::TaskReturns {
            task: t,
            result: Ok(vec![value(1)]),
        },
    );
    assert_stopped(&h, w2);
    let mut h = Harness::new(cpus(1));
    let mut spec = h.task(DRIVER, "m::pair", vec![]);
    h.next_id += 2;
    spec.ext.returns.extra = 1;
    let t = h.submit(DRIVER, spec);
    let w = h.connect_all()[0];
    let err = Error::TaskFailed {
        function: "m::pair".into(),
        message: "boom".into(),
        pid: 1,
    };
    h.msg(
        w,
        FromWorker::TaskReturns {
            task: t,
            result: Err(err.clone()),
        },
    );
    assert_eq!(h.failed(t), Some(err.clone()));
    assert_eq!(h.failed(t.nth_return(1)), Some(err));
}

#[test]
fn a_worker_cannot_claim_return_ids_that_are_in_use() {
    let mut h = Harness::new(cpus(1));
    let (w, _) = busy_worker(&mut h);
    let mut spec = h.task(w, "m::pair", vec![]);
    spec.ext.returns.extra = 1;
    let taken = spec.task.nth_return(1);
    h.msg(
        w,
        FromWorker::Put {
            id: taken,
            result: Ok(value(9)),
        },
    );
    h.msg(w, FromWorker::SubmitTask(spec));
    assert_stopped(&h, w);
    assert_eq!(h.value_of(taken), Some(9));
}

// ----- streams -----------------------------------------------------------------------------

fn streaming_task(h: &mut Harness, backpressure: u32) -> (ProcId, ObjectId) {
    let mut spec = h.task(DRIVER, "m::gen", vec![]);
    spec.ext.returns.stream = Some(backpressure);
    let t = h.submit(DRIVER, spec);
    let w = h.connect_all()[0];
    h.sent_to(w);
    (w, t)
}

fn yield_item(h: &mut Harness, w: ProcId, t: ObjectId, index: u64, x: u64) -> bool {
    let item = h.id_of(w);
    let req = 100 + index;
    h.msg(
        w,
        FromWorker::Yield {
            req,
            task: t,
            index,
            item,
            value: value(x),
        },
    );
    h.sent_to(w)
        .iter()
        .any(|m| matches!(m, ToWorker::ControlReply { req: r, .. } if *r == req))
}

fn next(h: &mut Harness, t: ObjectId, index: u64) -> Option<StreamItem> {
    match control(
        h,
        Control::StreamNext {
            generator: t,
            index,
        },
    ) {
        Some(Ok(ControlReply::Item(i))) => Some(i),
        None => None,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn stream_items_are_handed_over_in_order_with_backpressure() {
    let mut h = Harness::new(cpus(1));
    let (w, t) = streaming_task(&mut h, 2);
    assert!(yield_item(&mut h, w, t, 0, 10), "ahead by 1: go on");
    assert!(!yield_item(&mut h, w, t, 1, 11), "ahead by 2: held");
    let Some(StreamItem::Ref(first)) = next(&mut h, t, 0) else {
        panic!("item 0")
    };
    assert_eq!(h.value_of(first), Some(10));
    assert!(
        h.sent_to(w)
            .iter()
            .any(|m| matches!(m, ToWorker::ControlReply { req: 101, .. })),
        "released once the caller took one"
    );
    assert!(matches!(next(&mut h, t, 1), Some(StreamItem::Ref(_))));
    assert_eq!(next(&mut h, t, 2), None, "waits for the next item");
    h.msg(
        w,
        FromWorker::TaskDone {
            task: t,
            result: Ok(value(0)),
        },
    );
    assert_eq!(h.st.generators.len(), 1, "kept while the generator lives");
    assert_eq!(next(&mut h, t, 2), Some(StreamItem::End));
}

#[test]
fn a_failed_stream_ends_with_its_error_and_a_retry_sends_no_duplicates() {
    let mut h = Harness::new(cpus(1));
    let (w, t) = streaming_task(&mut h, 0);
    assert!(yield_item(&mut h, w, t, 0, 1));
    h.die(w, "was killed by signal 9 (SIGKILL)");
    let w2 = h.connect_all()[0];
    h.sent_to(w2);
    assert!(yield_item(&mut h, w2, t, 0, 1), "item 0 again: dropped");
    assert!(yield_item(&mut h, w2, t, 1, 2));
    let err = Error::TaskFailed {
        function: "m::gen".into(),
        message: "mid-stream".into(),
        pid: 1,
    };
    h.msg(
        w2,
        FromWorker::TaskDone {
            task: t,
            result: Err(err),
        },
    );
    assert!(matches!(next(&mut h, t, 0), Some(StreamItem::Ref(_))));
    assert!(matches!(next(&mut h, t, 1), Some(StreamItem::Ref(_))));
    assert_eq!(next(&mut h, t, 2), Some(StreamItem::Failed));
}

#[test]
fn dropping_a_generator_frees_untaken_items_and_releases_the_producer() {
    let mut h = Harness::new(cpus(1));
    let (w, t) = streaming_task(&mut h, 1);
    assert!(
        !yield_item(&mut h, w, t, 0, 1),
        "held at once (backpressure 1)"
    );
    let before = h.st.objects.len();
    h.with(|st| st.del_ref(DRIVER, RefId::Object(t))).unwrap();
    assert!(
        h.sent_to(w)
            .iter()
            .any(|m| matches!(m, ToWorker::ControlReply { req: 100, .. })),
        "the producer goes on"
    );
    assert_eq!(h.st.objects.len(), before - 2, "the generator and its item");
    assert!(
        yield_item(&mut h, w, t, 1, 2),
        "later items are dropped at once"
    );
    h.msg(
        w,
        FromWorker::TaskDone {
            task: t,
            result: Ok(value(0)),
        },
    );
    assert_eq!(h.st.generators.len(), 0);
}

#[test]
fn only_the_worker_running_a_streaming_task_may_yield_its_items() {
    let mut h = Harness::new(cpus(2));
    let (_, t) = streaming_task(&mut h, 0);
    let (other, _) = busy_worker(&mut h);
    yield_item(&mut h, other, t, 0, 1);
    assert_stopped(&h, other);
}

// ----- retries -----------------------------------------------------------------------------

#[test]
fn a_panic_is_retried_with_retry_exceptions_and_workers_go_after_max_calls() {
    let mut h = Harness::new(cpus(1));
    let mut spec = h.task(DRIVER, "m::flaky", vec![]);
    spec.ext.retry_exceptions = true;
    spec.ext.max_calls = 1;
    spec.max_retries = 1;
    let t = h.submit(DRIVER, spec);
    let w = h.connect_all()[0];
    h.sent_to(w);
    let panic = |n| Error::TaskFailed {
        function: "m::flaky".into(),
        message: format!("panic {n}"),
        pid: 1,
    };
    h.msg(
        w,
        FromWorker::TaskDone {
            task: t,
            result: Err(panic(1)),
        },
    );
    assert!(h.failed(t).is_none(), "retried");
    assert!(
        h.sent_to(w).iter().any(|m| matches!(m, ToWorker::Exit)),
        "max_calls = 1: the worker goes"
    );
    let w2 = h.connect_all()[0];
    assert!(matches!(h.executing(w2), Some(Execute::Task { task, .. }) if task == t));
    h.msg(
        w2,
        FromWorker::TaskDone {
            task: t,
            result: Err(panic(2)),
        },
    );
    assert_eq!(h.failed(t), Some(panic(2)), "no retries left");
}

#[test]
fn calls_in_flight_run_again_on_the_restarted_actor_within_max_task_retries() {
    let mut h = Harness::new(cpus(1));
    let mut spec = actor_spec(&mut h, DRIVER, 1);
    spec.ext.max_task_retries = 1;
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
    let c = call(&mut h, a, "slow");
    h.sent_to(w);
    h.die(w, "was killed by signal 9 (SIGKILL)");
    assert!(h.failed(c).is_none(), "kept for the restarted actor");
    let w2 = h.connect_all()[0];
    h.msg(
        w2,
        FromWorker::ActorCreated {
            actor: a,
            result: Ok(()),
        },
    );
    assert!(matches!(h.executing(w2), Some(Execute::ActorTask { task, .. }) if task == c));
}

// ----- placement groups ----------------------------------------------------------------------

fn group(h: &mut Harness, cpus: &[u64], strategy: PlacementStrategy) -> PlacementGroupSpec {
    let ready = h.id_of(DRIVER);
    PlacementGroupSpec {
        id: PlacementGroupId(h.id_of(DRIVER).0),
        ready,
        bundles: cpus
            .iter()
            .map(|c| ResourceRequest {
                cpu: Amount::from_f64(*c as f64).unwrap(),
                ..Default::default()
            })
            .collect(),
        strategy,
        name: String::new(),
    }
}

#[test]
fn placement_groups_reserve_wait_for_room_run_tasks_and_are_removed() {
    let mut h = Harness::new(cpus(3));
    let pg = group(&mut h, &[1, 1], PlacementStrategy::Pack);
    let (id, ready) = (pg.id, pg.ready);
    control(&mut h, Control::CreatePlacementGroup(pg));
    assert!(matches!(
        h.state(ready),
        Some(super::super::objects::ObjState::Ready(_))
    ));
    // Only one CPU is left: a second group of two waits.
    let pg2 = group(&mut h, &[1, 1], PlacementStrategy::Spread);
    let ready2 = pg2.ready;
    control(&mut h, Control::CreatePlacementGroup(pg2));
    assert!(matches!(
        h.state(ready2),
        Some(super::super::objects::ObjState::Pending)
    ));
    // A task in bundle 1.
    let mut spec = h.task(DRIVER, "m::in_group", vec![]);
    spec.resources.bundle = Some(Box::new(BundleRef {
        group: id,
        index: Some(1),
    }));
    let t = h.submit(DRIVER, spec);
    let w = h.connect_all()[0];
    assert!(matches!(h.executing(w), Some(Execute::Task { task, .. }) if task == t));
    control(&mut h, Control::RemovePlacementGroup(id));
    assert!(h.killed.contains(&w), "what runs in it is stopped");
    h.die(w, "was killed by signal 9 (SIGKILL)");
    assert!(matches!(h.failed(t), Some(Error::PlacementGroupRemoved { group, .. }) if group == id));
    assert!(
        matches!(
            h.state(ready2),
            Some(super::super::objects::ObjState::Ready(_))
        ),
        "the waiting group got the room"
    );
    assert_eq!(h.st.placement_group_count(), (1, 0));
}

#[test]
fn infeasible_placement_groups_fail_at_once() {
    let mut h = Harness::new(cpus(2));
    let pg = group(&mut h, &[1, 1], PlacementStrategy::StrictSpread);
    let ready = pg.ready;
    control(&mut h, Control::CreatePlacementGroup(pg));
    assert!(matches!(h.failed(ready), Some(Error::Infeasible { .. })));
    let pg = group(&mut h, &[2, 1], PlacementStrategy::StrictPack);
    let ready = pg.ready;
    control(&mut h, Control::CreatePlacementGroup(pg));
    assert!(
        matches!(h.failed(ready), Some(Error::Infeasible { requested, .. }) if requested.contains("CPU: 3"))
    );
    assert_eq!(h.st.placement_group_count(), (0, 0));
}

#[test]
fn a_worker_cannot_create_a_placement_group_under_another_process_id() {
    let mut h = Harness::new(cpus(2));
    let (w, _) = busy_worker(&mut h);
    let mut pg = group(&mut h, &[1], PlacementStrategy::Pack);
    pg.ready = h.id_of(w);
    h.msg(
        w,
        FromWorker::Control {
            req: 1,
            op: Control::CreatePlacementGroup(pg),
        },
    );
    assert_stopped(&h, w);
}

// ----- escaped references and unhandled errors -------------------------------------------

#[test]
fn an_escaped_reference_lives_until_its_owner_exits() {
    let mut h = Harness::new(cpus(1));
    let (w, _) = busy_worker(&mut h);
    let o = h.put(w, value(5));
    assert_eq!(
        worker_control(&mut h, w, 1, Control::Escape(RefId::Object(o))),
        Some(ControlReply::Done)
    );
    h.msg(w, FromWorker::DelRef(RefId::Object(o)));
    assert_eq!(h.value_of(o), Some(5), "escaped: kept");
    h.die(w, "exited with code 0");
    assert!(h.state(o).is_none(), "its owner is gone");
}

#[test]
fn unread_failures_are_tracked_until_read_or_dropped() {
    let mut h = Harness::new(cpus(1));
    let err = Error::InvalidArgument {
        what: "x".into(),
        message: "y".into(),
    };
    let read = h.id_of(DRIVER);
    h.with(|st| st.put(DRIVER, read, Err(err.clone())));
    let dropped = h.id_of(DRIVER);
    h.with(|st| st.put(DRIVER, dropped, Err(err)));
    assert!(
        h.with(|st| st.collect_values(&[read], Some(DRIVER)))
            .is_err()
    );
    assert_eq!(h.st.unhandled_count(), 1, "the read one is handled");
    h.with(|st| st.del_ref(DRIVER, RefId::Object(dropped)))
        .unwrap();
    assert_eq!(h.st.unhandled_count(), 0, "reported when dropped");
}

// ----- introspection -----------------------------------------------------------------------

#[test]
fn resources_and_assigned_resources_are_reported() {
    let mut h = Harness::new(cpus(2));
    let (w, _) = busy_worker(&mut h);
    let Some(Ok(ControlReply::Resources { total, available })) =
        control(&mut h, Control::Resources)
    else {
        panic!("resources")
    };
    assert!(total.contains(&("CPU".into(), 2.0)));
    assert!(available.contains(&("CPU".into(), 1.0)));
    assert_eq!(
        worker_control(&mut h, w, 1, Control::AssignedResources),
        Some(ControlReply::Assigned(vec![("CPU".into(), 1.0)]))
    );
}

#[test]
fn a_placement_group_asking_for_gpus_is_judged_once_they_are_counted() {
    let mut h = Harness::new(cpus(2).gpus_unknown());
    h.st.settings.can_detect_gpus = true;
    let mut pg = group(&mut h, &[1], PlacementStrategy::Pack);
    pg.bundles[0].gpu = Amount::ONE;
    let ready = pg.ready;
    control(&mut h, Control::CreatePlacementGroup(pg));
    assert!(matches!(
        h.state(ready),
        Some(super::super::objects::ObjState::Pending)
    ));
    h.with(|st| st.gpus_detected(0));
    assert!(
        matches!(h.failed(ready), Some(Error::Infeasible { requested, .. }) if requested.contains("GPU"))
    );
    let mut pg = group(&mut h, &[1], PlacementStrategy::Pack);
    pg.bundles[0].bundle = Some(Box::new(BundleRef {
        group: PlacementGroupId(1),
        index: None,
    }));
    let ready = pg.ready;
    control(&mut h, Control::CreatePlacementGroup(pg));
    assert!(matches!(
        h.failed(ready),
        Some(Error::InvalidArgument { .. })
    ));
}
