//! get/wait requests, their timeouts on the fake clock, CPU lending, split replies, and
//! shutdown, driven by hand like the tests above.

use super::*;

#[test]
fn a_worker_blocked_in_get_lends_its_cpu_so_a_nested_task_can_run() {
    let mut h = Harness::new(cpus(1));
    let spec = h.task(DRIVER, "m::outer", vec![]);
    let outer = h.submit(DRIVER, spec);
    let w1 = h.connect_all()[0];
    h.executing(w1);
    let spec = h.task(w1, "m::inner", vec![]);
    let inner = h.submit(w1, spec);
    assert!(
        h.started.is_empty(),
        "no CPU for the nested task while outer holds it"
    );
    h.msg(
        w1,
        FromWorker::Get {
            req: 7,
            ids: vec![inner],
            timeout_ms: None,
        },
    );
    let w2 = h.connect_all()[0];
    assert!(
        matches!(h.executing(w2), Some(Execute::Task { task, .. }) if task == inner),
        "the blocked worker's CPU runs the nested task"
    );
    h.msg(
        w2,
        FromWorker::TaskDone {
            task: inner,
            result: Ok(value(3)),
        },
    );
    let reply = h.sent_to(w1);
    assert!(reply.iter().any(|m| matches!(
        m,
        ToWorker::GetReply {
            req: 7,
            result: Ok(_)
        }
    )));
    h.msg(
        w1,
        FromWorker::TaskDone {
            task: outer,
            result: Ok(value(4)),
        },
    );
    assert_eq!(h.value_of(outer), Some(4));
}

#[test]
fn get_and_wait_timeouts_fire_on_the_clock_and_name_the_task() {
    let mut h = Harness::new(cpus(1));
    let spec = h.task(DRIVER, "m::slow", vec![]);
    let t = h.submit(DRIVER, spec);
    let w = h.connect_all()[0];
    h.executing(w);
    let spec = h.task(w, "m::slower", vec![]);
    let nested = h.submit(w, spec);
    h.msg(
        w,
        FromWorker::Get {
            req: 3,
            ids: vec![nested],
            timeout_ms: Some(200),
        },
    );
    h.advance(Duration::from_millis(199));
    assert!(h.sent_to(w).is_empty(), "not yet");
    h.advance(Duration::from_millis(1));
    match h.sent_to(w).pop() {
        Some(ToWorker::GetReply {
            req: 3,
            result: Err(Error::Timeout { what, timeout }),
        }) => {
            assert_eq!(timeout, Duration::from_millis(200));
            assert!(what.contains("`slower`"), "{what}");
        }
        other => panic!("expected a timeout reply, got {other:?}"),
    }
    let slot = h.driver_wait(vec![t], ReqKind::Wait, Duration::from_secs(1));
    h.advance(Duration::from_secs(1));
    assert!(
        slot.try_take().is_some(),
        "the driver's wait returns when time is up"
    );
    let never = h.driver_wait(vec![t], ReqKind::Get, Duration::MAX);
    assert!(h.timers.is_empty(), "Duration::MAX waits forever: no timer");
    h.msg(
        w,
        FromWorker::TaskDone {
            task: t,
            result: Ok(value(1)),
        },
    );
    assert!(never.try_take().is_some());
}

