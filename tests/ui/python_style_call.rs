// `add.remote(1, 2)`, as a Python user writes it: the error says to write `add::remote(1, 2)`.

#[ray::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[ray::remote]
fn ping() -> u8 {
    1
}

fn main() {
    let _ = add.remote(1, 2);
    let _ = ping.remote();
    // The right way still compiles, and so do per-call options.
    let _ = add::remote(1, 2);
    let _ = add::options().num_cpus(2).remote(1, 2);
}
