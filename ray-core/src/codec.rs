//! The one place that knows the wire encoding.
//!
//! Values and messages are encoded with serde through bincode 2 (pinned to 2.0.1: 3.0.0 on
//! crates.io is a deliberate `compile_error!`, and the crate is unmaintained, RUSTSEC-2025-0141).
//! Swapping the codec means changing this file only.
//!
//! Encoding a user value also records every `ObjectRef` and `ActorHandle` inside it, so the
//! object directory knows which references an object keeps alive.

use crate::error::{Error, Result};
use crate::ids::RefId;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// Fixed-width little-endian integers: a `Vec<T: Pod>` then encodes as an 8-byte length followed
/// by the elements exactly as they lie in memory, which is what makes zero-copy views possible.
type Config =
    bincode::config::Configuration<bincode::config::LittleEndian, bincode::config::Fixint>;

fn config() -> Config {
    bincode::config::standard().with_fixed_int_encoding()
}

/// Bytes before the elements of an encoded `Vec<T>`: its `u64` length.
pub(crate) const VEC_PREFIX: usize = 8;

/// Where an encoded value's bytes are.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) enum Data {
    /// In the message itself (small objects).
    Inline(Bytes),
    /// In the node's object store: `len` bytes at `region + pad`.
    Shm { region: u64, pad: u32, len: u64 },
    /// In the store of another node of the cluster: `len` bytes, pulled from there when a
    /// process of this node needs them. Only node managers see this form.
    Remote { node: crate::ids::NodeId, len: u64 },
}

impl Data {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Data::Inline(b) => b.len() as u64,
            Data::Shm { len, .. } | Data::Remote { len, .. } => *len,
        }
    }

    /// Runs `f` on the bytes, wherever they are.
    pub(crate) fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        match self {
            Data::Inline(b) => Ok(f(b)),
            Data::Remote { node, .. } => Err(Error::InvalidArgument {
                what: "object location".into(),
                message: format!("the value is on {node}, not in this process"),
            }),
            Data::Shm { region, pad, len } => {
                let arena = crate::object_store::arena().ok_or_else(|| Error::ShutDown {
                    detail: " (this process has no object store any more)".into(),
                })?;
                // SAFETY: a `Data::Shm` reaches a process only in a value the node manager
                // handed it for reading (a get reply or task arguments): the object is sealed
                // and stays mapped for this process until it releases it, after decoding.
                let bytes = unsafe { arena.slice(region + *pad as u64, *len) };
                Ok(f(bytes))
            }
        }
    }
}

/// An encoded user value plus the references it contains.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Value {
    pub data: Data,
    pub contained: Vec<RefId>,
}

impl Value {
    pub(crate) fn len(&self) -> u64 {
        self.data.len()
    }

    /// Bytes this value takes on this node (none if it is on another).
    pub(crate) fn local_len(&self) -> u64 {
        match self.data {
            Data::Remote { .. } => 0,
            _ => self.data.len(),
        }
    }

    /// Decodes the value.
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        self.data.with_bytes(|b| decode::<T>(b))?
    }
}

thread_local! {
    static COLLECTING: RefCell<Option<Vec<RefId>>> = const { RefCell::new(None) };
}

/// Called by `ObjectRef`/`ActorHandle` serialization: records `id` if a value is being encoded.
/// False when no ray value is being encoded: the reference is serialized by other code (serde
/// to JSON, ...) and escapes ray's reference counting.
pub(crate) fn note_contained(id: RefId) -> bool {
    COLLECTING.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            list.push(id);
            true
        } else {
            false
        }
    })
}

/// A value ready to send. The references it contains stay pinned in this process (counted as
/// held) until the `Encoded` is dropped, which callers do only after the message that carries
/// the value has been handed to the transport: the receiver then already knows of them.
#[doc(hidden)]
pub struct Encoded {
    pub(crate) value: Value,
    pub(crate) pins: crate::refcount::Pins,
    /// The other return values of a call with `num_returns > 1`, in order.
    pub(crate) rest: Vec<Encoded>,
}

/// Encodes a user value, collecting the references it contains.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded> {
    let saved = COLLECTING.with(|c| c.replace(Some(Vec::new())));
    let result = bincode::serde::encode_to_vec(value, config());
    let contained = COLLECTING.with(|c| c.replace(saved)).unwrap_or_default();
    let bytes = result.map_err(|e| Error::Serialization {
        type_name: std::any::type_name::<T>().to_string(),
        message: e.to_string(),
    })?;
    let pins = crate::refcount::Pins::new(&contained);
    Ok(Encoded {
        value: Value {
            data: Data::Inline(Bytes::from(bytes)),
            contained,
        },
        pins,
        rest: Vec::new(),
    })
}

