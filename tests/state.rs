//! The state API (`ray::state`) and the timeline through the public API: what a user debugging
//! a job sees — what runs where, what waits and on what, what failed and why, what fills the
//! store, where the time went.

mod common;

use common::*;
use ray::state::{self, ListOptions, TaskStatus};
use ray::{Config, Error};
use std::time::Duration;

#[ray::remote]
fn square(x: u64) -> u64 {
    x * x
}

#[ray::remote]
fn explode(why: String) -> u64 {
    panic!("exploded: {why}")
}

#[ray::remote]
fn sleepy(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[ray::remote]
fn after(pid: u32) -> u32 {
    pid
}

#[ray::remote]
struct Keeper {
    n: u64,
}

#[ray::remote]
impl Keeper {
    fn new() -> Self {
        Keeper { n: 0 }
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
    fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

fn init(cpus: usize) {
    ray::init(Config::default().num_cpus(cpus).num_gpus(0)).unwrap();
}

#[test]
fn finished_and_failed_tasks_have_state_pid_times_and_the_panic_message() {
    init(2);
    let ok: Vec<_> = (0..5).map(square::remote).collect();
    assert_eq!(ray::get_all(&ok).unwrap().iter().sum::<u64>(), 30);
    let bad = explode::remote("the fuse was short".to_string());
    assert!(matches!(ray::get(&bad), Err(Error::TaskFailed { .. })));

    let failed = state::tasks(&ListOptions::new().filter("state", "FAILED")).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let f = &failed[0];
    assert_eq!(f.name, "explode");
    assert_eq!(f.kind, "NORMAL_TASK");
    assert!(
        f.error
            .as_deref()
            .unwrap()
            .contains("exploded: the fuse was short"),
        "{f:?}"
    );
    assert_eq!(f.task_id, bad.id().to_string());

    let done = state::tasks(&ListOptions::new().filter("name", "square")).unwrap();
    assert_eq!(done.len(), 5);
    for r in &done {
        assert_eq!(r.state, TaskStatus::Finished);
        let pid = r.worker_pid.expect("ran in a worker");
        assert_ne!(pid, std::process::id());
        let (start, end) = (r.start_us.unwrap(), r.end_us.unwrap());
        assert!(r.submitted_us <= start && start <= end, "{r:?}");
        assert_eq!(r.attempts, 1);
        assert!(r.error.is_none());
    }
    // `!=` filters, and a limit.
    let not_square = state::tasks(&ListOptions::new().filter_not("name", "square")).unwrap();
    assert!(not_square.iter().all(|r| r.name != "square"));
    assert_eq!(state::tasks(&ListOptions::new().limit(2)).unwrap().len(), 2);

    let summary = state::summarize_tasks().unwrap();
    assert_eq!(summary.by_name["square"][&TaskStatus::Finished], 5);
    assert_eq!(summary.by_name["explode"][&TaskStatus::Failed], 1);
    assert_eq!(summary.total, 6);
    ray::shutdown();
}

#[test]
fn running_queued_and_waiting_tasks_are_listed_with_what_they_wait_for() {
    init(1);
    let running = sleepy::remote(1500);
    let queued = sleepy::remote(10);
    let waiting = after::remote(&running);
    assert!(eventually(Duration::from_secs(10), || {
        state::tasks(&ListOptions::new().filter("state", "RUNNING"))
            .unwrap()
            .len()
            == 1
    }));
    let rows = state::tasks(&ListOptions::new()).unwrap();
    let row = |id: String| rows.iter().find(|r| r.task_id == id).unwrap().clone();
    let r = row(running.id().to_string());
    assert_eq!(r.state, TaskStatus::Running);
    assert!(r.worker_pid.is_some() && r.start_us.is_some() && r.end_us.is_none());
    assert_eq!(
        row(queued.id().to_string()).state,
        TaskStatus::PendingNodeAssignment
    );
    assert_eq!(
        row(waiting.id().to_string()).state,
        TaskStatus::PendingArgsAvail
    );

    // The worker running it is BUSY with that task; the node shows its CPU in use.
    let workers = state::workers(&ListOptions::new().filter("state", "BUSY")).unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(
        workers[0].task_id.as_deref(),
        Some(&*running.id().to_string())
    );
    assert_eq!(Some(workers[0].pid), r.worker_pid);
    let nodes = state::nodes(&ListOptions::new()).unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].state, "ALIVE");
    assert_eq!(nodes[0].resources_total["CPU"], 1.0);
    assert_eq!(
        nodes[0]
            .resources_available
            .get("CPU")
            .copied()
            .unwrap_or(0.0),
        0.0
    );

    let pid = ray::get(&running).unwrap();
    assert_eq!(Some(pid), r.worker_pid);
    ray::get(&waiting).unwrap();
    ray::get(&queued).unwrap();
    let s = state::summarize_tasks().unwrap();
    assert_eq!(s.by_name["sleepy"][&TaskStatus::Finished], 2);
    ray::shutdown();
}

#[test]
fn actors_show_class_name_pid_state_and_why_they_died() {
    init(2);
    let k = Keeper::options().name("keeper").remote();
    let pid = ray::get(&k.pid()).unwrap();
    ray::get(&k.bump()).unwrap();
    let alive = state::actors(&ListOptions::new().filter("state", "ALIVE")).unwrap();
    assert_eq!(alive.len(), 1, "{alive:?}");
    let a = &alive[0];
    assert_eq!(a.class_name, "Keeper");
    assert_eq!(a.pid, Some(pid));
    assert_eq!(a.name.as_deref(), Some("keeper"));
    assert_eq!(a.actor_id, k.actor_id().to_string());
    // Its calls are tasks named Class.method, run by its process.
    let calls = state::tasks(&ListOptions::new().filter("actor_id", a.actor_id.clone())).unwrap();
    let names: Vec<&str> = calls.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Keeper.pid", "Keeper.bump"]);
    assert!(
        calls
            .iter()
            .all(|r| r.worker_pid == Some(pid) && r.kind == "ACTOR_TASK")
    );
    let w = state::workers(&ListOptions::new().filter("pid", pid.to_string())).unwrap();
    assert_eq!(w[0].state, "ACTOR");

    ray::kill(&k);
    assert!(eventually(Duration::from_secs(5), || {
        state::actors(&ListOptions::new().filter("state", "DEAD"))
            .unwrap()
            .iter()
            .any(|d| d.actor_id == a.actor_id && d.death_cause.is_some())
    }));
    let by_class = state::summarize_actors().unwrap();
    assert_eq!(by_class["Keeper"]["DEAD"], 1);
    ray::shutdown();
}

#[test]
fn objects_show_size_location_and_holders() {
    ray::init(
        Config::default()
            .num_cpus(1)
            .num_gpus(0)
            .max_inline_object_size(1024),
    )
    .unwrap();
    let big = ray::put(vec![7u8; 1 << 20]).unwrap();
    let small = ray::put(5u32).unwrap();
    let rows = state::objects(&ListOptions::new()).unwrap();
    // Largest first: what fills the store leads the list.
    let first = &rows[0];
    assert_eq!(first.object_id, big.id().to_string());
    assert_eq!(first.state, "READY");
    assert_eq!(first.location, "store");
    assert!(first.size_bytes.unwrap() >= 1 << 20);
    assert_eq!(first.holders, ["driver"]);
    let s = rows
        .iter()
        .find(|r| r.object_id == small.id().to_string())
        .unwrap();
    assert_eq!(s.location, "inline");
    let summary = state::summarize_objects().unwrap();
    assert!(summary.by_location["store"].1 >= 1 << 20);
    assert!(state::nodes(&ListOptions::new()).unwrap()[0].object_store_used_bytes >= 1 << 20);
    drop(big);
    assert!(eventually(Duration::from_secs(5), || {
        state::objects(&ListOptions::new().filter("location", "store"))
            .unwrap()
            .is_empty()
    }));
    ray::shutdown();
}

#[test]
fn finished_tasks_are_kept_in_a_ring_of_the_configured_size() {
    // One CPU: tasks finish in the order they were submitted, so "the newest five" are known.
    ray::init(Config::default().num_cpus(1).num_gpus(0).task_events_max(5)).unwrap();
    let refs: Vec<_> = (0..20).map(square::remote).collect();
    ray::get_all(&refs).unwrap();
    let rows = state::tasks(&ListOptions::new().limit(1000)).unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    // The newest five stay.
    let kept: std::collections::BTreeSet<String> = rows.iter().map(|r| r.task_id.clone()).collect();
    let last: std::collections::BTreeSet<String> =
        refs[15..].iter().map(|r| r.id().to_string()).collect();
    assert_eq!(kept, last);
    ray::shutdown();
}

#[test]
fn a_bad_filter_says_which_keys_exist() {
    init(1);
    let err = state::tasks(&ListOptions::new().filter("colour", "red")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidArgument { .. }));
    assert!(
        msg.contains("colour") && msg.contains("state") && msg.contains("worker_pid"),
        "{msg}"
    );
    let err = ListOptions::new()
        .parse_filter("state")
        .unwrap_err()
        .to_string();
    assert!(err.contains("key=value"), "{err}");
    ray::shutdown();
}

