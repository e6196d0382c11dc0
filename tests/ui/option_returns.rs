// Misuses of `num_returns` and `streaming`: each error is at the offending token and says
// what to write instead.

#[ray::remote(num_returns = 2)]
fn not_a_tuple() -> Vec<u32> {
    vec![1, 2]
}

#[ray::remote(num_returns = 3)]
fn wrong_arity() -> (u32, u32) {
    (1, 2)
}

#[ray::remote(num_returns = "streaming")]
fn ray_spelling() -> Vec<u32> {
    vec![]
}

#[ray::remote(num_returns = 0)]
fn none() -> u32 {
    0
}

#[ray::remote(streaming)]
fn streams_nothing() {}

#[ray::remote(streaming, num_returns = 2)]
fn both() -> Vec<u32> {
    vec![]
}

#[ray::remote(streaming)]
fn opaque_without_item() -> impl std::fmt::Display {
    1
}

fn main() {}
