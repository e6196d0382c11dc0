// `#[ray::remote]` on the struct but not on its impl block.

#[ray::remote]
struct Counter {
    n: i64,
}

impl Counter {
    fn new(n: i64) -> Self {
        Counter { n }
    }
}

fn main() {
    let _ = Counter::new(1).n;
}
