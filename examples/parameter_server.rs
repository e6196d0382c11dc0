//! A parameter server, zero-copy end to end: an actor holds 1M `f32` parameters, 4 workers
//! compute gradients from them each round, the server applies the gradients; 20 rounds. No
//! large value is serialized or deserialized anywhere: every 4 MB array is written into the
//! node's shared-memory object store once (one memory copy) and read in place.
//!
//! ```text
//! cargo run --release --example parameter_server               # both transports, timed
//! cargo run --release --example parameter_server -- --serde    # serde transport only
//! ```
//!
//! How each large value moves (the rules are in the `ray` crate's documentation, "Zero-copy"):
//!
//! - The server's `params()` stores its parameters with [`ray::put_slice`] (one copy into the
//!   store) and returns the `ObjectRef<Vec<f32>>`. A method's result is itself an object, so the
//!   caller holds an `ObjectRef<ObjectRef<Vec<f32>>>`: one `ray::get` of a few bytes gives the
//!   inner ref.
//! - `gradient` declares its parameter `ObjectRef<Vec<f32>>`, so it receives the ref
//!   unresolved and reads the parameters with [`ray::get_slice`]: a `&[f32]` pointing into
//!   shared memory, no copy.
//! - `gradient` returns a plain `Vec<f32>`: a `Vec` of plain-old-data lies in the store as its
//!   length followed by its elements, so [`ray::get_slice`] reads it in place too.
//! - `apply` takes the gradients as `Vec<ObjectRef<Vec<f32>>>`: refs inside a value are never
//!   resolved, and the server reads each one in place.
//!
//! The same algorithm with serde transport (parameters `Vec<f32>` everywhere, so every array
//! is encoded by its sender and decoded by its receiver) runs with `--serde`. Best of 3 runs on
//! the project's 2-core VM, release build, 20 rounds each moving the 4 MiB parameters to 4
//! workers and 4 MiB gradients back (README, "Large objects and zero-copy"; in a debug build
//! see its "Debug builds"):
//!
//! | transport | 20 rounds |
//! |---|---:|
//! | zero-copy (`put_slice`, `get_slice`, `ObjectRef` parameters) | 0.33 s |
//! | serde (`Vec<f32>` parameters and results) | 0.65 s |

use ray::{ActorHandle, ObjectRef};
use std::time::{Duration, Instant};

/// Number of parameters.
pub const PARAMS: usize = 1 << 20;
/// Gradient workers per round.
pub const WORKERS: u32 = 4;
/// Rounds.
pub const ROUNDS: u32 = 20;
/// Learning rate.
const LEARNING_RATE: f32 = 0.5;

/// Worker `w`'s data pulls the parameters towards its target; the server converges to the
/// mean of the workers' targets.
fn target(worker: u32, i: usize) -> f32 {
    ((i % 1000) as f32 * 0.001 * (worker + 1) as f32).sin()
}

/// The gradient of `0.5 * |p - target(worker)|²`.
fn gradient_of(params: &[f32], worker: u32) -> Vec<f32> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| p - target(worker, i))
        .collect()
}

/// Zero-copy: the parameter is declared `ObjectRef<..>`, so it arrives unresolved and is read
/// in place; the returned `Vec<f32>` can be read in place by the server.
#[ray::remote]
pub fn gradient(params: ObjectRef<Vec<f32>>, worker: u32) -> Vec<f32> {
    let params = ray::get_slice(&params).expect("the parameters are readable");
    gradient_of(&params, worker)
}

/// Serde transport: the parameters arrive decoded into a `Vec<f32>` of this worker's own.
#[ray::remote]
fn gradient_serde(params: Vec<f32>, worker: u32) -> Vec<f32> {
    gradient_of(&params, worker)
}

/// Holds the parameters and applies gradients to them.
#[ray::remote]
pub struct ParameterServer {
    params: Vec<f32>,
}

#[ray::remote]
impl ParameterServer {
    fn new(size: usize) -> Self {
        ParameterServer {
            params: vec![0.0; size],
        }
    }

