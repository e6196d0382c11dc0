//! Tasks and actors: the smallest tour of ray for Rust.
//!
//! `cargo run --release --example tasks_and_actors`

use ray::{ActorHandle, ObjectRef};

/// A task: runs in a worker process when called with `square::remote(..)`.
#[ray::remote]
fn square(x: u64) -> u64 {
    x * x
}

/// A task that submits tasks of its own.
#[ray::remote]
fn sum_of_squares(n: u64) -> u64 {
    let refs: Vec<ObjectRef<u64>> = (0..n).map(square::remote).collect();
    ray::get_all(&refs).unwrap().into_iter().sum()
}

/// An actor: its state lives in a worker process of its own.
#[ray::remote]
struct Accumulator {
    total: u64,
}

#[ray::remote]
impl Accumulator {
    fn new(start: u64) -> Self {
        println!("accumulator starting at {start}");
        Accumulator { total: start }
    }
    fn add(&mut self, x: u64) -> u64 {
        self.total += x;
        self.total
    }
}

fn main() -> ray::Result<()> {
    ray::init(ray::Config::default())?;

    let squares: Vec<ObjectRef<u64>> = (0..10).map(square::remote).collect();
    println!("squares: {:?}", ray::get_all(&squares)?);
    println!(
        "sum of squares below 100: {}",
        ray::get(&sum_of_squares::remote(100))?
    );

    let acc: ActorHandle<Accumulator> = Accumulator::remote(1000);
    for r in &squares {
        acc.add(r); // an ObjectRef is accepted wherever a value is
    }
    println!("accumulated: {}", ray::get(&acc.add(0))?);

    ray::shutdown();
    Ok(())
}
