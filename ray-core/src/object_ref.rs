//! `ObjectRef<T>`: a typed, reference-counted handle to a value in the object store.

use crate::api::Readable;
use crate::codec;
use crate::context::{self, Client, GetToken};
use crate::error::{Error, Result};
use crate::ids::{ObjectId, RefId};
use crate::refcount;
use crate::slot::Slot;
use crate::submit::ArgsBuilder;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::any::TypeId;
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
/// values. The value is freed when no `ObjectRef` to it remains in any process, unless the ref
/// was serialized by other code than ray's (serde into JSON, a file...): such a value is kept
/// until the process that made the ref exits, so the serialized ref can be read back. Read it with
/// [`get`](crate::get) or `.await` it; [`erase`](ObjectRef::erase) it to [`wait`](crate::wait)
/// on refs of different types together.
///
/// As an argument of `.remote(..)`, an `ObjectRef<T>` passed for a parameter declared `T` is
/// resolved: the task waits for the value and receives it. A parameter declared
/// `ObjectRef<T>` receives the reference itself, unresolved, so the task decides when (and
/// whether) to read it, e.g. with [`get_slice`](crate::get_slice) without copying.
///
/// ```
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let r: ray::ObjectRef<Vec<u8>> = ray::put(vec![1, 2, 3])?;
///     assert_eq!(ray::get(&r)?, vec![1, 2, 3]);
///     ray::shutdown();
///     Ok(())
/// }
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

impl<T: 'static> ObjectRef<T> {
    /// This reference without its value type, to [`wait`](crate::wait) on refs of different
    /// types in one list. [`AnyObjectRef::downcast`] turns it back into this `ObjectRef<T>`.
    /// A clone: both refer to the same object.
    ///
    /// ```
    /// #[ray::remote]
    /// fn count() -> u32 {
    ///     3
    /// }
    ///
    /// #[ray::remote]
    /// fn name() -> String {
    ///     "three".into()
    /// }
    ///
    /// fn main() -> ray::Result<()> {
    ///     ray::init(ray::Config::default().num_cpus(2))?;
    ///     let (n, s) = (count::remote(), name::remote());
    ///     let mut pending = vec![n.erase(), s.erase()];
    ///     while !pending.is_empty() {
    ///         let (ready, rest) = ray::wait(&pending, 1, None);
    ///         pending = rest;
    ///         let done = ready.into_iter().next().unwrap();
    ///         if let Some(n) = done.typed::<u32>() {
    ///             assert_eq!(ray::get(&n)?, 3);
    ///         } else if let Ok(s) = done.downcast::<String>() {
    ///             assert_eq!(ray::get(&s)?, "three");
    ///         }
    ///     }
    ///     ray::shutdown();
    ///     Ok(())
    /// }
    /// ```
    pub fn erase(&self) -> AnyObjectRef {
        AnyObjectRef {
            inner: self.inner.clone(),
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        }
    }
}

impl<T: 'static> From<ObjectRef<T>> for AnyObjectRef {
    fn from(r: ObjectRef<T>) -> Self {
        r.erase()
    }
}

/// An [`ObjectRef`] whose value type is known only at run time: what
/// [`ObjectRef::erase`] makes, so that refs of different types fit in one list for
/// [`wait`](crate::wait). Turn it back into the typed ref with [`downcast`](Self::downcast) or
/// [`typed`](Self::typed); keeping it keeps the object alive like the typed ref would.
#[derive(Clone)]
pub struct AnyObjectRef {
    inner: Arc<LocalRef>,
    type_id: TypeId,
    type_name: &'static str,
}

impl AnyObjectRef {
    /// The object's id.
    pub fn id(&self) -> ObjectId {
        self.inner.id
    }

    /// Whether the value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.type_id == TypeId::of::<T>()
    }

    /// The value type's name, as `std::any::type_name` writes it.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The typed reference, if the value is a `T`; otherwise `self` back.
    pub fn downcast<T: 'static>(self) -> std::result::Result<ObjectRef<T>, AnyObjectRef> {
        if self.is::<T>() {
            Ok(ObjectRef {
                inner: self.inner,
                _type: PhantomData,
            })
        } else {
            Err(self)
        }
    }

    /// A typed clone of this reference, if the value is a `T`.
    pub fn typed<T: 'static>(&self) -> Option<ObjectRef<T>> {
        self.clone().downcast().ok()
    }
}

impl fmt::Debug for AnyObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyObjectRef<{}>({})", self.type_name, self.id())
    }
}

impl PartialEq for AnyObjectRef {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for AnyObjectRef {}

impl<T> PartialEq<ObjectRef<T>> for AnyObjectRef {
    fn eq(&self, other: &ObjectRef<T>) -> bool {
        self.id() == other.id()
    }
}

impl<T> PartialEq<AnyObjectRef> for ObjectRef<T> {
    fn eq(&self, other: &AnyObjectRef) -> bool {
        self.id() == other.id()
    }
}

impl Hash for AnyObjectRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state)
    }
}

