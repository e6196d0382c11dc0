//! `#[ray::remote]` on a struct (an actor class) and on its impl block (its methods).
//!
//! The two attributes cooperate without depending on their order: the struct attribute
//! implements `ray::ActorClass` (options, how the instance runs), the impl attribute implements
//! `ray::RemoteActor` (constructor, method stubs, registration); each checks that the other is
//! there through a trait bound with its own error message.

use crate::checks::{self, Position};
use crate::options::{self, Kind};
use crate::returns::Shape;
use crate::{
    Errors, Param, decode_args, local, new_args, passthrough_attrs, push_args, stub_params,
    unique_name,
};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, ItemStruct, ReturnType, Type};

pub(crate) fn expand_struct(attr: TokenStream, s: &ItemStruct, errors: &mut Errors) -> TokenStream {
    let opts = options::parse(attr, Kind::Actor, errors);
    if !s.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &s.generics,
            "actor structs cannot be generic: a worker creates the actor by name and must know its \
             concrete type; define a non-generic struct for each type you need",
        ));
        return TokenStream::new();
    }
    let name = &s.ident;
    let cfgs = passthrough_attrs(&s.attrs);
    let options = local("options");
    let default_options = opts.build(quote!(::ray::__private::RawActorOptions), &options);
    let instance = match opts.max_concurrency {
        // Several threads call `&self` methods at once: the compiler checks `Send + Sync` here.
        Some((n, span)) if n > 1 => {
            quote_spanned! {span=> ::ray::__private::threaded_instance(self, #n) }
        }
        _ => quote! { ::ray::__private::ActorInstance::single(self) },
    };
    let check = quote_spanned! {name.span()=>
        <#name as ::ray::RemoteActor>::NAME
    };
    let doc_check = format!(
        " `{name}`'s impl block needs `#[ray::remote]` too: without it, this does not compile."
    );
    quote! {
        #(#cfgs)*
        impl ::ray::ActorClass for #name {
            fn __default_options() -> ::ray::__private::RawActorOptions {
                #default_options
            }

            fn __into_instance(self) -> ::ray::__private::ActorInstance {
                #instance
            }
        }

        #(#cfgs)*
        #[doc = #doc_check]
        const _: &str = #check;
    }
}

/// A remote method: `&self` or `&mut self`, owned parameters.
struct Method<'a> {
    f: &'a ImplItemFn,
    mutable: bool,
    params: Vec<Param>,
    ret: Type,
    /// One, several or a stream of return values (`#[ray::method(..)]`).
    shape: Shape,
    /// An `async fn`: it runs as a future on the actor's async runtime.
    is_async: bool,
}

/// Whether an attribute is `#[ray::method(..)]` (or `#[method(..)]` with the macro imported).
fn is_method_attr(a: &syn::Attribute) -> bool {
    let segs: Vec<String> = a
        .path()
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segs == ["ray", "method"] || segs == ["method"]
}

/// The options of `#[ray::method(..)]` on a method, if it has the attribute.
fn method_options(f: &ImplItemFn, errors: &mut Errors) -> options::Options {
    let mut attrs = f.attrs.iter().filter(|a| is_method_attr(a));
    let Some(first) = attrs.next() else {
        return options::Options::default();
    };
    for extra in attrs {
        errors.push(syn::Error::new_spanned(
            extra,
            "`#[ray::method(..)]` is given twice: put all of this method's options in one",
        ));
    }
    match &first.meta {
        syn::Meta::List(l) => options::parse(l.tokens.clone(), Kind::Method, errors),
        _ => options::Options::default(),
    }
}

/// The impl block as the user wrote it, less the `#[ray::method(..)]` attributes (which only
/// `#[ray::remote]` reads).
pub(crate) fn strip_method_attrs(imp: &mut ItemImpl) {
    for item in &mut imp.items {
        if let ImplItem::Fn(f) = item {
            f.attrs.retain(|a| !is_method_attr(a));
        }
    }
}

