//! The worker process.
//!
//! A worker is the user's own executable started again with `RAY_RS_NODE_FD` in its
//! environment: the number of its inherited end of the socket pair its node manager made for
//! it. A constructor in `.init_array` (which runs when the executable is loaded, before `main`)
//! sees that variable and turns the process into a worker: it never reaches the user's `main`
//! (nor the test harness, when the driver is a test binary). It says hello over its socket,
//! proving it is the same build (registry fingerprint), learns its process id, then runs what
//! it is sent: tasks one at a time on its main thread, or one actor for the rest of its life.

use crate::actor::ActorInstance;
use crate::client::{OnLost, ProcessClient};
use crate::codec::{Data, Encoded};
use crate::context;
use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::ids::{self, ActorId};
use crate::node_manager::exits::{EXIT_BAD_ENV, EXIT_LOST_NODE, EXIT_REFUSED};
use crate::node_manager::spawn::{
    ENV_GPU_IDS, ENV_INLINE_MAX, ENV_NODE_FD, ENV_PARENT_PID, ENV_STORE_FD, ENV_STORE_SIZE,
};
use crate::object_store::{self, Arena};
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::worker::{Execute, FromWorker, ToWorker};
use crate::registry::{self, Args};
use crate::transport::{self, BlockingSender, MAX_TO_WORKER};
use std::any::Any;
use std::os::fd::FromRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};

mod async_actor;
mod inbox;

use inbox::Inbox;
pub(crate) use inbox::reader_needed;

static IN_WORKER: AtomicBool = AtomicBool::new(false);

/// True inside a worker process.
pub(crate) fn in_worker() -> bool {
    IN_WORKER.load(Ordering::Relaxed)
}

// SAFETY: `.init_array` entries are called by the dynamic loader with no arguments before
// `main`; `worker_entry` is an `extern "C" fn()` with no preconditions, and returns at once
// unless this process was started as a worker.
#[used]
#[unsafe(link_section = ".init_array")]
static WORKER_ENTRY: extern "C" fn() = worker_entry;

extern "C" fn worker_entry() {
    if std::env::var_os(ENV_NODE_FD).is_none() {
        return;
    }
    let code = catch_unwind(run).unwrap_or(101);
    std::process::exit(code);
}

struct Env {
    node_fd: i32,
    parent_pid: i32,
    gpu_ids: Vec<usize>,
    store_fd: i32,
    store_size: u64,
    inline_max: usize,
}

fn read_env() -> Option<Env> {
    let get = |k: &str| std::env::var(k).ok();
    let env = Env {
        node_fd: get(ENV_NODE_FD)?.parse().ok()?,
        parent_pid: get(ENV_PARENT_PID)?.parse().ok()?,
        gpu_ids: get(ENV_GPU_IDS)
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect(),
        store_fd: get(ENV_STORE_FD)?.parse().ok()?,
        store_size: get(ENV_STORE_SIZE)?.parse().ok()?,
        inline_max: get(ENV_INLINE_MAX)?.parse().ok()?,
    };
    for k in [
        ENV_NODE_FD,
        ENV_PARENT_PID,
        ENV_STORE_FD,
        ENV_STORE_SIZE,
        ENV_INLINE_MAX,
    ] {
        // SAFETY: this runs in the loader's constructor, before `main` and before this process
        // has started any thread, so nothing can read the environment concurrently.
        unsafe { std::env::remove_var(k) };
    }
    Some(env)
}

