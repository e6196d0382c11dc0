// Parameters and results whose concrete type the other process cannot know.

#[ray::remote]
fn greet(name: impl Into<String>) -> String {
    name.into()
}

#[ray::remote]
fn total(values: impl Iterator<Item = u64>) -> u64 {
    values.sum()
}

#[ray::remote]
fn show(value: impl std::fmt::Display) -> String {
    value.to_string()
}

#[ray::remote]
fn numbers() -> impl Iterator<Item = u8> {
    0..3
}

#[ray::remote]
fn run(job: Box<dyn Fn() -> u8>) -> u8 {
    job()
}

#[ray::remote]
fn apply(f: fn(u8) -> u8) -> u8 {
    f(1)
}

fn main() {}