#[test]
fn a_large_reply_to_a_worker_is_split_into_parts() {
    let mut h = Harness::with_store(cpus(1), 1 << 20);
    let w = reading_worker(&mut h);
    let chunk = (REPLY_CHUNK / 3 + 1) as usize;
    let ids: Vec<ObjectId> = (0..7)
        .map(|_| {
            let v = Value {
                data: Data::Inline(Bytes::from(vec![1u8; chunk])),
                contained: vec![],
            };
            h.put(DRIVER, v)
        })
        .collect();
    h.msg(
        w,
        FromWorker::Get {
            req: 9,
            ids: ids.clone(),
            timeout_ms: None,
        },
    );
    let msgs = h.sent_to(w);
    let mut total = 0;
    for m in &msgs {
        let (n, bytes): (usize, u64) = match m {
            ToWorker::GetReplyPart { values, .. } => {
                (values.len(), values.iter().map(|v| v.len()).sum())
            }
            ToWorker::GetReply {
                result: Ok(values), ..
            } => (values.len(), values.iter().map(|v| v.len()).sum()),
            other => panic!("unexpected {other:?}"),
        };
        assert!(
            bytes <= REPLY_CHUNK,
            "each message stays under the chunk size"
        );
        total += n;
    }
    assert!(msgs.len() >= 3, "split into parts: {}", msgs.len());
    assert_eq!(total, ids.len());
    assert!(matches!(msgs.last(), Some(ToWorker::GetReply { .. })));
}

#[test]
fn shutdown_tells_connected_workers_to_exit_kills_starting_ones_and_wakes_the_driver() {
    let mut h = Harness::new(cpus(2));
    h.with(|st| st.prestart(JOB, 1));
    let idle = h.connect_all()[0];
    h.with(|st| st.prestart(JOB, 1));
    let starting = h.started[0];
    let spec = h.task(DRIVER, "m::x", vec![]);
    let t = h.submit(DRIVER, spec);
    h.sent.clear();
    let slot = h.driver_wait(vec![t], ReqKind::Get, Duration::from_secs(60));
    h.with(|st| st.begin_shutdown());
    assert!(h.sent_to(idle).iter().any(|m| matches!(m, ToWorker::Exit)));
    assert!(h.killed.contains(&starting));
    assert!(slot.try_take().is_some());
    let spec = h.task(DRIVER, "m::late", vec![]);
    h.started.clear();
    h.submit(DRIVER, spec);
    assert!(h.started.is_empty(), "nothing new is scheduled");
}

/// A worker running a task (`m::reader`), to send requests from.
fn reading_worker(h: &mut Harness) -> ProcId {
    let spec = h.task(DRIVER, "m::reader", vec![]);
    h.submit(DRIVER, spec);
    let w = h.connect_all()[0];
    h.executing(w);
    w
}

/// The reply to a `get` that lists one id `n` times.
fn get_repeated(
    h: &mut Harness,
    from: ProcId,
    id: ObjectId,
    n: usize,
) -> Result<Vec<Value>, Error> {
    let req = 31;
    h.msg(
        from,
        FromWorker::Get {
            req,
            ids: vec![id; n],
            timeout_ms: None,
        },
    );
    let mut values = Vec::new();
    for m in h.sent_to(from) {
        match m {
            ToWorker::GetReplyPart { values: part, .. } => values.extend(part),
            ToWorker::GetReply { result, .. } => {
                return result.map(|last| {
                    values.extend(last);
                    values
                });
            }
            _ => {}
        }
    }
    panic!("no reply to the get");
}

#[test]
fn a_get_listing_one_id_many_times_is_refused_past_64_mib_of_copies_and_answered_below() {
    let mut h = Harness::with_store(cpus(1), 256 << 20);
    let w = reading_worker(&mut h);
    let small = h.put(
        DRIVER,
        Value {
            data: Data::Inline(Bytes::from(vec![5u8; 1 << 10])),
            contained: vec![],
        },
    );
    let values = get_repeated(&mut h, w, small, 3).expect("a small value listed 3 times");
    assert_eq!(values.len(), 3);
    assert!(values.iter().all(|v| v.len() == 1 << 10));

    // 1 MiB sent inline, listed 100 times: 99 MiB of copies past the first.
    let mib = h.put(
        DRIVER,
        Value {
            data: Data::Inline(Bytes::from(vec![6u8; 1 << 20])),
            contained: vec![],
        },
    );
    let Some(crate::node_manager::objects::ObjState::Ready(Value {
        data: Data::Inline(_),
        ..
    })) = h.state(mib)
    else {
        panic!("the value is kept inline: {:?}", h.state(mib));
    };
    match get_repeated(&mut h, w, mib, 100) {
        Err(Error::InvalidArgument { what, message }) => {
            assert_eq!(what, "get");
            assert!(
                message.contains(&format!("{mib} is listed 100 times")),
                "{message}"
            );
            assert!(message.contains("list each object once"), "{message}");
        }
        other => panic!(
            "expected the get to be refused, got {:?}",
            other.map(|v| v.len())
        ),
    }
    let values = get_repeated(&mut h, w, mib, 60).expect("59 MiB of copies");
    assert_eq!(values.len(), 60);
    // The worker is not blamed: it asks again and is answered.
    assert!(h.st.workers.get(w).is_some_and(|e| !e.banned));
}