fn run() -> i32 {
    let Some(env) = read_env() else {
        eprintln!("ray worker: incomplete RAY_RS_* environment; exiting");
        return EXIT_BAD_ENV;
    };
    IN_WORKER.store(true, Ordering::Relaxed);
    // SAFETY: prctl(PR_SET_PDEATHSIG) and signal(SIGPIPE, SIG_IGN) only change this process's
    // signal dispositions; getppid has no preconditions; fcntl(F_SETFD) on the inherited
    // socket keeps it out of the processes user code may start.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != env.parent_pid {
            return EXIT_LOST_NODE; // the node manager is already gone
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        if libc::fcntl(env.node_fd, libc::F_SETFD, libc::FD_CLOEXEC) == -1 {
            eprintln!("ray worker: no connection to the node manager; exiting");
            return EXIT_BAD_ENV;
        }
    }
    // SAFETY: the node manager passed this socket to us at spawn (checked open above); this
    // process owns it from now on.
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(env.node_fd) };
    match Arena::open(env.store_fd, env.store_size) {
        Ok(a) => object_store::set_arena(Some(Arc::new(a))),
        Err(e) => {
            eprintln!("ray worker: cannot map the object store: {e}");
            return EXIT_BAD_ENV;
        }
    }
    object_store::set_inline_max(env.inline_max);
    let mut reader = match stream.try_clone() {
        Ok(r) => std::io::BufReader::with_capacity(64 * 1024, r),
        Err(e) => {
            eprintln!("ray worker: {e}");
            return EXIT_BAD_ENV;
        }
    };
    let sender = BlockingSender::new(stream);
    let pid = std::process::id();
    let hello = FromWorker::Hello {
        version: PROTOCOL_VERSION,
        fingerprint: registry::fingerprint(),
        pid,
    };
    if sender.send(&hello).is_err() {
        return EXIT_LOST_NODE;
    }
    let mut buf = Vec::new();
    let job = match transport::read_frame(&mut reader, &mut buf, MAX_TO_WORKER)
        .ok()
        .flatten()
        .and_then(|_| transport::decode_frame(&buf).ok())
    {
        Some(ToWorker::Welcome { proc, job }) => {
            ids::set_this_proc(proc);
            job
        }
        Some(ToWorker::Refused { reason }) => {
            eprintln!("ray worker refused by the node manager: {reason}");
            return EXIT_REFUSED;
        }
        _ => return EXIT_LOST_NODE,
    };
    let core = Arc::new(ProcessClient::new(
        pid,
        Box::new(sender),
        env.gpu_ids,
        job,
        OnLost::Exit(EXIT_LOST_NODE),
    ));
    context::set(Some(core.clone()));
    let _ = CORE.set(core.clone());
    let inbox = match Inbox::start(core.clone(), reader) {
        Ok(i) => i,
        Err(_) => return EXIT_BAD_ENV,
    };
    crate::setup_hook::prepare_worker();
    execute_loop(&core, inbox)
}

enum Job {
    Run(Execute),
    Exit,
}

/// Where the reader hands jobs once this worker is an async actor (its runtime reads them).
static ASYNC_JOBS: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Job>> =
    std::sync::OnceLock::new();

fn send_job(tx: &Sender<Job>, job: Job) {
    match ASYNC_JOBS.get() {
        Some(async_tx) => {
            let _ = async_tx.send(job);
        }
        None => {
            let _ = tx.send(job);
        }
    }
}

/// Tells the driver's log forwarder which task or actor the following output lines belong to
/// (only when it changes: a pooled worker running the same function again writes nothing).
pub(crate) fn set_log_label(name: &str) {
    use std::io::Write;
    static LAST: Mutex<String> = Mutex::new(String::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if *last == name {
        return;
    }
    last.clear();
    last.push_str(name);
    let mut line = crate::node_manager::spawn::LABEL_MARKER.to_vec();
    line.extend_from_slice(name.as_bytes());
    line.push(b'\n');
    let _ = std::io::stdout().lock().write_all(&line);
    let _ = std::io::stderr().lock().write_all(&line);
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Runs `f`, turning a panic into `TaskFailed`.
fn guarded(name: &str, pid: u32, f: impl FnOnce() -> Result<Encoded>) -> Result<Encoded> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(Error::TaskFailed {
            function: name.to_string(),
            message: panic_message(&*payload),
            pid,
        }),
    }
}

