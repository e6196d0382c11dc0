//! References, pins and freeing, driven by hand like the tests above.

use super::*;

#[test]
fn task_arguments_and_nested_refs_stay_pinned_until_the_task_is_done() {
    let mut h = Harness::new(cpus(1));
    let inner = h.put(DRIVER, value(5));
    let outer = h.put(DRIVER, value_with_refs(6, vec![RefId::Object(inner)]));
    let spec = h.task(DRIVER, "m::use", vec![Arg::Ref(outer)]);
    let t = h.submit(DRIVER, spec);
    h.with(|st| st.del_ref(DRIVER, RefId::Object(inner)))
        .unwrap();
    h.with(|st| st.del_ref(DRIVER, RefId::Object(outer)))
        .unwrap();
    assert!(h.state(outer).is_some(), "pinned by the pending task");
    assert!(
        h.state(inner).is_some(),
        "pinned by the object that contains it"
    );
    let w = h.connect_all()[0];
    h.msg(
        w,
        FromWorker::TaskDone {
            task: t,
            result: Ok(value(1)),
        },
    );
    assert!(h.state(outer).is_none(), "freed once the task is done");
    assert!(h.state(inner).is_none(), "and what it contained with it");
    assert!(h.state(t).is_some(), "the driver still holds the result");
}

#[test]
fn a_value_in_flight_to_a_worker_counts_the_worker_as_holder_until_it_drops_it() {
    let mut h = Harness::new(cpus(1));
    let spec = h.task(DRIVER, "m::waiter", vec![]);
    let t = h.submit(DRIVER, spec);
    let w = h.connect_all()[0];
    let inner = h.put(DRIVER, value(1));
    let outer = h.put(DRIVER, value_with_refs(2, vec![RefId::Object(inner)]));
    h.msg(
        w,
        FromWorker::Get {
            req: 1,
            ids: vec![outer],
            timeout_ms: None,
        },
    );
    assert!(
        h.sent_to(w)
            .iter()
            .any(|m| matches!(m, ToWorker::GetReply { req: 1, result: Ok(v) } if v.len() == 1))
    );
    h.with(|st| st.del_ref(DRIVER, RefId::Object(outer)))
        .unwrap();
    h.with(|st| st.del_ref(DRIVER, RefId::Object(inner)))
        .unwrap();
    assert!(
        h.state(inner).is_some(),
        "the worker received a reference to it"
    );
    h.msg(w, FromWorker::DelRef(RefId::Object(inner)));
    assert!(h.state(inner).is_none());
    h.msg(
        w,
        FromWorker::TaskDone {
            task: t,
            result: Ok(value(0)),
        },
    );
}

#[test]
fn a_chain_of_a_million_objects_frees_without_recursion() {
    let mut h = Harness::new(cpus(1));
    let mut prev = h.put(DRIVER, value(0));
    for i in 1..1_000_000u64 {
        let next = h.put(DRIVER, value_with_refs(i, vec![RefId::Object(prev)]));
        h.with(|st| st.del_ref(DRIVER, RefId::Object(prev)))
            .unwrap();
        prev = next;
    }
    assert_eq!(h.st.objects.len(), 1_000_000);
    // Runs on a thread with a small stack: recursion would overflow it.
    let mut st = h.st;
    let freed = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            st.del_ref(DRIVER, RefId::Object(prev)).unwrap();
            st.objects.len()
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert_eq!(freed, 0);
}