/// Names a remote method cannot have, and why.
const RESERVED: &[(&str, &str)] = &[
    (
        "remote",
        "`Type::remote(..)` is generated from `fn new` to start the actor",
    ),
    (
        "options",
        "`Type::options()` is generated to set per-actor options",
    ),
    ("actor_id", "`handle.actor_id()` returns the actor's id"),
    ("clone", "`handle.clone()` clones the handle"),
    (
        "clone_from",
        "`handle.clone_from(..)` is the handle's `Clone`",
    ),
    (
        "clone_into",
        "`handle.clone_into(..)` is the handle's `ToOwned`",
    ),
    ("to_owned", "`handle.to_owned()` is the handle's `ToOwned`"),
    ("into", "`handle.into()` is the handle's `Into`"),
    ("try_into", "`handle.try_into()` is the handle's `TryInto`"),
];

/// Whether `sig` returns `Self` (or the type by name).
fn returns_self(sig: &syn::Signature, self_ty: &Type) -> bool {
    match &sig.output {
        ReturnType::Type(_, t) => {
            matches!(&**t, Type::Path(p) if p.path.is_ident("Self"))
                || checks::text(&**t) == checks::text(self_ty)
        }
        ReturnType::Default => false,
    }
}

/// Checks a method's signature (shared by `new` and methods). Returns its parameters, or
/// `None` if no stub can be generated for it.
fn params_of(f: &ImplItemFn, self_ty: &Type, errors: &mut Errors) -> Option<Vec<Param>> {
    let sig = &f.sig;
    let mut usable = true;
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            u,
            "actor methods cannot be `unsafe fn`: a worker calls them with no caller to uphold their \
             safety conditions; make it safe with an `unsafe` block inside",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "actor methods cannot be generic: a worker calls the method by name and must know the \
             concrete types; add a method per type you need",
        ));
        usable = false;
    }
    let mut params = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        if let FnArg::Typed(pt) = input {
            usable &= !checks::check_type(&pt.ty, Position::Param, errors).unusable;
            params.push(Param::new(i, pt, checks::replace_self(&pt.ty, self_ty)));
        }
    }
    crate::avoid_locals(&mut params);
    usable.then_some(params)
}

