// Impl blocks that cannot hold remote methods: with options, trait impls, generic ones.

#[ray::remote]
struct Counter {
    n: i64,
}

#[ray::remote(num_cpus = 1)]
impl Counter {
    fn new() -> Self {
        Counter { n: 0 }
    }
}

trait Describe {
    fn describe(&self) -> String;
}

#[ray::remote]
impl Describe for Counter {
    fn describe(&self) -> String {
        self.n.to_string()
    }
}

#[ray::remote]
struct Wrapper<T> {
    inner: T,
}

#[ray::remote]
impl<T> Wrapper<T> {
    fn new(inner: T) -> Self {
        Wrapper { inner }
    }
}

fn main() {}
