// `#[ray::remote]` on items it does not support.

#[ray::remote]
enum Shape {
    Circle,
}

#[ray::remote]
trait Area {
    fn area(&self) -> f64;
}

#[ray::remote]
const LIMIT: u32 = 3;

#[ray::remote]
static NAME: &str = "x";

#[ray::remote]
mod tasks {}

#[ray::remote]
type Alias = u8;

fn main() {
    // The items themselves are still there.
    let _ = (Shape::Circle, LIMIT, NAME, Alias::default());
}