pub(crate) fn expand_impl(attr: TokenStream, imp: &ItemImpl, errors: &mut Errors) -> TokenStream {
    if !attr.is_empty() {
        errors.push(syn::Error::new_spanned(
            &attr,
            "options go on the actor's struct, e.g. `#[ray::remote(num_gpus = 1)] struct Counter { .. }`; \
             on its impl block write plain `#[ray::remote]`",
        ));
    }
    if let Some((_, path, _)) = &imp.trait_ {
        errors.push(syn::Error::new_spanned(
            path,
            "`#[ray::remote]` goes on the actor's own `impl Type { .. }` block, not on a trait impl; \
             to call a trait method remotely, add a method to that block that calls it",
        ));
        return TokenStream::new();
    }
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &imp.generics,
            "actor impl blocks cannot be generic: a worker creates the actor by name and must know \
             its concrete type",
        ));
        return TokenStream::new();
    }
    let self_ty: &Type = &imp.self_ty;
    let mut ctor: Option<(&ImplItemFn, Option<Vec<Param>>)> = None;
    let mut methods: Vec<Method> = Vec::new();
    let mut clashes_with_remote = false;
    for item in &imp.items {
        let ImplItem::Fn(f) = item else { continue };
        let sig = &f.sig;
        let name = sig.ident.to_string();
        let receiver = sig.receiver();
        if let Some((reserved, why)) = RESERVED.iter().find(|(n, _)| *n == name) {
            if receiver.is_some() || matches!(*reserved, "remote" | "options") {
                errors.push(syn::Error::new_spanned(
                    &sig.ident,
                    format!("an actor method cannot be named `{name}`: {why}; give the method another name"),
                ));
                clashes_with_remote |= matches!(*reserved, "remote" | "options");
                continue;
            }
        }
        if name == "new" {
            if let Some(a) = f.attrs.iter().find(|a| is_method_attr(a)) {
                errors.push(syn::Error::new_spanned(
                    a,
                    "`#[ray::method(..)]` goes on the actor's methods, not on its constructor \
                     `fn new`: it runs once and returns the actor itself",
                ));
            }
            if let Some(a) = &sig.asyncness {
                errors.push(syn::Error::new_spanned(
                    a,
                    "the constructor `fn new(..)` cannot be `async`: it runs once, before any call; \
                     methods may be `async fn`",
                ));
            }
            if let Some(r) = receiver {
                errors.push(syn::Error::new_spanned(
                    r,
                    "the constructor `fn new(..) -> Self` takes no `self`: it creates the actor in its worker",
                ));
                ctor = Some((f, None));
                continue;
            }
            if !returns_self(sig, self_ty) {
                let msg = "the constructor `fn new(..)` must return `Self`: it creates the actor (a \
                           fallible constructor can panic; the error then comes back from calls on the actor)";
                errors.push(match &sig.output {
                    ReturnType::Type(_, t) => syn::Error::new_spanned(t, msg),
                    ReturnType::Default => syn::Error::new_spanned(&sig.ident, msg),
                });
            }
            ctor = Some((f, params_of(f, self_ty, errors)));
            continue;
        }
        let Some(receiver) = receiver else {
            // Associated functions stay local.
            if let Some(a) = f.attrs.iter().find(|a| is_method_attr(a)) {
                errors.push(syn::Error::new_spanned(
                    a,
                    "`#[ray::method(..)]` goes on methods that take `&self` or `&mut self`; an \
                     associated function without `self` stays a local function",
                ));
            }
            continue;
        };
        let shorthand = receiver.colon_token.is_none();
        if !shorthand || receiver.reference.is_none() {
            let msg = if shorthand {
                "actor methods take `&self` or `&mut self`: the actor lives on in its worker, so a \
                 method cannot consume it"
            } else {
                "actor methods take `&self` or `&mut self` written as such: the worker owns the actor \
                 and lends it to each call"
            };
            errors.push(syn::Error::new_spanned(receiver, msg));
            continue;
        }
        let method_opts = method_options(f, errors);
        let Some(params) = params_of(f, self_ty, errors) else {
            continue;
        };
        let ret: Type = match &sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, t) => checks::replace_self(t, self_ty),
        };
        let shape = Shape::of(&method_opts, &sig.output, &ret, errors);
        let checked = match &shape {
            Shape::Stream { item, opaque: true } => Some(&**item),
            _ if method_opts.streaming.is_some() => {
                if matches!(ret, Type::ImplTrait(_)) {
                    continue;
                }
                None
            }
            _ => match &sig.output {
                ReturnType::Type(..) => Some(&ret),
                ReturnType::Default => None,
            },
        };
        if let Some(t) = checked {
            if checks::check_type(t, Position::Return, errors).unusable {
                continue;
            }
        }
        methods.push(Method {
            f,
            mutable: receiver.mutability.is_some(),
            params,
            ret,
            shape,
            is_async: sig.asyncness.is_some(),
        });
    }
    if let Some(first_async) = methods.iter().find(|m| m.is_async) {
        let name = first_async.f.sig.ident.to_string();
        for m in methods.iter().filter(|m| m.mutable) {
            if let Some(r) = m.f.sig.receiver() {
                errors.push(syn::Error::new_spanned(
                    r,
                    format!(
                        "an actor with `async fn` methods (such as `{name}`) runs its calls \
                         interleaved, so its methods share the actor: take `&self`, and keep state \
                         that changes in a `Cell`, `RefCell` or `Mutex`"
                    ),
                ));
            }
        }
    }
    let ctor = match ctor {
        Some((f, params)) => params.map(|p| (f, p)),
        None => {
            errors.push(syn::Error::new_spanned(
                &imp.self_ty,
                format!(
                    "an actor's impl block needs a constructor `fn new(..) -> Self`: it runs in the \
                     actor's worker process when `{0}::remote(..)` is called, e.g. \
                     `fn new() -> Self {{ {0} {{ .. }} }}`",
                    checks::text(self_ty)
                ),
            ));
            None
        }
    };
    Actor {
        imp,
        ctor,
        methods: &methods,
        ok: errors.is_empty(),
        clashes_with_remote,
    }
    .emit()
}

