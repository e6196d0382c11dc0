//! What a worker process does once, before its first task or actor: install a panic hook that
//! prints a task's panic as one line under the task's prefix, then run the program's
//! `#[ray::worker_setup]` functions (Ray's `worker_process_setup_hook`).
//!
//! Setup functions are registered like remote functions: `#[ray::worker_setup]` adds an entry
//! to a link-time list, so every worker of the executable finds them without being told (a
//! worker never runs `main`, where such setup would otherwise go). They run in name order; if
//! one panics, the worker stays up but every task or actor sent to it fails with
//! [`Error::WorkerSetupFailed`], so the error reaches the caller instead of a worker restarting
//! in a loop.

use crate::error::Error;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// A function that every worker process runs once before its first task, as registered by
/// `#[ray::worker_setup]`.
#[doc(hidden)]
pub struct WorkerSetup {
    /// `module::path::name`.
    pub name: &'static str,
    /// The function.
    pub run: fn(),
}

#[doc(hidden)]
#[linkme::distributed_slice]
pub static WORKER_SETUP: [WorkerSetup];

static FAILED: OnceLock<Error> = OnceLock::new();

/// Called by the worker once it has registered with the node manager, before it runs anything.
pub(crate) fn prepare_worker() {
    install_panic_hook();
    let mut hooks: Vec<&WorkerSetup> = WORKER_SETUP.iter().collect();
    hooks.sort_by_key(|h| h.name);
    for hook in hooks {
        crate::worker::set_log_label(short_name(hook.name));
        if let Err(payload) = catch_unwind(AssertUnwindSafe(hook.run)) {
            let _ = FAILED.set(Error::WorkerSetupFailed {
                hook: hook.name.to_string(),
                message: panic_message(&*payload),
                pid: std::process::id(),
            });
            return;
        }
    }
}

/// Why this worker cannot run tasks, if a setup function panicked.
pub(crate) fn failure() -> Option<Error> {
    FAILED.get().cloned()
}

fn short_name(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Prints a panic in a worker as `panicked at src/main.rs:4:5: message`: the driver prefixes
/// each line with the task's name and the worker's pid, so Rust's default layout (a blank line,
/// then `thread '<unnamed>' (pid) panicked at`, the worker's main thread having no name) would
/// only repeat what the prefix says. Threads with a name of their own still say it. When
/// `RUST_BACKTRACE` asks for a backtrace, Rust's own hook prints the panic and its backtrace.
/// A setup function may install a hook of its own.
fn install_panic_hook() {
    static HINTED: AtomicBool = AtomicBool::new(false);
    let rust_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        use std::io::Write;
        let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
        if backtrace {
            return rust_hook(info);
        }
        let thread = std::thread::current();
        let who = match thread.name() {
            Some(name) if name != "main" => format!("thread '{name}' "),
            _ => String::new(),
        };
        let place = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let mut text = format!("{who}panicked{place}: {}\n", panic_message(info.payload()));
        if !HINTED.swap(true, Ordering::Relaxed) {
            text.push_str(
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
            );
        }
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }));
}
