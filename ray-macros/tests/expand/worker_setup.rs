/// Sets up logging in every worker process.
#[ray::worker_setup]
fn setup_logging() {
    println!("logging ready");
}
