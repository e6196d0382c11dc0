// Async actors and `#[ray::method]`: what is refused, and why.

#[ray::remote]
struct Cache {
    hits: u64,
}

#[ray::remote]
impl Cache {
    #[ray::method(num_returns = 2)]
    async fn new() -> Self {
        Cache { hits: 0 }
    }
    async fn fetch(&self, key: String) -> String {
        key
    }
    fn count(&mut self) -> u64 {
        self.hits += 1;
        self.hits
    }
    #[ray::method(num_cpus = 1)]
    fn priced(&self) -> u64 {
        1
    }
    #[ray::method(streaming)]
    #[ray::method(streaming)]
    fn twice(&self) -> Vec<u64> {
        vec![]
    }
}

#[ray::method(num_returns = 2)]
fn free_function() -> (u32, u32) {
    (1, 2)
}

fn main() {}
