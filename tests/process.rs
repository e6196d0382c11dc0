//! Process model: worker output reaches the driver with Ray's prefix, and no worker outlives
//! its driver however the driver ends. Each case runs a child driver: this test binary again,
//! running only `child_driver` with `RAY_TEST_CHILD` set.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

const MODE: &str = "RAY_TEST_CHILD";

#[ray::remote]
fn say_hello(i: u32) -> u32 {
    println!("hello from task {i}");
    eprintln!("task {i} on stderr");
    std::process::id()
}

#[ray::remote]
fn chatter(task: u32, lines: u32) -> u32 {
    let filler = "x".repeat(300);
    for i in 0..lines {
        println!("LINE {task} {i} {filler} END");
    }
    lines
}

#[ray::remote]
struct Printer {}

#[ray::remote]
impl Printer {
    fn new() -> Self {
        println!("printer constructed");
        Printer {}
    }
    fn print(&self, msg: String) -> u32 {
        println!("printer says {msg}");
        std::process::id()
    }
}

#[ray::remote(max_retries = 0)]
fn explode(code: u32) -> u32 {
    if code > 0 {
        panic!("exploded with code {code}");
    }
    code
}

#[ray::remote]
fn sleeper() -> u32 {
    std::thread::sleep(Duration::from_secs(600));
    0
}

fn print_worker_pids() {
    let mut pids = ray::__private::worker_pids();
    pids.sort();
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    println!("WORKER_PIDS {}", list.join(" "));
}

/// The child driver. A no-op unless `RAY_TEST_CHILD` is set.
#[test]
fn child_driver() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    match mode.as_str() {
        "logs" => {
            let pid = ray::get(&say_hello::remote(7)).unwrap();
            println!("TASK_PID {pid}");
            let p = Printer::remote();
            let ppid = ray::get(&p.print("hi".to_string())).unwrap();
            println!("ACTOR_PID {ppid}");
            let refs: Vec<_> = (0..4).map(|t| chatter::remote(t, 300)).collect();
            ray::get_all(&refs).unwrap();
            ray::shutdown();
            println!("DRIVER_DONE");
        }
        "panic_output" => {
            let err = ray::get(&explode::remote(7)).unwrap_err();
            println!("ERROR {err}");
            ray::shutdown();
            println!("DRIVER_DONE");
        }
        other => {
            // Busy workers: a task that never ends, and an actor.
            let _busy = sleeper::remote();
            let p = Printer::remote();
            ray::get(&p.print("x".to_string())).unwrap();
            assert!(ray::__private::worker_pids().len() >= 3);
            print_worker_pids();
            match other {
                "return" => {} // the test function returns without calling shutdown
                "panic" => panic!("driver panics on purpose"),
                // SAFETY: ends this process at once, like a crash, without any cleanup.
                "exit" => unsafe { libc::_exit(0) },
                "hang" => std::thread::sleep(Duration::from_secs(600)),
                m => panic!("unknown mode {m}"),
            }
        }
    }
}

fn child(mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_driver", "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_task_panic_prints_one_prefixed_line_naming_the_place() {
    let out = child("panic_output").wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("DRIVER_DONE"), "{stdout}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("(explode pid="))
        .collect();
    assert!(
        lines[0].ends_with(") panicked at tests/process.rs:48:9: exploded with code 7"),
        "the panic is one line, at its place: {lines:?}"
    );
    assert!(
        lines[1].ends_with(
            ") note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
        ),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 2, "nothing else, no blank line: {lines:?}");
    assert!(!stderr.contains("<unnamed>"), "{stderr}");
    assert!(
        stdout.contains("failed in worker pid") && stdout.contains("exploded with code 7"),
        "{stdout}"
    );
}

/// The value after `key` on the line that holds it. The key need not start its line: libtest's
/// own `test child_driver ... ` has no newline, and the driver's first line follows it when it
/// is printed before any worker's (a race of the log forwarder against `ray::get`).
fn marked<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.split_once(key).map(|(_, rest)| rest.trim()))
}

fn read_pids(stdout: &mut BufReader<std::process::ChildStdout>) -> Vec<u32> {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "child ended before printing its workers"
        );
        if let Some(rest) = marked(&line, "WORKER_PIDS ") {
            return rest.split(' ').map(|p| p.parse().unwrap()).collect();
        }
    }
}

#[test]
fn worker_output_reaches_the_driver_with_ray_prefixes_and_whole_lines() {
    let out = child("logs").wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let pid = |key: &str| -> u32 {
        marked(&stdout, key)
            .unwrap_or_else(|| panic!("no {key:?} line in:\n{stdout}"))
            .parse()
            .unwrap()
    };
    let (task_pid, actor_pid) = (pid("TASK_PID "), pid("ACTOR_PID "));
    assert!(
        stdout.contains(&format!("(say_hello pid={task_pid}) hello from task 7\n")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("(say_hello pid={task_pid}) task 7 on stderr\n")),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("(Printer pid={actor_pid}) printer constructed\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("(Printer pid={actor_pid}) printer says hi\n")),
        "{stdout}"
    );
    // 4 tasks x 300 lines printed concurrently: every line arrives whole, with its prefix.
    let filler = "x".repeat(300);
    let mut seen = 0;
    for line in stdout
        .lines()
        .filter(|l| l.contains("LINE") || l.contains(&filler[..50]))
    {
        let (prefix, rest) = line
            .split_once(") ")
            .unwrap_or_else(|| panic!("no prefix: {line:?}"));
        assert!(
            prefix.starts_with("(chatter pid="),
            "bad prefix in {line:?}"
        );
        let parts: Vec<&str> = rest.split(' ').collect();
        assert_eq!(parts.len(), 5, "interleaved line: {line:?}");
        assert_eq!(
            (parts[0], parts[3], parts[4]),
            ("LINE", filler.as_str(), "END"),
            "{line:?}"
        );
        seen += 1;
    }
    assert_eq!(seen, 1200, "every line once");
    assert!(stdout.contains("DRIVER_DONE"));
}

fn assert_workers_gone(pids: &[u32], how: &str) {
    assert!(!pids.is_empty());
    let gone = eventually(Duration::from_secs(2), || {
        pids.iter().all(|p| !pid_alive(*p))
    });
    let alive: Vec<&u32> = pids.iter().filter(|p| pid_alive(**p)).collect();
    assert!(
        gone,
        "after the driver {how}, workers {alive:?} are still alive"
    );
}

#[test]
fn no_orphans_when_the_driver_returns_without_shutdown() {
    let mut c = child("return");
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    let pids = read_pids(&mut stdout);
    let _ = c.wait().unwrap();
    assert_workers_gone(&pids, "returned");
}

#[test]
fn no_orphans_when_the_driver_panics() {
    let mut c = child("panic");
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    let pids = read_pids(&mut stdout);
    let status = c.wait().unwrap();
    assert!(!status.success());
    assert_workers_gone(&pids, "panicked");
}

#[test]
fn no_orphans_when_the_driver_exits_abruptly() {
    let mut c = child("exit");
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    let pids = read_pids(&mut stdout);
    let _ = c.wait().unwrap();
    assert_workers_gone(&pids, "called _exit");
}

#[test]
fn no_orphans_when_the_driver_is_killed_with_sigkill() {
    let mut c = child("hang");
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    let pids = read_pids(&mut stdout);
    c.kill().unwrap(); // SIGKILL
    let _ = c.wait().unwrap();
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    assert_workers_gone(&pids, "was killed with SIGKILL");
}
