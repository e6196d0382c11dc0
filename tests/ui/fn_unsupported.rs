// Functions that cannot be tasks.

#[ray::remote]
async fn fetch(url: String) -> String {
    url
}

#[ray::remote]
fn largest<T: PartialOrd + Copy>(items: Vec<T>) -> T {
    items[0]
}

#[ray::remote]
fn bounded(items: Vec<u8>) -> u8
where
    u8: Copy,
{
    items[0]
}

#[ray::remote]
unsafe fn raw(n: u64) -> u64 {
    n
}

struct Thing;

impl Thing {
    #[ray::remote]
    fn method(&self) -> u8 {
        1
    }
}

fn main() {
    // Calls still type-check where the signature allows it.
    let _: ray::ObjectRef<String> = fetch::remote("x".to_string());
    let _ = raw::remote(1);
}