fn execute_loop(core: &Arc<ProcessClient>, inbox: Inbox) -> i32 {
    while let Some(job) = inbox.next() {
        match job {
            Job::Exit => return 0,
            Job::Run(Execute::Task {
                task,
                function,
                args,
                gpu_ids,
            }) => {
                *core.gpu_ids.lock().unwrap_or_else(|e| e.into_inner()) = gpu_ids;
                set_log_label(crate::node_manager::short_name(&function));
                let result = crate::current::run_as(task, || {
                    registry::task(&function).and_then(|entry| {
                        guarded(&function, core.pid, || {
                            (entry.invoke)(&mut Args::new(&function, args))
                        })
                    })
                });
                core.send_done(task, result);
            }
            Job::Run(Execute::CreateActor {
                actor,
                class,
                args,
                gpu_ids,
                max_concurrency,
            }) => {
                *core.gpu_ids.lock().unwrap_or_else(|e| e.into_inner()) = gpu_ids;
                crate::current::set_actor(actor);
                return run_actor(core, actor, &class, args, max_concurrency, inbox);
            }
            Job::Run(Execute::ActorTask { task, method, .. }) => core.send_done(
                task,
                Err(Error::InvalidArgument {
                    what: "actor call".into(),
                    message: format!("`{method}` sent to a task worker"),
                }),
            ),
        }
    }
    0
}

fn run_actor(
    core: &Arc<ProcessClient>,
    actor: ActorId,
    class: &str,
    args: Vec<Data>,
    max_concurrency: u32,
    inbox: Inbox,
) -> i32 {
    let short = crate::node_manager::short_name(class).to_string();
    set_log_label(&short);
    let entry = match registry::actor(class) {
        Ok(e) => e,
        Err(e) => {
            let _ = core.sender.send(&FromWorker::ActorCreated {
                actor,
                result: Err(e),
            });
            return 0;
        }
    };
    let created = catch_unwind(AssertUnwindSafe(|| {
        (entry.create)(&mut Args::new(&format!("{short}::new"), args))
    }));
    let instance = match created {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => {
            let _ = core.sender.send(&FromWorker::ActorCreated {
                actor,
                result: Err(e),
            });
            return 0;
        }
        Err(payload) => {
            let err = Error::TaskFailed {
                function: format!("{short}::new"),
                message: panic_message(&*payload),
                pid: core.pid,
            };
            let _ = core.sender.send(&FromWorker::ActorCreated {
                actor,
                result: Err(err),
            });
            return 0;
        }
    };
    if let Some(call) = entry.call_async {
        // An async actor: its calls run as futures on a runtime of its own. The reader hands
        // jobs to that runtime from before `ActorCreated` (no call is sent until then).
        let this: &'static dyn Any = match instance {
            ActorInstance::Single(b) => Box::leak(b),
            ActorInstance::Threaded { instance, .. } => Box::leak(instance),
        };
        let started = async_actor::prepare();
        // The reader thread reads from now on (handing jobs to the runtime prepared above).
        drop(inbox.into_jobs());
        let result = started.as_ref().map(|_| ()).map_err(|e| e.clone());
        let _ = core
            .sender
            .send(&FromWorker::ActorCreated { actor, result });
        return match started {
            Ok((rt, jobs)) => async_actor::run(core, rt, jobs, call, this, &short, max_concurrency),
            Err(_) => 0,
        };
    }
    let _ = core.sender.send(&FromWorker::ActorCreated {
        actor,
        result: Ok(()),
    });
    match instance {
        ActorInstance::Single(mut this) => {
            while let Some(job) = inbox.next() {
                match job {
                    Job::Exit => return 0,
                    Job::Run(Execute::ActorTask { task, method, args }) => {
                        let name = format!("{short}.{method}");
                        let result = crate::current::run_as(task, || {
                            guarded(&name, core.pid, || {
                                (entry.call_mut)(&mut *this, &method, &mut Args::new(&name, args))
                            })
                        });
                        core.send_done(task, result);
                    }
                    Job::Run(_) => {}
                }
            }
            0
        }
        ActorInstance::Threaded {
            instance,
            max_concurrency: threads,
        } => {
            let threads = threads.min(max_concurrency.max(1));
            run_threaded(core, entry, &short, instance, threads, inbox.into_jobs())
        }
    }
}

