//! `#[ray::remote]` on a function: a task.

use crate::checks;
use crate::options::{self, Kind};
use crate::Errors;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

pub(crate) fn expand(attr: TokenStream, f: &ItemFn, errors: &mut Errors) -> TokenStream {
    let opts = options::parse(attr, Kind::Task, errors);
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        errors.push(syn::Error::new(
            a.span(),
            "remote functions cannot be `async`: make it a plain `fn` (each task runs on a worker thread of \
             its own) and `.await` the ObjectRef it returns from async code instead",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new(
            sig.generics.span(),
            "remote functions cannot be generic: the worker must know the concrete types; write a \
             non-generic wrapper for each type you need",
        ));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new(u.span(), "remote functions cannot be `unsafe fn`"));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new(v.span(), "remote functions cannot be variadic"));
    }
    let mut params: Vec<(syn::Ident, Type)> = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => errors.push(syn::Error::new(
                r.span(),
                "`#[ray::remote]` on a method: put it on the `impl` block of an actor instead",
            )),
            FnArg::Typed(pt) => {
                checks::check_param(&pt.ty, errors);
                let name = match &*pt.pat {
                    Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
                    _ => format_ident!("arg{}", i),
                };
                params.push((name, (*pt.ty).clone()));
            }
        }
    }
    let ret: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, t) => {
            checks::check_return(t, errors);
            (**t).clone()
        }
    };
    if !errors.is_empty() {
        return TokenStream::new();
    }

    let name = &sig.ident;
    let name_str = name.to_string();
    let vis = &f.vis;
    let o = syn::Ident::new("o", Span::mixed_site());
    let apply = opts.apply(&o);
    let names: Vec<&syn::Ident> = params.iter().map(|(n, _)| n).collect();
    let types: Vec<&Type> = params.iter().map(|(_, t)| t).collect();
    let n_args = params.len();
    let decoded: Vec<syn::Ident> = (0..n_args).map(|i| format_ident!("a{}", i, span = Span::mixed_site())).collect();
    let builder = syn::Ident::new("args", Span::mixed_site());
    let checks: Vec<TokenStream> =
        types.iter().map(|t| checks::assert_transferable(t)).chain([checks::assert_transferable(&ret)]).collect();
    let signature = quote!(#sig).to_string();
    let doc_struct = format!(
        "The ray task [`{name_str}()`]: `{name_str}::remote(..)` runs it in a worker process and \
         returns an `ObjectRef` at once; `{name_str}::options()` sets per-call options."
    );
    let doc_remote = format!(
        "Submits `{name_str}(..)` to run in a worker process; returns at once. Arguments are values \
         or `ObjectRef`s (resolved before the task runs)."
    );
    let pushes = types.iter().zip(&names).map(|(t, n)| {
        quote_spanned! {t.span()=> #builder.push::<#t, _>(#n); }
    });
    let ret_span = ret.span();
    let call = quote_spanned! {ret_span=> ::ray::__private::encode_return::<#ret>(&#name(#(#decoded),*)) };

    quote! {
        #[doc = #doc_struct]
        #[allow(non_camel_case_types)]
        #vis struct #name {}

        impl #name {
            #[doc = #doc_remote]
            #[allow(clippy::too_many_arguments, dead_code)]
            #vis fn remote(#(#names: impl ::ray::IntoArg<#types>),*) -> ::ray::ObjectRef<#ret> {
                Self::options().remote(#(#names),*)
            }

            /// Per-call options (`num_cpus`, `num_gpus`, `resource`, `max_retries`), then `.remote(..)`.
            #[allow(dead_code)]
            #vis fn options() -> ::ray::TaskOptions<#name> {
                ::ray::TaskOptions::__new()
            }
        }

        const _: () = {
            // Worker side: decode the arguments, call the function, encode its result.
            fn invoke(args: &mut ::ray::__private::Args) -> ::ray::Result<::ray::__private::Encoded> {
                #( let #decoded: #types = args.next()?; )*
                #call
            }

            #[::ray::__private::linkme::distributed_slice(::ray::__private::TASKS)]
            #[linkme(crate = ::ray::__private::linkme)]
            static REGISTRATION: ::ray::__private::TaskEntry = ::ray::__private::TaskEntry {
                name: ::core::concat!(::core::module_path!(), "::", #name_str),
                signature: #signature,
                invoke,
            };

            // Caller side: `remote` with the options set by `options()`.
            pub struct Caller(::ray::__private::RawTaskOptions);

            impl Caller {
                #[allow(clippy::too_many_arguments)]
                pub fn remote(&self, #(#names: impl ::ray::IntoArg<#types>),*) -> ::ray::ObjectRef<#ret> {
                    let mut #builder = ::ray::__private::ArgsBuilder::with_capacity(#n_args);
                    #(#pushes)*
                    ::ray::__private::submit_task(<#name as ::ray::RemoteFunction>::NAME, &self.0, #builder)
                }
            }

            impl ::core::convert::From<::ray::__private::RawTaskOptions> for Caller {
                fn from(o: ::ray::__private::RawTaskOptions) -> Self { Caller(o) }
            }

            impl ::core::convert::AsMut<::ray::__private::RawTaskOptions> for Caller {
                fn as_mut(&mut self) -> &mut ::ray::__private::RawTaskOptions { &mut self.0 }
            }

            impl ::ray::RemoteFunction for #name {
                const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #name_str);
                type Caller = Caller;
                fn __default_options() -> ::ray::__private::RawTaskOptions {
                    #[allow(unused_mut)]
                    let mut #o = <::ray::__private::RawTaskOptions as ::core::default::Default>::default();
                    #apply
                    #o
                }
            }

            #[allow(dead_code)]
            fn check_types() {
                #(#checks)*
            }
        };
    }
}
