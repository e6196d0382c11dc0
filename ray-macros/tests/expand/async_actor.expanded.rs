pub struct Cache {
    hits: std::cell::Cell<u64>,
}
impl ::ray::ActorClass for Cache {
    fn __default_options() -> ::ray::__private::RawActorOptions {
        let mut options = <::ray::__private::RawActorOptions as ::core::default::Default>::default();
        options.max_task_retries(4294967295u32);
        options
    }
    fn __into_instance(self) -> ::ray::__private::ActorInstance {
        ::ray::__private::ActorInstance::single(self)
    }
}
/// `Cache`'s impl block needs `#[ray::remote]` too: without it, this does not compile.
const _: &str = <Cache as ::ray::RemoteActor>::NAME;
impl Cache {
    pub fn new() -> Self {
        Cache {
            hits: std::cell::Cell::new(0),
        }
    }
    /// Interleaves with other calls at its `.await`s.
    pub async fn fetch(&self, key: ray::ObjectRef<String>) -> String {
        self.hits.set(self.hits.get() + 1);
        key.await.unwrap()
    }
    pub fn stats(&self) -> (u64, String) {
        (self.hits.get(), "hits".into())
    }
    pub fn keys(&self, n: u32) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }
}
#[allow(dead_code)]
impl Cache {
    /// Starts a `Cache` actor (`new` runs in a worker process of its own); returns its handle.
    pub fn remote() -> ::ray::ActorHandle<Cache> {
        Self::options().remote()
    }
    /// Per-actor options (`num_cpus`, `num_gpus`, `resource`), then `.remote(..)`.
    pub fn options() -> ::ray::ActorOptions<Cache> {
        ::ray::ActorOptions::__new()
    }
}
const _: () = {
    use ::ray::__private::wire::traits::*;
    impl ::ray::RemoteActor for Cache {
        const NAME: &'static str = ::core::concat!(::core::module_path!(), "::Cache");
        const ASYNC: bool = true;
        type Creator = CacheCreator;
        type Methods = CacheMethods;
    }
    /// What `Cache::options()` dereferences to: `remote(..)` with those options.
    pub struct CacheCreator(::ray::__private::RawActorOptions);
    impl CacheCreator {
        /// Starts a `Cache` actor (`new` runs in a worker process of its own); returns its handle.
        pub fn remote(&self) -> ::ray::ActorHandle<Cache> {
            let args = ::ray::__private::ArgsBuilder::with_capacity(0);
            ::ray::__private::create_actor::<Cache>(&self.0, args)
        }
    }
    impl ::core::convert::From<::ray::__private::RawActorOptions> for CacheCreator {
        fn from(options: ::ray::__private::RawActorOptions) -> Self {
            CacheCreator(options)
        }
    }
    impl ::core::convert::AsMut<::ray::__private::RawActorOptions> for CacheCreator {
        fn as_mut(&mut self) -> &mut ::ray::__private::RawActorOptions {
            &mut self.0
        }
    }
    /// What `ActorHandle<Cache>` dereferences to: its remote methods, returning `ObjectRef`s.
    pub struct CacheMethods(::ray::__private::RawActorHandle);
    impl CacheMethods {
        /// Interleaves with other calls at its `.await`s.
        pub fn fetch(
            &self,
            key: impl ::ray::IntoArg<ray::ObjectRef<String>>,
        ) -> ::ray::ObjectRef<String> {
            let mut args = ::ray::__private::ArgsBuilder::with_capacity(1);
            ::ray::__private::Wire::<ray::ObjectRef<String>>::new().push(&mut args, key);
            self.0.call("fetch", args)
        }
        pub fn stats(&self) -> (::ray::ObjectRef<u64>, ::ray::ObjectRef<String>) {
            let args = ::ray::__private::ArgsBuilder::with_capacity(0);
            let ids = self.0.call_returns("stats", args, 2u32);
            (
                ::ray::__private::adopt_ref::<u64>(ids[0usize]),
                ::ray::__private::adopt_ref::<String>(ids[1usize]),
            )
        }
        pub fn keys(
            &self,
            n: impl ::ray::IntoArg<u32>,
        ) -> ::ray::ObjectRefGenerator<String> {
            let mut args = ::ray::__private::ArgsBuilder::with_capacity(1);
            ::ray::__private::Wire::<u32>::new().push(&mut args, n);
            self.0.call_stream::<String>("keys", args)
        }
    }
    impl ::core::convert::From<::ray::__private::RawActorHandle> for CacheMethods {
        fn from(handle: ::ray::__private::RawActorHandle) -> Self {
            CacheMethods(handle)
        }
    }
    impl ::core::convert::AsRef<::ray::__private::RawActorHandle> for CacheMethods {
        fn as_ref(&self) -> &::ray::__private::RawActorHandle {
            &self.0
        }
    }
    /// Registers `Cache` by name: a worker creates it with `new`, then runs methods by name.
    #[::ray::__private::linkme::distributed_slice(::ray::__private::ACTORS)]
    #[linkme(crate = ::ray::__private::linkme)]
    static REGISTRATION: ::ray::__private::ActorEntry = ::ray::__private::ActorEntry {
        name: ::core::concat!(::core::module_path!(), "::Cache"),
        signature: "fn new() -> Self; fn fetch(&self, key: ray::ObjectRef<String>) -> String; fn stats(&self) -> (u64, String); fn keys(&self, n: u32) -> Vec<String>",
        create: |_| {
            ::core::result::Result::Ok(::ray::__private::into_instance(<Cache>::new()))
        },
        call_mut: |this, method, args| {
            let this = ::ray::__private::downcast_mut::<Cache>(this)?;
            match method {
                "stats" => {
                    let (r0, r1) = this.stats();
                    ::ray::__private::returns(
                        ::std::vec![
                            ::ray::__private::Wire:: < u64 > ::new().encode(& r0) ?,
                            ::ray::__private::Wire:: < String > ::new().encode(& r1) ?,
                        ],
                    )
                }
                "keys" => {
                    let n = ::ray::__private::Wire::<u32>::new().decode(args)?;
                    ::ray::__private::stream(
                        this.keys(n),
                        |item| ::ray::__private::Wire::<String>::new().encode(item),
                    )
                }
                method => {
                    ::core::result::Result::Err(
                        ::ray::__private::unknown_method("Cache", method),
                    )
                }
            }
        },
        call_ref: |this, method, args| {
            let this = ::ray::__private::downcast_ref::<Cache>(this)?;
            match method {
                "stats" => {
                    let (r0, r1) = this.stats();
                    ::ray::__private::returns(
                        ::std::vec![
                            ::ray::__private::Wire:: < u64 > ::new().encode(& r0) ?,
                            ::ray::__private::Wire:: < String > ::new().encode(& r1) ?,
                        ],
                    )
                }
                "keys" => {
                    let n = ::ray::__private::Wire::<u32>::new().decode(args)?;
                    ::ray::__private::stream(
                        this.keys(n),
                        |item| ::ray::__private::Wire::<String>::new().encode(item),
                    )
                }
                method => {
                    ::core::result::Result::Err(
                        ::ray::__private::unknown_method("Cache", method),
                    )
                }
            }
        },
        method_is_mut: |method| match method {
            "fetch" => ::core::option::Option::Some(false),
            "stats" => ::core::option::Option::Some(false),
            "keys" => ::core::option::Option::Some(false),
            _ => ::core::option::Option::None,
        },
        call_async: ::core::option::Option::Some(|this, method, args| {
            let this = ::ray::__private::downcast_static::<Cache>(this)?;
            match method {
                "fetch" => {
                    let key = ::ray::__private::Wire::<ray::ObjectRef<String>>::new()
                        .decode(args)?;
                    ::ray::__private::boxed_future(async move {
                        ::ray::__private::Wire::<String>::new()
                            .encode(&this.fetch(key).await)
                    })
                }
                "stats" => {
                    let result = {
                        {
                            let (r0, r1) = this.stats();
                            ::ray::__private::returns(
                                ::std::vec![
                                    ::ray::__private::Wire:: < u64 > ::new().encode(& r0) ?,
                                    ::ray::__private::Wire:: < String > ::new().encode(& r1) ?,
                                ],
                            )
                        }
                    };
                    ::ray::__private::boxed_future(async move { result })
                }
                "keys" => {
                    let result = {
                        let n = ::ray::__private::Wire::<u32>::new().decode(args)?;
                        ::ray::__private::stream(
                            this.keys(n),
                            |item| ::ray::__private::Wire::<String>::new().encode(item),
                        )
                    };
                    ::ray::__private::boxed_future(async move { result })
                }
                method => {
                    ::core::result::Result::Err(
                        ::ray::__private::unknown_method("Cache", method),
                    )
                }
            }
        }),
    };
    /// Compile-time check that each parameter and result implements serde's traits.
    const _: fn() = || {
        ::ray::__private::Wire::<ray::ObjectRef<String>>::PROBE.check().require();
        ::ray::__private::Wire::<String>::PROBE.check().require();
        ::ray::__private::Wire::<u64>::PROBE.check().require();
        ::ray::__private::Wire::<u32>::PROBE.check().require();
    };
};
