//! Attacks on a running node, as an unprivileged local user (`nobody`), a same-user process
//! the node did not start, and hostile code inside a worker would try them. Each test asserts
//! that the attack achieved nothing (no connection, no forged value, objects intact, memory
//! bounded, other work unaffected) and that the runtime says what it refused.
//!
//! Some cases run a child driver (this test binary again, running only `child_driver` with
//! `RAY_SECURITY_CHILD` set) to read what the runtime prints or to change process limits.

mod common;

use common::*;
use ray::__private::testing;
use ray::Error;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MODE: &str = "RAY_SECURITY_CHILD";
const NOBODY: u32 = 65534;

#[ray::remote]
fn square(x: u64) -> u64 {
    x * x
}

/// Hostile task code: writes forged bytes on its own connection, then waits to be stopped.
#[ray::remote]
fn forge(kind: String, target: u128) -> u64 {
    let id = testing::id_from_bits(target);
    let bytes = match kind.as_str() {
        "put-over" => testing::forged_put(id, 666),
        "task-done" => testing::forged_task_done(id, 666),
        "del-ref" => testing::forged_del_ref(id),
        "hello" => testing::forged_hello(),
        "huge-length" => (u32::MAX).to_le_bytes().to_vec(),
        "long-promise" => {
            let mut b = (900u32 << 20).to_le_bytes().to_vec();
            b.extend_from_slice(b"only a few bytes");
            b
        }
        "garbage" => {
            let mut b = 10u32.to_le_bytes().to_vec();
            b.extend_from_slice(&[0xff; 10]);
            b
        }
        other => panic!("unknown attack {other}"),
    };
    testing::send_raw(&bytes).expect("the socket takes the bytes");
    loop {
        std::thread::park();
    }
}

/// Hostile task code: kills an actor it has no handle to, by id.
#[ray::remote]
fn forge_kill(actor_bits: u128) -> u64 {
    let id = testing::id_from_bits(actor_bits);
    let actor = ray::__private::testing::actor_id(id);
    testing::send_raw(&testing::forged_kill(actor)).unwrap();
    loop {
        std::thread::park();
    }
}

#[ray::remote]
fn wait_forever() -> u64 {
    loop {
        std::thread::park();
    }
}

#[ray::remote]
fn alloc_in_worker(size: u64) -> String {
    match testing::alloc(size) {
        Ok(region) => format!("allocated {region}"),
        Err(e) => format!("{e:?}"),
    }
}

#[ray::remote]
struct Counter {
    n: u64,
}

#[ray::remote]
impl Counter {
    fn new() -> Self {
        Counter { n: 0 }
    }
    fn add(&mut self, x: u64) -> u64 {
        self.n += x;
        self.n
    }
}

fn init(cpus: usize) {
    ray::init(ray::Config::default().num_cpus(cpus)).unwrap();
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

/// The attack ran in a worker: the worker was stopped, and the error says what it sent.
fn assert_refused(r: ray::Result<u64>, what: &str) {
    match r {
        Err(Error::WorkerDied { cause, .. }) => {
            assert!(cause.contains("breaking the protocol"), "{cause}");
            assert!(cause.contains(what), "{cause} should mention {what:?}");
        }
        other => panic!("expected the forging worker to be stopped, got {other:?}"),
    }
}

/// Runs one hostile task (no retries) and checks it was refused for `what`.
fn attack(kind: &str, target: u128, what: &str) {
    let r = forge::options()
        .max_retries(0)
        .remote(kind.to_string(), target);
    assert_refused(ray::get(&r), what);
    let t = Instant::now();
    assert_eq!(ray::get(&square::remote(3)).unwrap(), 9);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "other tasks still run"
    );
}

// ----- from outside: nothing to connect to -----------------------------------------------------

