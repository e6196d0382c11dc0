//! The seed program: a Ray actor with one GPU trains softmax regression on MNIST while the
//! driver waits on `ray::get` (the Ray + TensorFlow example, in Rust).
//!
//! ```text
//! cargo run --release --example mnist                      # one actor, 200 steps
//! cargo run --release --example mnist -- --steps 1000
//! cargo run --release --example mnist -- --actors 4        # 4 actors on 4 GPUs at once
//! cargo run --release --example mnist -- --data-dir ~/mnist  # the full MNIST (IDX, gz or raw)
//! ```
//!
//! As in the seed, `ray::init` declares 8 GPUs; an actor whose logical GPU has no adapter on
//! this machine falls back to the CPU implementation of the same kernels with one warning
//! (TensorFlow's `allow_soft_placement=True`).

use ray::gpu::mnist::{self, BatchPosition, CLASSES, Dataset, Mnist, PIXELS};
use ray::gpu::{Device, SoftmaxRegression};
use ray::{ActorHandle, ObjectRef};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

const BATCH: usize = 100;
const LEARNING_RATE: f32 = 0.5;
const REPORT_EVERY: usize = 50;

/// The dataset as it travels to the actors (stored once in the object store).
#[derive(Serialize, Deserialize)]
pub struct MnistData {
    train_images: Vec<f32>,
    train_labels: Vec<u8>,
    test_images: Vec<f32>,
    test_labels: Vec<u8>,
}

impl MnistData {
    pub fn load(dir: &std::path::Path) -> Result<MnistData, ray::gpu::Error> {
        let m = Mnist::load(dir)?;
        Ok(MnistData {
            train_images: m.train.images().to_vec(),
            train_labels: m.train.labels().to_vec(),
            test_images: m.test.images().to_vec(),
            test_labels: m.test.labels().to_vec(),
        })
    }
}

/// Softmax regression (784 -> 10, zero init, lr 0.5, batch 100) on the GPU this actor was given.
#[ray::remote(num_gpus = 1)]
pub struct NeuralNetOnGpu {
    model: SoftmaxRegression,
    train: Dataset,
    test: Dataset,
    seed: Option<u64>,
    position: BatchPosition,
    steps: usize,
    device: String,
}

#[ray::remote]
impl NeuralNetOnGpu {
    /// Builds the model on the GPU named by `ray::get_gpu_ids()`. `seed` shuffles the training
    /// order (`None`: file order, like the seed program).
    fn new(data: MnistData, seed: Option<u64>) -> Self {
        let gpu_ids = ray::get_gpu_ids();
        let device = match gpu_ids.first() {
            Some(id) => Device::for_gpu(*id),
            None => Device::cpu(),
        };
        let device_name = format!("logical GPU {gpu_ids:?}: {}", device.describe());
        println!("building the model on {device_name}");
        let train = Dataset::new(data.train_images, data.train_labels).expect("valid training set");
        let test = Dataset::new(data.test_images, data.test_labels).expect("valid test set");
        let model = SoftmaxRegression::new(&device, PIXELS, CLASSES, LEARNING_RATE)
            .expect("model on the device");
        NeuralNetOnGpu {
            model,
            train,
            test,
            seed,
            position: BatchPosition::default(),
            steps: 0,
            device: device_name,
        }
    }

    /// Trains `num_steps` batches of 100, printing the test accuracy every 50 steps; returns
    /// the test accuracy at the end.
    fn train(&mut self, num_steps: usize) -> f32 {
        let start = Instant::now();
        let mut batches = self.train.batches_from(self.seed, self.position);
        for _ in 0..num_steps {
            let batch = batches.next_batch(BATCH);
            self.model
                .train_step(&batch.images, &batch.labels)
                .expect("training step");
            self.steps += 1;
            if self.steps % REPORT_EVERY == 0 {
                let accuracy = self.get_accuracy();
                println!(
                    "step {:>5}: test accuracy {accuracy:.4} ({:.1?} so far)",
                    self.steps,
                    start.elapsed()
                );
            }
        }
        self.position = batches.position();
        self.get_accuracy()
    }

    /// Accuracy on the test set.
    fn get_accuracy(&self) -> f32 {
        self.model
            .accuracy(self.test.images(), self.test.labels())
            .expect("evaluation")
    }

    /// Which device this actor trains on.
    fn device(&self) -> String {
        self.device.clone()
    }
}

/// What to run.
pub struct Options {
    pub steps: usize,
    pub actors: usize,
    pub data_dir: PathBuf,
}

/// Trains `actors` models at once (independent shuffles, one GPU each) and returns their final
/// test accuracies, in actor order.
pub fn run(opts: &Options) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let data = MnistData::load(&opts.data_dir)?;
    println!(
        "MNIST from {}: {} training and {} test images",
        opts.data_dir.display(),
        data.train_labels.len(),
        data.test_labels.len()
    );
    let data: ObjectRef<MnistData> = ray::put(data)?; // once, shared by every actor

    if opts.actors == 1 {
        let nn: ActorHandle<NeuralNetOnGpu> = NeuralNetOnGpu::remote(&data, None);
        ray::get(&nn.train(opts.steps))?;
        let accuracy = ray::get(&nn.get_accuracy())?;
        println!("Accuracy is {accuracy}.");
        return Ok(vec![accuracy]);
    }

    // Several actors at once, each on its own GPU, each with its own shuffling seed.
    let nets: Vec<ActorHandle<NeuralNetOnGpu>> = (0..opts.actors)
        .map(|i| NeuralNetOnGpu::remote(&data, (i > 0).then_some(i as u64)))
        .collect();
    let devices = ray::get_all(&nets.iter().map(|n| n.device()).collect::<Vec<_>>())?;
    for (i, d) in devices.iter().enumerate() {
        println!("actor {i} trains on {d}");
    }
    let start = Instant::now();
    let mut pending: Vec<ObjectRef<f32>> = nets.iter().map(|n| n.train(opts.steps)).collect();
    let order: Vec<ObjectRef<f32>> = pending.clone();
    while !pending.is_empty() {
        let (ready, rest) = ray::wait(&pending, 1, None);
        for r in &ready {
            let i = order.iter().position(|o| o == r).expect("one of ours");
            println!(
                "actor {i} finished after {:.1?}: accuracy {:.4}",
                start.elapsed(),
                ray::get(r)?
            );
        }
        pending = rest;
    }
    let accuracies = ray::get_all(&order)?;
    let mean = accuracies.iter().sum::<f32>() / accuracies.len() as f32;
    println!(
        "Accuracy is {mean} (mean of {} actors: {accuracies:?}).",
        accuracies.len()
    );
    Ok(accuracies)
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = Options {
        steps: 200,
        actors: 1,
        data_dir: mnist::default_dir(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--steps" => opts.steps = value("--steps")?.parse()?,
            "--actors" => opts.actors = value("--actors")?.parse()?,
            "--data-dir" => opts.data_dir = value("--data-dir")?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: mnist [--steps N (200)] [--actors N (1)] [--data-dir DIR (the shipped sample)]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; try --help").into()),
        }
    }
    if opts.actors == 0 {
        return Err("--actors must be at least 1".into());
    }
    // As in the seed program: declare 8 GPUs.
    ray::init(ray::Config::default().num_gpus(8))?;
    let result = run(&opts);
    ray::shutdown();
    result.map(|_| ())
}