#[test]
fn timeline_is_chrome_trace_event_json() {
    init(2);
    let refs: Vec<_> = (0..4).map(|_| sleepy::remote(20)).collect();
    let pids: std::collections::BTreeSet<u32> = ray::get_all(&refs).unwrap().into_iter().collect();
    let k = Keeper::remote();
    let actor_pid = ray::get(&k.pid()).unwrap();
    let _ = ray::get(&explode::remote("timeline"));
    let dir = scratch("timeline");
    let path = dir.join("trace.json");
    ray::timeline(&path).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().expect("traceEvents array");
    let complete: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(
        complete.len(),
        6,
        "4 sleepy, 1 actor call, 1 failure: {events:?}"
    );
    for e in &complete {
        assert!(e["name"].is_string());
        assert!(
            e["ts"].as_u64().unwrap() > 1_600_000_000_000_000,
            "ts in µs: {e}"
        );
        assert!(e["dur"].is_u64());
        assert!(e["pid"].is_u64() && e["tid"].is_u64());
        assert!(e["args"]["state"].is_string());
    }
    let sleepy_events: Vec<_> = complete.iter().filter(|e| e["name"] == "sleepy").collect();
    assert_eq!(sleepy_events.len(), 4);
    for e in &sleepy_events {
        assert!(e["dur"].as_u64().unwrap() >= 20_000, "slept 20 ms: {e}");
        assert!(pids.contains(&(e["tid"].as_u64().unwrap() as u32)));
    }
    let call = complete.iter().find(|e| e["name"] == "Keeper.pid").unwrap();
    assert_eq!(call["tid"].as_u64().unwrap() as u32, actor_pid);
    let failed = complete.iter().find(|e| e["name"] == "explode").unwrap();
    assert_eq!(failed["args"]["state"], "FAILED");
    assert!(
        failed["args"]["error"]
            .as_str()
            .unwrap()
            .contains("exploded: timeline")
    );
    // Metadata: the node is a process, each worker a named thread.
    let meta: Vec<_> = events.iter().filter(|e| e["ph"] == "M").collect();
    assert!(
        meta.iter().any(|e| e["name"] == "process_name"
            && e["args"]["name"].as_str().unwrap().starts_with("node "))
    );
    assert!(meta.iter().any(|e| e["name"] == "thread_name"
        && e["tid"].as_u64().unwrap() as u32 == actor_pid
        && e["args"]["name"] == format!("Keeper pid={actor_pid}")));
    for pid in &pids {
        assert!(meta.iter().any(|e| e["name"] == "thread_name"
            && e["tid"].as_u64().unwrap() as u32 == *pid
            && e["args"]["name"] == format!("worker pid={pid}")));
    }
    drop(k);
    ray::shutdown();
}
