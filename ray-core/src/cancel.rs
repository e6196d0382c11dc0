//! Cancelling tasks and actor calls (Ray's `ray.cancel`).

use crate::context;
use crate::error::Result;
use crate::object_ref::Waitable;
use crate::protocol::worker::Control;

/// How [`cancel_with`] cancels: Ray's `force` and `recursive` arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelOptions {
    force: bool,
    recursive: bool,
}

impl Default for CancelOptions {
    /// Not forced, recursive: as `ray.cancel(ref)`.
    fn default() -> Self {
        CancelOptions {
            force: false,
            recursive: true,
        }
    }
}

impl CancelOptions {
    /// The defaults: not forced, recursive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Kills the worker process running the task instead of asking the task to stop (not for
    /// actor calls: that would kill the actor; use [`kill`](crate::kill)).
    pub fn force(mut self, yes: bool) -> Self {
        self.force = yes;
        self
    }

    /// Also cancels the tasks the task submitted while it ran (default true).
    pub fn recursive(mut self, yes: bool) -> Self {
        self.recursive = yes;
        self
    }
}

/// Cancels the task or actor call that makes `r`, with the default [`CancelOptions`] (not
/// forced, recursive). Its result then reads as [`Error::TaskCancelled`](crate::Error):
///
/// - a task or call that has not started never runs;
/// - a running task or call is asked to stop: [`is_cancelled`] returns true inside it from then
///   on (a task checks it where it can stop), an `async` actor method is stopped at its next
///   `.await`, and whatever it returns is dropped;
/// - with [`force`](CancelOptions::force), a running task's worker process is killed;
/// - a task that already finished keeps its result.
///
/// ```
/// #[ray::remote]
/// fn spin() -> u64 {
///     let mut rounds = 0;
///     while !ray::is_cancelled() {
///         std::thread::sleep(std::time::Duration::from_millis(1));
///         rounds += 1;
///     }
///     rounds
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let running = spin::remote();
///     let queued = spin::remote(); // waits for the only CPU
///     ray::cancel(&queued)?; // never runs
///     ray::cancel(&running)?; // sees `is_cancelled()` and returns
///     for r in [&queued, &running] {
///         assert!(matches!(ray::get(r), Err(ray::Error::TaskCancelled { .. })));
///     }
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub fn cancel<R: Waitable>(r: &R) -> Result<()> {
    cancel_with(r, CancelOptions::default())
}

/// [`cancel`] with options: `ray::cancel_with(&r, CancelOptions::new().force(true))`.
pub fn cancel_with<R: Waitable>(r: &R, options: CancelOptions) -> Result<()> {
    let task = r.object_id();
    if task.is_null() {
        return Err(context::never_submitted());
    }
    let op = Control::Cancel {
        task,
        force: options.force,
        recursive: options.recursive,
    };
    context::client()?.control(op).map(|_| ())
}

/// Whether the task or actor call running on this thread was cancelled with
/// [`cancel`]. Long-running tasks check it to stop early; false outside tasks.
pub fn is_cancelled() -> bool {
    crate::current::is_cancelled()
}
