//! Remote functions and actor classes, found by their registered name.
//!
//! `#[ray::remote]` adds one entry per item to a link-time list (`linkme` distributed slices:
//! plain static data in a named section, no life-before-main constructors). A worker looks
//! entries up by name (module path + item name), never by function pointer. The fingerprint
//! hashes every entry's name and signature with ray's version; driver and workers must agree.

use crate::actor::ActorInstance;
use crate::codec::{Data, Encoded};
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::any::Any;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// A remote function, as registered by `#[ray::remote]`.
#[doc(hidden)]
pub struct TaskEntry {
    /// `module::path::name`.
    pub name: &'static str,
    /// The function's signature as written, for the build fingerprint.
    pub signature: &'static str,
    /// Decodes the arguments, calls the function, encodes the result.
    pub invoke: fn(&mut Args) -> Result<Encoded>,
}

/// An actor class, as registered by `#[ray::remote]` on its impl block.
#[doc(hidden)]
pub struct ActorEntry {
    /// `module::path::Type`.
    pub name: &'static str,
    /// Signatures of the constructor and every method.
    pub signature: &'static str,
    /// Decodes the constructor arguments and runs `new`.
    pub create: fn(&mut Args) -> Result<ActorInstance>,
    /// Runs any method on an exclusively borrowed instance.
    pub call_mut: fn(&mut dyn Any, &str, &mut Args) -> Result<Encoded>,
    /// Runs a `&self` method on a shared instance (threaded actors).
    pub call_ref: fn(&dyn Any, &str, &mut Args) -> Result<Encoded>,
    /// `Some(true)` for `&mut self` methods, `Some(false)` for `&self`, `None` if unknown.
    pub method_is_mut: fn(&str) -> Option<bool>,
    /// For an actor with `async fn` methods: runs any method, as a future on the actor's
    /// async runtime (the instance lives as long as the worker, hence `'static`).
    pub call_async: Option<AsyncCall>,
}

/// A call of an async actor's method: its arguments are decoded at once, the future runs on
/// the actor's (single-threaded) runtime.
#[doc(hidden)]
pub type AsyncCall = fn(&'static dyn Any, &str, &mut Args) -> Result<LocalFuture>;

/// What an async actor's method call runs.
#[doc(hidden)]
pub type LocalFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Encoded>> + 'static>>;

#[doc(hidden)]
#[linkme::distributed_slice]
pub static TASKS: [TaskEntry];

#[doc(hidden)]
#[linkme::distributed_slice]
pub static ACTORS: [ActorEntry];

/// The arguments of one call, decoded one at a time by generated code.
#[doc(hidden)]
pub struct Args {
    items: Vec<Data>,
    next: usize,
    function: String,
}

impl Args {
    pub(crate) fn new(function: &str, items: Vec<Data>) -> Self {
        Args {
            items,
            next: 0,
            function: function.to_string(),
        }
    }

    /// Decodes the next argument.
    #[allow(clippy::should_implement_trait)]
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<T> {
        let index = self.next;
        self.next += 1;
        let data = self.items.get(index).ok_or_else(|| Error::Serialization {
            type_name: std::any::type_name::<T>().to_string(),
            message: format!(
                "`{}` was called with {} argument(s) but needs at least {}",
                self.function,
                self.items.len(),
                index + 1
            ),
        })?;
        data.with_bytes(crate::codec::decode::<T>)
            .and_then(|r| r)
            .map_err(|e| match e {
                Error::Serialization { type_name, message } => Error::Serialization {
                    type_name,
                    message: format!("argument {} of `{}`: {message}", index + 1, self.function),
                },
                other => other,
            })
    }
}

struct Registry {
    tasks: HashMap<&'static str, &'static TaskEntry>,
    actors: HashMap<&'static str, &'static ActorEntry>,
    duplicates: Vec<&'static str>,
    fingerprint: u64,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut duplicates = Vec::new();
        let mut tasks = HashMap::new();
        for entry in TASKS.iter() {
            if tasks.insert(entry.name, entry).is_some() {
                duplicates.push(entry.name);
            }
        }
        let mut actors = HashMap::new();
        for entry in ACTORS.iter() {
            if actors.insert(entry.name, entry).is_some() {
                duplicates.push(entry.name);
            }
        }
        let mut lines: Vec<(&str, &str)> = TASKS
            .iter()
            .map(|e| (e.name, e.signature))
            .chain(ACTORS.iter().map(|e| (e.name, e.signature)))
            .collect();
        lines.sort();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        lines.hash(&mut hasher);
        Registry {
            tasks,
            actors,
            duplicates,
            fingerprint: hasher.finish(),
        }
    })
}

fn duplicate_error(name: &str) -> Error {
    Error::InvalidArgument {
        what: "remote item name".into(),
        message: format!(
            "two remote items are registered as `{name}`; remote items are found by module path \
             and name, so give them different names or move one into another module"
        ),
    }
}

pub(crate) fn task(name: &str) -> Result<&'static TaskEntry> {
    if let Some(e) = crate::setup_hook::failure() {
        return Err(e);
    }
    let reg = registry();
    if reg.duplicates.contains(&name) {
        return Err(duplicate_error(name));
    }
    reg.tasks
        .get(name)
        .copied()
        .ok_or_else(|| Error::InvalidArgument {
            what: "remote function".into(),
            message: format!("no function `{name}` is registered in this worker's executable"),
        })
}

pub(crate) fn actor(name: &str) -> Result<&'static ActorEntry> {
    if let Some(e) = crate::setup_hook::failure() {
        return Err(e);
    }
    let reg = registry();
    if reg.duplicates.contains(&name) {
        return Err(duplicate_error(name));
    }
    reg.actors
        .get(name)
        .copied()
        .ok_or_else(|| Error::InvalidArgument {
            what: "actor class".into(),
            message: format!("no actor class `{name}` is registered in this worker's executable"),
        })
}

/// Hash of every registered item's name and signature, and of ray's version.
pub(crate) fn fingerprint() -> u64 {
    registry().fingerprint
}