#[test]
fn a_remote_driver_gets_copies_of_stored_values_so_those_count_too() {
    let mut h = Harness::with_store(cpus(1), 256 << 20);
    let info = crate::protocol::node::DriverInfo {
        fingerprint: 1,
        sha256: [3; 32],
        size: 10,
        pid: 77,
        name: "far".into(),
        namespace: None,
    };
    let (driver, _) = h
        .with(|st| st.attach_driver(&info, "/nonexistent".into(), Box::new(())))
        .expect("attached");
    // A worker stores 40 MiB.
    let w = reading_worker(&mut h);
    let len = 40u64 << 20;
    h.msg(
        w,
        FromWorker::Alloc {
            req: 1,
            size: len + PAD,
        },
    );
    let Some(ToWorker::Allocated {
        result: Ok(region), ..
    }) = h.sent_to(w).pop()
    else {
        panic!("a region")
    };
    let stored = h.id_of(w);
    let v = Value {
        data: Data::Shm {
            region,
            pad: PAD as u32,
            len,
        },
        contained: vec![],
    };
    h.msg(
        w,
        FromWorker::Put {
            id: stored,
            result: Ok(v),
        },
    );
    // The worker maps it: three listings cost nothing more.
    let values = get_repeated(&mut h, w, stored, 3).expect("mapped, not copied");
    assert_eq!(values.len(), 3);
    assert!(values.iter().all(|v| matches!(v.data, Data::Shm { .. })));
    // The remote driver would get three 40 MiB copies: 80 MiB past the first.
    match get_repeated(&mut h, driver, stored, 3) {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("listed 3 times"), "{message}");
            assert!(message.contains(&(80u64 << 20).to_string()), "{message}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|v| v.len())),
    }
    let values = get_repeated(&mut h, driver, stored, 2).expect("40 MiB of copies");
    assert_eq!(values.len(), 2);
    assert!(
        values
            .iter()
            .all(|v| matches!(&v.data, Data::Inline(b) if b.len() as u64 == len))
    );
}

#[test]
fn a_refused_get_names_the_id_whose_repeats_copy_the_most() {
    let mut h = Harness::with_store(cpus(1), 256 << 20);
    let w = reading_worker(&mut h);
    let put = |h: &mut Harness, len: usize| {
        h.put(
            DRIVER,
            Value {
                data: Data::Inline(Bytes::from(vec![1u8; len])),
                contained: vec![],
            },
        )
    };
    let (small, mib) = (put(&mut h, 1 << 10), put(&mut h, 1 << 20));
    // 1 KiB listed 1,000 times copies ~1 MiB more; 1 MiB listed 80 times, 79 MiB.
    let mut ids = vec![small; 1000];
    ids.extend(vec![mib; 80]);
    h.msg(
        w,
        FromWorker::Get {
            req: 5,
            ids,
            timeout_ms: None,
        },
    );
    let refused = h.sent_to(w).into_iter().find_map(|m| match m {
        ToWorker::GetReply {
            result: Err(Error::InvalidArgument { message, .. }),
            ..
        } => Some(message),
        _ => None,
    });
    let message = refused.expect("refused");
    assert!(
        message.contains(&format!("{mib} is listed 80 times")),
        "{message}"
    );
}
