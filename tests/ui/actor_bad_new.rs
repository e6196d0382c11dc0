// Constructors that take `self` or do not return `Self`.

#[ray::remote]
struct WithSelf {}

#[ray::remote]
impl WithSelf {
    fn new(&self) -> Self {
        WithSelf {}
    }
}

#[ray::remote]
struct Fallible {}

#[ray::remote]
impl Fallible {
    fn new(ok: bool) -> Option<Self> {
        ok.then_some(Fallible {})
    }
}

fn main() {}
