// Method names that clash with what `#[ray::remote]` generates or with the handle's own.

#[ray::remote]
struct Service {}

#[ray::remote]
impl Service {
    fn new() -> Self {
        Service {}
    }
    fn remote(&self) -> u8 {
        1
    }
    fn clone(&self) -> u8 {
        2
    }
    fn actor_id(&self) -> u8 {
        3
    }
    fn into(&self) -> u8 {
        4
    }
    fn ping(&self) -> u8 {
        5
    }
}

fn main() {}