struct Actor<'a> {
    imp: &'a ItemImpl,
    /// The constructor, if one can be called.
    ctor: Option<(&'a ImplItemFn, Vec<Param>)>,
    methods: &'a [Method<'a>],
    /// No errors: emit everything. Otherwise only the caller side, with bodies that never run.
    ok: bool,
    /// A user method is named `remote` or `options`: generating those would clash.
    clashes_with_remote: bool,
}

impl Actor<'_> {
    fn emit(&self) -> TokenStream {
        let self_ty = &*self.imp.self_ty;
        let type_name = match self_ty {
            Type::Path(p) => p
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default(),
            other => checks::text(other),
        };
        let cfgs = passthrough_attrs(&self.imp.attrs);
        let signature_types = || {
            let ctor = self
                .ctor
                .iter()
                .flat_map(|(_, params)| params.iter().map(|p| &p.ty));
            ctor.chain(
                self.methods
                    .iter()
                    .flat_map(|m| m.params.iter().map(|p| &p.ty).chain([&m.ret])),
            )
        };
        let creator = unique_name(format!("{type_name}Creator"), signature_types());
        let methods_ty = unique_name(format!("{type_name}Methods"), signature_types());
        let args = local("args");
        let this = local("this");
        let method = local("method");
        let options = local("options");
        let handle = local("handle");
        let unused = (!self.ok).then(|| quote!(#[allow(unused_variables)]));
        let path_suffix = format!("::{type_name}");

        // Caller side: `Type::remote(..)`, `Type::options()`, the creator and the methods.
        let doc_remote = format!(
            " Starts a `{type_name}` actor (`new` runs in a worker process of its own); returns its handle."
        );
        let doc_options =
            " Per-actor options (`num_cpus`, `num_gpus`, `resource`), then `.remote(..)`.";
        let doc_creator = format!(
            " What `{type_name}::options()` dereferences to: `remote(..)` with those options."
        );
        let doc_methods = format!(
            " What `ActorHandle<{type_name}>` dereferences to: its remote methods, returning `ObjectRef`s."
        );
        let (remote_fns, creator_remote) = match &self.ctor {
            Some((f, params)) => {
                let vis = &f.vis;
                let names: Vec<&syn::Ident> = params.iter().map(|p| &p.name).collect();
                let (stub_params, stub_generics) = stub_params(params, self.ok);
                let body = if self.ok {
                    let new_args = new_args(params, &args);
                    let pushes = push_args(params, &args);
                    quote! {
                        #new_args
                        #(#pushes)*
                        ::ray::__private::create_actor::<#self_ty>(&self.0, #args)
                    }
                } else {
                    quote! { ::core::unreachable!() }
                };
                let remote_fns = (!self.clashes_with_remote).then(|| {
                    quote! {
                        #(#cfgs)*
                        #[allow(dead_code)]
                        impl #self_ty {
                            #[doc = #doc_remote]
                            #vis fn remote #stub_generics(#(#stub_params),*) -> ::ray::ActorHandle<#self_ty> {
                                Self::options().remote(#(#names),*)
                            }

                            #[doc = #doc_options]
                            #vis fn options() -> ::ray::ActorOptions<#self_ty> {
                                ::ray::ActorOptions::__new()
                            }
                        }
                    }
                });
                let creator_remote = quote! {
                    impl #creator {
                        #[doc = #doc_remote]
                        #unused
                        pub fn remote #stub_generics(&self, #(#stub_params),*) -> ::ray::ActorHandle<#self_ty> {
                            #body
                        }
                    }
                };
                (remote_fns, creator_remote)
            }
            None => (None, TokenStream::new()),
        };
        let stubs = self.methods.iter().map(|m| {
            let ident = &m.f.sig.ident;
            let name = ident.to_string();
            let vis = &m.f.vis;
            let attrs =
                m.f.attrs
                    .iter()
                    .filter(|a| a.path().is_ident("doc") || a.path().is_ident("cfg"));
            let (stub_params, stub_generics) = stub_params(&m.params, self.ok);
            let ret = if self.ok {
                m.ret.clone()
            } else {
                checks::static_lifetimes(&m.ret)
            };
            let caller_type = m.shape.caller_type(&ret);
            let body = if self.ok {
                let new_args = new_args(&m.params, &args);
                let pushes = push_args(&m.params, &args);
                let call = m.shape.call_method(&name, &args);
                quote! {
                    #new_args
                    #(#pushes)*
                    #call
                }
            } else {
                quote! { ::core::unreachable!() }
            };
            quote! {
                #(#attrs)*
                #unused
                #vis fn #ident #stub_generics(&self, #(#stub_params),*) -> #caller_type {
                    #body
                }
            }
        });
        let is_async = self.methods.iter().any(|m| m.is_async);
        let async_const = is_async.then(|| quote! { const ASYNC: bool = true; });
        let caller_internals = quote! {
            impl ::ray::RemoteActor for #self_ty {
                const NAME: &'static str = ::core::concat!(::core::module_path!(), #path_suffix);
                #async_const
                type Creator = #creator;
                type Methods = #methods_ty;
            }

            #[doc = #doc_creator]
            pub struct #creator(::ray::__private::RawActorOptions);

            #creator_remote

            impl ::core::convert::From<::ray::__private::RawActorOptions> for #creator {
                fn from(#options: ::ray::__private::RawActorOptions) -> Self {
                    #creator(#options)
                }
            }

            impl ::core::convert::AsMut<::ray::__private::RawActorOptions> for #creator {
                fn as_mut(&mut self) -> &mut ::ray::__private::RawActorOptions {
                    &mut self.0
                }
            }

            #[doc = #doc_methods]
            pub struct #methods_ty(::ray::__private::RawActorHandle);

            impl #methods_ty {
                #(#stubs)*
            }

            impl ::core::convert::From<::ray::__private::RawActorHandle> for #methods_ty {
                fn from(#handle: ::ray::__private::RawActorHandle) -> Self {
                    #methods_ty(#handle)
                }
            }

            impl ::core::convert::AsRef<::ray::__private::RawActorHandle> for #methods_ty {
                fn as_ref(&self) -> &::ray::__private::RawActorHandle {
                    &self.0
                }
            }
        };
        let Some((ctor_fn, ctor_params)) = self.ctor.as_ref().filter(|_| self.ok) else {
            return quote! {
                #remote_fns
                #(#cfgs)*
                const _: () = { #caller_internals };
            };
        };

        // Worker side: create the actor, and run its methods by name.
        let ctor_locals: Vec<&syn::Ident> = ctor_params.iter().map(|p| &p.local).collect();
        let ctor_decodes = decode_args(ctor_params, &args);
        let mut arms_mut = Vec::new();
        let mut arms_ref = Vec::new();
        let mut arms_async = Vec::new();
        let mut kinds = Vec::new();
        // Types are checked once each; those of a method with `#[cfg]` under the same `#[cfg]`.
        let mut unconditional: Vec<&Type> = ctor_params.iter().map(|p| &p.ty).collect();
        let mut conditional = Vec::new();
        let mut signatures = vec![checks::signature(&ctor_fn.sig)];
        for m in self.methods {
            let ident = &m.f.sig.ident;
            let name = ident.to_string();
            let cfg = passthrough_attrs(&m.f.attrs);
            let ret = &m.ret;
            let locals: Vec<&syn::Ident> = m.params.iter().map(|p| &p.local).collect();
            let decodes = decode_args(&m.params, &args);
            if m.is_async {
                let encode = m
                    .shape
                    .encode(quote! { #this.#ident(#(#locals),*).await }, ret);
                arms_async.push(quote! {
                    #(#cfg)*
                    #name => {
                        #(#decodes)*
                        ::ray::__private::boxed_future(async move { #encode })
                    }
                });
            } else {
                let encode = m.shape.encode(quote! { #this.#ident(#(#locals),*) }, ret);
                let arm = quote! {
                    #(#cfg)*
                    #name => {
                        #(#decodes)*
                        #encode
                    }
                };
                // In an async actor, a plain method runs at once on the runtime's thread.
                let result = local("result");
                arms_async.push(quote! {
                    #(#cfg)*
                    #name => {
                        let #result = { #(#decodes)* #encode };
                        ::ray::__private::boxed_future(async move { #result })
                    }
                });
                if !m.mutable {
                    arms_ref.push(arm.clone());
                }
                arms_mut.push(arm);
            }
            let mutable = m.mutable;
            kinds.push(quote! { #(#cfg)* #name => ::core::option::Option::Some(#mutable), });
            let types = m
                .params
                .iter()
                .map(|p| &p.ty)
                .chain(m.shape.transferred(ret));
            if cfg.is_empty() {
                unconditional.extend(types);
            } else {
                conditional.push((cfg, types.collect::<Vec<_>>()));
            }
            signatures.push(checks::signature(&m.f.sig));
        }
        let mut seen = Vec::new();
        let mut checks = checks::transferable_unseen(unconditional, &mut seen);
        for (cfg, types) in conditional {
            let group = checks::transferable_unseen(types, &mut seen.clone());
            if !group.is_empty() {
                checks.push(quote! { #(#cfg)* { #(#group)* } });
            }
        }
        let signature = signatures.join("; ");
        let unknown = quote! {
            #method => ::core::result::Result::Err(::ray::__private::unknown_method(#type_name, #method)),
        };
        let create_args = if ctor_params.is_empty() {
            quote!(_)
        } else {
            quote!(#args)
        };
        let dispatch = |arms: &[TokenStream], downcast: TokenStream, with_args: bool| {
            let args = if with_args { quote!(#args) } else { quote!(_) };
            if arms.is_empty() {
                return quote! {
                    |_, #method, _| ::core::result::Result::Err(::ray::__private::unknown_method(#type_name, #method))
                };
            }
            quote! {
                |#this, #method, #args| {
                    let #this = ::ray::__private::#downcast::<#self_ty>(#this)?;
                    match #method {
                        #(#arms)*
                        #unknown
                    }
                }
            }
        };
        let any_args = |mutable: bool| {
            self.methods
                .iter()
                .any(|m| (mutable || !m.mutable) && !m.params.is_empty())
        };
        let call_mut = dispatch(&arms_mut, quote!(downcast_mut), any_args(true));
        let call_ref = dispatch(&arms_ref, quote!(downcast_ref), any_args(false));
        let call_async = if is_async {
            let with_args = if self.methods.iter().any(|m| !m.params.is_empty()) {
                quote!(#args)
            } else {
                quote!(_)
            };
            quote! {
                ::core::option::Option::Some(|#this, #method, #with_args| {
                    let #this = ::ray::__private::downcast_static::<#self_ty>(#this)?;
                    match #method {
                        #(#arms_async)*
                        #unknown
                    }
                })
            }
        } else {
            quote! { ::core::option::Option::None }
        };
        let doc_registration = format!(
            " Registers `{type_name}` by name: a worker creates it with `new`, then runs methods by name."
        );
        quote! {
            #remote_fns

            #(#cfgs)*
            const _: () = {
                use ::ray::__private::wire::traits::*;

                #caller_internals

                #[doc = #doc_registration]
                #[::ray::__private::linkme::distributed_slice(::ray::__private::ACTORS)]
                #[linkme(crate = ::ray::__private::linkme)]
                static REGISTRATION: ::ray::__private::ActorEntry = ::ray::__private::ActorEntry {
                    name: ::core::concat!(::core::module_path!(), #path_suffix),
                    signature: #signature,
                    create: |#create_args| {
                        #(#ctor_decodes)*
                        ::core::result::Result::Ok(::ray::__private::into_instance(<#self_ty>::new(#(#ctor_locals),*)))
                    },
                    call_mut: #call_mut,
                    call_ref: #call_ref,
                    method_is_mut: |#method| match #method {
                        #(#kinds)*
                        _ => ::core::option::Option::None,
                    },
                    call_async: #call_async,
                };

                /// Compile-time check that each parameter and result implements serde's traits.
                const _: fn() = || {
                    #(#checks)*
                };
            };
        }
    }
}
