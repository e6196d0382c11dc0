// Options whose values have the wrong type.

#[ray::remote(num_gpus = "one")]
fn a_string() {}

#[ray::remote(num_cpus = "2")]
fn a_quoted_number() {}

#[ray::remote(max_retries = 1.5)]
fn a_fraction_of_a_retry() {}

#[ray::remote(max_retries = true)]
fn a_bool() {}

#[ray::remote(num_cpus)]
fn no_value() {}

#[ray::remote(resources = 1)]
fn resources_without_names() {}

#[ray::remote(num_gpus = GPUS)]
fn a_constant() {}

const GPUS: u32 = 1;

fn main() {}
