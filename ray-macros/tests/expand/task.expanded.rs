/// Adds two numbers.
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}
#[allow(unused_imports)]
use ::ray::__private::python::{
    Remote0 as _, Remote1 as _, Remote2 as _, Remote3 as _, Remote4 as _, Remote5 as _,
    Remote6 as _, Remote7 as _, Remote8 as _,
};
/// The ray task `add()`: `add::remote(..)` runs it in a worker process.
#[allow(non_camel_case_types)]
pub struct add {}
#[allow(dead_code)]
impl add {
    /// Runs `add(..)` in a worker process; returns a reference to its result at once.
    pub fn remote(
        a: impl ::ray::IntoArg<i64>,
        b: impl ::ray::IntoArg<i64>,
    ) -> ::ray::ObjectRef<i64> {
        Self::options().remote(a, b)
    }
    /// Per-call options (`num_cpus`, `num_gpus`, `resource`, `max_retries`), then `.remote(..)`.
    pub fn options() -> ::ray::TaskOptions<add> {
        ::ray::TaskOptions::__new()
    }
}
const _: () = {
    use ::ray::__private::wire::traits::*;
    impl ::ray::RemoteFunction for add {
        const NAME: &'static str = ::core::concat!(::core::module_path!(), "::add");
        type Caller = AddCaller;
        fn __default_options() -> ::ray::__private::RawTaskOptions {
            let mut options = <::ray::__private::RawTaskOptions as ::core::default::Default>::default();
            options.num_cpus(0.5);
            options
        }
    }
    /// What `add::options()` dereferences to: `remote(..)` with those options.
    pub struct AddCaller(::ray::__private::RawTaskOptions);
    impl AddCaller {
        /// Runs `add(..)` in a worker process; returns a reference to its result at once.
        pub fn remote(
            &self,
            a: impl ::ray::IntoArg<i64>,
            b: impl ::ray::IntoArg<i64>,
        ) -> ::ray::ObjectRef<i64> {
            let mut args = ::ray::__private::ArgsBuilder::with_capacity(2);
            ::ray::__private::Wire::<i64>::new().push(&mut args, a);
            ::ray::__private::Wire::<i64>::new().push(&mut args, b);
            ::ray::__private::submit_task(
                <add as ::ray::RemoteFunction>::NAME,
                &self.0,
                args,
            )
        }
    }
    impl ::core::convert::From<::ray::__private::RawTaskOptions> for AddCaller {
        fn from(options: ::ray::__private::RawTaskOptions) -> Self {
            AddCaller(options)
        }
    }
    impl ::core::convert::AsMut<::ray::__private::RawTaskOptions> for AddCaller {
        fn as_mut(&mut self) -> &mut ::ray::__private::RawTaskOptions {
            &mut self.0
        }
    }
    /// Registers `add` by name: a worker decodes the arguments, calls it, encodes the result.
    #[::ray::__private::linkme::distributed_slice(::ray::__private::TASKS)]
    #[linkme(crate = ::ray::__private::linkme)]
    static REGISTRATION: ::ray::__private::TaskEntry = ::ray::__private::TaskEntry {
        name: <add as ::ray::RemoteFunction>::NAME,
        signature: "fn add(a: i64, b: i64) -> i64",
        invoke: |args| {
            let a = ::ray::__private::Wire::<i64>::new().decode(args)?;
            let b = ::ray::__private::Wire::<i64>::new().decode(args)?;
            ::ray::__private::Wire::<i64>::new().encode(&add(a, b))
        },
    };
    /// Compile-time check that each parameter and the result implement serde's traits.
    const _: fn() = || {
        ::ray::__private::Wire::<i64>::PROBE.check().require();
    };
};
