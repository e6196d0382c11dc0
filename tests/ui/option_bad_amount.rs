// Amounts that are negative, not finite, or out of range.

#[ray::remote(num_cpus = -1)]
fn negative() {}

#[ray::remote(num_gpus = f64::NAN)]
fn not_a_number() {}

#[ray::remote(num_gpus = 1e999)]
fn infinite() {}

#[ray::remote(num_gpus = 1.5)]
fn one_and_a_half_gpus() {}

#[ray::remote(num_cpus = 1.5)]
fn one_and_a_half_cpus() {}

#[ray::remote(resources(disk = 2.25))]
fn two_and_a_quarter_disks() {}

#[ray::remote(num_cpus = 2.5)]
struct TwoAndAHalfCpus {}

#[ray::remote]
impl TwoAndAHalfCpus {
    fn new() -> Self {
        TwoAndAHalfCpus {}
    }
}

// Fractions below 1 and whole amounts above it are fine.
#[ray::remote(num_cpus = 0.5, num_gpus = 2, resources(disk = 0.25))]
fn fine() {}

#[ray::remote(max_retries = -1)]
fn negative_retries() {}

#[ray::remote(resources(GPU = 1))]
fn gpu_as_a_custom_resource() {}

#[ray::remote(resources(disk = -0.5))]
fn negative_resource() {}

#[ray::remote(max_concurrency = 0)]
struct NoThreads {}

#[ray::remote]
impl NoThreads {
    fn new() -> Self {
        NoThreads {}
    }
}

fn main() {}
