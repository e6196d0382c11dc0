// `max_concurrency > 1` runs methods on several threads: the actor must be `Send + Sync`.

use std::cell::Cell;

#[ray::remote(max_concurrency = 4)]
struct Hits {
    n: Cell<u64>,
}

#[ray::remote]
impl Hits {
    fn new() -> Self {
        Hits { n: Cell::new(0) }
    }
    fn hit(&self) -> u64 {
        self.n.set(self.n.get() + 1);
        self.n.get()
    }
}

fn main() {}
