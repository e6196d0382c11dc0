//! `ObjectRef<T>`: a typed, reference-counted handle to a value in the object store.

use crate::codec;
use crate::context::{self, Client, GetToken};
use crate::error::{Error, Result};
use crate::ids::{ObjectId, RefId};
use crate::refcount;
use crate::slot::Slot;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A reference to a value that a task returns or `ray::put` stores, possibly not computed yet.
///
/// Cheap to clone, `Send`, and serializable: it can travel inside task arguments and return
/// values. The value is freed when no `ObjectRef` to it remains in any process. Read it with
/// [`get`](crate::get) or `.await` it.
///
/// ```no_run
/// # fn demo() -> ray_core::Result<()> {
/// let r: ray_core::ObjectRef<Vec<u8>> = ray_core::put(vec![1, 2, 3])?;
/// assert_eq!(ray_core::get(&r)?, vec![1, 2, 3]);
/// # Ok(()) }
/// ```
pub struct ObjectRef<T> {
    /// Clones in one process share this; the process's reference to the object (counted by the
    /// node manager) goes away when the last clone does, so cloning is an `Arc` increment.
    inner: Arc<LocalRef>,
    _type: PhantomData<fn() -> T>,
}

/// One process-local reference to an object.
struct LocalRef {
    id: ObjectId,
}

impl Drop for LocalRef {
    fn drop(&mut self) {
        refcount::dec(RefId::Object(self.id));
    }
}

impl<T> ObjectRef<T> {
    /// Wraps an id that this process already holds one reference to.
    pub(crate) fn adopt(id: ObjectId) -> Self {
        ObjectRef {
            inner: Arc::new(LocalRef { id }),
            _type: PhantomData,
        }
    }

    /// A reference that was never backed by a runtime: reading it says `NotInitialized`.
    pub(crate) fn null() -> Self {
        Self::adopt(ObjectId::NULL)
    }

    /// The object's id.
    pub fn id(&self) -> ObjectId {
        self.inner.id
    }
}

impl<T> Clone for ObjectRef<T> {
    fn clone(&self) -> Self {
        ObjectRef {
            inner: self.inner.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for ObjectRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ObjectRef<{}>({})",
            std::any::type_name::<T>(),
            self.id()
        )
    }
}

impl<T> PartialEq for ObjectRef<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<T> Eq for ObjectRef<T> {}

impl<T> Hash for ObjectRef<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state)
    }
}

impl<T> Serialize for ObjectRef<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        codec::note_contained(RefId::Object(self.id()));
        self.id().serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for ObjectRef<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let id = ObjectId::deserialize(d)?;
        refcount::inc(RefId::Object(id));
        Ok(ObjectRef::adopt(id))
    }
}

/// Future of [`ObjectRef::into_future`]: resolves to the value, or the task's error.
///
/// Dropping it before it resolves cancels the wait (a worker blocked on it gets its CPU back).
pub struct GetFuture<T> {
    object: ObjectRef<T>,
    state: FutureState,
}

enum FutureState {
    Waiting {
        slot: Arc<Slot<Result<codec::Value>>>,
        client: Arc<dyn Client>,
        token: GetToken,
    },
    Failed(Option<Error>),
    Done,
}

impl<T> GetFuture<T> {
    fn new(object: ObjectRef<T>) -> Self {
        let state = if object.id().is_null() {
            FutureState::Failed(Some(Error::NotInitialized {
                detail: String::new(),
            }))
        } else {
            match context::client() {
                Ok(client) => {
                    let (slot, token) = client.get_async(object.id());
                    FutureState::Waiting {
                        slot,
                        client,
                        token,
                    }
                }
                Err(e) => FutureState::Failed(Some(e)),
            }
        };
        GetFuture { object, state }
    }
}

impl<T: DeserializeOwned> Future for GetFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // GetFuture is Unpin (all its fields are), so it can be used by value.
        let this = self.get_mut();
        let value = match &mut this.state {
            FutureState::Failed(e) => {
                let e = e.take().unwrap_or_else(|| Error::NotInitialized {
                    detail: String::new(),
                });
                this.state = FutureState::Done;
                return Poll::Ready(Err(e));
            }
            FutureState::Done => panic!("GetFuture polled after it resolved"),
            FutureState::Waiting { slot, .. } => match slot.poll_take(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(v) => v,
            },
        };
        this.state = FutureState::Done;
        Poll::Ready(value.and_then(|value| {
            crate::api::decode_values::<T>(&[this.object.id()], vec![value])
                .map(|mut v| v.pop().expect("one value"))
        }))
    }
}

impl<T> Drop for GetFuture<T> {
    fn drop(&mut self) {
        if let FutureState::Waiting {
            slot,
            client,
            token,
        } = &self.state
        {
            client.cancel_get(self.object.id(), *token);
            // A value that arrived but was never taken is released like a decoded one.
            if let Some(Ok(value)) = slot.try_take() {
                client.transfer_done(&[self.object.id()], std::slice::from_ref(&value));
            }
        }
    }
}

impl<T: DeserializeOwned> IntoFuture for ObjectRef<T> {
    type Output = Result<T>;
    type IntoFuture = GetFuture<T>;

    /// `.await` on an `ObjectRef` waits for its value without blocking a thread.
    fn into_future(self) -> GetFuture<T> {
        GetFuture::new(self)
    }
}

impl<T: DeserializeOwned> IntoFuture for &ObjectRef<T> {
    type Output = Result<T>;
    type IntoFuture = GetFuture<T>;

    fn into_future(self) -> GetFuture<T> {
        GetFuture::new(self.clone())
    }
}

/// A task argument: a value, an `ObjectRef<T>` or a `&ObjectRef<T>`. References are resolved
/// to their values before the task runs, and the task waits for them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be passed where a ray task expects `{T}`",
    label = "expected `{T}`, `ObjectRef<{T}>` or `&ObjectRef<{T}>`",
    note = "arguments of `.remote(..)` are values (which must implement `serde::Serialize`) or ObjectRefs to values of the parameter's type"
)]
pub trait IntoArg<T> {
    #[doc(hidden)]
    fn into_arg(self) -> ArgKind<T>;
}

#[doc(hidden)]
pub enum ArgKind<T> {
    Value(T),
    Ref(ObjectRef<T>),
}

// No `T: Serialize` bound here: pushing the argument requires it anyway, and leaving it out
// keeps a non-serializable argument down to the one error the macro's type check reports.
impl<T> IntoArg<T> for T {
    fn into_arg(self) -> ArgKind<T> {
        ArgKind::Value(self)
    }
}

impl<T> IntoArg<T> for ObjectRef<T> {
    fn into_arg(self) -> ArgKind<T> {
        ArgKind::Ref(self)
    }
}

impl<T> IntoArg<T> for &ObjectRef<T> {
    fn into_arg(self) -> ArgKind<T> {
        ArgKind::Ref(self.clone())
    }
}
