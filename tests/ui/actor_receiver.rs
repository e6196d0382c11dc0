// Actor methods must borrow the actor, which lives on in its worker.

#[ray::remote]
struct Job {
    done: bool,
}

#[ray::remote]
impl Job {
    fn new() -> Self {
        Job { done: false }
    }
    fn finish(self) -> bool {
        self.done
    }
    fn boxed(self: Box<Self>) -> bool {
        self.done
    }
    fn status(&self) -> bool {
        self.done
    }
}

fn main() {
    // The other methods are still generated.
    let job = Job::remote();
    let _: ray::ObjectRef<bool> = job.status();
}
