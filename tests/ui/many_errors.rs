// Several mistakes in one item are reported together, each at its own token.

#[ray::remote(num_cpu = 1, num_gpus = -1)]
async fn process(name: &str, items: impl Iterator<Item = u32>, limit: u32) -> &str {
    let _ = (items, limit);
    name
}

fn main() {}