/// Socket inodes of the driver's open file descriptors.
fn own_socket_inodes() -> Vec<u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn the_node_has_no_socket_a_stranger_could_find_or_connect_to() {
    init(2);
    assert_eq!(ray::get(&square::remote(4)).unwrap(), 16);
    let ours = own_socket_inodes();
    assert!(
        !ours.is_empty(),
        "the driver talks to its workers over sockets"
    );
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let inode: u64 = cols[6].parse().unwrap();
        if !ours.contains(&inode) {
            continue;
        }
        let flags = u32::from_str_radix(cols[3], 16).unwrap();
        assert_eq!(flags & 0x10000, 0, "no listening socket: {line}");
        assert!(cols.len() < 8, "no named or abstract socket: {line}");
    }
    // A stranger, as nobody and as this user, tries every abstract socket and the driver's
    // inherited descriptors: it reaches nothing of ours.
    for uid in [Some(NOBODY), None] {
        let out = stranger(uid);
        assert!(out.contains("REACHED 0"), "{out}");
    }
    let workers = ray::__private::worker_pids().len();
    assert_eq!(ray::get(&square::remote(5)).unwrap(), 25);
    assert!(ray::__private::worker_pids().len() <= workers + 1);
    ray::shutdown();
}

/// Runs this binary as a stranger (as `uid`, or as this user): it connects to every abstract
/// Unix socket on the machine whose name mentions ray, and sends each a hello.
fn stranger(uid: Option<u32>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_driver", "--nocapture", "--test-threads=1"])
        .env(MODE, "stranger")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(uid) = uid {
        // SAFETY: only async-signal-safe calls between fork and exec; they drop privileges.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn stranger_main() {
    use std::os::linux::net::SocketAddrExt;
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let mut reached = 0;
    for line in table.lines().skip(1) {
        let Some(name) = line.split_whitespace().nth(7) else {
            continue;
        };
        let Some(abstract_name) = name.strip_prefix('@') else {
            continue;
        };
        if !abstract_name.contains("ray") {
            continue;
        }
        let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
        else {
            continue;
        };
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect_addr(&addr) {
            use std::io::Write;
            let _ = s.write_all(&testing::forged_hello());
            reached += 1;
        }
    }
    println!("REACHED {reached}");
}

// ----- from inside a worker: every message is checked against its sender ----------------------

#[test]
fn a_worker_cannot_put_over_an_existing_object() {
    init(2);
    let mine = ray::put(42u64).unwrap();
    attack(
        "put-over",
        testing::id_bits(mine.id()),
        "made by another process",
    );
    assert_eq!(
        ray::get(&mine).unwrap(),
        42,
        "the driver's object is intact"
    );
    ray::shutdown();
}

#[test]
fn a_worker_cannot_report_the_result_of_a_task_it_was_not_given() {
    init(3);
    let victim = wait_forever::remote();
    attack(
        "task-done",
        testing::id_bits(victim.id()),
        "which it was not given",
    );
    match ray::get_with_timeout(&victim, Duration::from_millis(300)) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("no forged value may arrive, got {other:?}"),
    }
    ray::shutdown();
}

#[test]
fn a_worker_cannot_drop_references_it_does_not_hold() {
    init(2);
    let mine = ray::put(7u64).unwrap();
    attack("del-ref", testing::id_bits(mine.id()), "does not hold");
    assert_eq!(ray::get(&mine).unwrap(), 7);
    ray::shutdown();
}

#[test]
fn a_worker_cannot_kill_an_actor_it_has_no_handle_to() {
    init(2);
    let c = Counter::remote();
    assert_eq!(ray::get(&c.add(1)).unwrap(), 1);
    let bits = testing::actor_bits(c.actor_id());
    let r = forge_kill::options().max_retries(0).remote(bits);
    assert_refused(ray::get(&r), "whose handle it does not hold");
    assert_eq!(ray::get(&c.add(1)).unwrap(), 2, "the actor lives on");
    ray::shutdown();
}

#[test]
fn a_second_hello_or_an_undecodable_frame_stops_the_worker() {
    init(2);
    attack("hello", 0, "a second hello");
    attack("garbage", 0, "does not decode");
    ray::shutdown();
}

#[test]
fn announced_lengths_cost_nothing_until_the_bytes_arrive() {
    init(2);
    let before = rss_mib();
    attack("huge-length", 0, "more than the");
    let r = forge::options()
        .max_retries(0)
        .remote("long-promise".to_string(), 0);
    // The node reads the 900 MiB length and waits for bytes that never come: it must not
    // reserve them. Watch its memory while the connection stays open.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert!(
            rss_mib() < before + 200,
            "memory grew from {before} to {} MiB",
            rss_mib()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ray::get_with_timeout(&r, Duration::from_millis(10)).is_err());
    assert_eq!(ray::get(&square::remote(6)).unwrap(), 36);
    ray::shutdown();
}

