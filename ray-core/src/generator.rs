//! The caller's side of streaming tasks and calls (Ray's `ObjectRefGenerator`).

use crate::context;
use crate::ids::{ObjectId, RefId};
use crate::object_ref::ObjectRef;
use crate::protocol::worker::{Control, ControlReply, StreamItem};
use crate::refcount;
use std::fmt;
use std::marker::PhantomData;

/// The results of a streaming task or actor call (`#[ray::remote(streaming)]`): an iterator of
/// [`ObjectRef`]s, one per item the task yields, each given out as soon as the worker produced
/// it (so the caller works on early items while later ones are computed).
///
/// The task runs ahead of the caller by at most a few items (16 unless
/// [`stream_backpressure`](crate::TaskOptions::stream_backpressure) says otherwise), then
/// waits. If the task panics (or its worker dies for good) after some items, the iterator
/// gives those, then one last ref that reads as the error, then ends. Dropping the generator
/// frees the items not taken; the task itself runs to its end.
///
/// `next()` blocks until the next item is produced or the stream ends.
///
/// ```
/// #[ray::remote(streaming)]
/// fn countdown(from: u32) -> impl Iterator<Item = u32> {
///     (0..from).rev()
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let mut values = Vec::new();
///     for r in countdown::remote(3) {
///         values.push(ray::get(&r)?);
///     }
///     assert_eq!(values, [2, 1, 0]);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub struct ObjectRefGenerator<T> {
    /// The task's own object: done when the stream ended (with its error if it failed).
    task: ObjectRef<()>,
    next: u64,
    done: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T> ObjectRefGenerator<T> {
    pub(crate) fn new(task: ObjectRef<()>) -> Self {
        let done = task.id().is_null();
        ObjectRefGenerator {
            task,
            next: 0,
            done,
            _type: PhantomData,
        }
    }

    /// The streaming task's own object: ready once the stream has ended, or failed with the
    /// task's error. Cancel the task with `ray::cancel(generator.task())`.
    pub fn task(&self) -> &ObjectRef<()> {
        &self.task
    }

    /// How many items were taken so far.
    pub fn taken(&self) -> u64 {
        self.next
    }

    fn typed_task_ref(&self) -> ObjectRef<T> {
        refcount::inc(RefId::Object(self.task.id()));
        ObjectRef::adopt(self.task.id())
    }
}

impl<T> Iterator for ObjectRefGenerator<T> {
    type Item = ObjectRef<T>;

    fn next(&mut self) -> Option<ObjectRef<T>> {
        if self.done {
            return None;
        }
        let op = Control::StreamNext {
            generator: self.task.id(),
            index: self.next,
        };
        let client = context::client().ok()?;
        let reply = client.control(op);
        match reply {
            Ok(ControlReply::Item(StreamItem::Ref(id))) => {
                client.adopt(RefId::Object(id));
                self.next += 1;
                Some(ObjectRef::adopt(id))
            }
            Ok(ControlReply::Item(StreamItem::Failed)) => {
                self.done = true;
                Some(self.typed_task_ref())
            }
            Ok(_) => {
                self.done = true;
                None
            }
            Err(_) => {
                // The runtime went away: the task's own ref says why when read.
                self.done = true;
                Some(self.typed_task_ref())
            }
        }
    }
}

impl<T> fmt::Debug for ObjectRefGenerator<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ObjectRefGenerator<{}>({}, {} taken)",
            std::any::type_name::<T>(),
            self.task.id(),
            self.next
        )
    }
}

/// Ids of a streaming call's task, for `submit.rs`.
pub(crate) fn generator_of<T>(task: ObjectId) -> ObjectRefGenerator<T> {
    ObjectRefGenerator::new(ObjectRef::adopt(task))
}
