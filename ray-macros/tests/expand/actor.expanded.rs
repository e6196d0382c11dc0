pub struct Counter {
    n: i64,
}
impl ::ray::ActorClass for Counter {
    fn __default_options() -> ::ray::__private::RawActorOptions {
        let mut options = <::ray::__private::RawActorOptions as ::core::default::Default>::default();
        options.num_gpus(1.0);
        options
    }
    fn __into_instance(self) -> ::ray::__private::ActorInstance {
        ::ray::__private::ActorInstance::single(self)
    }
}
/// `Counter`'s impl block needs `#[ray::remote]` too: without it, this does not compile.
const _: &str = <Counter as ::ray::RemoteActor>::NAME;
impl Counter {
    pub fn new(start: i64) -> Self {
        Counter { n: start }
    }
    /// Adds `x` and returns the new total.
    pub fn add(&mut self, x: i64) -> i64 {
        self.n += x;
        self.n
    }
    pub fn get(&self) -> i64 {
        self.n
    }
}
#[allow(dead_code)]
impl Counter {
    /// Starts a `Counter` actor (`new` runs in a worker process of its own); returns its handle.
    pub fn remote(start: impl ::ray::IntoArg<i64>) -> ::ray::ActorHandle<Counter> {
        Self::options().remote(start)
    }
    /// Per-actor options (`num_cpus`, `num_gpus`, `resource`), then `.remote(..)`.
    pub fn options() -> ::ray::ActorOptions<Counter> {
        ::ray::ActorOptions::__new()
    }
}
const _: () = {
    use ::ray::__private::wire::traits::*;
    impl ::ray::RemoteActor for Counter {
        const NAME: &'static str = ::core::concat!(::core::module_path!(), "::Counter");
        type Creator = CounterCreator;
        type Methods = CounterMethods;
    }
    /// What `Counter::options()` dereferences to: `remote(..)` with those options.
    pub struct CounterCreator(::ray::__private::RawActorOptions);
    impl CounterCreator {
        /// Starts a `Counter` actor (`new` runs in a worker process of its own); returns its handle.
        pub fn remote(
            &self,
            start: impl ::ray::IntoArg<i64>,
        ) -> ::ray::ActorHandle<Counter> {
            let mut args = ::ray::__private::ArgsBuilder::with_capacity(1);
            ::ray::__private::Wire::<i64>::new().push(&mut args, start);
            ::ray::__private::create_actor::<Counter>(&self.0, args)
        }
    }
    impl ::core::convert::From<::ray::__private::RawActorOptions> for CounterCreator {
        fn from(options: ::ray::__private::RawActorOptions) -> Self {
            CounterCreator(options)
        }
    }
    impl ::core::convert::AsMut<::ray::__private::RawActorOptions> for CounterCreator {
        fn as_mut(&mut self) -> &mut ::ray::__private::RawActorOptions {
            &mut self.0
        }
    }
    /// What `ActorHandle<Counter>` dereferences to: its remote methods, returning `ObjectRef`s.
    pub struct CounterMethods(::ray::__private::RawActorHandle);
    impl CounterMethods {
        /// Adds `x` and returns the new total.
        pub fn add(&self, x: impl ::ray::IntoArg<i64>) -> ::ray::ObjectRef<i64> {
            let mut args = ::ray::__private::ArgsBuilder::with_capacity(1);
            ::ray::__private::Wire::<i64>::new().push(&mut args, x);
            self.0.call("add", args)
        }
        pub fn get(&self) -> ::ray::ObjectRef<i64> {
            let args = ::ray::__private::ArgsBuilder::with_capacity(0);
            self.0.call("get", args)
        }
    }
    impl ::core::convert::From<::ray::__private::RawActorHandle> for CounterMethods {
        fn from(handle: ::ray::__private::RawActorHandle) -> Self {
            CounterMethods(handle)
        }
    }
    impl ::core::convert::AsRef<::ray::__private::RawActorHandle> for CounterMethods {
        fn as_ref(&self) -> &::ray::__private::RawActorHandle {
            &self.0
        }
    }
    /// Registers `Counter` by name: a worker creates it with `new`, then runs methods by name.
    #[::ray::__private::linkme::distributed_slice(::ray::__private::ACTORS)]
    #[linkme(crate = ::ray::__private::linkme)]
    static REGISTRATION: ::ray::__private::ActorEntry = ::ray::__private::ActorEntry {
        name: ::core::concat!(::core::module_path!(), "::Counter"),
        signature: "fn new(start: i64) -> Self; fn add(&mut self, x: i64) -> i64; fn get(&self) -> i64",
        create: |args| {
            let start = ::ray::__private::Wire::<i64>::new().decode(args)?;
            ::core::result::Result::Ok(
                ::ray::__private::into_instance(<Counter>::new(start)),
            )
        },
        call_mut: |this, method, args| {
            let this = ::ray::__private::downcast_mut::<Counter>(this)?;
            match method {
                "add" => {
                    let x = ::ray::__private::Wire::<i64>::new().decode(args)?;
                    ::ray::__private::Wire::<i64>::new().encode(&this.add(x))
                }
                "get" => ::ray::__private::Wire::<i64>::new().encode(&this.get()),
                method => {
                    ::core::result::Result::Err(
                        ::ray::__private::unknown_method("Counter", method),
                    )
                }
            }
        },
        call_ref: |this, method, _| {
            let this = ::ray::__private::downcast_ref::<Counter>(this)?;
            match method {
                "get" => ::ray::__private::Wire::<i64>::new().encode(&this.get()),
                method => {
                    ::core::result::Result::Err(
                        ::ray::__private::unknown_method("Counter", method),
                    )
                }
            }
        },
        method_is_mut: |method| match method {
            "add" => ::core::option::Option::Some(true),
            "get" => ::core::option::Option::Some(false),
            _ => ::core::option::Option::None,
        },
        call_async: ::core::option::Option::None,
    };
    /// Compile-time check that each parameter and result implements serde's traits.
    const _: fn() = || {
        ::ray::__private::Wire::<i64>::PROBE.check().require();
    };
};
