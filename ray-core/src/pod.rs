//! Plain-old-data slices: stored without serde, read without copying.

use crate::codec::{Data, VEC_PREFIX, Value};
use crate::context::{self, Client};
use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::object_ref::ObjectRef;
use crate::object_store::{self, Arena, PAD};
use bytemuck::Pod;
use bytes::Bytes;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Stores a slice of plain-old-data values (`f32`, `u8`, `[f64; 4]`, any `bytemuck::Pod`)
/// as a `Vec<T>` object, at memory-copy speed: no serde pass over the elements.
///
/// The object is an ordinary `ObjectRef<Vec<T>>`: tasks can take it as a `Vec<T>` argument
/// (decoded into a `Vec` of their own) or as an `ObjectRef<Vec<T>>` argument (the ref itself, to
/// read in place with [`get_slice`]), and `ray::get` reads it as a `Vec<T>`. Large ones live in
/// the node's shared-memory store, where [`get_slice`] reads them without copying.
///
/// Inside an actor method, `put_slice` is how to hand out a large array the actor keeps
/// (without cloning it first): the method returns the `ObjectRef<Vec<T>>`, so the caller
/// receives an `ObjectRef<ObjectRef<Vec<T>>>` and reads the inner ref with one `ray::get` of a
/// few bytes (`examples/parameter_server.rs` does this).
///
/// ```
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let weights = ray::put_slice(&vec![0.5f32; 1 << 20])?;
///     let view = ray::get_slice(&weights)?; // a &[f32] into shared memory
///     assert_eq!(view[0], 0.5);
///     assert!(view.is_zero_copy());
///     drop(view);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub fn put_slice<T: Pod>(data: &[T]) -> Result<ObjectRef<Vec<T>>> {
    let client = context::client()?;
    let header = (data.len() as u64).to_le_bytes();
    let body: &[u8] = bytemuck::cast_slice(data);
    let len = (VEC_PREFIX + body.len()) as u64;
    let value = if (len as usize) < object_store::inline_max() || object_store::arena().is_none() {
        let mut bytes = Vec::with_capacity(len as usize);
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(body);
        Value {
            data: Data::Inline(Bytes::from(bytes)),
            contained: Vec::new(),
        }
    } else {
        let region = object_store::store_parts(&*client, &[&header, body])?;
        Value {
            data: Data::Shm {
                region,
                pad: PAD as u32,
                len,
            },
            contained: Vec::new(),
        }
    };
    let id = ObjectId::new();
    client.put(id, Ok(value));
    Ok(ObjectRef::adopt(id))
}

