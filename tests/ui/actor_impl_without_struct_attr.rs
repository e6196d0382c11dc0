// `#[ray::remote]` on the impl block but not on the struct.

struct Counter {
    n: i64,
}

#[ray::remote]
impl Counter {
    fn new(n: i64) -> Self {
        Counter { n }
    }
    fn get(&self) -> i64 {
        self.n
    }
}

fn main() {}
