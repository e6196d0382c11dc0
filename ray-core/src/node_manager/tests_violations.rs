//! What a worker may not send, driven by hand like the tests above: each is refused, the
//! worker is disconnected and stopped, and nothing it does not own is touched.

use super::*;

#[test]
fn a_worker_cannot_put_over_an_existing_id_or_one_it_did_not_make() {
    let mut h = Harness::new(cpus(1));
    let mine = h.put(DRIVER, value(42));
    let (w, _) = busy_worker(&mut h);
    h.msg(
        w,
        FromWorker::Put {
            id: mine,
            result: Ok(value(666)),
        },
    );
    assert_stopped(&h, w);
    assert_eq!(h.value_of(mine), Some(42), "the driver's object is intact");
    let mut h = Harness::new(cpus(1));
    let (w, _) = busy_worker(&mut h);
    let forged = h.id_of(w);
    h.msg(
        w,
        FromWorker::Put {
            id: forged,
            result: Ok(value(1)),
        },
    );
    assert!(h.disconnected.is_empty(), "its own fresh id is fine");
    let theirs = h.id_of(DRIVER);
    h.msg(
        w,
        FromWorker::Put {
            id: theirs,
            result: Ok(value(1)),
        },
    );
    assert_stopped(&h, w);
    assert!(h.state(theirs).is_none());
}

#[test]
fn a_worker_cannot_report_a_task_it_was_not_given_and_its_messages_stop_counting() {
    let mut h = Harness::new(cpus(2));
    let (w1, t1) = busy_worker(&mut h);
    let spec = h.task(DRIVER, "m::other", vec![]);
    let t2 = h.submit(DRIVER, spec);
    let w2 = h.connect_all()[0];
    h.msg(
        w1,
        FromWorker::TaskDone {
            task: t2,
            result: Ok(value(666)),
        },
    );
    assert_stopped(&h, w1);
    assert!(h.value_of(t2).is_none(), "no forged result");
    h.msg(
        w1,
        FromWorker::TaskDone {
            task: t1,
            result: Ok(value(1)),
        },
    );
    assert!(
        h.value_of(t1).is_none(),
        "a banned worker's messages are ignored"
    );
    h.msg(
        w2,
        FromWorker::TaskDone {
            task: t2,
            result: Ok(value(2)),
        },
    );
    assert_eq!(h.value_of(t2), Some(2));
}

#[test]
fn allocations_are_checked_and_a_region_is_sealed_only_by_its_writer() {
    let mut h = Harness::with_store(cpus(2), 1 << 20);
    let (w1, t1) = busy_worker(&mut h);
    h.msg(
        w1,
        FromWorker::Alloc {
            req: 1,
            size: u64::MAX,
        },
    );
    match h.sent_to(w1).pop() {
        Some(ToWorker::Allocated {
            result: Err(Error::ObjectStoreFull { requested, .. }),
            ..
        }) => assert_eq!(requested, u64::MAX),
        other => panic!("expected ObjectStoreFull, got {other:?}"),
    }
    assert_eq!(h.st.store.used(), 0, "nothing allocated, nothing wrapped");
    h.msg(w1, FromWorker::Alloc { req: 2, size: 8192 });
    let Some(ToWorker::Allocated {
        result: Ok(region), ..
    }) = h.sent_to(w1).pop()
    else {
        panic!("a region")
    };
    let spec = h.task(DRIVER, "m::other", vec![]);
    let t2 = h.submit(DRIVER, spec);
    let w2 = h.connect_all()[0];
    let stolen = Value {
        data: Data::Shm {
            region,
            pad: PAD as u32,
            len: 100,
        },
        contained: vec![],
    };
    h.msg(
        w2,
        FromWorker::TaskDone {
            task: t2,
            result: Ok(stolen),
        },
    );
    assert_stopped(&h, w2);
    assert!(matches!(h.failed(t2), Some(Error::ObjectLost { .. })));
    let too_long = Value {
        data: Data::Shm {
            region,
            pad: PAD as u32,
            len: 8192,
        },
        contained: vec![],
    };
    h.killed.clear();
    h.disconnected.clear();
    h.msg(
        w1,
        FromWorker::TaskDone {
            task: t1,
            result: Ok(too_long),
        },
    );
    assert_stopped(&h, w1);
}

#[test]
fn releasing_or_dropping_what_one_does_not_hold_is_refused() {
    let mut h = Harness::new(cpus(1));
    let driver_obj = h.put(DRIVER, value(1));
    let (w, _) = busy_worker(&mut h);
    h.msg(w, FromWorker::DelRef(RefId::Object(driver_obj)));
    assert_stopped(&h, w);
    assert_eq!(h.value_of(driver_obj), Some(1));
    let mut h = Harness::new(cpus(1));
    let driver_obj = h.put(DRIVER, value(1));
    let (w, _) = busy_worker(&mut h);
    h.msg(w, FromWorker::Release(vec![driver_obj]));
    assert_stopped(&h, w);
}

