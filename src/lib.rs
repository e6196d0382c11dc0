//! Ray's programming model — tasks, actors, [`ObjectRef`]s and resource-aware scheduling —
//! for Rust, driven by one attribute macro, [`#[ray::remote]`](remote).
//!
//! Annotate a function (a *task*) or a struct and its `impl` block (an *actor*), call
//! `.remote(..)`, and get [`ObjectRef`]s back at once; the work runs in worker processes of your
//! own executable, scheduled by CPUs, GPUs and custom resources.
//!
//! ```
//! #[ray::remote]
//! fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! #[ray::remote]
//! struct Counter {
//!     n: i64,
//! }
//!
//! #[ray::remote]
//! impl Counter {
//!     fn new(start: i64) -> Self {
//!         Counter { n: start }
//!     }
//!     fn add(&mut self, x: i64) -> i64 {
//!         self.n += x;
//!         self.n
//!     }
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(2))?; // first thing in main
//!
//!     let a = add::remote(1, 2); // runs in a worker; returns an ObjectRef<i64> at once
//!     let b = add::remote(&a, 10); // an ObjectRef is accepted wherever a value is
//!     assert_eq!(ray::get(&b)?, 13);
//!     assert_eq!(add(1, 2), 3); // still a plain function too
//!
//!     let counter = Counter::remote(5); // an actor: a worker process of its own
//!     counter.add(1);
//!     assert_eq!(ray::get(&counter.add(2))?, 8); // calls from one caller run in order
//!
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # `ray::init` first: the one rule
//!
//! Workers are your own executable, started again in worker mode. They take over before `main`
//! runs, so a worker never executes `main`: call [`init`] first thing in `main`, and keep remote
//! functions and actor methods free of state that `main` sets up (globals initialised in
//! `main`, a logger installed there, ...). Whatever a task needs, it gets through its arguments
//! or sets up itself; process-wide setup that every worker needs (logging, tracing, a thread
//! pool) goes in a [`#[ray::worker_setup]`](worker_setup) function, which each worker runs once
//! before its first task. Test binaries, doctests and examples work as drivers the same way, and
//! several tests of one binary may each call `init` (they take turns).
//!
//! Without `init`, or after [`shutdown`], calls do not panic: their results say
//! [`Error::NotInitialized`], with the reason.
//!
//! What runs today is the single-machine runtime: tasks, actors, objects, scheduling by CPUs,
//! GPUs and custom resources, all on one node (the README says what is coming).
//!
//! # Tasks
//!
//! `#[ray::remote]` on a `fn` keeps the function as it is and adds, under the same name:
//!
//! - `name::remote(args..) -> ObjectRef<R>`: submits a call and returns at once. It is
//!   `add::remote(1, 2)`, with `::`: Python's `add.remote(1, 2)` is a compile error that says so.
//! - `name::options()`: per-call options, then `.remote(..)`, as in
//!   `add::options().num_cpus(0.5).max_retries(0).remote(1, 2)` (see [`TaskOptions`]).
//!
//! An argument for a parameter declared `T` is (see [`IntoArg`]):
//!
//! - a `T`, or a borrowed `&T`, serialized from the borrow (`&vec`, `&handle`: nothing is moved
//!   or cloned; a `&str` does for `String`, a `&[T]` for `Vec<T>`);
//! - an `ObjectRef<T>` or `&ObjectRef<T>`: *resolved*, i.e. the task waits until the object is
//!   ready and receives its value.
//!
//! The declared type decides: a parameter declared `ObjectRef<T>` receives the reference
//! itself, unresolved, and the task reads it when and how it likes (with [`get`], or in place
//! with [`get_slice`], see [Zero-copy](#zero-copy)). References inside an argument (a
//! `Vec<ObjectRef<T>>`, a struct holding one) are never resolved either.
//!
//! Options on the attribute set the defaults of every call:
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `num_cpus = 2` | CPUs held while it runs (a fraction below 1 shares one: `0.5`) | 1 |
//! | `num_gpus = 1` | GPUs held while it runs (`0.5` shares one GPU) | 0 |
//! | `resources(disk = 1, ..)` | custom resources declared with [`Config::resource`] | none |
//! | `max_retries = 3` | how often the task is retried when its worker process dies | 3 |
//! | `retry_exceptions = true` | a panic is retried like a crash, within `max_retries` | false |
//! | `max_calls = 10` | a worker runs the function this often, then a fresh one takes over | no limit |
//! | `num_returns = 2` | the function returns a tuple; the caller gets one `ObjectRef` per value | 1 |
//! | `streaming` | the function returns an iterator; the caller gets each item as it is made | off |
//!
//! Tasks can submit tasks of their own, and call [`get`], [`put`] and [`wait`]: a worker that
//! waits lends its CPU back to the node, so nested tasks cannot deadlock it.
//!
//! ```
//! #[ray::remote]
//! fn fib(n: u64) -> u64 {
//!     if n < 2 {
//!         return n;
//!     }
//!     let (a, b) = (fib::remote(n - 1), fib::remote(n - 2));
//!     ray::get(&a).unwrap() + ray::get(&b).unwrap()
//! }
//!
//! #[ray::remote(num_cpus = 0.5, max_retries = 0)]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(2))?;
//!     assert_eq!(ray::get(&fib::remote(10))?, 55);
//!     let squares: Vec<ray::ObjectRef<u64>> = (0..4).map(square::remote).collect();
//!     assert_eq!(ray::get_all(&squares)?, [0, 1, 4, 9]);
//!     let quick = square::options().num_cpus(1).remote(12);
//!     assert_eq!(ray::get(&quick)?, 144);
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! Parameters and results cross a process boundary, so they are owned types that implement
//! serde's `Serialize` and `Deserialize` (derive them for your own types; `ObjectRef`s and
//! [`ActorHandle`]s qualify and can travel inside arguments and results). Borrowed parameter
//! types (`fn f(text: &str)`, `&[T]`), `impl Trait`, trait objects, `async fn` and generic
//! functions are compile errors that name the owned type to use instead (a borrowed *argument*
//! for an owned parameter is fine, see above), e.g.:
//!
//! ```text
//! error: `&str` is a reference, which cannot be sent to a worker process: remote parameters are
//!        sent by value; take `String` instead
//!  --> src/main.rs:4:22
//!   |
//! 4 | fn count_words(text: &str) -> usize {
//!   |                      ^^^^
//!
//! error[E0277]: `Point` cannot travel between ray processes: it implements neither
//!               `serde::Serialize` nor `serde::Deserialize`
//!   --> src/main.rs:21:12
//!    |
//! 21 | fn norm(p: Point) -> f64 {
//!    |            ^^^^^ parameters and results of remote functions must implement `Serialize`
//!    |                  and `Deserialize`
//! ```
//!
//! # Objects
//!
//! An [`ObjectRef<T>`](ObjectRef) is a typed reference to a value that a task returns or that
//! [`put`] stores: cheap to clone, `Send`, serializable, and freed when no reference to it
//! remains in any process.
//!
//! - [`get`] waits for one value, [`get_all`] for several (in order), [`get_with_timeout`]
//!   gives up with [`Error::Timeout`]; an `ObjectRef` can also be `.await`ed (see
//!   [Async code](#async-code)).
//! - [`wait`] returns `(ready, pending)` once `num_returns` are ready or a timeout passes. To
//!   wait on results of different types together, [`erase`](ObjectRef::erase) them to
//!   [`AnyObjectRef`]s and [`downcast`](AnyObjectRef::downcast) the ready ones back.
//! - [`put`] stores a value once, to pass to many tasks without copying it into each call.
//!   [`put_slice`] and [`get_slice`] move plain-old-data slices (`f32`, `u8`, ...) without
//!   serde, and read large ones straight from the node's shared-memory store
//!   ([Zero-copy](#zero-copy)).
//! ```
//! use std::time::Duration;
//!
//! #[ray::remote]
//! fn total(values: Vec<f32>) -> f32 {
//!     values.iter().sum()
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(2))?;
//!     let data = ray::put(vec![0.5f32; 1000])?; // stored once, shared by reference
//!     let sums: Vec<_> = (0..3).map(|_| total::remote(&data)).collect();
//!     let (ready, pending) = ray::wait(&sums, 3, Some(Duration::from_secs(10)));
//!     assert_eq!((ready.len(), pending.len()), (3, 0));
//!     assert_eq!(ray::get_all(&ready)?, [500.0; 3]);
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! An `ObjectRef` serialized by other code than ray's (serde into JSON, a file, another
//! program) leaves ray's reference counting: its object is then kept until its owner (the
//! process that made the ref) exits, so that the serialized ref can be read back later, as in
//! Ray:
//!
//! ```
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(1))?;
//!     let r = ray::put(String::from("still here"))?;
//!     let saved = serde_json::to_string(&r).unwrap(); // the ref leaves ray
//!     drop(r); // no ObjectRef is left, but the object is kept for its owner
//!     let back: ray::ObjectRef<String> = serde_json::from_str(&saved).unwrap();
//!     assert_eq!(ray::get(&back)?, "still here");
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Zero-copy
//!
//! Objects of 100 KiB and more live in the node's shared-memory object store. For a `Vec` of
//! plain-old-data elements (`f32`, `u8`, `[f64; 4]`, any `bytemuck::Pod`), the object is its
//! length followed by its elements, so any process of the node can read it as a `&[T]` in
//! place, without a copy and without serde:
//!
//! 1. **Writing**: [`put_slice(&[T])`](put_slice) stores a slice with one memory copy. A task
//!    or actor method that returns a `Vec<T>` stores it too (encoded by serde: one pass over the
//!    elements), and so does `ray::put(vec)`.
//! 2. **Reading**: [`get_slice(&r)`](get_slice) gives a [`PodView`] that dereferences to
//!    `&[T]` in the store ([`PodView::is_zero_copy`] says so), for any `ObjectRef<Vec<T>>`:
//!    from `put_slice`, `put`, or a task's result.
//! 3. **In a task**: declare the parameter `ObjectRef<Vec<T>>` (not `Vec<T>`) to receive the ref
//!    unresolved, and `get_slice` it there. A `Vec<T>` parameter gets a decoded copy of its own.
//! 4. **From an actor**: a method that hands out a large array it keeps returns
//!    `ray::put_slice(&self.data)?`, an `ObjectRef<Vec<T>>`; the caller then holds an
//!    `ObjectRef<ObjectRef<Vec<T>>>` and gets the inner ref with one [`get`] of a few bytes.
//!
//! `examples/parameter_server.rs` is zero-copy end to end (an actor with 1M `f32` parameters,
//! 4 gradient workers, 20 rounds) and times it against serde transport of the same arrays; the
//! README has the figures.
//!
//! ```
//! #[ray::remote]
//! fn scale(values: ray::ObjectRef<Vec<f32>>, by: f32) -> Vec<f32> {
//!     let values = ray::get_slice(&values).unwrap(); // &[f32] in shared memory
//!     values.iter().map(|v| v * by).collect()
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(1))?;
//!     let input = ray::put_slice(&vec![1.0f32; 1 << 20])?; // 4 MiB, one copy
//!     let output = scale::remote(&input, 2.0); // the ref travels, not the data
//!     let view = ray::get_slice(&output)?; // the result, read in place
//!     assert!(view.is_zero_copy());
//!     assert_eq!(view[0], 2.0);
//!     drop(view);
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Async code
//!
//! `.await` on an `ObjectRef` (or a `&ObjectRef`) waits for its value without blocking a thread,
//! on any executor; dropping the future (a timeout, a lost `select!` branch) stops waiting, the
//! task itself runs on. [`init`], [`shutdown`] and the blocking calls work inside async code too
//! (`#[tokio::main]` included), blocking the calling thread as they would anywhere.
//! `examples/async_driver.rs` is a complete `#[tokio::main]` driver.
//!
//! ```
//! #[ray::remote]
//! fn slow_square(x: u64, ms: u64) -> u64 {
//!     std::thread::sleep(std::time::Duration::from_millis(ms));
//!     x * x
//! }
//!
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
//! #     let mut cx = std::task::Context::from_waker(&waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         match f.as_mut().poll(&mut cx) {
//! #             std::task::Poll::Ready(v) => return v,
//! #             std::task::Poll::Pending => std::thread::park(),
//! #         }
//! #     }
//! # }
//! # struct Unpark(std::thread::Thread);
//! # impl std::task::Wake for Unpark {
//! #     fn wake(self: std::sync::Arc<Self>) {
//! #         self.0.unpark()
//! #     }
//! # }
//! async fn sum_of_squares() -> ray::Result<u64> {
//!     let refs: Vec<_> = (0..4).map(|x| slow_square::remote(x, 10)).collect();
//!     let mut sum = 0;
//!     for r in &refs {
//!         sum += r.await?;
//!     }
//!     Ok(sum)
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(2))?;
//!     // With tokio: `#[tokio::main] async fn main()` and `sum_of_squares().await`.
//!     assert_eq!(block_on(sum_of_squares())?, 14);
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Actors
//!
//! `#[ray::remote]` on a struct and on its `impl` block makes an actor: a worker process of its
//! own that holds the struct for its whole life.
//!
//! - `fn new(..) -> Self` is the constructor: `Type::remote(args..)` returns an
//!   [`ActorHandle<Type>`](ActorHandle) at once and runs `new` in the actor's worker.
//!   `Type::options()` sets per-actor options first ([`ActorOptions`]).
//! - Each `&self` or `&mut self` method becomes a method of the handle with the same parameters
//!   (as values or `ObjectRef`s), returning an `ObjectRef` to its result. Calls made from one
//!   process run in the order they were made. Associated functions without `self` stay local.
//! - Handles are `Clone`, `Send` and serializable: pass them to tasks and other actors (`&handle`
//!   does, no clone needed). The actor exits when the last handle is dropped, or at once with
//!   [`kill`].
//!
//! Options go on the struct: `num_cpus`, `num_gpus` and `resources(..)` as for tasks (held for
//! the actor's whole life; by default an actor holds no CPU), `max_restarts` (default 0),
//! `max_task_retries` (default 0: how often a call running when the actor's process died runs
//! again on the restarted actor; `-1` for always) and `max_concurrency` (default 1: one call at
//! a time; more runs `&self` methods on that many threads, so the struct must be
//! `Send + Sync`). [`#[ray::method(..)]`](method) on a method sets `num_returns` or `streaming`
//! for it, as for tasks. Per actor, [`ActorOptions`] also gives it a name (see
//! [Named actors](#named-actors)) or places it in a placement group.
//!
//! ```
//! use ray::ActorHandle;
//!
//! #[ray::remote(max_concurrency = 2)]
//! struct Tally {
//!     hits: std::sync::atomic::AtomicU64,
//! }
//!
//! #[ray::remote]
//! impl Tally {
//!     fn new() -> Self {
//!         Tally { hits: Default::default() }
//!     }
//!     fn hit(&self) -> u64 {
//!         1 + self.hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
//!     }
//! }
//!
//! #[ray::remote]
//! fn hit_twice(tally: ActorHandle<Tally>) -> u64 {
//!     ray::get(&tally.hit()).unwrap();
//!     ray::get(&tally.hit()).unwrap()
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(2))?;
//!     let tally: ActorHandle<Tally> = Tally::remote();
//!     assert_eq!(ray::get(&hit_twice::remote(tally.clone()))?, 2);
//!     assert_eq!(ray::get(&tally.hit())?, 3);
//!     ray::kill(&tally);
//!     assert!(matches!(ray::get(&tally.hit()), Err(ray::Error::ActorDied { .. })));
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Named actors
//!
//! `Type::options().name("ledger")` registers an actor under a name, unique in its namespace
//! while the actor lives; [`get_actor::<Type>`](get_actor) gives a typed handle to it from the
//! driver, a task or another actor (a name of another class is [`Error::ActorClassMismatch`],
//! an unknown one [`Error::ActorNotFound`]). A second actor with a taken name is dead on
//! arrival: its calls fail with [`Error::ActorNameTaken`], naming the holder, unless
//! `.get_if_exists(true)` asks for the holder instead. Names live in the job's namespace
//! ([`Config::namespace`]) unless `.namespace(..)` names another ([`get_actor_in`] looks
//! there). The name is free again once the actor is dead or all its handles are dropped.
//! In a cluster names are unique across every node and drivers on any node find them (they
//! live in etcd), provided they share the namespace: each job has an anonymous namespace of its
//! own unless [`Config::namespace`] sets one, as in Ray.
//! `.lifetime(Lifetime::Detached)` makes an actor that outlives its driver's job, until
//! [`kill`]; that needs a cluster: in single-node mode its calls fail with
//! [`Error::NeedsCluster`], which says so. A detached actor's names live under its creator
//! node's etcd lease, so they go when that node dies.
//!
//! ```
//! #[ray::remote]
//! struct Registry {
//!     entries: Vec<String>,
//! }
//!
//! #[ray::remote]
//! impl Registry {
//!     fn new() -> Self {
//!         Registry { entries: Vec::new() }
//!     }
//!     fn add(&mut self, entry: String) -> usize {
//!         self.entries.push(entry);
//!         self.entries.len()
//!     }
//! }
//!
//! #[ray::remote]
//! fn register(entry: String) -> usize {
//!     let registry = ray::get_actor::<Registry>("registry").unwrap();
//!     ray::get(&registry.add(entry)).unwrap()
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(1).namespace("docs"))?;
//!     let registry = Registry::options().name("registry").remote();
//!     assert_eq!(ray::get(&register::remote("a"))?, 1);
//!     assert_eq!(ray::list_named_actors()?, ["registry"]);
//!     let other = Registry::options().name("registry").remote();
//!     assert!(matches!(ray::get(&other.add("b")), Err(ray::Error::ActorNameTaken { .. })));
//!     let detached = Registry::options().lifetime(ray::Lifetime::Detached).remote();
//!     assert!(matches!(ray::get(&detached.add("c")), Err(ray::Error::NeedsCluster { .. })));
//!     drop(registry);
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Async actors
//!
//! An actor whose `impl` has `async fn` methods runs its calls as futures on an async runtime
//! (tokio, one thread) in its worker: calls interleave at their `.await`s, up to
//! `max_concurrency` at once (1000 unless [`ActorOptions::max_concurrency`] says otherwise).
//! Inside, `.await` an `ObjectRef` to wait for another task without blocking the other calls.
//! Since calls share the actor, its methods take `&self` (a `&mut self` method is a compile
//! error): keep changing state in a `Cell`, `RefCell` or `Mutex`. A panic fails that call
//! only; [`cancel`] stops a running call at its next `.await`. Blocking calls inside a method
//! (`ray::get`, a streaming method waiting for its caller, `std::thread::sleep`) hold up every
//! call of the actor meanwhile, as in Ray: `.await` instead.
//!
//! ```
//! use std::cell::Cell;
//!
//! #[ray::remote]
//! fn slow_double(x: u64) -> u64 {
//!     std::thread::sleep(std::time::Duration::from_millis(20));
//!     2 * x
//! }
//!
//! #[ray::remote]
//! struct Fetcher {
//!     in_flight: Cell<u32>,
//!     most: Cell<u32>,
//! }
//!
//! #[ray::remote]
//! impl Fetcher {
//!     fn new() -> Self {
//!         Fetcher { in_flight: Cell::new(0), most: Cell::new(0) }
//!     }
//!     async fn fetch(&self, x: u64) -> u64 {
//!         self.in_flight.set(self.in_flight.get() + 1);
//!         self.most.set(self.most.get().max(self.in_flight.get()));
//!         let doubled = slow_double::remote(x).await.unwrap(); // other calls run meanwhile
//!         self.in_flight.set(self.in_flight.get() - 1);
//!         doubled
//!     }
//!     fn most_at_once(&self) -> u32 {
//!         self.most.get()
//!     }
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(4))?;
//!     let f = Fetcher::remote();
//!     let refs: Vec<_> = (0..4).map(|x| f.fetch(x)).collect();
//!     assert_eq!(ray::get_all(&refs)?, [0, 2, 4, 6]);
//!     assert!(ray::get(&f.most_at_once())? > 1, "the calls interleaved");
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Cancelling
//!
//! [`cancel`] (and [`cancel_with`] for Ray's `force` and `recursive`) stops a task or actor call:
//! one that has not started never runs; a running one sees [`is_cancelled`] turn true (and an
//! async call is stopped at its next `.await`), or with `force` its worker process is killed;
//! with `recursive` (the default) the tasks it submitted are cancelled too. Its result reads
//! as [`Error::TaskCancelled`].
//!
//! ```
//! use ray::CancelOptions;
//!
//! #[ray::remote(max_retries = 0)]
//! fn search(limit: u64) -> u64 {
//!     let mut n = 0;
//!     while n < limit && !ray::is_cancelled() {
//!         n += 1; // some work, checking now and then whether to stop
//!         std::thread::sleep(std::time::Duration::from_micros(100));
//!     }
//!     n
//! }
//!
//! #[ray::remote(max_retries = 0)]
//! fn stuck() -> u64 {
//!     std::thread::sleep(std::time::Duration::from_secs(3600)); // never checks
//!     0
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(2))?;
//!     let (a, b) = (search::remote(u64::MAX), stuck::remote());
//!     ray::cancel(&a)?; // a stops at its next check
//!     ray::cancel_with(&b, CancelOptions::new().force(true))?; // b's worker is killed
//!     for r in [&a, &b] {
//!         assert!(matches!(ray::get(r), Err(ray::Error::TaskCancelled { .. })));
//!     }
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Several return values and streams
//!
//! `#[ray::remote(num_returns = 2)]` on a function returning a tuple `(A, B)` makes
//! `f::remote(..)` return `(ObjectRef<A>, ObjectRef<B>)`: each value is an object of its own,
//! read and freed on its own. `#[ray::remote(streaming)]` on a function returning an iterator
//! (`impl Iterator<Item = T>`, or a type such as `Vec<T>`) makes it return an
//! [`ObjectRefGenerator<T>`]: an iterator of `ObjectRef<T>`, each given out as soon as the
//! worker produced it, the producer staying a few items ahead at most (backpressure); a panic
//! after some items ends the stream with a ref that reads as the error. `#[ray::method(..)]`
//! does the same for actor methods.
//!
//! ```
//! #[ray::remote(num_returns = 2)]
//! fn split(text: String) -> (String, usize) {
//!     let words = text.split_whitespace().count();
//!     (text.to_uppercase(), words)
//! }
//!
//! #[ray::remote(streaming)]
//! fn squares(n: u64) -> impl Iterator<Item = u64> {
//!     (1..=n).map(|i| i * i)
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(1))?;
//!     let (upper, words) = split::remote("two words");
//!     assert_eq!(ray::get(&words)?, 2);
//!     assert_eq!(ray::get(&upper)?, "TWO WORDS");
//!     let mut total = 0;
//!     for square in squares::remote(3) {
//!         total += ray::get(&square)?; // 1, then 4, then 9, as each is made
//!     }
//!     assert_eq!(total, 14);
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Retries
//!
//! A task whose worker process dies is retried `max_retries` times (3); with
//! `retry_exceptions = true` a panic is retried too. Calls that an actor was running when its
//! process died run again on the restarted actor within `max_task_retries` (with
//! `max_restarts` left; [`kill_and_restart`] kills it that way on purpose). `max_calls = n`
//! replaces a task worker after `n` calls of the function, for native code that leaks.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! static CALLS: AtomicU32 = AtomicU32::new(0); // per worker process
//!
//! #[ray::remote(retry_exceptions = true, max_retries = 2)]
//! fn flaky() -> u32 {
//!     let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
//!     if n < 3 {
//!         panic!("attempt {n} failed");
//!     }
//!     n
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(1).prestart_workers(1))?;
//!     assert_eq!(ray::get(&flaky::remote())?, 3, "the third attempt succeeded");
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Placement groups
//!
//! [`placement_group`] reserves bundles of resources together ([`Bundle`], with a
//! [`PlacementStrategy`]); its [`ready`](PlacementGroup::ready) object completes once they are
//! reserved, or fails with [`Error::Infeasible`] at once if they never can be. Tasks and actors
//! run in a bundle with `.options().placement_group(&pg, Some(i))` (`None`: any bundle),
//! holding the bundle's resources; [`remove_placement_group`] gives them back and stops what
//! runs in the group. On one node every bundle is on that node.
//!
//! ```
//! use ray::{Bundle, PlacementStrategy};
//!
//! #[ray::remote]
//! struct Shard {}
//!
//! #[ray::remote]
//! impl Shard {
//!     fn new() -> Self {
//!         Shard {}
//!     }
//!     fn cpus(&self) -> f64 {
//!         ray::runtime_context().unwrap().assigned_resources().unwrap()["CPU"]
//!     }
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(4))?;
//!     let pg = ray::placement_group(
//!         [Bundle::new().num_cpus(2), Bundle::new().num_cpus(2)],
//!         PlacementStrategy::Spread,
//!     );
//!     ray::get(&pg.ready())?; // both bundles are reserved
//!     let shards: Vec<_> = (0..2)
//!         .map(|i| Shard::options().num_cpus(2).placement_group(&pg, Some(i)).remote())
//!         .collect();
//!     assert_eq!(ray::get(&shards[1].cpus())?, 2.0);
//!     ray::remove_placement_group(&pg)?; // the shards are stopped, the CPUs given back
//!     assert!(ray::get(&shards[0].cpus()).is_err());
//!     let spread = ray::placement_group(
//!         [Bundle::new().num_cpus(1), Bundle::new().num_cpus(1)],
//!         PlacementStrategy::StrictSpread, // one node per bundle: not on a single node
//!     );
//!     assert!(matches!(ray::get(&spread.ready()), Err(ray::Error::Infeasible { .. })));
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Introspection
//!
//! [`cluster_resources`] and [`available_resources`] map resource names to amounts (total, and
//! free now), [`nodes`] lists the nodes, and [`runtime_context`] tells the calling code where
//! it runs: node, job, task or actor, process, and the resources it holds.
//!
//! ```
//! #[ray::remote(num_cpus = 0.5)]
//! fn where_am_i() -> (u32, f64) {
//!     let ctx = ray::runtime_context().unwrap();
//!     (ctx.worker_pid(), ctx.assigned_resources().unwrap()["CPU"])
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(2))?;
//!     assert_eq!(ray::cluster_resources()?["CPU"], 2.0);
//!     let (pid, cpu) = ray::get(&where_am_i::remote())?;
//!     assert!(pid != std::process::id());
//!     assert_eq!(cpu, 0.5);
//!     assert_eq!(ray::nodes()?.len(), 1);
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Resources
//!
//! A node offers CPUs, GPUs and custom resources ([`Config::num_cpus`], [`Config::num_gpus`],
//! [`Config::resource`]); a task or actor runs once the node has what it asks for. Logical GPU
//! `i` is the node's `i`-th GPU; inside a task or actor [`get_gpu_ids`] lists the ones it got
//! (also in `CUDA_VISIBLE_DEVICES`). A request no node can ever satisfy fails at once with
//! [`Error::Infeasible`] instead of waiting forever. As in Ray, a task's or actor's amount is a
//! fraction below 1 (`num_cpus = 0.5` shares a CPU) or a whole number: `num_cpus = 1.5` is a
//! compile error on the attribute, and [`Error::InvalidArgument`] from `.options()`.
//!
//! Without [`Config::num_gpus`], the node's GPUs are counted the first time something asks for
//! one: from the kernel's device nodes (NVIDIA GPUs in `/proc/driver/nvidia/gpus`, others by
//! their DRM render node), or, with the `gpu` feature, as the machine's wgpu adapters.
//!
//! ```
//! #[ray::remote(num_gpus = 1)]
//! fn gpu_ids() -> Vec<usize> {
//!     ray::get_gpu_ids()
//! }
//!
//! #[ray::remote(resources(disk = 1))]
//! fn uses_disk() -> bool {
//!     true
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(2).num_gpus(2).resource("disk", 1.0))?;
//!     assert_eq!(ray::get(&gpu_ids::remote())?.len(), 1);
//!     assert!(ray::get(&uses_disk::remote())?);
//!     let too_many = gpu_ids::options().num_gpus(3).remote();
//!     assert!(matches!(ray::get(&too_many), Err(ray::Error::Infeasible { .. })));
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Errors
//!
//! Failures are values, never hangs. Everything returns or reads as [`Result<T>`], with one
//! error enum, [`Error`]:
//!
//! - a panic in a task or method comes back from [`get`] as [`Error::TaskFailed`], naming the
//!   function, the panic message and the worker's pid;
//! - a worker process that dies (abort, segfault, OOM kill) gives [`Error::WorkerDied`] once the
//!   task's retries are used up; a dead actor gives [`Error::ActorDied`];
//! - [`Error::Infeasible`], [`Error::Timeout`], [`Error::ObjectStoreFull`],
//!   [`Error::Serialization`], [`Error::NotInitialized`], [`Error::WorkerSetupFailed`],
//!   [`Error::TaskCancelled`], [`Error::ActorNotFound`], [`Error::ActorNameTaken`],
//!   [`Error::ActorClassMismatch`], [`Error::PlacementGroupRemoved`] and
//!   [`Error::NeedsCluster`] say what they mean.
//!
//! A failed task whose error nobody reads is printed on stderr when its last reference goes
//! ("Unhandled error", once per object, as Ray does; `RAY_RS_IGNORE_UNHANDLED_ERRORS=1` turns it
//! off).
//!
//! Errors travel through dependencies: a task whose argument is a failed object does not run,
//! and its own result reads as that same error, so a panic upstream comes back, unchanged, from
//! the `ray::get` of any result downstream of it (as in Ray).
//!
//! `Type::remote(..)` and `name::remote(..)` return their handle or `ObjectRef` directly: a
//! submission that fails surfaces when its result is read.
//!
//! ```
//! #[ray::remote(max_retries = 0)]
//! fn divide(a: i64, b: i64) -> i64 {
//!     a / b
//! }
//!
//! fn main() -> ray::Result<()> {
//!     ray::init(ray::Config::default().num_cpus(1))?;
//!     let failed = divide::remote(1, 0);
//!     let downstream = divide::remote(&failed, 2); // never runs: its argument failed
//!     for r in [&failed, &downstream] {
//!         match ray::get(r) {
//!             Err(ray::Error::TaskFailed { function, message, .. }) => {
//!                 assert!(function.ends_with("divide"));
//!                 assert!(message.contains("divide by zero"));
//!             }
//!             other => panic!("expected the task failure, got {other:?}"),
//!         }
//!     }
//!     ray::shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! - `gpu` (off by default): the wgpu compute kernels and MNIST loader as `ray::gpu`,
//!   and GPU counting by wgpu adapters (one backend, Vulkan first, so logical GPU `i` is the
//!   device the kernels open for `i`). wgpu is most of a clean build: the README has the
//!   figures. Enable it with `ray = { version = "0.1", features = ["gpu"] }`.
//!
//! # The worker model
//!
//! [`init`] starts, inside the driver process, the node manager (Ray's raylet: scheduler,
//! worker pool, object directory) and a pool of worker processes: the driver's own executable
//! (`/proc/self/exe`) started again with a few environment variables. A constructor that runs
//! before `main` sees them and makes the process a worker instead. Task workers are leased and
//! reused; an actor owns its worker for life.
//!
//! Remote functions and actors are found by a stable registered name, module path plus item
//! name (`my_crate::geometry::norm`), through link-time registration that also survives fat LTO;
//! two tasks with the same name in different modules are distinct. A worker from another build
//! is refused when it connects. Worker output reaches the driver line by line, prefixed like
//! Ray's `(Counter pid=20686)`. When the driver exits, even by `SIGKILL`, its workers exit too.
//!
//! # What the macro writes
//!
//! For a task, `#[ray::remote(num_cpus = 0.5)]` on `pub fn add(a: i64, b: i64) -> i64` expands
//! to the function unchanged; anonymous imports of the traits that make `add.remote(..)` a
//! compile error saying to write `add::remote(..)`; a struct `add` (in the type namespace only,
//! so `add(1, 2)` still calls the function) with `remote` and `options`; and, in an unnamed
//! `const` block, the caller type that `add::options()` dereferences to, the registration a
//! worker looks `add` up in, and a compile-time check of the types. This is what `cargo expand` shows, before it expands the
//! macros used inside; the helpers come from `ray::__private`, which is not a public API.
//!
//! An actor expands the same way: `Counter::remote` and `Counter::options`, `CounterCreator`,
//! `CounterMethods` (what `ActorHandle<Counter>` dereferences to: one method per remote method,
//! returning an `ObjectRef`) and one registration that creates the actor and dispatches its
//! methods by name.
//!
//! ```rust
//! /// Adds two numbers.
//! pub fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//! #[allow(unused_imports)]
//! use ::ray::__private::python::{
//!     Remote0 as _, Remote1 as _, Remote2 as _, Remote3 as _, Remote4 as _, Remote5 as _,
//!     Remote6 as _, Remote7 as _, Remote8 as _,
//! };
//! /// The ray task `add()`: `add::remote(..)` runs it in a worker process.
//! #[allow(non_camel_case_types)]
//! pub struct add {}
//! #[allow(dead_code)]
//! impl add {
//!     /// Runs `add(..)` in a worker process; returns a reference to its result at once.
//!     pub fn remote(
//!         a: impl ::ray::IntoArg<i64>,
//!         b: impl ::ray::IntoArg<i64>,
//!     ) -> ::ray::ObjectRef<i64> {
//!         Self::options().remote(a, b)
//!     }
//!     /// Per-call options (`num_cpus`, `num_gpus`, `resource`, `max_retries`), then `.remote(..)`.
//!     pub fn options() -> ::ray::TaskOptions<add> {
//!         ::ray::TaskOptions::__new()
//!     }
//! }
//! const _: () = {
//!     use ::ray::__private::wire::traits::*;
//!     impl ::ray::RemoteFunction for add {
//!         const NAME: &'static str = ::core::concat!(::core::module_path!(), "::add");
//!         type Caller = AddCaller;
//!         fn __default_options() -> ::ray::__private::RawTaskOptions {
//!             let mut options = <::ray::__private::RawTaskOptions as ::core::default::Default>::default();
//!             options.num_cpus(0.5);
//!             options
//!         }
//!     }
//!     /// What `add::options()` dereferences to: `remote(..)` with those options.
//!     pub struct AddCaller(::ray::__private::RawTaskOptions);
//!     impl AddCaller {
//!         /// Runs `add(..)` in a worker process; returns a reference to its result at once.
//!         pub fn remote(
//!             &self,
//!             a: impl ::ray::IntoArg<i64>,
//!             b: impl ::ray::IntoArg<i64>,
//!         ) -> ::ray::ObjectRef<i64> {
//!             let mut args = ::ray::__private::ArgsBuilder::with_capacity(2);
//!             ::ray::__private::Wire::<i64>::new().push(&mut args, a);
//!             ::ray::__private::Wire::<i64>::new().push(&mut args, b);
//!             ::ray::__private::submit_task(
//!                 <add as ::ray::RemoteFunction>::NAME,
//!                 &self.0,
//!                 args,
//!             )
//!         }
//!     }
//!     impl ::core::convert::From<::ray::__private::RawTaskOptions> for AddCaller {
//!         fn from(options: ::ray::__private::RawTaskOptions) -> Self {
//!             AddCaller(options)
//!         }
//!     }
//!     impl ::core::convert::AsMut<::ray::__private::RawTaskOptions> for AddCaller {
//!         fn as_mut(&mut self) -> &mut ::ray::__private::RawTaskOptions {
//!             &mut self.0
//!         }
//!     }
//!     /// Registers `add` by name: a worker decodes the arguments, calls it, encodes the result.
//!     #[::ray::__private::linkme::distributed_slice(::ray::__private::TASKS)]
//!     #[linkme(crate = ::ray::__private::linkme)]
//!     static REGISTRATION: ::ray::__private::TaskEntry = ::ray::__private::TaskEntry {
//!         name: <add as ::ray::RemoteFunction>::NAME,
//!         signature: "fn add(a: i64, b: i64) -> i64",
//!         invoke: |args| {
//!             let a = ::ray::__private::Wire::<i64>::new().decode(args)?;
//!             let b = ::ray::__private::Wire::<i64>::new().decode(args)?;
//!             ::ray::__private::Wire::<i64>::new().encode(&add(a, b))
//!         },
//!     };
//!     /// Compile-time check that each parameter and the result implement serde's traits.
//!     const _: fn() = || {
//!         ::ray::__private::Wire::<i64>::PROBE.check().require();
//!     };
//! };
//! # fn main() {}
//! ```

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use ray_core::*;

