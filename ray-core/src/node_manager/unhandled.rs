//! Failures nobody read: when the last reference to a failed object goes and its error was
//! never read (by `get`, `.await`, or a task it was an argument of), the error is printed once
//! on stderr, as Ray's "Unhandled error". `RAY_RS_IGNORE_UNHANDLED_ERRORS=1` silences it.

use super::objects::ObjState;
use super::state::NodeState;
use crate::ids::{IdMap, ObjectId};
use crate::log;

pub(crate) struct Unhandled {
    /// Failed objects whose error was not read yet.
    unread: IdMap<ObjectId, ()>,
    quiet: bool,
}

impl Default for Unhandled {
    fn default() -> Self {
        Unhandled {
            unread: IdMap::default(),
            quiet: std::env::var_os("RAY_RS_IGNORE_UNHANDLED_ERRORS").is_some_and(|v| v != "0"),
        }
    }
}

impl NodeState {
    /// An object (that someone holds) failed.
    pub(super) fn note_failed(&mut self, id: ObjectId) {
        if self.objects.get(id).is_some_and(|e| !e.is_done()) {
            self.unhandled.unread.insert(id, ());
        }
    }

    /// Its error was read.
    pub(super) fn error_read(&mut self, id: ObjectId) {
        if !self.unhandled.unread.is_empty() {
            self.unhandled.unread.remove(&id);
        }
    }

    /// An object left the directory: an unread error is printed; a stream's items go.
    pub(super) fn object_left(&mut self, id: ObjectId, state: &ObjState) {
        if !self.generators.is_empty() {
            self.stream_dropped(id);
        }
        if self.unhandled.unread.is_empty() || self.unhandled.unread.remove(&id).is_none() {
            return;
        }
        if let (ObjState::Failed(e), false) = (state, self.unhandled.quiet) {
            log::error!(
                "Unhandled error (suppress with RAY_RS_IGNORE_UNHANDLED_ERRORS=1): object {id} \
                 was never read, and failed: {e}"
            );
        }
    }

    #[cfg(test)]
    pub(crate) fn unhandled_count(&self) -> usize {
        self.unhandled.unread.len()
    }
}
