//! Async actors: an actor with `async fn` methods runs its calls as futures on a
//! single-threaded tokio runtime in its worker, interleaving at `.await` points, at most
//! `max_concurrency` at once (Ray's default for async actors is 1000).
//!
//! The instance lives as long as the worker (`&'static`), so each call's future may hold
//! `&self` across its `.await`s; all futures run on the one runtime thread, so the actor needs
//! no `Sync` (a `RefCell` or `Cell` in it is fine). `ray::cancel` of a running call drops its
//! future at its next `.await`. Futures are polled under `catch_unwind`: a panic fails that
//! call only.

use super::{ASYNC_JOBS, Job, panic_message};
use crate::client::ProcessClient as WorkerCore;
use crate::codec::Encoded;
use crate::current::ASYNC_TASK;
use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::protocol::worker::Execute;
use crate::registry::{Args, AsyncCall, LocalFuture};
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Notify, Semaphore};

/// Running calls, by task, and how to stop each.
static STOPS: Mutex<Option<HashMap<ObjectId, Arc<Notify>>>> = Mutex::new(None);

fn stops() -> std::sync::MutexGuard<'static, Option<HashMap<ObjectId, Arc<Notify>>>> {
    STOPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `ray::cancel` of a call (from the reader thread): its future is dropped.
pub(super) fn cancel(task: ObjectId) {
    if let Some(stop) = stops().as_ref().and_then(|m| m.get(&task)) {
        stop.notify_one();
    }
}

/// Builds the runtime and routes the reader's jobs to it (before the actor says it is
/// created, so no call goes elsewhere).
pub(super) fn prepare() -> Result<(tokio::runtime::Runtime, UnboundedReceiver<Job>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async actor's runtime", e))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if ASYNC_JOBS.set(tx).is_err() {
        return Err(Error::InvalidArgument {
            what: "async actor".into(),
            message: "this worker already runs an async actor".into(),
        });
    }
    Ok((rt, rx))
}

/// A call's future, with panics turned into `TaskFailed`.
struct CatchUnwind {
    future: LocalFuture,
    name: String,
    pid: u32,
}

impl Future for CatchUnwind {
    type Output = Result<Encoded>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Encoded>> {
        let this = &mut *self;
        match catch_unwind(AssertUnwindSafe(|| this.future.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(payload) => Poll::Ready(Err(Error::TaskFailed {
                function: this.name.clone(),
                message: panic_message(&*payload),
                pid: this.pid,
            })),
        }
    }
}

/// Runs the actor's calls until told to exit, then lets the running ones finish.
pub(super) fn run(
    core: &Arc<WorkerCore>,
    rt: tokio::runtime::Runtime,
    mut jobs: UnboundedReceiver<Job>,
    call: AsyncCall,
    this: &'static dyn Any,
    short: &str,
    max_concurrency: u32,
) -> i32 {
    let local = tokio::task::LocalSet::new();
    let limit = Arc::new(Semaphore::new(max_concurrency.max(1) as usize));
    local.block_on(&rt, async {
        let mut running = tokio::task::JoinSet::new();
        while let Some(job) = jobs.recv().await {
            let (task, method, args) = match job {
                Job::Exit => break,
                Job::Run(Execute::ActorTask { task, method, args }) => (task, method, args),
                Job::Run(_) => continue,
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let name = format!("{short}.{method}");
            let mut args = Args::new(&name, args);
            // Arguments are decoded (and sync methods run) here, at once.
            let started = catch_unwind(AssertUnwindSafe(|| {
                crate::current::run_as(task, || call(this, &method, &mut args))
            }));
            let future = match started {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    core.send_done(task, Err(e));
                    continue;
                }
                Err(payload) => {
                    let err = Error::TaskFailed {
                        function: name,
                        message: panic_message(&*payload),
                        pid: core.pid,
                    };
                    core.send_done(task, Err(err));
                    continue;
                }
            };
            let stop = Arc::new(Notify::new());
            stops()
                .get_or_insert_with(HashMap::new)
                .insert(task, stop.clone());
            if crate::current::was_cancelled(task) {
                stop.notify_one();
            }
            let core = core.clone();
            let pid = core.pid;
            running.spawn_local(ASYNC_TASK.scope(task, async move {
                let guarded = CatchUnwind {
                    future,
                    name: name.clone(),
                    pid,
                };
                let result = tokio::select! {
                    r = guarded => r,
                    _ = stop.notified() => Err(Error::TaskCancelled {
                        task,
                        function: name,
                        how: " while it ran".into(),
                    }),
                };
                if let Some(m) = stops().as_mut() {
                    m.remove(&task);
                }
                core.send_done(task, result);
                drop(permit);
            }));
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    });
    0
}
