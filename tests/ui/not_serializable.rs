// Types without serde's `Serialize`/`Deserialize`: one error per type, at the type.

use serde::{Deserialize, Serialize};

struct Point {
    x: f64,
    y: f64,
}

#[derive(Serialize)]
struct Report {
    text: String,
}

#[derive(Deserialize)]
struct Query {
    text: String,
}

#[ray::remote]
fn norm(p: Point) -> f64 {
    (p.x * p.x + p.y * p.y).sqrt()
}

#[ray::remote]
fn answer(q: Query) -> Report {
    Report { text: q.text }
}

#[ray::remote]
fn points(n: usize) -> Vec<Point> {
    (0..n).map(|i| Point { x: i as f64, y: 0.0 }).collect()
}

#[ray::remote]
struct Plotter {
    origin: Point,
}

#[ray::remote]
impl Plotter {
    fn new(origin: Point) -> Self {
        Plotter { origin }
    }
    fn origin(&self) -> Point {
        Point { x: self.origin.x, y: self.origin.y }
    }
    fn shift(&mut self, by: Query) -> f64 {
        self.origin.x += by.text.len() as f64;
        self.origin.x
    }
}

fn main() {
    // Calls with serializable arguments still type-check, and passing the non-serializable
    // value adds no second error at the call.
    let _ = points::remote(3);
    let _ = norm::remote(Point { x: 3.0, y: 4.0 });
    let _ = Plotter::options();
}
