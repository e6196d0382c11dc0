// Options of the new core API in the wrong place or with the wrong type.

#[ray::remote(name = "ledger", num_returns = 2, max_calls = 3)]
struct Ledger {}

#[ray::remote]
impl Ledger {
    fn new() -> Self {
        Ledger {}
    }
}

#[ray::remote(max_task_retries = 2, retry_exceptions = 1)]
fn task() -> u32 {
    0
}

#[ray::remote(max_task_retries = -2)]
struct Negative {}

#[ray::remote]
impl Negative {
    fn new() -> Self {
        Negative {}
    }
}

fn main() {}