/// What [`wait`](crate::wait) takes: an [`ObjectRef<T>`](ObjectRef) or an [`AnyObjectRef`].
/// Implemented by those two only.
pub trait Waitable: Clone + fmt::Debug + sealed::Sealed {
    #[doc(hidden)]
    fn object_id(&self) -> ObjectId;
}

impl<T> Waitable for ObjectRef<T> {
    fn object_id(&self) -> ObjectId {
        self.id()
    }
}

impl Waitable for AnyObjectRef {
    fn object_id(&self) -> ObjectId {
        self.id()
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for super::ObjectRef<T> {}
    impl Sealed for super::AnyObjectRef {}
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
        if !codec::note_contained(RefId::Object(self.id())) {
            refcount::escaped(RefId::Object(self.id()));
        }
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
            FutureState::Failed(Some(context::never_submitted()))
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
                let e = e.take().unwrap_or_else(context::not_running);
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

impl<T: Readable> IntoFuture for ObjectRef<T> {
    type Output = Result<T>;
    type IntoFuture = GetFuture<T>;

    /// `.await` on an `ObjectRef` waits for its value without blocking a thread.
    fn into_future(self) -> GetFuture<T> {
        GetFuture::new(self)
    }
}

impl<T: Readable> IntoFuture for &ObjectRef<T> {
    type Output = Result<T>;
    type IntoFuture = GetFuture<T>;

    fn into_future(self) -> GetFuture<T> {
        GetFuture::new(self.clone())
    }
}

/// An argument of `.remote(..)` for a parameter declared `T`: a `T`, a `&T` (serialized from
/// the borrow, nothing is moved or cloned), an `ObjectRef<T>` or a `&ObjectRef<T>`. For `String`
/// and `Vec<T>` parameters a `&str` or `&[T]` does too.
///
/// References to the parameter's type are resolved before the task runs: the task waits for
/// the value and receives it. A parameter declared `ObjectRef<T>` instead receives the
/// reference as it is, unresolved (pass an `ObjectRef<T>` or a `&ObjectRef<T>`).
///
/// ```
/// #[ray::remote]
/// fn total(values: Vec<f32>, scale: f32) -> f32 {
///     values.iter().sum::<f32>() * scale
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let values = vec![1.0, 2.0, 3.0];
///     let a = total::remote(&values, 2.0); // a borrow: `values` stays usable
///     let b = total::remote(&values[..2], 1.0); // a slice for a `Vec` parameter
///     let stored = ray::put(values)?;
///     let c = total::remote(&stored, &a); // refs are resolved to their values
///     assert_eq!(ray::get_all(&[a, b])?, [12.0, 3.0]);
///     assert_eq!(ray::get(&c)?, 72.0);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be passed where a ray task expects `{T}`",
    label = "expected `{T}`, `&{T}`, `ObjectRef<{T}>` or `&ObjectRef<{T}>`",
    note = "arguments of `.remote(..)` are values of the parameter's type (or borrows of them, which are serialized in place) or ObjectRefs to such values"
)]
pub trait IntoArg<T> {
    /// Adds this argument to a call: values are encoded now, references are resolved by the
    /// node manager.
    #[doc(hidden)]
    fn __push_to(self, args: &mut ArgsBuilder)
    where
        T: Serialize;
}

// No `T: Serialize` bound on the impls: pushing an argument requires it anyway, and leaving it
// out keeps a non-serializable argument down to the one error the macro's type check reports.
impl<T> IntoArg<T> for T {
    fn __push_to(self, args: &mut ArgsBuilder)
    where
        T: Serialize,
    {
        args.push_value(&self)
    }
}

impl<T> IntoArg<T> for &T {
    fn __push_to(self, args: &mut ArgsBuilder)
    where
        T: Serialize,
    {
        args.push_value(self)
    }
}

impl IntoArg<String> for &str {
    fn __push_to(self, args: &mut ArgsBuilder) {
        // A `str` encodes exactly as a `String`.
        args.push_value(self)
    }
}

impl<T: Serialize> IntoArg<Vec<T>> for &[T] {
    fn __push_to(self, args: &mut ArgsBuilder) {
        // A slice encodes exactly as a `Vec`.
        args.push_value(self)
    }
}

impl<T> IntoArg<T> for ObjectRef<T> {
    fn __push_to(self, args: &mut ArgsBuilder) {
        args.push_ref(self.id())
    }
}

impl<T> IntoArg<T> for &ObjectRef<T> {
    fn __push_to(self, args: &mut ArgsBuilder) {
        args.push_ref(self.id())
    }
}
