//! `#[ray::remote]`: turns a function into a task and a struct with its impl block into an
//! actor. Use it through the `ray` crate (`#[ray::remote]`), which re-exports it.
//!
//! The macro is thin: it parses, checks, and emits code that calls the runtime through
//! `::ray::__private`. It always re-emits the user's item unchanged, together with any errors,
//! so IDEs keep working; all errors found are reported together.

mod actor;
mod checks;
mod options;
mod task;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{ToTokens, quote};
use syn::spanned::Spanned;

/// Makes a function a ray task, or a struct and its `impl` block an actor.
///
/// On a `fn`: the function stays callable as usual and gains `name::remote(args..)` returning
/// an `ObjectRef`, plus `name::options()` for per-call options. Options: `num_cpus`,
/// `num_gpus`, `resources(name = amount, ..)`, `max_retries`.
///
/// On a `struct`: declares an actor class. Options: `num_cpus`, `num_gpus`,
/// `resources(..)`, `max_restarts`, `max_concurrency`.
///
/// On the struct's `impl` block (no options): `fn new(..) -> Self` becomes
/// `Type::remote(..) -> ActorHandle<Type>`, and each `&self`/`&mut self` method becomes a
/// method of the handle returning an `ObjectRef`.
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into()).into()
}

fn expand(attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let parsed = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(i) => i,
        Err(e) => {
            let err = e.to_compile_error();
            return quote! { #item #err };
        }
    };
    let mut errors = Errors::default();
    let generated = match &parsed {
        syn::Item::Fn(f) => task::expand(attr, f, &mut errors),
        syn::Item::Struct(s) => actor::expand_struct(attr, s, &mut errors),
        syn::Item::Impl(i) => actor::expand_impl(attr, i, &mut errors),
        other => {
            let (what, span) = describe_item(other);
            errors.push(syn::Error::new(
                span,
                format!(
                    "`#[ray::remote]` cannot be used on {what}; it goes on a `fn` (a task), or on a \
                     `struct` and its `impl` block (an actor)"
                ),
            ));
            TokenStream2::new()
        }
    };
    match errors.into_compile_error() {
        // The user's item is always emitted, so the rest of their code still type-checks.
        Some(err) => quote! { #parsed #err },
        None => quote! { #parsed #generated },
    }
}

fn describe_item(item: &syn::Item) -> (&'static str, proc_macro2::Span) {
    match item {
        syn::Item::Enum(e) => ("an enum", e.enum_token.span()),
        syn::Item::Trait(t) => ("a trait", t.trait_token.span()),
        syn::Item::Const(c) => ("a const", c.const_token.span()),
        syn::Item::Static(s) => ("a static", s.static_token.span()),
        syn::Item::Mod(m) => ("a module", m.mod_token.span()),
        syn::Item::Type(t) => ("a type alias", t.type_token.span()),
        syn::Item::Union(u) => ("a union", u.union_token.span()),
        syn::Item::Use(u) => ("a use declaration", u.use_token.span()),
        syn::Item::ExternCrate(e) => ("an extern crate", e.extern_token.span()),
        syn::Item::ForeignMod(f) => ("an extern block", f.abi.span()),
        syn::Item::Macro(m) => ("a macro invocation", m.mac.path.span()),
        other => ("this item", other.to_token_stream().span()),
    }
}

/// Errors collected while expanding, reported together.
#[derive(Default)]
pub(crate) struct Errors(Vec<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        self.0.push(e);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_compile_error(self) -> Option<TokenStream2> {
        let mut it = self.0.into_iter();
        let mut first = it.next()?;
        for e in it {
            first.combine(e);
        }
        Some(first.to_compile_error())
    }
}
