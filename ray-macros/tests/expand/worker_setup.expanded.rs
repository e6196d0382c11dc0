/// Sets up logging in every worker process.
fn setup_logging() {
    println!("logging ready");
}
const _: () = {
    /// Registers `setup_logging` to run in every worker process before its first task.
    #[::ray::__private::linkme::distributed_slice(::ray::__private::WORKER_SETUP)]
    #[linkme(crate = ::ray::__private::linkme)]
    static REGISTRATION: ::ray::__private::WorkerSetup = ::ray::__private::WorkerSetup {
        name: ::core::concat!(::core::module_path!(), "::setup_logging"),
        run: setup_logging,
    };
};
