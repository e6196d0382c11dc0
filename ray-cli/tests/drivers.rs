//! Drivers on a real cluster: `ray-rs` nodes with etcd, and this test binary run again as the
//! driver (`RAY_ADDRESS`, `RAY_RS_AUTH_TOKEN`), its executable shipped to the nodes by hash.

mod common;

use common::*;

#[ray::remote]
fn square(x: u64) -> u64 {
    println!("squaring {x}");
    x * x
}

#[ray::remote]
fn total(v: Vec<u8>) -> u64 {
    v.iter().map(|b| *b as u64).sum()
}

#[ray::remote]
fn node_pid() -> u32 {
    std::process::id()
}

#[ray::remote]
fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[ray::remote]
fn explode() -> u64 {
    panic!("blew up on purpose")
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

/// An actor that prints a lot when told to.
#[ray::remote]
struct Chatty;

#[ray::remote]
impl Chatty {
    fn new() -> Self {
        Chatty
    }
    fn say(&self, what: String) -> u64 {
        println!("{what}");
        1
    }
    /// Once `go` exists in `signals`, prints `lines` lines of about 1 KiB, then writes `spoke`.
    fn speak(&self, signals: String, lines: u64) -> u64 {
        use std::io::Write;
        let signals = std::path::PathBuf::from(signals);
        wait_for_signal(&signals, "go");
        let pad = "x".repeat(1000);
        let mut out = std::io::stdout().lock();
        for i in 0..lines {
            writeln!(out, "SPEAK {i} {pad}").unwrap();
        }
        out.flush().unwrap();
        std::fs::write(signals.join("spoke"), b"").unwrap();
        lines
    }
}

/// Lines `Chatty::speak` prints in the `deaf` driver: 64 MiB, four times what a node keeps
/// waiting for a driver, far more than the socket buffers between them hold.
const SPOKEN: u64 = 64 << 10;

#[test]
fn a_driver_runs_tasks_actors_and_objects_on_a_cluster_node() {
    let dir = NodeDir::new("drivers-head");
    let head = Head::start(&dir, &["--num-cpus", "2", "--resources", "ssd=1"]);
    let token = dir.token();
    let out = driver("basic", &head.address, &token);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("DRIVER OK"), "{stdout}");
    assert!(
        stdout.contains("(square pid=") && stdout.contains("squaring 7"),
        "worker output reaches the driver with its prefix: {stdout}"
    );
    // The executable was shipped once, and is reused by the next driver of the same build.
    let cached: Vec<_> = std::fs::read_dir(dir.path.join("binaries"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let out = driver("basic", &head.address, &token);
    assert!(out.status.success());
}

#[test]
fn a_wrong_token_is_refused_and_runs_nothing() {
    let dir = NodeDir::new("drivers-token");
    let head = Head::start(&dir, &["--num-cpus", "1"]);
    let wrong = "00".repeat(32);
    let out = driver("basic", &head.address, &wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wrong cluster token"), "{stderr}");
    assert!(!stderr.contains(&wrong[..16]), "the token is never printed");
    assert!(
        !dir.path.join("binaries").exists()
            || std::fs::read_dir(dir.path.join("binaries"))
                .unwrap()
                .count()
                == 0,
        "nothing was shipped"
    );
}

#[test]
fn a_missing_token_is_refused_and_runs_nothing() {
    let dir = NodeDir::new("drivers-no-token");
    let head = Head::start(&dir, &["--num-cpus", "1"]);
    let out = driver_with_token("basic", &head.address, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "init failed: {stderr}");
    assert!(stderr.contains("no cluster token"), "{stderr}");
    assert!(stderr.contains("RAY_RS_AUTH_TOKEN"), "says how: {stderr}");
    // An empty one is no token either.
    let out = driver_with_token("basic", &head.address, Some(""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "init failed: {stderr}");
    assert!(stderr.contains("no cluster token"), "{stderr}");
    assert!(
        !dir.path.join("binaries").exists()
            || std::fs::read_dir(dir.path.join("binaries"))
                .unwrap()
                .count()
                == 0,
        "nothing was shipped"
    );
}

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    match mode.as_str() {
        "basic" => {
            if let Err(e) = ray::init(ray::Config::default()) {
                eprintln!("INIT FAILED: {e}");
                std::process::exit(3);
            }
            assert_eq!(ray::get(&square::remote(7)).unwrap(), 49);
            let refs: Vec<_> = (0..20u64).map(square::remote).collect();
            let all = ray::get_all(&refs).unwrap();
            assert_eq!(
                all.iter().sum::<u64>(),
                (0..20u64).map(|x| x * x).sum::<u64>()
            );
            let c = Counter::remote();
            let calls: Vec<_> = (1..=300u64).map(|i| c.add(i)).collect();
            let got = ray::get_all(&calls).unwrap();
            let want: Vec<u64> = (1..=300u64).map(|i| i * (i + 1) / 2).collect();
            assert_eq!(got, want, "300 calls in order");
            let big = ray::put_slice(&vec![3u8; 64 << 20]).unwrap();
            assert_eq!(
                ray::get(&total::remote(&big)).unwrap(),
                3 * (64 << 20) as u64
            );
            let back = ray::get_slice(&big).unwrap();
            assert!(back.iter().all(|b| *b == 3) && back.len() == 64 << 20);
            let pid = ray::get(&node_pid::remote()).unwrap();
            assert_ne!(pid, std::process::id(), "tasks run on the node");
            ray::shutdown();
            println!("DRIVER OK");
        }
        "state" => {
            ray::init(ray::Config::default()).expect("joins");
            let refs: Vec<_> = (0..10u64).map(square::remote).collect();
            ray::get_all(&refs).unwrap();
            assert!(ray::get(&explode::remote()).is_err());
            let c = Counter::remote();
            assert_eq!(ray::get(&c.add(2)).unwrap(), 2);
            ray::shutdown();
            println!("STATE DRIVER OK");
        }
        "threads" => {
            let signals = std::path::PathBuf::from(std::env::var(SIGNALS).expect("the signals"));
            ray::init(ray::Config::default()).expect("joins");
            std::fs::write(signals.join("joined"), b"").unwrap();
            // A long synchronous get, an awaited ref (no thread blocks on its reply), and four
            // threads of synchronous calls, all at once: every reply reaches its caller,
            // whichever thread reads the connection when it comes.
            let slow = sleepy::remote(1500);
            let waiter = std::thread::spawn(move || ray::get(&slow).unwrap());
            let later = sleepy::remote(300);
            let awaited = std::thread::spawn(move || block_on(later.into_future()).unwrap());
            let callers: Vec<_> = (0..4u64)
                .map(|t| {
                    std::thread::spawn(move || {
                        let c = Counter::remote();
                        for i in 1..=100u64 {
                            assert_eq!(ray::get(&c.add(1)).unwrap(), i, "in order");
                            let x = t * 1000 + i;
                            assert_eq!(ray::get(&square::remote(x)).unwrap(), x * x);
                        }
                    })
                })
                .collect();
            for c in callers {
                c.join().unwrap();
            }
            assert_eq!(waiter.join().unwrap(), 1500);
            assert_eq!(awaited.join().unwrap(), 300);
            // After a synchronous call nobody reads until the next one; worker output that
            // comes meanwhile must still be printed without another call.
            let c = Chatty::remote();
            assert_eq!(ray::get(&c.say("BEFORE IDLE")).unwrap(), 1);
            let _said = c.say("WHILE IDLE");
            wait_for_signal(&signals, "seen");
            // Connection lost: a wait does not hang, and every ref counts as ready (failed).
            let pending = sleepy::remote(60_000);
            std::fs::write(signals.join("waiting"), b"").unwrap();
            let (ready, _) = ray::wait(std::slice::from_ref(&pending), 1, None);
            println!("READY AFTER LOSS: {}", ready.len());
            println!("GET AFTER LOSS: {}", ray::get(&pending).unwrap_err());
            println!("THREADS OK");
        }
        "stall" => {
            let signals = std::path::PathBuf::from(std::env::var(SIGNALS).expect("the signals"));
            ray::init(ray::Config::default()).expect("joins");
            assert_eq!(ray::get(&square::remote(3)).unwrap(), 9);
            std::fs::write(signals.join("joined"), b"").unwrap();
            wait_for_signal(&signals, "paused");
            // 256 MiB: far more than the sockets between here and the paused node hold.
            let start = std::time::Instant::now();
            let put = ray::put_slice(&vec![5u8; 256 << 20]).and_then(|r| ray::get_slice(&r));
            println!(
                "PUT FAILED after {} s: {}",
                start.elapsed().as_secs(),
                put.unwrap_err()
            );
            let start = std::time::Instant::now();
            let later = ray::get(&square::remote(4)).unwrap_err();
            println!(
                "LATER CALL FAILED after {} s: {later}",
                start.elapsed().as_secs()
            );
            ray::shutdown();
            println!("STALL OK");
        }
        "deaf" => {
            let signals = std::path::PathBuf::from(std::env::var(SIGNALS).expect("the signals"));
            ray::init(ray::Config::default()).expect("joins");
            let c = Chatty::remote();
            assert_eq!(ray::get(&c.say("BEFORE")).unwrap(), 1);
            let spoke = c.speak(signals.to_str().unwrap(), SPOKEN);
            std::fs::write(signals.join("joined"), b"").unwrap();
            // The test stops this process here until the actor has spoken.
            assert_eq!(ray::get(&spoke).unwrap(), SPOKEN);
            assert_eq!(ray::get(&c.say("AFTER")).unwrap(), 1);
            // Lines travel apart from replies: wait until the test has seen the last one.
            wait_for_signal(&signals, "seen");
            ray::shutdown();
            println!("DEAF OK");
        }
        "blocked" => {
            let (_, big) = stop_reading();
            let gets: Vec<_> = (0..GETS)
                .map(|_| {
                    let big = big.clone();
                    std::thread::spawn(move || {
                        let v = ray::get_slice(&big).unwrap();
                        v.len() == 16 << 20 && v.iter().all(|b| *b == 9)
                    })
                })
                .collect();
            for g in gets {
                assert!(g.join().unwrap(), "a get returned other bytes");
            }
            ray::shutdown();
            println!("BLOCKED OK");
        }
        "stuck" => {
            // As "blocked", but once its node has stopped reading it, this driver also writes
            // far more than the sockets hold: the write stalls, and its error must say that
            // the driver's own stdout is the cause.
            let (signals, big) = stop_reading();
            for _ in 0..GETS {
                let big = big.clone();
                std::thread::spawn(move || ray::get_slice(&big).map(|v| v.len()));
            }
            wait_for_signal(&signals, "not-reading");
            // 256 MiB to a node that no longer reads this driver.
            let put = ray::put_slice(&vec![5u8; 256 << 20]).and_then(|r| ray::get_slice(&r));
            // stdout is blocked: the verdict goes to stderr, and exit does not wait for stdout.
            eprintln!("STUCK PUT FAILED: {}", put.unwrap_err());
            std::process::exit(0);
        }
        other => panic!("unknown mode {other}"),
    }
}

/// Polls `fut` to its end on this thread (parked between polls; woken by its waker).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Where a driver and its test signal each other (files in a directory).
const SIGNALS: &str = "RAY_TEST_SIGNALS";

/// Waits (in a driver) until its test has written `name` into `signals`.
fn wait_for_signal(signals: &std::path::Path, name: &str) {
    let deadline = std::time::Instant::now() + WAIT * 2;
    while !signals.join(name).exists() {
        assert!(std::time::Instant::now() < deadline, "no {name} signal");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// In a driver whose test does not read its stdout: joins, stores 16 MiB of 9s, writes
/// `joined`, then has an actor print 4 MiB, which the thread reading the node's messages
/// blocks writing to this process's stdout, so this driver stops reading its connection while
/// its other threads go on asking. Returns once all of it is on its way (all but the last
/// 64 KiB, at most, already queued at the node, ahead of any later reply).
fn stop_reading() -> (std::path::PathBuf, ray::ObjectRef<Vec<u8>>) {
    let signals = std::path::PathBuf::from(std::env::var(SIGNALS).expect("the signals"));
    ray::init(ray::Config::default()).expect("joins");
    let big = ray::put_slice(&vec![9u8; 16 << 20]).unwrap();
    let c = Chatty::remote();
    assert_eq!(ray::get(&c.say("BEFORE")).unwrap(), 1);
    std::fs::write(signals.join("joined"), b"").unwrap();
    std::fs::write(signals.join("go"), b"").unwrap();
    let _spoke = c.speak(signals.to_str().unwrap(), 4096);
    wait_for_signal(&signals, "spoke");
    (signals, big)
}

/// A head started with `head_args`, and this binary run as a driver in `mode` against it,
/// once it has written `joined` into the signals directory (returned too).
fn joined_driver(
    name: &str,
    mode: &str,
    head_args: &[&str],
) -> (NodeDir, Head, std::path::PathBuf, std::process::Child) {
    let dir = NodeDir::new(name);
    let head = Head::start(&dir, head_args);
    let signals = dir.path.join("signals");
    std::fs::create_dir_all(&signals).unwrap();
    let child = spawn_driver(mode, &head.address, &dir.token(), &[(SIGNALS, &signals)]);
    wait_for("the driver to join", || {
        signals.join("joined").exists().then_some(())
    });
    (dir, head, signals, child)
}

/// Waits up to `limit` for `child` to exit, and SIGKILLs it if it has not (its pipes then
/// end, so their readers return). `None` if it had to be killed.
fn exit_or_kill(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    let status = rx.recv_timeout(limit).ok().and_then(|s| s.ok());
    if status.is_none() {
        // SAFETY: signals our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    status
}

/// Sends SIGKILL to a process when dropped, unless it was let go: a test that fails while its
/// driver is stopped does not leave it stopped.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn a_driver_gets_every_reply_on_any_thread_and_worker_output_between_calls() {
    use std::io::BufRead;
    let (_dir, head, signals, mut child) =
        joined_driver("drivers-threads", "threads", &["--num-cpus", "2"]);
    let mut guard = KillOnDrop(Some(child.id() as i32));
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let seen = signals.join("seen");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stdout.split(b'\n') {
            let line = String::from_utf8_lossy(&line.unwrap()).into_owned();
            if line.contains("(Chatty pid=") && line.ends_with(") WHILE IDLE") {
                std::fs::write(&seen, b"").unwrap();
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    wait_for("the driver to wait on a long task", || {
        signals.join("waiting").exists().then_some(())
    });
    // The head goes away while the driver waits.
    let mut head = head;
    head.child.kill().unwrap();
    let status = exit_or_kill(child, WAIT * 2);
    guard.0 = None;
    let stdout = reader.join().unwrap();
    let stderr = errors.join().unwrap();
    assert!(
        status.is_some() && stdout.contains("THREADS OK"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.matches("squaring ").count(),
        400,
        "every task's output line came"
    );
    assert!(stdout.contains("READY AFTER LOSS: 1"), "{stdout}");
    assert!(
        stdout.contains("GET AFTER LOSS: ") && stdout.contains("the connection was lost"),
        "{stdout}"
    );
}

#[test]
fn a_driver_whose_node_stops_reading_fails_its_calls_instead_of_hanging() {
    // A long lease, so the paused head is not declared dead (and does not exit) meanwhile.
    let head_args = ["--num-cpus", "1", "--lease-ttl", "600"];
    let (_dir, head, signals, child) = joined_driver("drivers-stall", "stall", &head_args);
    let daemon = head.child.id() as i32;
    // SAFETY: signals our own child, the head's daemon (its etcd, a process of its own, runs on).
    unsafe { libc::kill(daemon, libc::SIGSTOP) };
    std::fs::write(signals.join("paused"), b"").unwrap();
    // The driver gives up once the node accepted under 64 KiB in 60 s; allow for a slow machine.
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let ended = rx.recv_timeout(std::time::Duration::from_secs(180));
    let hung = ended.is_err();
    if hung {
        // SAFETY: signals our own child, the driver; its output then arrives below.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // SAFETY: as above.
    unsafe { libc::kill(daemon, libc::SIGCONT) };
    let out = ended.or_else(|_| rx.recv()).unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !hung,
        "the driver hung on its paused node:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("STALL OK"), "{stdout}\n{stderr}");
    let put = stdout
        .lines()
        .find_map(|l| l.split_once("PUT FAILED after ").map(|(_, r)| r))
        .unwrap();
    let secs: u64 = put.split(' ').next().unwrap().parse().unwrap();
    assert!((60..170).contains(&secs), "{put}");
    let why = "writing to the node manager: the peer accepted under 64 KiB in 60 s";
    assert!(put.contains(why), "{put}");
    assert!(
        stderr.contains(&format!("lost the connection to the cluster: {why}")),
        "one error line says it as it happens: {stderr}"
    );
    // Every later call fails at once, saying why.
    let later = stdout
        .lines()
        .find_map(|l| l.split_once("LATER CALL FAILED after ").map(|(_, r)| r))
        .unwrap();
    assert!(later.starts_with("0 s: "), "{later}");
    assert!(later.contains(why), "{later}");
}

#[test]
fn a_driver_that_stops_reading_misses_worker_output_past_the_backlog_and_is_told_how_much() {
    use std::io::BufRead;
    let (_dir, head, signals, mut child) =
        joined_driver("drivers-deaf", "deaf", &["--num-cpus", "1"]);
    let pid = child.id() as i32;
    let mut guard = KillOnDrop(Some(pid));
    // The driver's output, read as it comes: SPEAK lines counted, the rest kept.
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let seen = signals.join("seen");
    let reader = std::thread::spawn(move || {
        let (mut spoken, mut rest) = (0u64, String::new());
        for line in stdout.split(b'\n') {
            let line = String::from_utf8_lossy(&line.unwrap()).into_owned();
            if line.contains(") SPEAK ") {
                spoken += 1;
            } else {
                if line.contains("(Chatty pid=") && line.ends_with(") AFTER") {
                    std::fs::write(&seen, b"").unwrap();
                }
                rest.push_str(&line);
                rest.push('\n');
            }
        }
        (spoken, rest)
    });
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let head_rss = || anon_memory(head.child.id());
    // SAFETY: signals our own child, the driver.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let rss_before = head_rss();
    std::fs::write(signals.join("go"), b"").unwrap();
    wait_for("the actor to speak", || {
        signals.join("spoke").exists().then_some(())
    });
    let rss_stopped = head_rss();
    eprintln!(
        "the head's heap: {} KiB, then {} KiB",
        rss_before >> 10,
        rss_stopped >> 10
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let status = exit_or_kill(child, WAIT * 2);
    guard.0 = None;
    let (spoken, stdout) = reader.join().unwrap();
    let stderr = errors.join().unwrap();
    assert!(
        status.is_some_and(|s| s.success()) && stdout.contains("DEAF OK"),
        "{stdout}\n{stderr}"
    );
    // Every line arrived or is counted in a notice; some were left out.
    let left_out: u64 = stderr
        .lines()
        .filter_map(|l| l.split_once("[ray WARN] ").map(|(_, r)| r))
        .filter_map(|r| {
            r.split_once(" lines (")
                .map(|(n, _)| n.parse::<u64>().unwrap())
        })
        .sum();
    assert!(
        left_out > 0,
        "nothing was left out ({spoken} lines arrived): {stderr}"
    );
    assert_eq!(spoken + left_out, SPOKEN, "{stderr}");
    assert!(
        head.said("reads slower than its workers print"),
        "the head warned"
    );
    assert!(
        stderr.contains("of worker output were not sent to this driver while it was not reading"),
        "{stderr}"
    );
    // What waited for the stopped driver stayed near the backlog (16 MiB), not all 48 MiB.
    let grew = rss_stopped.saturating_sub(rss_before);
    assert!(
        grew < 48 << 20,
        "the head grew by {} MiB while its driver was stopped",
        grew >> 20
    );
}

/// Threads of the `blocked` driver, each getting the same 16 MiB object: 512 MiB of replies.
const GETS: usize = 32;

/// Anonymous memory of a process (its heap: not the store's shared memory), in bytes.
fn anon_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .unwrap();
    kib.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .unwrap()
        << 10
}

#[test]
fn a_driver_that_asks_without_reading_makes_its_node_stop_reading_it_not_queue_replies() {
    let (_dir, head, _, mut child) =
        joined_driver("drivers-blocked", "blocked", &["--num-cpus", "1"]);
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let before = anon_memory(head.child.id());
    // Its stdout is not read, so it stops reading; its replies pile up at the node until the
    // node stops reading its requests and says so.
    wait_for("the head to say its driver is not reading", || {
        head.said("its next request is not read until it reads")
            .then_some(())
    });
    let held = anon_memory(head.child.id()).saturating_sub(before);
    eprintln!("the head grew by {} MiB", held >> 20);
    let stdout = child.stdout.take().unwrap();
    let output = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let status = exit_or_kill(child, WAIT * 2);
    let (stdout, stderr) = (output.join().unwrap(), errors.join().unwrap());
    assert!(
        status.is_some_and(|s| s.success()) && stdout.contains("BLOCKED OK"),
        "every get completes once the driver reads again: {stderr}"
    );
    assert!(
        held < 256 << 20,
        "the head held {} MiB for a driver that did not read ({} MiB asked)",
        held >> 20,
        (GETS * 16) as u64
    );
}

#[test]
fn a_driver_that_stops_reading_and_keeps_writing_is_told_its_own_stdout_is_the_cause() {
    let (_dir, head, signals, mut child) =
        joined_driver("drivers-stuck", "stuck", &["--num-cpus", "1"]);
    let _kill = KillOnDrop(Some(child.id() as i32));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(std::io::read_to_string(stderr).unwrap()));
    wait_for("the head to say its driver is not reading", || {
        head.said("its next request is not read until it reads")
            .then_some(())
    });
    std::fs::write(signals.join("not-reading"), b"").unwrap();
    // The driver's write gives up after 60 s without progress (`SEND_STALL`), then it exits;
    // its stdout is never read here.
    let errors = rx
        .recv_timeout(std::time::Duration::from_secs(60) + WAIT * 2)
        .expect("the driver's write gave up and it exited");
    let failed = errors
        .lines()
        .find(|l| l.contains("STUCK PUT FAILED"))
        .unwrap_or_else(|| panic!("the put failed and said why: {errors}"));
    assert!(
        failed.contains("the peer accepted under 64 KiB in 60 s")
            && failed.contains("this driver stopped reading the node first")
            && failed.contains("writing worker output to this program's stdout")
            && failed.contains("Read the program's stdout"),
        "{failed}"
    );
}

#[test]
fn ray_rs_lists_summarizes_and_writes_a_timeline_of_what_a_cluster_ran() {
    let dir = NodeDir::new("drivers-state");
    let head = Head::start(&dir, &["--num-cpus", "2"]);
    let token = dir.token();
    let out = driver("state", &head.address, &token);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("STATE DRIVER OK"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = ["--address", head.address.as_str(), "--temp-dir", dir.arg()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&at);
        ray_rs(&all, Some(&token), &[])
    };
    let json = |args: &[&str]| ray_rs_json(args, &head.address, &dir, &token);

    let tasks = json(&["list", "tasks", "--limit", "1000"]);
    let tasks = tasks.as_array().unwrap();
    let squares = tasks
        .iter()
        .filter(|t| t["name"].as_str().unwrap_or("").ends_with("square"))
        .filter(|t| t["state"] == "FINISHED")
        .count();
    assert_eq!(squares, 10, "{tasks:?}");
    let failed = json(&["list", "tasks", "--filter", "state=FAILED"]);
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("blew up on purpose"),
        "{failed:?}"
    );
    let actors = json(&["list", "actors"]);
    assert!(
        actors
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["class_name"].as_str().unwrap_or("").contains("Counter")),
        "{actors}"
    );
    let nodes = json(&["list", "nodes"]);
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    let summary = json(&["summary", "tasks"]);
    assert!(summary["total"].as_u64().unwrap() >= 12, "{summary}");

    // A table by default; a bad filter names the keys that exist.
    let table = run(&["list", "tasks"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("TASK_ID"), "{text}");
    let bad = run(&["list", "tasks", "--filter", "colour=red"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("colour") && err.contains("state"), "{err}");
    let bad = run(&["list", "gizmos"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected one of nodes"));

    // The timeline: Chrome trace events, one complete event per finished call.
    let file = dir.path.with_extension("trace.json");
    let out = run(&["timeline", "-o", file.to_str().unwrap()]);
    assert!(out.status.success());
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).expect("trace JSON");
    let events = trace
        .as_array()
        .or_else(|| trace["traceEvents"].as_array())
        .expect("a list of events")
        .clone();
    let complete = events.iter().filter(|e| e["ph"] == "X").count();
    assert!(complete >= 12, "{complete} complete events");
    let _ = std::fs::remove_file(&file);
}
