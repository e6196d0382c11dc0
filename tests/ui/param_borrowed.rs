// Parameters and results that borrow: they cannot be sent to another process.

#[ray::remote]
fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[ray::remote]
fn sum(values: &[f32]) -> f32 {
    values.iter().sum()
}

#[ray::remote]
fn fill(buffer: &mut Vec<u8>) {
    buffer.push(1);
}

#[ray::remote]
fn join(parts: Vec<&str>) -> String {
    parts.join(" ")
}

#[ray::remote]
fn open(path: &std::path::Path) -> bool {
    path.exists()
}

#[ray::remote]
fn name() -> &'static str {
    "ray"
}

fn main() {
    // The caller side is still generated, so calls type-check.
    let _ = count_words::remote("a b");
    let _ = name::remote();
}