#[test]
fn submissions_may_only_pass_inline_values_and_held_references() {
    let mut h = Harness::new(cpus(2));
    let secret = h.put(DRIVER, value(9));
    let (w, _) = busy_worker(&mut h);
    let spec = h.task(w, "m::peek", vec![Arg::Ref(secret)]);
    h.msg(w, FromWorker::SubmitTask(spec));
    assert_stopped(&h, w);
    let mut h = Harness::new(cpus(2));
    let (w, _) = busy_worker(&mut h);
    let shm = Value {
        data: Data::Shm {
            region: 0,
            pad: 0,
            len: 64,
        },
        contained: vec![],
    };
    let spec = h.task(w, "m::peek", vec![Arg::Value(shm)]);
    h.msg(w, FromWorker::SubmitTask(spec));
    assert_stopped(&h, w);
}

#[test]
fn workers_of_another_build_or_version_are_refused_saying_why() {
    let mut h = Harness::new(cpus(1));
    h.with(|st| st.prestart(JOB, 2));
    let procs = std::mem::take(&mut h.started);
    h.msg(
        procs[0],
        FromWorker::Hello {
            version: PROTOCOL_VERSION,
            fingerprint: FINGERPRINT ^ 1,
            pid: 5,
        },
    );
    assert!(matches!(
        h.sent_to(procs[0]).pop(),
        Some(ToWorker::Refused {
            reason: Refusal::DifferentBuild
        })
    ));
    assert!(h.disconnected.contains(&procs[0]));
    h.msg(
        procs[1],
        FromWorker::Hello {
            version: PROTOCOL_VERSION + 1,
            fingerprint: FINGERPRINT,
            pid: 6,
        },
    );
    match h.sent_to(procs[1]).pop() {
        Some(ToWorker::Refused { reason }) => {
            let text = reason.to_string();
            assert!(
                text.contains(&format!("{}", PROTOCOL_VERSION + 1)),
                "{text}"
            );
            assert!(
                !text.contains(&format!("{FINGERPRINT:x}")),
                "no secret in a refusal"
            );
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    h.with(|st| st.prestart(JOB, 1));
    let p = std::mem::take(&mut h.started)[0];
    h.msg(p, FromWorker::AddRef(RefId::Object(ObjectId(5))));
    assert_stopped(&h, p);
}

#[test]
fn a_worker_sending_what_only_nodes_send_is_stopped() {
    let node_only = [
        FromWorker::SessionAck { received: 7 },
        FromWorker::JobEnded { job: JOB },
        FromWorker::Job {
            job: JOB,
            fingerprint: FINGERPRINT,
            sha256: [0; 32],
            size: 1,
            namespace: Some("x".into()),
        },
    ];
    for msg in node_only {
        let mut h = Harness::new(cpus(1));
        let (w, _) = busy_worker(&mut h);
        h.msg(w, msg);
        assert_stopped(&h, w);
        assert!(h.st.jobs.get(JOB).is_some(), "the job is untouched");
    }
}

#[test]
fn a_worker_cannot_submit_a_resource_request_that_accounting_would_take_twice_or_wrap() {
    let twice = ResourceRequest {
        cpu: Amount::ONE,
        custom: vec![("x".into(), Amount::ONE), ("x".into(), Amount::ONE)],
        ..Default::default()
    };
    let huge = ResourceRequest {
        cpu: Amount::from_raw(u64::MAX),
        ..Default::default()
    };
    let zero = ResourceRequest {
        custom: vec![("x".into(), Amount::ZERO)],
        ..Default::default()
    };
    for resources in [twice, huge, zero] {
        let mut h = Harness::new(cpus(2));
        let (w, _) = busy_worker(&mut h);
        let mut spec = h.task(w, "m::greedy", vec![]);
        spec.resources = resources.clone();
        let task = spec.task;
        h.msg(w, FromWorker::SubmitTask(spec));
        assert_stopped(&h, w);
        assert!(h.state(task).is_none(), "no task was made for {resources}");
    }
}

#[test]
fn a_worker_cannot_say_a_value_is_in_another_nodes_store() {
    let mut h = Harness::new(cpus(1));
    let (w, _) = busy_worker(&mut h);
    let id = h.id_of(w);
    let elsewhere = Value {
        data: Data::Remote {
            node: NodeId(9),
            len: 1 << 30,
        },
        contained: vec![],
    };
    h.msg(
        w,
        FromWorker::Put {
            id,
            result: Ok(elsewhere),
        },
    );
    assert_stopped(&h, w);
    assert!(h.state(id).is_none(), "nothing was stored");
}
