// Unknown options, and options of the other kind of remote item.

#[ray::remote(num_cpu = 1)]
fn near_miss() {}

#[ray::remote(memory = 1)]
fn unknown() {}

#[ray::remote(max_restarts = 1)]
fn actor_option_on_a_task() {}

#[ray::remote(max_retries = 1)]
struct TaskOptionOnAnActor {}

#[ray::remote]
impl TaskOptionOnAnActor {
    fn new() -> Self {
        TaskOptionOnAnActor {}
    }
}

fn main() {
    // The rest of the program still type-checks: only the options are reported.
    let _ = near_miss::remote();
    let _ = TaskOptionOnAnActor::remote();
}
