//! Trains the softmax-regression model of TensorFlow's MNIST tutorial (784 -> 10, zero init,
//! SGD with learning rate 0.5, batch 100) on the shipped MNIST sample, on the GPU this process
//! was given (`RAY_RS_GPU_IDS`, else logical GPU 0, else the CPU with a warning).
//!
//! ```text
//! cargo run --release -p ray-gpu --example mnist_softmax -- [STEPS] [DATA_DIR]
//! ```

use std::time::Instant;

use ray_gpu::mnist::{self, CLASSES, Mnist, PIXELS};
use ray_gpu::{Device, SoftmaxRegression};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: usize = match args.next() {
        Some(s) => s.parse()?,
        None => 1000,
    };
    let dir = args.next().map_or_else(mnist::default_dir, Into::into);
    let data = Mnist::load(&dir)?;
    let device = if std::env::var_os(ray_gpu::GPU_IDS_ENV).is_some() {
        Device::from_ray_env()
    } else {
        Device::for_gpu(0)
    };
    println!(
        "{} training / {} test images from {}; device: {}",
        data.train.len(),
        data.test.len(),
        dir.display(),
        device.describe()
    );
    let mut model = SoftmaxRegression::new(&device, PIXELS, CLASSES, 0.5)?;
    let mut batches = data.train.batches(None);
    let start = Instant::now();
    for step in 1..=steps {
        let batch = batches.next_batch(100);
        model.train_step(&batch.images, &batch.labels)?;
        if step % 200 == 0 || step == steps {
            let eval = model.evaluate(data.test.images(), data.test.labels())?;
            println!(
                "step {step:>5}: test loss {:.4}, test accuracy {:.4}",
                eval.loss, eval.accuracy
            );
        }
    }
    println!("{steps} steps in {:.2?}", start.elapsed());
    Ok(())
}