/// Reads a `Vec<T>` object as a `&[T]` without deserializing it: for an object in the node's
/// shared-memory store the view points straight into the store (zero-copy, in any process of
/// the node), for a small inline one (under 100 KiB) it is a plain copy of its bytes.
///
/// Any `Vec<T>` object of a plain-old-data `T` qualifies, not only those [`put_slice`] stored:
/// a task or actor method that returns a `Vec<f32>`, or a `ray::put(vec)`, stores it as its
/// length followed by its elements, which is the layout this reads. Inside a task, declare the
/// parameter `ObjectRef<Vec<T>>` to receive the ref unresolved and read it here.
///
/// The object stays in memory (it is not spilled) while the view lives.
///
/// ```
/// #[ray::remote]
/// fn ramp(n: usize) -> Vec<f32> {
///     (0..n).map(|i| i as f32).collect()
/// }
///
/// #[ray::remote]
/// fn last(values: ray::ObjectRef<Vec<f32>>) -> f32 {
///     // Declared `ObjectRef<Vec<f32>>`: the ref arrives unresolved, read in place here.
///     *ray::get_slice(&values).unwrap().last().unwrap()
/// }
///
/// fn main() -> ray::Result<()> {
///     ray::init(ray::Config::default().num_cpus(1))?;
///     let r = ramp::remote(1 << 20); // 4 MiB: in the shared-memory store
///     let view = ray::get_slice(&r)?;
///     assert!(view.is_zero_copy());
///     assert_eq!(view[10], 10.0);
///     assert_eq!(ray::get(&last::remote(&r))?, (1 << 20) as f32 - 1.0);
///     drop(view);
///     ray::shutdown();
///     Ok(())
/// }
/// ```
pub fn get_slice<T: Pod>(r: &ObjectRef<Vec<T>>) -> Result<PodView<T>> {
    if r.id().is_null() {
        return Err(context::never_submitted());
    }
    let client = context::client()?;
    let ids = [r.id()];
    let mut values = client.get(&ids, None)?;
    let value = values.pop().expect("one value");
    let size = std::mem::size_of::<T>();
    let wrong = |message: String| Error::Serialization {
        type_name: std::any::type_name::<Vec<T>>().into(),
        message,
    };
    if size == 0 {
        client.transfer_done(&ids, std::slice::from_ref(&value));
        return Err(wrong("zero-sized element types have no slice view".into()));
    }
    let check = |bytes: &[u8]| -> Result<usize> {
        if bytes.len() < VEC_PREFIX {
            return Err(wrong(format!(
                "the object has {} bytes, not a vector",
                bytes.len()
            )));
        }
        let n = u64::from_le_bytes(bytes[..VEC_PREFIX].try_into().expect("8 bytes")) as usize;
        if n.checked_mul(size) != Some(bytes.len() - VEC_PREFIX) {
            return Err(wrong(format!(
                "the object holds {} bytes after its length {n}, not {n} elements of {size} bytes",
                bytes.len() - VEC_PREFIX
            )));
        }
        Ok(n)
    };
    match &value.data {
        Data::Inline(bytes) => {
            let result = check(bytes).map(|_| PodView {
                inner: Inner::Owned(bytemuck::pod_collect_to_vec(&bytes[VEC_PREFIX..])),
            });
            client.transfer_done(&ids, std::slice::from_ref(&value));
            result
        }
        Data::Remote { .. } => {
            client.transfer_done(&ids, std::slice::from_ref(&value));
            Err(wrong(
                "the node handed a value that is on another node (a bug in ray)".into(),
            ))
        }
        Data::Shm { region, pad, len } => {
            let arena = object_store::arena().ok_or_else(Error::shut_down)?;
            let start = region + *pad as u64;
            // SAFETY: the object was handed to this process by `get`: sealed, and pinned in
            // memory for it until the `release` below or the view's guard.
            let n = match check(unsafe { arena.slice(start, *len) }) {
                Ok(n) => n,
                Err(e) => {
                    client.transfer_done(&ids, std::slice::from_ref(&value));
                    return Err(e);
                }
            };
            let offset = start + VEC_PREFIX as u64;
            if offset % std::mem::align_of::<T>() as u64 != 0 {
                // Not laid out for `T` (e.g. written by serde at another alignment): copy.
                // SAFETY: as above; `check` made sure the object holds `n * size` more bytes.
                let bytes = unsafe { arena.slice(offset, (n * size) as u64) };
                let copy = bytemuck::pod_collect_to_vec(bytes);
                client.transfer_done(&ids, std::slice::from_ref(&value));
                return Ok(PodView {
                    inner: Inner::Owned(copy),
                });
            }
            Ok(PodView {
                inner: Inner::Mapped {
                    arena,
                    offset,
                    count: n,
                    _guard: Release {
                        id: r.id(),
                        _object: r.clone(),
                        client,
                    },
                },
            })
        }
    }
}

/// A read-only `&[T]` view of a `Vec<T>` object, from [`get_slice`]. Dereferences to `[T]`.
pub struct PodView<T: Pod> {
    inner: Inner<T>,
}

enum Inner<T: Pod> {
    Owned(Vec<T>),
    Mapped {
        arena: Arc<Arena>,
        offset: u64,
        count: usize,
        _guard: Release<T>,
    },
}

/// Keeps the object alive and in memory while a view exists.
struct Release<T> {
    id: ObjectId,
    _object: ObjectRef<Vec<T>>,
    client: Arc<dyn Client>,
}

impl<T> Drop for Release<T> {
    fn drop(&mut self) {
        self.client.release(&[self.id]);
    }
}

impl<T: Pod> PodView<T> {
    /// True when the view points into shared memory (no copy was made).
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.inner, Inner::Mapped { .. })
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        match &self.inner {
            Inner::Owned(v) => v,
            Inner::Mapped {
                arena,
                offset,
                count,
                ..
            } => bytemuck::cast_slice(
                // SAFETY: the view's guard holds the object and its mapping count, so the
                // region stays sealed and allocated while `self` lives; `get_slice` checked
                // that it holds `count` elements.
                unsafe { arena.slice(*offset, (*count * std::mem::size_of::<T>()) as u64) },
            ),
        }
    }
}

impl<T: Pod> Deref for PodView<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for PodView<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodView")
            .field("len", &self.len())
            .field("zero_copy", &self.is_zero_copy())
            .finish()
    }
}
