//! `#[ray::remote]` on a struct (an actor class) and on its impl block (its methods).
//!
//! The two attributes cooperate without depending on their order: the struct attribute
//! implements `ray::ActorClass` (options, how the instance runs), the impl attribute implements
//! `ray::RemoteActor` (constructor, method stubs, registration); each checks that the other is
//! there through a trait bound with its own error message.

use crate::checks;
use crate::options::{self, Kind};
use crate::Errors;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, ItemStruct, Pat, ReturnType, Type};

pub(crate) fn expand_struct(attr: TokenStream, s: &ItemStruct, errors: &mut Errors) -> TokenStream {
    let opts = options::parse(attr, Kind::Actor, errors);
    if !s.generics.params.is_empty() {
        errors.push(syn::Error::new(
            s.generics.span(),
            "actor structs cannot be generic: the worker must know the concrete type; define a \
             non-generic struct (or a type alias) per type you need",
        ));
    }
    if !errors.is_empty() {
        return TokenStream::new();
    }
    let name = &s.ident;
    let o = syn::Ident::new("o", Span::mixed_site());
    let apply = opts.apply(&o);
    let instance = match opts.max_concurrency {
        Some(n) if n > 1 => quote! { ::ray::__private::ActorInstance::threaded(self, #n) },
        _ => quote! { ::ray::__private::ActorInstance::single(self) },
    };
    let check = quote_spanned! {name.span()=>
        #[allow(dead_code)]
        fn needs_remote_impl() {
            fn has_remote_methods<T: ::ray::RemoteActor>() {}
            has_remote_methods::<#name>();
        }
    };
    quote! {
        impl ::ray::ActorClass for #name {
            fn __default_options() -> ::ray::__private::RawActorOptions {
                #[allow(unused_mut)]
                let mut #o = <::ray::__private::RawActorOptions as ::core::default::Default>::default();
                #apply
                #o
            }
            fn __into_instance(self) -> ::ray::__private::ActorInstance {
                #instance
            }
        }

        const _: () = {
            #check
        };
    }
}

struct Method<'a> {
    f: &'a ImplItemFn,
    mutable: bool,
    params: Vec<(syn::Ident, Type)>,
    ret: Type,
}

const RESERVED: &[(&str, &str)] = &[
    ("remote", "`Type::remote(..)` is generated from `fn new` to start the actor"),
    ("options", "`Type::options()` is generated to set per-actor options"),
    ("clone", "`clone` on an actor handle clones the handle"),
    ("actor_id", "`actor_id` on an actor handle returns the actor's id"),
];

fn params_of(f: &ImplItemFn, self_ty: &Type, errors: &mut Errors) -> Vec<(syn::Ident, Type)> {
    let mut out = Vec::new();
    for (i, input) in f.sig.inputs.iter().enumerate() {
        if let FnArg::Typed(pt) = input {
            checks::check_param(&pt.ty, errors);
            let name = match &*pt.pat {
                Pat::Ident(p) if p.subpat.is_none() && p.ident != "self" => p.ident.clone(),
                _ => format_ident!("arg{}", i),
            };
            out.push((name, checks::replace_self(&pt.ty, self_ty)));
        }
    }
    out
}

