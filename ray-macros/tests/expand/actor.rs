#[ray::remote(num_gpus = 1)]
pub struct Counter {
    n: i64,
}

#[ray::remote]
impl Counter {
    pub fn new(start: i64) -> Self {
        Counter { n: start }
    }

    /// Adds `x` and returns the new total.
    pub fn add(&mut self, x: i64) -> i64 {
        self.n += x;
        self.n
    }

    pub fn get(&self) -> i64 {
        self.n
    }
}
