//! `#[ray::worker_setup]` on a function: run it once in every worker process, before its first
//! task or actor (Ray's `worker_process_setup_hook`).

use crate::{Errors, passthrough_attrs};
use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

pub(crate) fn expand(attr: TokenStream, f: &ItemFn, errors: &mut Errors) -> TokenStream {
    if !attr.is_empty() {
        errors.push(syn::Error::new_spanned(
            &attr,
            "`#[ray::worker_setup]` takes no options: write it alone, `#[ray::worker_setup]`",
        ));
    }
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        errors.push(syn::Error::new_spanned(
            a,
            "a worker setup function cannot be `async`: make it a plain `fn` (it runs on the \
             worker's thread before its first task)",
        ));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            u,
            "a worker setup function cannot be `unsafe fn`: each worker calls it with no caller to \
             uphold its safety conditions; make it a safe `fn` with an `unsafe` block inside",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a worker setup function cannot be generic: each worker calls it as it is",
        ));
    }
    if !sig.inputs.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.inputs,
            "a worker setup function takes no parameters: each worker calls it on its own before \
             its first task, with nothing to pass; read settings from the environment or constants",
        ));
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        let unit = matches!(&**ty, syn::Type::Tuple(t) if t.elems.is_empty());
        if !unit {
            errors.push(syn::Error::new_spanned(
                ty,
                "a worker setup function returns nothing: to report a failure, panic; tasks sent \
                 to that worker then fail with `ray::Error::WorkerSetupFailed` naming this function",
            ));
        }
    }
    if !errors.is_empty() {
        return TokenStream::new();
    }
    let name = &sig.ident;
    let path_suffix = format!("::{}", name.to_string().trim_start_matches("r#"));
    let cfgs = passthrough_attrs(&f.attrs);
    let doc = format!(" Registers `{name}` to run in every worker process before its first task.");
    quote! {
        #(#cfgs)*
        const _: () = {
            #[doc = #doc]
            #[::ray::__private::linkme::distributed_slice(::ray::__private::WORKER_SETUP)]
            #[linkme(crate = ::ray::__private::linkme)]
            static REGISTRATION: ::ray::__private::WorkerSetup = ::ray::__private::WorkerSetup {
                name: ::core::concat!(::core::module_path!(), #path_suffix),
                run: #name,
            };
        };
    }
}