/// Makes a function a ray task, or a struct and its `impl` block an actor.
///
/// ```
/// #[ray::remote(num_cpus = 2, max_retries = 1)]
/// fn norm(v: Vec<f32>) -> f32 {
///     v.iter().map(|x| x * x).sum::<f32>().sqrt()
/// }
///
/// #[ray::remote(num_gpus = 0.5, max_restarts = 1)]
/// struct Model {
///     weights: Vec<f32>,
/// }
///
/// #[ray::remote]
/// impl Model {
///     fn new(size: usize) -> Self {
///         Model { weights: vec![0.0; size] }
///     }
///     fn step(&mut self, grad: Vec<f32>) -> f32 {
///         for (w, g) in self.weights.iter_mut().zip(&grad) {
///             *w -= 0.1 * g;
///         }
///         norm(self.weights.clone())
///     }
/// }
/// # fn main() {}
/// ```
///
/// - On a `fn`: the function stays as it is, and `name::remote(args..)` runs it in a worker
///   process, returning an [`ObjectRef`] at once; `name::options()` sets per-call options.
///   Options: `num_cpus`, `num_gpus`, `resources(name = amount, ..)`, `max_retries`.
/// - On a `struct`: an actor class. Options: `num_cpus`, `num_gpus`, `resources(..)`,
///   `max_restarts`, `max_concurrency`.
/// - On the struct's `impl` block (without options): `fn new(..) -> Self` becomes
///   `Type::remote(..) -> ActorHandle<Type>` (and `Type::options()`), and each `&self` or
///   `&mut self` method becomes a method of the handle, returning an `ObjectRef`.
///
/// Parameters and results must be owned and implement serde's `Serialize` and `Deserialize`.
/// Misuses (unknown or ill-typed options, borrowed or `impl Trait` parameters, generic or
/// `async` functions, a missing `fn new`, a method consuming `self`, ...) are compile errors
/// at the offending token that say what would be right. See the [crate documentation](crate)
/// for the guide and for what the macro generates.
pub use ray_macros::remote;

