#[ray::remote(max_task_retries = -1)]
pub struct Cache {
    hits: std::cell::Cell<u64>,
}

#[ray::remote]
impl Cache {
    pub fn new() -> Self {
        Cache { hits: std::cell::Cell::new(0) }
    }
    /// Interleaves with other calls at its `.await`s.
    pub async fn fetch(&self, key: ray::ObjectRef<String>) -> String {
        self.hits.set(self.hits.get() + 1);
        key.await.unwrap()
    }
    #[ray::method(num_returns = 2)]
    pub fn stats(&self) -> (u64, String) {
        (self.hits.get(), "hits".into())
    }
    #[ray::method(streaming)]
    pub fn keys(&self, n: u32) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }
}
