//! `#[ray::remote]` on a function: a task.

use crate::checks::{self, Position};
use crate::options::{self, Kind};
use crate::returns::Shape;
use crate::{
    Errors, Param, camel, decode_args, local, new_args, passthrough_attrs, push_args, stub_params,
    unique_name,
};
use proc_macro2::TokenStream;
use quote::quote;
use syn::{FnArg, ItemFn, ReturnType, Type};

pub(crate) fn expand(attr: TokenStream, f: &ItemFn, errors: &mut Errors) -> TokenStream {
    let opts = options::parse(attr, Kind::Task, errors);
    let sig = &f.sig;
    // Whether the caller side (`name::remote`, `name::options`) can be generated at all. It
    // is generated even when errors were reported, so that calls to it still type-check.
    let mut callable = true;
    if let Some(a) = &sig.asyncness {
        errors.push(syn::Error::new_spanned(
            a,
            "remote functions cannot be `async`: make it a plain `fn` (each task runs on a worker \
             thread of its own); async code can `.await` the `ObjectRef` that `remote(..)` returns",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let msg = "remote functions cannot be generic: a worker finds the function by name and must know \
                   the concrete types; write a non-generic `#[ray::remote]` wrapper for each type you need";
        errors.push(match &sig.generics.where_clause {
            Some(w) if sig.generics.params.is_empty() => syn::Error::new_spanned(w, msg),
            _ => syn::Error::new_spanned(&sig.generics, msg),
        });
        callable = false;
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            u,
            "remote functions cannot be `unsafe fn`: a worker calls them with no caller to uphold \
             their safety conditions; make it a safe `fn` with an `unsafe` block inside",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            v,
            "remote functions cannot be variadic",
        ));
        callable = false;
    }
    let mut params: Vec<Param> = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => {
                errors.push(syn::Error::new_spanned(
                    r,
                    "`#[ray::remote]` on a method: a task is a free `fn`; for methods put \
                     `#[ray::remote]` on the `impl` block of an actor (and on its `struct`)",
                ));
                callable = false;
            }
            FnArg::Typed(pt) => {
                callable &= !checks::check_type(&pt.ty, Position::Param, errors).unusable;
                params.push(Param::new(i, pt, (*pt.ty).clone()));
            }
        }
    }
    let ret: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, t) => (**t).clone(),
    };
    let shape = Shape::of(&opts, &sig.output, &ret, errors);
    let checked = match &shape {
        Shape::Stream { item, opaque: true } => Some(&**item),
        // A streaming return that was refused (reported by `Shape::of`).
        _ if opts.streaming.is_some() => {
            callable &= !matches!(ret, Type::ImplTrait(_));
            None
        }
        _ => match &sig.output {
            ReturnType::Type(..) => Some(&ret),
            ReturnType::Default => None,
        },
    };
    if let Some(t) = checked {
        callable &= !checks::check_type(t, Position::Return, errors).unusable;
    }
    if !callable {
        return TokenStream::new();
    }
    crate::avoid_locals(&mut params);
    Task {
        f,
        opts: &opts,
        params: &params,
        ret: &ret,
        shape: &shape,
        ok: errors.is_empty(),
    }
    .emit()
}

struct Task<'a> {
    f: &'a ItemFn,
    opts: &'a options::Options,
    params: &'a [Param],
    ret: &'a Type,
    shape: &'a Shape,
    /// No errors: emit everything. Otherwise only the caller side, with bodies that never
    /// run, so that the user's calls still type-check while the errors are reported.
    ok: bool,
}

