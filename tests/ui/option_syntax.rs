// Options that do not parse.

#[ray::remote(num_cpus: 2)]
fn colon_instead_of_equals() {}

fn main() {
    let _ = colon_instead_of_equals::remote();
}
