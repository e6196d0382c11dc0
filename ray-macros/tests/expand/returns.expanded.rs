/// Two results, each an `ObjectRef` of its own.
pub fn min_max(v: Vec<i64>) -> (i64, i64) {
    (*v.iter().min().unwrap(), *v.iter().max().unwrap())
}
#[allow(unused_imports)]
use ::ray::__private::python::{
    Remote0 as _, Remote1 as _, Remote2 as _, Remote3 as _, Remote4 as _, Remote5 as _,
    Remote6 as _, Remote7 as _, Remote8 as _,
};
/// The ray task `min_max()`: `min_max::remote(..)` runs it in a worker process.
#[allow(non_camel_case_types)]
pub struct min_max {}
#[allow(dead_code)]
impl min_max {
    /// Runs `min_max(..)` in a worker process; returns a reference to its result at once.
    pub fn remote(
        v: impl ::ray::IntoArg<Vec<i64>>,
    ) -> (::ray::ObjectRef<i64>, ::ray::ObjectRef<i64>) {
        Self::options().remote(v)
    }
    /// Per-call options (`num_cpus`, `num_gpus`, `resource`, `max_retries`), then `.remote(..)`.
    pub fn options() -> ::ray::TaskOptions<min_max> {
        ::ray::TaskOptions::__new()
    }
}
const _: () = {
    use ::ray::__private::wire::traits::*;
    impl ::ray::RemoteFunction for min_max {
        const NAME: &'static str = ::core::concat!(::core::module_path!(), "::min_max");
        type Caller = MinMaxCaller;
        fn __default_options() -> ::ray::__private::RawTaskOptions {
            let mut options = <::ray::__private::RawTaskOptions as ::core::default::Default>::default();
            options.num_returns(2u32);
            options
        }
    }
    /// What `min_max::options()` dereferences to: `remote(..)` with those options.
    pub struct MinMaxCaller(::ray::__private::RawTaskOptions);
    impl MinMaxCaller {
        /// Runs `min_max(..)` in a worker process; returns a reference to its result at once.
        pub fn remote(
            &self,
            v: impl ::ray::IntoArg<Vec<i64>>,
        ) -> (::ray::ObjectRef<i64>, ::ray::ObjectRef<i64>) {
            let mut args = ::ray::__private::ArgsBuilder::with_capacity(1);
            ::ray::__private::Wire::<Vec<i64>>::new().push(&mut args, v);
            let ids = ::ray::__private::submit_task_returns(
                <min_max as ::ray::RemoteFunction>::NAME,
                &self.0,
                args,
            );
            (
                ::ray::__private::adopt_ref::<i64>(ids[0usize]),
                ::ray::__private::adopt_ref::<i64>(ids[1usize]),
            )
        }
    }
    impl ::core::convert::From<::ray::__private::RawTaskOptions> for MinMaxCaller {
        fn from(options: ::ray::__private::RawTaskOptions) -> Self {
            MinMaxCaller(options)
        }
    }
    impl ::core::convert::AsMut<::ray::__private::RawTaskOptions> for MinMaxCaller {
        fn as_mut(&mut self) -> &mut ::ray::__private::RawTaskOptions {
            &mut self.0
        }
    }
    /// Registers `min_max` by name: a worker decodes the arguments, calls it, encodes the result.
    #[::ray::__private::linkme::distributed_slice(::ray::__private::TASKS)]
    #[linkme(crate = ::ray::__private::linkme)]
    static REGISTRATION: ::ray::__private::TaskEntry = ::ray::__private::TaskEntry {
        name: <min_max as ::ray::RemoteFunction>::NAME,
        signature: "fn min_max(v: Vec<i64>) -> (i64, i64)",
        invoke: |args| {
            let v = ::ray::__private::Wire::<Vec<i64>>::new().decode(args)?;
            {
                let (r0, r1) = min_max(v);
                ::ray::__private::returns(
                    ::std::vec![
                        ::ray::__private::Wire:: < i64 > ::new().encode(& r0) ?,
                        ::ray::__private::Wire:: < i64 > ::new().encode(& r1) ?,
                    ],
                )
            }
        },
    };
    /// Compile-time check that each parameter and the result implement serde's traits.
    const _: fn() = || {
        ::ray::__private::Wire::<Vec<i64>>::PROBE.check().require();
        ::ray::__private::Wire::<i64>::PROBE.check().require();
    };
};
/// Items streamed to the caller as they are made.
pub fn countdown(from: u32) -> impl Iterator<Item = u32> {
    (0..from).rev()
}
#[allow(unused_imports)]
use ::ray::__private::python::{
    Remote0 as _, Remote1 as _, Remote2 as _, Remote3 as _, Remote4 as _, Remote5 as _,
    Remote6 as _, Remote7 as _, Remote8 as _,
};
/// The ray task `countdown()`: `countdown::remote(..)` runs it in a worker process.
#[allow(non_camel_case_types)]
pub struct countdown {}
#[allow(dead_code)]
impl countdown {
    /// Runs `countdown(..)` in a worker process; returns a reference to its result at once.
    pub fn remote(from: impl ::ray::IntoArg<u32>) -> ::ray::ObjectRefGenerator<u32> {
        Self::options().remote(from)
    }
    /// Per-call options (`num_cpus`, `num_gpus`, `resource`, `max_retries`), then `.remote(..)`.
    pub fn options() -> ::ray::TaskOptions<countdown> {
        ::ray::TaskOptions::__new()
    }
}
const _: () = {
    use ::ray::__private::wire::traits::*;
    impl ::ray::RemoteFunction for countdown {
        const NAME: &'static str = ::core::concat!(
            ::core::module_path!(), "::countdown"
        );
        type Caller = CountdownCaller;
        fn __default_options() -> ::ray::__private::RawTaskOptions {
            let mut options = <::ray::__private::RawTaskOptions as ::core::default::Default>::default();
            options.retry_exceptions(true);
            options.streaming();
            options
        }
    }
    /// What `countdown::options()` dereferences to: `remote(..)` with those options.
    pub struct CountdownCaller(::ray::__private::RawTaskOptions);
    impl CountdownCaller {
        /// Runs `countdown(..)` in a worker process; returns a reference to its result at once.
        pub fn remote(
            &self,
            from: impl ::ray::IntoArg<u32>,
        ) -> ::ray::ObjectRefGenerator<u32> {
            let mut args = ::ray::__private::ArgsBuilder::with_capacity(1);
            ::ray::__private::Wire::<u32>::new().push(&mut args, from);
            ::ray::__private::submit_task_stream::<
                u32,
            >(<countdown as ::ray::RemoteFunction>::NAME, &self.0, args)
        }
    }
    impl ::core::convert::From<::ray::__private::RawTaskOptions> for CountdownCaller {
        fn from(options: ::ray::__private::RawTaskOptions) -> Self {
            CountdownCaller(options)
        }
    }
    impl ::core::convert::AsMut<::ray::__private::RawTaskOptions> for CountdownCaller {
        fn as_mut(&mut self) -> &mut ::ray::__private::RawTaskOptions {
            &mut self.0
        }
    }
    /// Registers `countdown` by name: a worker decodes the arguments, calls it, encodes the result.
    #[::ray::__private::linkme::distributed_slice(::ray::__private::TASKS)]
    #[linkme(crate = ::ray::__private::linkme)]
    static REGISTRATION: ::ray::__private::TaskEntry = ::ray::__private::TaskEntry {
        name: <countdown as ::ray::RemoteFunction>::NAME,
        signature: "fn countdown(from: u32) -> impl Iterator<Item = u32>",
        invoke: |args| {
            let from = ::ray::__private::Wire::<u32>::new().decode(args)?;
            ::ray::__private::stream(
                countdown(from),
                |item| ::ray::__private::Wire::<u32>::new().encode(item),
            )
        },
    };
    /// Compile-time check that each parameter and the result implement serde's traits.
    const _: fn() = || {
        ::ray::__private::Wire::<u32>::PROBE.check().require();
    };
};