/// Options of one method of an actor, inside its `#[ray::remote]` impl block:
/// `num_returns = n` (the method returns a tuple of `n` values and its handle method a tuple
/// of `n` `ObjectRef`s) or `streaming` (it returns an iterator, and its handle method an
/// [`ObjectRefGenerator`]).
///
/// ```
/// #[ray::remote]
/// struct Splitter {}
///
/// #[ray::remote]
/// impl Splitter {
///     fn new() -> Self {
///         Splitter {}
///     }
///     #[ray::method(num_returns = 2)]
///     fn halves(&self, v: Vec<u32>) -> (Vec<u32>, Vec<u32>) {
///         let (a, b) = v.split_at(v.len() / 2);
///         (a.to_vec(), b.to_vec())
///     }
///     #[ray::method(streaming)]
///     fn each(&self, n: u32) -> impl Iterator<Item = u32> {
///         0..n
///     }
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let s = Splitter::remote();
///     let (a, b) = s.halves(vec![1, 2, 3, 4]);
///     assert_eq!((ray::get(&a)?, ray::get(&b)?), (vec![1, 2], vec![3, 4]));
///     let items: Vec<u32> = s.each(3).map(|r| ray::get(&r).unwrap()).collect();
///     assert_eq!(items, [0, 1, 2]);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub use ray_macros::method;

