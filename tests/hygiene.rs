//! The code `#[ray::remote]` generates compiles and runs among hostile names: user types called
//! `Result`, `Option`, `Box`, `Vec`, `String`, `Ok`, `Some`..., local modules named `ray`, `serde`
//! and `core`, user types named like the generated helpers, parameters named like the
//! generated locals, all inside a `#![no_implicit_prelude]` module; and with `missing_docs`
//! denied and `unsafe_code` forbidden for the whole crate.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// Remote items declared where nothing from the prelude is in scope.
pub mod hostile {
    #![no_implicit_prelude]
    #![allow(dead_code, non_camel_case_types, non_upper_case_globals)]

    /// Shadows `std::result::Result`.
    pub struct Result;
    /// Shadows `std::option::Option`.
    pub struct Option;
    /// Shadows `Box`.
    pub struct Box;
    /// Shadows `Vec`.
    pub struct Vec;
    /// Shadows `String`.
    pub struct String;
    /// Shadows `Ok`, `Err`, `Some` and `None` as values.
    pub const Ok: u8 = 0;
    /// See `Ok`.
    pub const Err: u8 = 0;
    /// See `Ok`.
    pub const Some: u8 = 0;
    /// See `Ok`.
    pub const None: u8 = 0;
    /// Shadows `Default`, `From`, `Into`, `AsRef`, `AsMut`, `Clone`.
    pub trait Default {}
    /// See `Default`.
    pub trait From {}
    /// See `Default`.
    pub trait Into {}
    /// See `Default`.
    pub trait AsMut {}
    /// See `Default`.
    pub trait AsRef {}
    /// A local module named like the crate (then the attribute is written `#[::ray::remote]`).
    pub mod ray {}
    /// A local module named `serde`.
    pub mod serde {}
    /// A local module named `core`.
    pub mod core {}

    /// Named like the generated caller of `add`.
    #[derive(
        ::serde::Serialize, ::serde::Deserialize, ::std::fmt::Debug, ::std::cmp::PartialEq,
    )]
    pub struct AddCaller(pub i64);
    /// Named like the generated helper types of an actor.
    #[derive(
        ::serde::Serialize, ::serde::Deserialize, ::std::fmt::Debug, ::std::cmp::PartialEq,
    )]
    pub struct CounterMethods(pub i64);
    /// Named like a runtime helper.
    #[derive(
        ::serde::Serialize, ::serde::Deserialize, ::std::fmt::Debug, ::std::cmp::PartialEq,
    )]
    pub struct Wire(pub i64);

    /// A task whose parameters are named like the generated locals and helpers.
    #[::ray::remote]
    pub fn add(args: i64, options: AddCaller, this: Wire, method: i64) -> ::std::vec::Vec<i64> {
        ::std::vec![args, options.0, this.0, method]
    }

    /// A task named like a generated item, with a parameter named like the task.
    #[::ray::remote(num_cpus = 1, max_retries = 0)]
    pub fn invoke(invoke: i64) -> i64 {
        invoke * 2
    }

    /// A task with no parameters and no result.
    #[::ray::remote]
    pub fn nothing() {}

    /// Parameters that are patterns, ignored or `mut`.
    #[::ray::remote]
    pub fn patterns((a, b): (i64, i64), _: u8, mut c: i64) -> i64 {
        c += a * b;
        c
    }

    /// An actor with hostile names around it.
    #[::ray::remote(max_concurrency = 2)]
    pub struct Counter {
        n: ::std::sync::atomic::AtomicI64,
    }

    #[::ray::remote]
    impl Counter {
        /// Starts at `start`.
        pub fn new(start: i64) -> Self {
            Counter {
                n: ::std::sync::atomic::AtomicI64::new(start),
            }
        }
        /// Adds `args`, returns the new total.
        pub fn add(&self, args: i64) -> i64 {
            self.n
                .fetch_add(args, ::std::sync::atomic::Ordering::SeqCst)
                + args
        }
        /// A method whose types are named like generated ones.
        pub fn wrap(&self, method: CounterMethods) -> ::std::option::Option<CounterMethods> {
            ::std::option::Option::Some(method)
        }
        /// Takes `&mut self`.
        pub fn reset(&mut self) {
            self.n = ::std::sync::atomic::AtomicI64::new(0);
        }
        /// Configured out, with a type that does not exist: nothing generated may mention it.
        #[cfg(any())]
        pub fn gone(&self, x: DoesNotExist) -> DoesNotExist {
            x
        }
        /// Configured in (ray runs on Linux).
        #[cfg(unix)]
        pub fn here(&self) -> bool {
            true
        }
    }
}

use hostile::{AddCaller, Counter, CounterMethods, Wire};

#[test]
fn generated_code_works_among_hostile_names() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let r = hostile::add::remote(1, AddCaller(2), Wire(3), 4);
    assert_eq!(ray::get(&r).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(
        ray::get(&hostile::invoke::options().num_cpus(0.5).remote(21)).unwrap(),
        42
    );
    ray::get(&hostile::nothing::remote()).unwrap();
    assert_eq!(
        ray::get(&hostile::patterns::remote((2, 3), 0, 1)).unwrap(),
        7
    );

    let counter = Counter::remote(10);
    assert_eq!(ray::get(&counter.add(5)).unwrap(), 15);
    assert_eq!(
        ray::get(&counter.wrap(CounterMethods(7))).unwrap(),
        Some(CounterMethods(7))
    );
    ray::get(&counter.reset()).unwrap();
    assert!(ray::get(&counter.here()).unwrap());
    assert_eq!(ray::get(&counter.add(1)).unwrap(), 1);
    ray::shutdown();
}