/// Most memory a value's decoding may claim for strings and byte buffers (bincode allocates
/// an announced length before reading it): an absurd length is an error, not an abort.
const VALUE_LIMIT: usize = 1 << 36;

/// Decodes a user value.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode_limited::<T, VALUE_LIMIT>(bytes)
}

/// Decodes with at most `LIMIT` bytes claimed for what the encoding announces.
fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T> {
    let config = config().with_limit::<LIMIT>();
    match bincode::serde::decode_from_slice::<T, _>(bytes, config) {
        Ok((v, used)) if used == bytes.len() => Ok(v),
        Ok((_, used)) => Err(Error::Serialization {
            type_name: std::any::type_name::<T>().to_string(),
            message: format!(
                "{} trailing bytes after the value ({} bytes)",
                bytes.len() - used,
                bytes.len()
            ),
        }),
        Err(e) => Err(Error::Serialization {
            type_name: std::any::type_name::<T>().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Appends one length-prefixed message frame to `out`.
pub(crate) fn encode_frame<M: Serialize>(msg: &M, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    bincode::serde::encode_into_std_write(msg, out, config()).map_err(|e| {
        Error::Serialization {
            type_name: std::any::type_name::<M>().to_string(),
            message: e.to_string(),
        }
    })?;
    let len = u32::try_from(out.len() - start - 4).map_err(|_| Error::Serialization {
        type_name: std::any::type_name::<M>().to_string(),
        message: "message larger than 4 GiB".into(),
    })?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Decodes one message from a frame payload (without its length prefix). What the payload
/// announces (lengths of byte buffers and strings) is bounded by a limit a little above the
/// payload's own size class, so a small frame cannot make the reader allocate gigabytes.
pub(crate) fn decode_frame<M: DeserializeOwned>(payload: &[u8]) -> Result<M> {
    match payload.len() {
        0..=0x1_0000 => decode_limited::<M, { 1 << 17 }>(payload),
        0x1_0001..=0x100_0000 => decode_limited::<M, { 1 << 25 }>(payload),
        _ => decode_limited::<M, { 1 << 33 }>(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let e = encode(&(1u32, "two".to_string(), vec![3.0f32; 3])).unwrap();
        assert!(e.value.contained.is_empty());
        let back: (u32, String, Vec<f32>) = e.value.decode().unwrap();
        assert_eq!(back, (1, "two".to_string(), vec![3.0; 3]));
    }

    #[test]
    fn decoding_the_wrong_type_names_the_type() {
        let e = encode(&"hello".to_string()).unwrap();
        let Data::Inline(bytes) = &e.value.data else {
            panic!("small values are inline")
        };
        let err = decode::<Vec<u64>>(&bytes[..2]).unwrap_err();
        match err {
            Error::Serialization { type_name, .. } => assert!(type_name.contains("Vec<u64>")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn pod_vectors_encode_as_length_then_raw_elements() {
        let v = vec![1.5f32, -2.0, 3.25];
        let e = encode(&v).unwrap();
        let Data::Inline(bytes) = &e.value.data else {
            panic!()
        };
        assert_eq!(&bytes[..VEC_PREFIX], &3u64.to_le_bytes());
        assert_eq!(&bytes[VEC_PREFIX..], bytemuck::cast_slice::<f32, u8>(&v));
    }

    #[test]
    fn an_announced_length_beyond_the_limit_is_an_error_not_an_allocation() {
        // A `Vec<u8>` claiming 2^60 bytes in a 12-byte payload.
        let mut payload = (1u64 << 60).to_le_bytes().to_vec();
        payload.extend_from_slice(b"abcd");
        assert!(decode_frame::<Vec<u8>>(&payload).is_err());
        assert!(decode::<String>(&payload).is_err());
    }

    #[test]
    fn frames_are_length_prefixed() {
        let mut buf = Vec::new();
        encode_frame(&(7u8, 9u64), &mut buf).unwrap();
        encode_frame(&(8u8, 10u64), &mut buf).unwrap();
        let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
        let first: (u8, u64) = decode_frame(&buf[4..4 + len]).unwrap();
        assert_eq!(first, (7, 9));
        let rest = &buf[4 + len..];
        let len2 = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let second: (u8, u64) = decode_frame(&rest[4..4 + len2]).unwrap();
        assert_eq!(second, (8, 10));
    }
}