impl Task<'_> {
    fn emit(&self) -> TokenStream {
        let f = self.f;
        let name = &f.sig.ident;
        let name_str = name.to_string().trim_start_matches("r#").to_string();
        let vis = &f.vis;
        let cfgs = passthrough_attrs(&f.attrs);
        let caller = unique_name(
            format!("{}Caller", camel(&name_str)),
            self.params.iter().map(|p| &p.ty).chain([self.ret]),
        );
        let names: Vec<&syn::Ident> = self.params.iter().map(|p| &p.name).collect();
        let types: Vec<Type> = self.params.iter().map(|p| p.ty.clone()).collect();
        let (stub_params, stub_generics) = stub_params(self.params, self.ok);
        let ret = if self.ok {
            self.ret.clone()
        } else {
            checks::static_lifetimes(self.ret)
        };
        let caller_type = self.shape.caller_type(&ret);
        let args = local("args");
        let options = local("options");

        let doc_struct = format!(
            " The ray task `{name_str}()`: `{name_str}::remote(..)` runs it in a worker process."
        );
        let doc_remote = format!(
            " Runs `{name_str}(..)` in a worker process; returns a reference to its result at once."
        );
        let doc_options = " Per-call options (`num_cpus`, `num_gpus`, `resource`, `max_retries`), then `.remote(..)`.";
        let doc_caller = format!(
            " What `{name_str}::options()` dereferences to: `remote(..)` with those options."
        );
        let default_options = self
            .opts
            .build(quote!(::ray::__private::RawTaskOptions), &options);
        let path_suffix = format!("::{name_str}");
        let caller_body = if self.ok {
            let new_args = new_args(self.params, &args);
            let pushes = push_args(self.params, &args);
            let submit = self.shape.submit_task(
                quote!(<#name as ::ray::RemoteFunction>::NAME),
                quote!(&self.0),
                &args,
            );
            quote! {
                #new_args
                #(#pushes)*
                #submit
            }
        } else {
            quote! { ::core::unreachable!() }
        };
        let unused = (!self.ok).then(|| quote!(#[allow(unused_variables)]));

        let caller_side = quote! {
            // `add.remote(..)` (Python's syntax) is an error that says to write `add::remote(..)`.
            #(#cfgs)*
            #[allow(unused_imports)]
            use ::ray::__private::python::{
                Remote0 as _, Remote1 as _, Remote2 as _, Remote3 as _, Remote4 as _,
                Remote5 as _, Remote6 as _, Remote7 as _, Remote8 as _,
            };

            #(#cfgs)*
            #[doc = #doc_struct]
            #[allow(non_camel_case_types)]
            #vis struct #name {}

            #(#cfgs)*
            #[allow(dead_code)]
            impl #name {
                #[doc = #doc_remote]
                #vis fn remote #stub_generics(#(#stub_params),*) -> #caller_type {
                    Self::options().remote(#(#names),*)
                }

                #[doc = #doc_options]
                #vis fn options() -> ::ray::TaskOptions<#name> {
                    ::ray::TaskOptions::__new()
                }
            }
        };
        let internals = quote! {
            impl ::ray::RemoteFunction for #name {
                const NAME: &'static str = ::core::concat!(::core::module_path!(), #path_suffix);
                type Caller = #caller;
                fn __default_options() -> ::ray::__private::RawTaskOptions {
                    #default_options
                }
            }

            #[doc = #doc_caller]
            pub struct #caller(::ray::__private::RawTaskOptions);

            impl #caller {
                #[doc = #doc_remote]
                #unused
                pub fn remote #stub_generics(&self, #(#stub_params),*) -> #caller_type {
                    #caller_body
                }
            }

            impl ::core::convert::From<::ray::__private::RawTaskOptions> for #caller {
                fn from(#options: ::ray::__private::RawTaskOptions) -> Self {
                    #caller(#options)
                }
            }

            impl ::core::convert::AsMut<::ray::__private::RawTaskOptions> for #caller {
                fn as_mut(&mut self) -> &mut ::ray::__private::RawTaskOptions {
                    &mut self.0
                }
            }
        };
        if !self.ok {
            return quote! {
                #caller_side
                #(#cfgs)*
                const _: () = { #internals };
            };
        }

        let decoded: Vec<syn::Ident> = self.params.iter().map(|p| p.local.clone()).collect();
        let decodes = decode_args(self.params, &args);
        let encode = self.shape.encode(quote! { #name(#(#decoded),*) }, &ret);
        let checks = checks::transferable(types.iter().chain(self.shape.transferred(&ret)));
        let signature = checks::signature(&f.sig);
        let doc_registration = format!(
            " Registers `{name_str}` by name: a worker decodes the arguments, calls it, encodes the result."
        );
        quote! {
            #caller_side

            #(#cfgs)*
            const _: () = {
                use ::ray::__private::wire::traits::*;

                #internals

                #[doc = #doc_registration]
                #[::ray::__private::linkme::distributed_slice(::ray::__private::TASKS)]
                #[linkme(crate = ::ray::__private::linkme)]
                static REGISTRATION: ::ray::__private::TaskEntry = ::ray::__private::TaskEntry {
                    name: <#name as ::ray::RemoteFunction>::NAME,
                    signature: #signature,
                    invoke: |#args| {
                        #(#decodes)*
                        #encode
                    },
                };

                /// Compile-time check that each parameter and the result implement serde's traits.
                const _: fn() = || {
                    #(#checks)*
                };
            };
        }
    }
}
