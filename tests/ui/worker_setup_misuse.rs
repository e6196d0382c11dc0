// `#[ray::worker_setup]` goes on a plain `fn()`: each misuse is reported at its token.

#[ray::worker_setup]
fn with_parameter(level: u8) {
    let _ = level;
}

#[ray::worker_setup]
fn with_result() -> Result<(), String> {
    Ok(())
}

#[ray::worker_setup]
async fn not_async() {}

#[ray::worker_setup(verbose = true)]
fn with_options() {}

#[ray::worker_setup]
struct NotAFunction;

#[ray::worker_setup]
fn fine() {}

fn main() {
    fine();
}
