// Arguments of `.remote(..)` must be the parameter's type or an `ObjectRef` to it.

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
    fn new() -> Self {
        Counter { n: 0 }
    }
    fn add(&mut self, x: i64) -> i64 {
        self.n += x;
        self.n
    }
}

fn main() {
    let _ = add::remote("one", 2);
    let text: ray::ObjectRef<String> = ray::put("one".to_string()).unwrap();
    let _ = add::remote(&text, 2);
    let counter = Counter::remote();
    let _ = counter.add(1.5);
}