/// A threaded actor: `max_concurrency` threads take calls; `&self` methods share a read lock,
/// `&mut self` methods take the write lock.
fn run_threaded(
    core: &Arc<ProcessClient>,
    entry: &'static registry::ActorEntry,
    short: &str,
    instance: Box<dyn Any + Send + Sync>,
    threads: u32,
    rx: Receiver<Job>,
) -> i32 {
    let instance = Arc::new(RwLock::new(instance));
    let rx = Arc::new(Mutex::new(rx));
    let active = Arc::new((Mutex::new(0usize), Condvar::new()));
    let mut handles = Vec::new();
    for _ in 0..threads.max(1) {
        let (core, instance, rx, active, short) = (
            core.clone(),
            instance.clone(),
            rx.clone(),
            active.clone(),
            short.to_string(),
        );
        handles.push(std::thread::spawn(move || {
            loop {
                let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(job) = job else { return };
                match job {
                    Job::Exit => {
                        let (count, cv) = &*active;
                        let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
                        while *n > 0 {
                            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
                        }
                        std::process::exit(0);
                    }
                    Job::Run(Execute::ActorTask { task, method, args }) => {
                        *active.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        let name = format!("{short}.{method}");
                        let mut args = Args::new(&name, args);
                        let result = crate::current::run_as(task, || {
                            guarded(&name, core.pid, || match (entry.method_is_mut)(&method) {
                                Some(false) => {
                                    let guard = instance.read().unwrap_or_else(|e| e.into_inner());
                                    (entry.call_ref)(&**guard, &method, &mut args)
                                }
                                _ => {
                                    let mut guard =
                                        instance.write().unwrap_or_else(|e| e.into_inner());
                                    (entry.call_mut)(&mut **guard, &method, &mut args)
                                }
                            })
                        });
                        core.send_done(task, result);
                        let (count, cv) = &*active;
                        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                        cv.notify_all();
                    }
                    Job::Run(_) => {}
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    0
}

/// Writes raw bytes on this worker's connection (`__private::testing`).
#[cfg(feature = "testing")]
pub(crate) fn send_raw(bytes: &[u8]) -> Result<()> {
    let client = context::client()?;
    let core = CORE.get().ok_or_else(|| Error::InvalidArgument {
        what: "send_raw".into(),
        message: "only a worker has a connection to write to".into(),
    })?;
    drop(client);
    core.sender.send_raw(bytes)
}

/// This worker's client (set once it is welcomed).
static CORE: std::sync::OnceLock<Arc<ProcessClient>> = std::sync::OnceLock::new();

/// Runs a streaming task's items through the caller's stream (what `#[ray::remote(streaming)]`
/// generates): each item is encoded and sent as soon as the iterator yields it, waiting when
/// the caller is too far behind. The call's own result is `()`.
#[doc(hidden)]
pub fn stream<I: IntoIterator>(
    items: I,
    mut encode: impl FnMut(&I::Item) -> Result<Encoded>,
) -> Result<Encoded> {
    let not_streaming = || Error::InvalidArgument {
        what: "streaming call".into(),
        message: "items are streamed only by a task or actor call running in a worker".into(),
    };
    let task: ObjectId = crate::current::task().ok_or_else(not_streaming)?;
    let core = CORE.get().ok_or_else(not_streaming)?;
    for (index, item) in items.into_iter().enumerate() {
        let encoded = encode(&item)?;
        core.yield_item(task, index as u64, encoded)?;
    }
    crate::codec::encode(&())
}
