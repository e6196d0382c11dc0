//! Async actors (Ray's test_asyncio.py): `async fn` methods interleave at `.await` points on
//! an async runtime in the actor's worker, up to `max_concurrency` (default 1000).

use ray::{ActorHandle, Error, ObjectRef};
use std::cell::Cell;
use std::time::Duration;

#[ray::remote]
struct AsyncBarrier {
    arrived: Cell<u32>,
    in_flight: Cell<u32>,
    peak: Cell<u32>,
    changed: tokio::sync::Notify,
}

#[ray::remote]
impl AsyncBarrier {
    fn new() -> Self {
        AsyncBarrier {
            arrived: Cell::new(0),
            in_flight: Cell::new(0),
            peak: Cell::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Returns once `n` calls have arrived: only possible if they interleave.
    async fn wait_for(&self, n: u32) -> u32 {
        self.arrived.set(self.arrived.get() + 1);
        self.changed.notify_waiters();
        while self.arrived.get() < n {
            let notified = self.changed.notified();
            if self.arrived.get() >= n {
                break;
            }
            notified.await;
        }
        self.arrived.get()
    }

    /// Holds a call slot for `ms` (an async sleep), recording how many run at once.
    async fn hold(&self, ms: u64) -> u32 {
        self.in_flight.set(self.in_flight.get() + 1);
        self.peak.set(self.peak.get().max(self.in_flight.get()));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.in_flight.set(self.in_flight.get() - 1);
        self.peak.get()
    }

    /// A plain method of an async actor runs on its runtime too.
    fn peak(&self) -> u32 {
        self.peak.get()
    }

    /// `.await` on an ObjectRef inside the actor.
    async fn add_one(&self, r: ObjectRef<u64>) -> u64 {
        r.await.unwrap() + 1
    }

    async fn fail(&self) -> u32 {
        tokio::task::yield_now().await;
        panic!("async failure");
    }

    async fn until_cancelled(&self) -> u32 {
        std::future::pending::<()>().await;
        0
    }

    #[ray::method(num_returns = 2)]
    async fn pair(&self) -> (u32, String) {
        (1, "one".into())
    }
}

#[ray::remote]
fn slow_value(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    x
}

#[ray::remote]
fn call_from_task(a: ActorHandle<AsyncBarrier>) -> u32 {
    ray::get(&a.wait_for(1)).unwrap()
}

/// test_asyncio::test_asyncio_actor: calls interleave at `.await`s (all 100 must be in the
/// actor at once for any to return).
#[test]
fn async_calls_interleave_up_to_the_default_concurrency() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let a = AsyncBarrier::remote();
    let refs: Vec<_> = (0..100).map(|_| a.wait_for(100)).collect();
    let values = ray::get_all(&refs).unwrap();
    assert!(values.iter().all(|v| *v >= 100));
    // From a task too.
    assert!(ray::get(&call_from_task::remote(&a)).unwrap() >= 1);
    ray::shutdown();
}

/// test_asyncio::test_asyncio_actor_concurrency: at most `max_concurrency` at once.
#[test]
fn max_concurrency_bounds_interleaved_calls() {
    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    let a = AsyncBarrier::options().max_concurrency(3).remote();
    let refs: Vec<_> = (0..12).map(|_| a.hold(30)).collect();
    ray::get_all(&refs).unwrap();
    let peak = ray::get(&a.peak()).unwrap();
    assert!((1..=3).contains(&peak), "peak {peak}");
    ray::shutdown();
}

/// test_asyncio::test_asyncio_get: `.await` on refs inside async methods; errors and
/// cancellation of a running call.
#[test]
fn async_methods_await_refs_fail_alone_and_can_be_cancelled() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let a = AsyncBarrier::remote();
    assert_eq!(ray::get(&a.add_one(slow_value::remote(41))).unwrap(), 42);
    match ray::get(&a.fail()) {
        Err(Error::TaskFailed {
            function, message, ..
        }) => {
            assert_eq!(function, "AsyncBarrier.fail");
            assert!(message.contains("async failure"));
        }
        other => panic!("expected the panic, got {other:?}"),
    }
    let stuck = a.until_cancelled();
    let (x, y) = a.pair();
    assert_eq!(
        (ray::get(&x).unwrap(), ray::get(&y).unwrap()),
        (1, "one".to_string())
    );
    ray::cancel(&stuck).unwrap();
    assert!(matches!(ray::get(&stuck), Err(Error::TaskCancelled { .. })));
    assert!(
        ray::get(&a.add_one(ray::put(1u64).unwrap())).unwrap() == 2,
        "still alive"
    );
    ray::shutdown();
}