pub(crate) fn expand_impl(attr: TokenStream, imp: &ItemImpl, errors: &mut Errors) -> TokenStream {
    if !attr.is_empty() {
        errors.push(syn::Error::new(
            attr.span(),
            "options go on the actor's struct (`#[ray::remote(num_gpus = 1)] struct ..`); the impl block takes none",
        ));
    }
    if let Some((_, path, _)) = &imp.trait_ {
        errors.push(syn::Error::new(
            path.span(),
            "`#[ray::remote]` goes on the actor's inherent `impl Type` block, not on a trait impl",
        ));
        return TokenStream::new();
    }
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new(imp.generics.span(), "actor impl blocks cannot be generic"));
    }
    let self_ty: &Type = &imp.self_ty;
    let mut ctor: Option<(&ImplItemFn, Vec<(syn::Ident, Type)>)> = None;
    let mut methods: Vec<Method> = Vec::new();
    for item in &imp.items {
        let ImplItem::Fn(f) = item else { continue };
        let sig = &f.sig;
        let name = sig.ident.to_string();
        if let Some((_, why)) = RESERVED.iter().find(|(n, _)| *n == name) {
            errors.push(syn::Error::new(
                sig.ident.span(),
                format!("a method named `{name}` clashes with what `#[ray::remote]` generates ({why}); rename it"),
            ));
            continue;
        }
        if let Some(a) = &sig.asyncness {
            errors.push(syn::Error::new(a.span(), "actor methods cannot be `async` yet: make it a plain `fn`"));
            continue;
        }
        if !sig.generics.params.is_empty() {
            errors.push(syn::Error::new(
                sig.generics.span(),
                "actor methods cannot be generic: the worker must know the concrete types",
            ));
            continue;
        }
        let receiver = sig.inputs.first().and_then(|a| match a {
            FnArg::Receiver(r) => Some(r),
            _ => None,
        });
        if name == "new" {
            if receiver.is_some() {
                errors.push(syn::Error::new(sig.ident.span(), "the constructor `fn new` takes no `self`"));
                continue;
            }
            let returns_self = match &sig.output {
                ReturnType::Type(_, t) => {
                    matches!(&**t, Type::Path(p) if p.path.is_ident("Self")) || quote!(#t).to_string() == quote!(#self_ty).to_string()
                }
                ReturnType::Default => false,
            };
            if !returns_self {
                errors.push(syn::Error::new(sig.output.span(), "the constructor `fn new(..)` must return `Self`"));
            }
            let params = params_of(f, self_ty, errors);
            ctor = Some((f, params));
            continue;
        }
        let Some(receiver) = receiver else { continue }; // associated functions stay local
        if receiver.reference.is_none() {
            errors.push(syn::Error::new(
                receiver.span(),
                "actor methods take `&self` or `&mut self`: the actor lives on in its worker, so a method \
                 cannot consume it",
            ));
            continue;
        }
        if receiver.colon_token.is_some() {
            errors.push(syn::Error::new(receiver.span(), "write the receiver as `&self` or `&mut self`"));
            continue;
        }
        let params = params_of(f, self_ty, errors);
        let ret: Type = match &sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, t) => {
                checks::check_return(t, errors);
                checks::replace_self(t, self_ty)
            }
        };
        methods.push(Method { f, mutable: receiver.mutability.is_some(), params, ret });
    }
    let Some((ctor_fn, ctor_params)) = ctor else {
        errors.push(syn::Error::new(
            imp.self_ty.span(),
            format!(
                "an actor's impl block needs a constructor `fn new(..) -> Self`; it runs in the actor's \
                 worker when `{}::remote(..)` is called",
                quote!(#self_ty)
            ),
        ));
        return TokenStream::new();
    };
    if !errors.is_empty() {
        return TokenStream::new();
    }

    let type_name = match self_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default(),
        other => quote!(#other).to_string(),
    };
    let args = syn::Ident::new("args", Span::mixed_site());
    let builder = syn::Ident::new("builder", Span::mixed_site());
    let this = syn::Ident::new("this", Span::mixed_site());

    // Constructor.
    let ctor_vis = &ctor_fn.vis;
    let ctor_names: Vec<&syn::Ident> = ctor_params.iter().map(|(n, _)| n).collect();
    let ctor_types: Vec<&Type> = ctor_params.iter().map(|(_, t)| t).collect();
    let ctor_decoded: Vec<syn::Ident> =
        (0..ctor_params.len()).map(|i| format_ident!("a{}", i, span = Span::mixed_site())).collect();
    let n_ctor = ctor_params.len();
    let ctor_pushes = ctor_types.iter().zip(&ctor_names).map(|(t, n)| quote_spanned! {t.span()=> #builder.push::<#t, _>(#n); });
    let doc_remote = format!(
        "Starts a `{type_name}` actor in a worker process of its own, running `{type_name}::new(..)` there; \
         returns its handle at once."
    );

    // Methods.
    let mut arms_mut = Vec::new();
    let mut arms_ref = Vec::new();
    let mut kinds = Vec::new();
    let mut stubs = Vec::new();
    let mut checks_ts: Vec<TokenStream> = ctor_types.iter().map(|t| checks::assert_transferable(t)).collect();
    let mut signatures = vec![quote!(#ctor_fn.sig).to_string()];
    for m in &methods {
        let ident = &m.f.sig.ident;
        let name = ident.to_string();
        let vis = &m.f.vis;
        let docs = m.f.attrs.iter().filter(|a| a.path().is_ident("doc"));
        let names: Vec<&syn::Ident> = m.params.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = m.params.iter().map(|(_, t)| t).collect();
        let decoded: Vec<syn::Ident> =
            (0..m.params.len()).map(|i| format_ident!("a{}", i, span = Span::mixed_site())).collect();
        let ret = &m.ret;
        let n = m.params.len();
        let sig = &m.f.sig;
        signatures.push(quote!(#sig).to_string());
        for t in &types {
            checks_ts.push(checks::assert_transferable(t));
        }
        checks_ts.push(checks::assert_transferable(ret));
        let call = quote_spanned! {ret.span()=>
            ::ray::__private::encode_return::<#ret>(&#this.#ident(#(#decoded),*))
        };
        let decode = quote! { #( let #decoded: #types = #args.next()?; )* };
        arms_mut.push(quote! { #name => { #decode #call } });
        if !m.mutable {
            arms_ref.push(quote! { #name => { #decode #call } });
        }
        let mutable = m.mutable;
        kinds.push(quote! { #name => ::core::option::Option::Some(#mutable) });
        let pushes = types.iter().zip(&names).map(|(t, n)| quote_spanned! {t.span()=> #builder.push::<#t, _>(#n); });
        stubs.push(quote! {
            #(#docs)*
            #[allow(clippy::too_many_arguments, dead_code)]
            #vis fn #ident(&self, #(#names: impl ::ray::IntoArg<#types>),*) -> ::ray::ObjectRef<#ret> {
                let mut #builder = ::ray::__private::ArgsBuilder::with_capacity(#n);
                #(#pushes)*
                self.0.call::<#ret>(#name, #builder)
            }
        });
    }
    let signature = signatures.join("; ");
    let unknown = quote! {
        other => ::core::result::Result::Err(::ray::__private::unknown_method(#type_name, other))
    };

    quote! {
        impl #self_ty {
            #[doc = #doc_remote]
            #[allow(clippy::too_many_arguments, dead_code)]
            #ctor_vis fn remote(#(#ctor_names: impl ::ray::IntoArg<#ctor_types>),*) -> ::ray::ActorHandle<#self_ty> {
                Self::options().remote(#(#ctor_names),*)
            }

            /// Per-actor options (`num_cpus`, `num_gpus`, `resource`), then `.remote(..)`.
            #[allow(dead_code)]
            #ctor_vis fn options() -> ::ray::ActorOptions<#self_ty> {
                ::ray::ActorOptions::__new()
            }
        }

        const _: () = {
            // Worker side: run the constructor, and dispatch method calls by name.
            fn create(#args: &mut ::ray::__private::Args) -> ::ray::Result<::ray::__private::ActorInstance> {
                #( let #ctor_decoded: #ctor_types = #args.next()?; )*
                ::core::result::Result::Ok(<#self_ty as ::ray::ActorClass>::__into_instance(<#self_ty>::new(#(#ctor_decoded),*)))
            }

            fn call_mut(
                #this: &mut dyn ::core::any::Any,
                method: &str,
                #args: &mut ::ray::__private::Args,
            ) -> ::ray::Result<::ray::__private::Encoded> {
                #[allow(unused_variables)]
                let #this = ::ray::__private::downcast_mut::<#self_ty>(#this)?;
                match method {
                    #(#arms_mut)*
                    #unknown
                }
            }

            fn call_ref(
                #this: &dyn ::core::any::Any,
                method: &str,
                #args: &mut ::ray::__private::Args,
            ) -> ::ray::Result<::ray::__private::Encoded> {
                #[allow(unused_variables)]
                let #this = ::ray::__private::downcast_ref::<#self_ty>(#this)?;
                match method {
                    #(#arms_ref)*
                    #unknown
                }
            }

            fn method_is_mut(method: &str) -> ::core::option::Option<bool> {
                match method {
                    #(#kinds,)*
                    _ => ::core::option::Option::None,
                }
            }

            #[::ray::__private::linkme::distributed_slice(::ray::__private::ACTORS)]
            #[linkme(crate = ::ray::__private::linkme)]
            static REGISTRATION: ::ray::__private::ActorEntry = ::ray::__private::ActorEntry {
                name: ::core::concat!(::core::module_path!(), "::", #type_name),
                signature: #signature,
                create,
                call_mut,
                call_ref,
                method_is_mut,
            };

            // Caller side: the constructor with options, and the handle's methods.
            pub struct Creator(::ray::__private::RawActorOptions);

            impl Creator {
                #[allow(clippy::too_many_arguments)]
                pub fn remote(&self, #(#ctor_names: impl ::ray::IntoArg<#ctor_types>),*) -> ::ray::ActorHandle<#self_ty> {
                    let mut #builder = ::ray::__private::ArgsBuilder::with_capacity(#n_ctor);
                    #(#ctor_pushes)*
                    ::ray::__private::create_actor::<#self_ty>(&self.0, #builder)
                }
            }

            impl ::core::convert::From<::ray::__private::RawActorOptions> for Creator {
                fn from(o: ::ray::__private::RawActorOptions) -> Self { Creator(o) }
            }

            impl ::core::convert::AsMut<::ray::__private::RawActorOptions> for Creator {
                fn as_mut(&mut self) -> &mut ::ray::__private::RawActorOptions { &mut self.0 }
            }

            pub struct Methods(::ray::__private::RawActorHandle);

            impl Methods {
                #(#stubs)*
            }

            impl ::core::convert::From<::ray::__private::RawActorHandle> for Methods {
                fn from(h: ::ray::__private::RawActorHandle) -> Self { Methods(h) }
            }

            impl ::core::convert::AsRef<::ray::__private::RawActorHandle> for Methods {
                fn as_ref(&self) -> &::ray::__private::RawActorHandle { &self.0 }
            }

            impl ::ray::RemoteActor for #self_ty {
                const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #type_name);
                type Creator = Creator;
                type Methods = Methods;
            }

            #[allow(dead_code)]
            fn check_types() {
                #(#checks_ts)*
            }
        };
    }
}