/// Runs a function once in every worker process, before the worker's first task or actor:
/// Ray's `worker_process_setup_hook`, for the logging, tracing or other process-wide state that
/// `main` sets up in the driver (a worker never runs `main`).
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static LOGGING: AtomicBool = AtomicBool::new(false);
///
/// #[ray::worker_setup]
/// fn setup_logging() {
///     // e.g. `env_logger::init()` or a tracing subscriber
///     LOGGING.store(true, Ordering::SeqCst);
/// }
///
/// #[ray::remote]
/// fn logging_is_set_up() -> bool {
///     LOGGING.load(Ordering::SeqCst)
/// }
///
/// fn main() -> ray::Result<()> {
///     setup_logging(); // the driver runs `main`, so it calls the function itself
///     ray::init(ray::Config::default().num_cpus(1))?;
///     assert!(ray::get(&logging_is_set_up::remote())?);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
///
/// - The function takes no parameters and returns nothing; it stays an ordinary function.
/// - Every setup function of the executable runs in every worker (in order of their module
///   paths and names), once, after the worker connects and before anything else runs there.
///   Output it prints reaches the driver prefixed like a task's.
/// - If one panics, that worker runs nothing: each task or actor sent to it fails with
///   [`Error::WorkerSetupFailed`] naming the function and the panic message.
/// - It is registered like remote functions (by name, at link time), which is how each worker
///   of your executable finds it without being told.
pub use ray_macros::worker_setup;

/// The GPU kernels (wgpu compute shaders) and MNIST loader, for GPU tasks and actors. Needs the
/// `gpu` feature: `ray = { version = "0.1", features = ["gpu"] }`.
#[cfg(feature = "gpu")]
pub use ray_gpu as gpu;

#[doc(hidden)]
pub use ray_core::__private;

// The README's example compiles and runs as a doctest too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct Readme;
