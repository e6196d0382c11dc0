// An actor's impl block needs `fn new(..) -> Self`.

#[ray::remote]
struct Counter {
    n: i64,
}

#[ray::remote]
impl Counter {
    fn start(n: i64) -> Self {
        Counter { n }
    }
    fn get(&self) -> i64 {
        self.n
    }
}

fn main() {}
