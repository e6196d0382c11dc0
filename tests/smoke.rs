use ray::{ActorHandle, ObjectRef};

#[ray::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[ray::remote]
struct Counter {
    n: i64,
}

#[ray::remote]
impl Counter {
    fn new(start: i64) -> Self {
        Counter { n: start }
    }
    fn add(&mut self, x: i64) -> i64 {
        self.n += x;
        self.n
    }
    fn get(&self) -> i64 {
        self.n
    }
}

#[test]
fn smoke() -> ray::Result<()> {
    ray::init(ray::Config::default().num_cpus(2))?;
    assert_eq!(add(1, 2), 3);
    let a: ObjectRef<i64> = add::remote(1, 2);
    let b = add::remote(&a, 10);
    assert_eq!(ray::get(&b)?, 13);
    let c: ActorHandle<Counter> = Counter::remote(5);
    let r = c.add(3);
    assert_eq!(ray::get(&r)?, 8);
    assert_eq!(ray::get(&c.get())?, 8);
    ray::shutdown();
    Ok(())
}