    /// The parameters, stored once (one copy into shared memory).
    fn params(&self) -> ObjectRef<Vec<f32>> {
        ray::put_slice(&self.params).expect("the object store has room")
    }

    /// Applies the mean of `gradients`, each read in place.
    fn apply(&mut self, gradients: Vec<ObjectRef<Vec<f32>>>) {
        let views: Vec<_> = gradients
            .iter()
            .map(|g| ray::get_slice(g).expect("the gradient is readable"))
            .collect();
        self.step(&views.iter().map(|v| &v[..]).collect::<Vec<_>>());
    }

    /// Serde transport: the parameters, encoded.
    fn params_serde(&self) -> Vec<f32> {
        self.params.clone()
    }

    /// Serde transport: the four gradients, decoded.
    fn apply_serde(&mut self, a: Vec<f32>, b: Vec<f32>, c: Vec<f32>, d: Vec<f32>) {
        self.step(&[&a, &b, &c, &d]);
    }

    /// Distance to the optimum (the mean of the workers' targets), root mean square.
    fn error(&self) -> f64 {
        let sum: f64 = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let best = (0..WORKERS).map(|w| target(w, i)).sum::<f32>() / WORKERS as f32;
                ((p - best) as f64).powi(2)
            })
            .sum();
        (sum / self.params.len() as f64).sqrt()
    }
}

impl ParameterServer {
    fn step(&mut self, gradients: &[&[f32]]) {
        let scale = LEARNING_RATE / gradients.len() as f32;
        for g in gradients {
            for (p, g) in self.params.iter_mut().zip(g.iter()) {
                *p -= scale * g;
            }
        }
    }
}

/// How to move the arrays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transport {
    /// `put_slice`, `get_slice` and `ObjectRef` parameters.
    ZeroCopy,
    /// `Vec<f32>` parameters and results, through serde.
    Serde,
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Wall time of the rounds (the server's start included).
    pub elapsed: Duration,
    /// Root-mean-square distance to the optimum at the end.
    pub error: f64,
}

/// Trains for `rounds` rounds with `transport`; ray must be running.
pub fn train(transport: Transport, rounds: u32) -> ray::Result<Outcome> {
    let start = Instant::now();
    let server: ActorHandle<ParameterServer> = ParameterServer::remote(PARAMS);
    for _ in 0..rounds {
        match transport {
            Transport::ZeroCopy => {
                // The method's result is a ref to the stored parameters: get it (a few bytes).
                let params: ObjectRef<Vec<f32>> = ray::get(&server.params())?;
                let gradients: Vec<ObjectRef<Vec<f32>>> =
                    (0..WORKERS).map(|w| gradient::remote(&params, w)).collect();
                server.apply(gradients);
            }
            Transport::Serde => {
                // The parameters' ref is passed on as is: each worker gets them decoded.
                let params = server.params_serde();
                let g: Vec<ObjectRef<Vec<f32>>> = (0..WORKERS)
                    .map(|w| gradient_serde::remote(&params, w))
                    .collect();
                server.apply_serde(&g[0], &g[1], &g[2], &g[3]);
            }
        }
    }
    // Calls from one caller run in order: this reads the parameters after the last round.
    let error = ray::get(&server.error())?;
    let elapsed = start.elapsed();
    ray::kill(&server);
    Ok(Outcome { elapsed, error })
}

// `pub` so that `tests/parameter_server_example.rs` runs this very `main`.
pub fn main() -> ray::Result<()> {
    ray::init(ray::Config::default())?;
    let serde_only = std::env::args().any(|a| a == "--serde");
    let transports: &[Transport] = if serde_only {
        &[Transport::Serde]
    } else {
        &[Transport::ZeroCopy, Transport::Serde]
    };
    for &transport in transports {
        let outcome = train(transport, ROUNDS)?;
        println!(
            "{transport:?}: {ROUNDS} rounds of {WORKERS} workers x {PARAMS} parameters in {:.2?} \
             (rms distance to the optimum {:.1e})",
            outcome.elapsed, outcome.error
        );
    }
    ray::shutdown();
    Ok(())
}