#[test]
fn allocations_larger_than_the_store_are_store_full_without_wrapping() {
    ray::init(
        ray::Config::default()
            .num_cpus(1)
            .object_store_memory(64 << 20),
    )
    .unwrap();
    let from_worker = ray::get(&alloc_in_worker::remote(u64::MAX)).unwrap();
    assert!(from_worker.contains("ObjectStoreFull"), "{from_worker}");
    match testing::alloc(u64::MAX - 4095) {
        Err(Error::ObjectStoreFull { requested, .. }) => assert_eq!(requested, u64::MAX - 4095),
        other => panic!("expected ObjectStoreFull, got {other:?}"),
    }
    let big = ray::put_slice(&vec![3u8; 32 << 20]).unwrap();
    let (used, ..) = ray::__private::store_stats().unwrap();
    assert!(
        (32 << 20..=64 << 20).contains(&used),
        "the store's count is sane: {used}"
    );
    assert_eq!(ray::get_slice(&big).unwrap()[12345], 3);
    ray::shutdown();
}

// ----- spilling ----------------------------------------------------------------------------

fn spill_config(store: u64) -> ray::Config {
    ray::Config::default()
        .num_cpus(1)
        .prestart_workers(0)
        .object_store_memory(store)
}

#[test]
fn a_spill_directory_others_can_write_is_refused_clearly() {
    let dir = scratch("open-spill-root");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    match ray::init(spill_config(16 << 20).object_spilling_directory(&dir)) {
        Err(Error::InvalidArgument { what, message }) => {
            assert!(what.contains("spilling directory"), "{what}");
            assert!(message.contains(dir.to_str().unwrap()), "{message}");
            assert!(message.contains("65534"), "names the owner: {message}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    ray::init(spill_config(16 << 20).object_spilling_directory(&dir)).unwrap();
    ray::shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spilled_objects_are_private_and_planted_links_are_never_followed() {
    let root = scratch("sticky-spill-root");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Another user prepares directories named as ours would be, full of links to a file of
    // ours, hoping we write through them.
    let precious = scratch("precious").join("file");
    std::fs::write(&precious, b"precious").unwrap();
    let plant = format!(
        "for i in 0 1 2 3; do d={root}/ray-rs-spill-{pid}-000000000000000$i; mkdir -p $d; \
         for n in $(seq 1 64); do ln -sf {precious} $d/1.0.$n; done; done",
        root = root.display(),
        pid = std::process::id(),
        precious = precious.display()
    );
    let planted = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            &plant,
        ])
        .status()
        .unwrap();
    assert!(planted.success());
    ray::init(spill_config(24 << 20).object_spilling_directory(&root)).unwrap();
    let objs: Vec<_> = (0..4u8)
        .map(|i| ray::put_slice(&vec![i; 8 << 20]).unwrap())
        .collect();
    let (_, _, spilled, _, dir) = ray::__private::store_stats().unwrap();
    assert!(spilled > 0, "something was spilled");
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o777 == 0o700);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(!files.is_empty());
    for f in &files {
        let m = std::fs::symlink_metadata(f.path()).unwrap();
        assert!(m.is_file(), "a real file, not a link");
        assert_eq!(m.mode() & 0o777, 0o600);
        let peek = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(f.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!peek.success(), "another user cannot read spilled data");
    }
    assert_eq!(std::fs::read(&precious).unwrap(), b"precious");
    for (i, r) in objs.iter().enumerate() {
        assert_eq!(ray::get_slice(r).unwrap()[77], i as u8, "restored intact");
    }
    ray::shutdown();
    assert!(!dir.exists(), "the spill directory is removed at shutdown");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_spill_file_changed_on_disk_is_lost_with_the_reason_not_a_crash() {
    let root = scratch("tamper-spill-root");
    ray::init(spill_config(24 << 20).object_spilling_directory(&root)).unwrap();
    let objs: Vec<_> = (0..4u8)
        .map(|i| ray::put_slice(&vec![i; 8 << 20]).unwrap())
        .collect();
    let (_, _, _, _, dir) = ray::__private::store_stats().unwrap();
    let victim = std::fs::read_dir(&dir).unwrap().flatten().next().unwrap();
    let victim_name = victim.file_name().into_string().unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(victim.path())
            .unwrap();
        f.write_all(&vec![0u8; 4 << 20]).unwrap();
    }
    let mut lost = 0;
    for r in &objs {
        match ray::get_slice(r) {
            Ok(v) => assert_eq!(v.len(), 8 << 20),
            Err(Error::ObjectLost { id, reason }) => {
                assert_eq!(id.to_string(), victim_name);
                assert!(reason.contains("changed on disk"), "{reason}");
                lost += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(lost, 1, "only the tampered object is lost");
    assert_eq!(ray::get(&square::remote(7)).unwrap(), 49);
    ray::shutdown();
    let _ = std::fs::remove_dir_all(&root);
}

// ----- freeing, replies, timeouts ----------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Link {
    n: u64,
    prev: Option<ray::ObjectRef<Link>>,
}

fn chain(len: u64) -> ray::ObjectRef<Link> {
    let mut head = ray::put(Link { n: 0, prev: None }).unwrap();
    for n in 1..len {
        head = ray::put(Link {
            n,
            prev: Some(head),
        })
        .unwrap();
    }
    head
}

#[ray::remote]
fn build_and_drop_chain(len: u64) -> u64 {
    let head = chain(len);
    ray::get(&head).unwrap().n
}

#[test]
fn a_chain_of_a_million_objects_frees_in_the_driver_and_in_a_worker() {
    init(1);
    let (base, _) = testing::objects().unwrap();
    let head = chain(1_000_000);
    assert_eq!(testing::objects().unwrap().0, base + 1_000_000);
    drop(head);
    assert_eq!(testing::objects().unwrap().0, base, "all freed");
    let last = ray::get(&build_and_drop_chain::remote(1_000_000)).unwrap();
    assert_eq!(last, 999_999);
    assert!(
        eventually(Duration::from_secs(60), || testing::objects().unwrap().0
            <= base + 1),
        "the worker's chain is freed too: {:?}",
        testing::objects()
    );
    ray::shutdown();
}

#[ray::remote]
fn total_len(refs: Vec<ray::ObjectRef<Vec<u8>>>) -> u64 {
    let values = ray::get_all(&refs).unwrap();
    values.iter().map(|v| v.len() as u64).sum()
}

#[test]
fn a_worker_gets_three_gib_of_small_objects_in_one_call() {
    init(1);
    let each = 90 * 1024;
    let count = (3u64 << 30) / each as u64;
    let refs: Vec<_> = (0..count)
        .map(|i| ray::put(vec![(i % 251) as u8; each]).unwrap())
        .collect();
    let r = total_len::options().max_retries(0).remote(refs.clone());
    assert_eq!(ray::get(&r).unwrap(), count * each as u64);
    drop(refs);
    ray::shutdown();
}

#[ray::remote]
fn get_forever(r: ray::ObjectRef<u64>) -> u64 {
    let (ready, _) = ray::wait(std::slice::from_ref(&r), 1, Some(Duration::MAX));
    assert_eq!(ready.len(), 1);
    ray::get_with_timeout(&r, Duration::MAX).unwrap()
}

#[ray::remote]
fn later(x: u64) -> u64 {
    x + 1
}

#[test]
fn duration_max_means_forever_in_the_driver_and_in_workers() {
    init(3);
    let slow = later::remote(41);
    assert_eq!(ray::get_with_timeout(&slow, Duration::MAX).unwrap(), 42);
    let (ready, _) = ray::wait(std::slice::from_ref(&slow), 1, Some(Duration::MAX));
    assert_eq!(ready.len(), 1);
    assert_eq!(ray::get(&get_forever::remote(later::remote(1))).unwrap(), 2);
    ray::shutdown();
}

// ----- limits and what the runtime prints ----------------------------------------------------

#[test]
fn init_raises_the_open_files_limit_to_the_hard_limit() {
    init(1);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert_eq!(lim.rlim_cur, lim.rlim_max);
    ray::shutdown();
}

fn child(mode: &str, fd_limit: Option<u64>) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_driver", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env_remove("RUST_LOG")
        .env_remove("RAY_RS_LOG");
    if let Some(n) = fd_limit {
        // SAFETY: setrlimit is async-signal-safe; it lowers this child's own limit.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.output().unwrap()
}

#[test]
fn refused_messages_are_printed_even_without_a_tracing_subscriber() {
    let out = child("forge", None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[ray WARN]"), "{stderr}");
    assert!(stderr.contains("closing its connection"), "{stderr}");
    assert!(stderr.contains("made by another process"), "{stderr}");
}

#[test]
fn running_out_of_file_descriptors_reads_cleanly() {
    let out = child("many-actors", Some(48));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ACTOR ERROR"), "{stdout}");
    assert!(stdout.contains("ulimit -n"), "{stdout}");
}

/// A memory cgroup of our own (v1 `memory` controller or v2), with a limit.
struct MemCgroup(std::path::PathBuf);

impl MemCgroup {
    fn new(limit: u64) -> MemCgroup {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        for line in cgroups.lines() {
            let parts: Vec<&str> = line.splitn(3, ':').collect();
            let (controllers, path) = (parts[1], parts[2]);
            let (base, limit_file) = if controllers.split(',').any(|c| c == "memory") {
                (
                    format!("/sys/fs/cgroup/memory{path}"),
                    "memory.limit_in_bytes",
                )
            } else if controllers.is_empty()
                && std::path::Path::new(&format!("/sys/fs/cgroup{path}/memory.max")).exists()
            {
                (format!("/sys/fs/cgroup{path}"), "memory.max")
            } else {
                continue;
            };
            let dir =
                std::path::PathBuf::from(base).join(format!("ray-oom-{}", std::process::id()));
            let _ = std::fs::create_dir(&dir);
            std::fs::write(dir.join(limit_file), limit.to_string())
                .unwrap_or_else(|e| panic!("cannot limit {}: {e}", dir.display()));
            return MemCgroup(dir);
        }
        panic!("no writable memory cgroup on this machine: {cgroups}");
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = eventually(Duration::from_secs(10), || {
            std::fs::remove_dir(&self.0).is_ok()
        });
    }
}

#[ray::remote]
fn hog(cgroup: String, mib: usize) -> usize {
    std::fs::write(
        format!("{cgroup}/cgroup.procs"),
        std::process::id().to_string(),
    )
    .unwrap();
    let mut v: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        v.push(vec![1u8; 1 << 20]);
    }
    v.len()
}

#[test]
fn a_worker_killed_by_the_oom_killer_is_reported_as_such() {
    let cg = MemCgroup::new(128 << 20);
    init(1);
    let r = hog::options()
        .max_retries(0)
        .remote(cg.0.display().to_string(), 1024);
    match ray::get(&r) {
        Err(Error::WorkerDied {
            function, cause, ..
        }) => {
            assert!(function.ends_with("hog"), "{function}");
            assert!(cause.contains("SIGKILL"), "{cause}");
            assert!(cause.contains("out-of-memory"), "{cause}");
            assert!(cause.contains("MiB"), "says how much memory: {cause}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    ray::shutdown();
}

/// The child driver. A no-op unless `RAY_SECURITY_CHILD` is set.
#[test]
fn child_driver() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    match mode.as_str() {
        "stranger" => stranger_main(),
        "forge" => {
            init(2);
            let mine = ray::put(1u64).unwrap();
            let r = forge::options()
                .max_retries(0)
                .remote("put-over".to_string(), testing::id_bits(mine.id()));
            assert!(ray::get(&r).is_err());
            ray::shutdown();
        }
        "many-actors" => {
            ray::init(ray::Config::default().num_cpus(1).prestart_workers(0)).unwrap();
            let actors: Vec<_> = (0..40).map(|_| Counter::remote()).collect();
            let mut errors = Vec::new();
            for a in &actors {
                if let Err(e) = ray::get(&a.add(1)) {
                    errors.push(e.to_string());
                }
            }
            match errors.first() {
                Some(e) => println!("ACTOR ERROR {e}"),
                None => println!("ALL ACTORS STARTED"),
            }
            drop(actors);
            ray::shutdown();
        }
        other => panic!("unknown mode {other}"),
    }
}
