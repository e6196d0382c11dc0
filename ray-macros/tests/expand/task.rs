/// Adds two numbers.
#[ray::remote(num_cpus = 0.5)]
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}
