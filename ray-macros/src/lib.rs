//! `#[ray::remote]`: turns a function into a task and a struct with its impl block into an
//! actor. Use it through the `ray` crate (`#[ray::remote]`), which re-exports it and documents
//! it in full, with an example of what it generates.
//!
//! The macro is thin: it parses, checks, and emits code that calls the runtime through
//! `::ray::__private`. It always re-emits the user's item unchanged. All errors it finds are
//! reported together, each at the offending token; with errors it still emits the caller side
//! (`name::remote`, `Type::remote`, handle methods) with bodies that never run, so the rest of
//! the user's code type-checks and IDEs keep working.

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod actor;
mod checks;
mod options;
mod returns;
mod setup;
mod task;

#[cfg(test)]
mod snapshots;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, format_ident, quote};
use syn::spanned::Spanned;

/// The `#[ray::remote]` attribute is implemented in the `ray-macros` crate; use it through the
/// `ray` crate, which re-exports and documents it.
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into()).into()
}

/// The `#[ray::method(..)]` attribute: read by `#[ray::remote]` on an actor's impl block (which
/// removes it); anywhere else it is an error that says where it goes.
#[proc_macro_attribute]
pub fn method(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let item: TokenStream2 = item.into();
    let err = syn::Error::new(
        Span::call_site(),
        "`#[ray::method(..)]` goes on a method inside an actor's `impl` block that has \
         `#[ray::remote]` (which reads it): put `#[ray::remote]` on the impl block",
    )
    .to_compile_error();
    quote! { #item #err }.into()
}

/// The `#[ray::worker_setup]` attribute is implemented in the `ray-macros` crate; use it
/// through the `ray` crate, which re-exports and documents it.
#[proc_macro_attribute]
pub fn worker_setup(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_worker_setup(attr.into(), item.into()).into()
}

fn expand_worker_setup(attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let parsed = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(i) => i,
        Err(e) => {
            let err = e.to_compile_error();
            return quote! { #item #err };
        }
    };
    let mut errors = Errors::default();
    let generated = match &parsed {
        syn::Item::Fn(f) => setup::expand(attr, f, &mut errors),
        other => {
            let (what, span) = describe_item(other);
            errors.push(syn::Error::new(
                span,
                format!(
                    "`#[ray::worker_setup]` cannot be used on {what}: it goes on a `fn` with no \
                     parameters, which every worker process runs once before its first task"
                ),
            ));
            TokenStream2::new()
        }
    };
    let errors = errors.into_compile_error();
    quote! { #parsed #generated #errors }
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
                    "`#[ray::remote]` cannot be used on {what}: it goes on a `fn` (a task), or on a \
                     `struct` and on its `impl` block (an actor)"
                ),
            ));
            TokenStream2::new()
        }
    };
    // The user's item is always emitted, so the rest of their code still type-checks (an
    // impl block without the `#[ray::method]` attributes only this macro reads).
    let errors = errors.into_compile_error();
    let emitted = match parsed {
        syn::Item::Impl(mut i) => {
            actor::strip_method_attrs(&mut i);
            quote! { #i }
        }
        other => quote! { #other },
    };
    quote! { #emitted #generated #errors }
}

fn describe_item(item: &syn::Item) -> (&'static str, Span) {
    match item {
        syn::Item::Enum(e) => ("an enum", e.enum_token.span()),
        syn::Item::Trait(t) => ("a trait", t.trait_token.span()),
        syn::Item::TraitAlias(t) => ("a trait alias", t.trait_token.span()),
        syn::Item::Const(c) => ("a const", c.const_token.span()),
        syn::Item::Static(s) => ("a static", s.static_token.span()),
        syn::Item::Mod(m) => ("a module", m.mod_token.span()),
        syn::Item::Type(t) => ("a type alias", t.type_token.span()),
        syn::Item::Union(u) => ("a union", u.union_token.span()),
        syn::Item::Use(u) => ("a `use` declaration", u.use_token.span()),
        syn::Item::ExternCrate(e) => ("an `extern crate`", e.extern_token.span()),
        syn::Item::ForeignMod(f) => ("an `extern` block", f.abi.span()),
        syn::Item::Macro(m) => ("a macro invocation", m.mac.path.span()),
        syn::Item::Struct(s) => ("a struct", s.struct_token.span()),
        syn::Item::Impl(i) => ("an impl block", i.impl_token.span()),
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

/// One parameter of a remote function or method.
pub(crate) struct Param {
    /// The parameter's name in the generated stubs: the user's, or `argN` for a pattern.
    pub name: syn::Ident,
    /// The same name for the decoded argument in the worker, invisible to the user's code.
    pub local: syn::Ident,
    /// The type (with `Self` replaced, in an actor).
    pub ty: syn::Type,
}

impl Param {
    pub(crate) fn new(index: usize, pt: &syn::PatType, ty: syn::Type) -> Param {
        let name = match &*pt.pat {
            syn::Pat::Ident(p) if p.subpat.is_none() && p.ident != "self" => p.ident.clone(),
            _ => format_ident!("arg{}", index, span = Span::mixed_site()),
        };
        let local = format_ident!("{}", name, span = Span::mixed_site());
        Param { name, local, ty }
    }
}

/// The parameters of a generated stub, `a: impl ::ray::IntoArg<i64>`, and the generics it
/// needs. Each bound is spanned at the user's type, so an error about a wrong argument points
/// at the parameter. After errors (`ok == false`), elided lifetimes of (refused) borrowed types
/// become named lifetimes of the stub, so that it still compiles and so do calls to it.
pub(crate) fn stub_params(params: &[Param], ok: bool) -> (Vec<TokenStream2>, Option<TokenStream2>) {
    use syn::visit_mut::VisitMut;
    struct Name(Vec<syn::Lifetime>);
    impl VisitMut for Name {
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            if r.lifetime.as_ref().is_none_or(|l| l.ident == "_") {
                let lifetime =
                    syn::Lifetime::new(&format!("'arg{}", self.0.len()), Span::call_site());
                self.0.push(lifetime.clone());
                r.lifetime = Some(lifetime);
            }
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
    }
    let mut names = Name(Vec::new());
    let tokens = params
        .iter()
        .map(|p| {
            let mut ty = p.ty.clone();
            if !ok {
                names.visit_type_mut(&mut ty);
            }
            let name = &p.name;
            let bound = quote::quote_spanned! {p.ty.span()=> impl ::ray::IntoArg<#ty> };
            quote! { #name: #bound }
        })
        .collect();
    let lifetimes = &names.0;
    let generics = (!lifetimes.is_empty()).then(|| quote! { <#(#lifetimes),*> });
    (tokens, generics)
}

/// Locals of the generated code (see [`local`]).
const LOCALS: &[&str] = &["args", "this", "method"];

/// Renames decoded arguments that would shadow a local of the generated code: a parameter
/// named `args` is decoded into `args_`.
pub(crate) fn avoid_locals(params: &mut [Param]) {
    let names: Vec<String> = params.iter().map(|p| p.name.to_string()).collect();
    for p in params.iter_mut() {
        let mut name = p.local.to_string();
        if !LOCALS.contains(&name.as_str()) {
            continue;
        }
        while LOCALS.contains(&name.as_str()) || names.contains(&name) {
            name.push('_');
        }
        p.local = format_ident!("{}", name, span = Span::mixed_site());
    }
}

/// An identifier of the generated code that user code cannot see or shadow.
pub(crate) fn local(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::mixed_site())
}

/// `sum_of_squares` -> `SumOfSquares`.
pub(crate) fn camel(name: &str) -> String {
    name.split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// A name for a generated helper type, `base` unless one of the user's types is named so:
/// helpers live in the same scope as the signatures they serve, so they must not shadow a type
/// used there.
pub(crate) fn unique_name<'a>(
    base: String,
    types: impl IntoIterator<Item = &'a syn::Type>,
) -> syn::Ident {
    fn idents(tokens: TokenStream2, out: &mut Vec<String>) {
        for t in tokens {
            match t {
                proc_macro2::TokenTree::Ident(i) => out.push(i.to_string()),
                proc_macro2::TokenTree::Group(g) => idents(g.stream(), out),
                _ => {}
            }
        }
    }
    let mut used = Vec::new();
    for ty in types {
        idents(ty.to_token_stream(), &mut used);
    }
    let mut name = base;
    while used.contains(&name) {
        name.push('_');
    }
    format_ident!("{}", name)
}

/// The user's `#[cfg(..)]` attributes, repeated on everything generated for the item.
pub(crate) fn passthrough_attrs(attrs: &[syn::Attribute]) -> Vec<&syn::Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).collect()
}

/// `let mut args = ArgsBuilder::with_capacity(n);`
pub(crate) fn new_args(params: &[Param], args: &syn::Ident) -> TokenStream2 {
    let n = proc_macro2::Literal::usize_unsuffixed(params.len());
    let mutable = (!params.is_empty()).then(|| quote!(mut));
    quote! { let #mutable #args = ::ray::__private::ArgsBuilder::with_capacity(#n); }
}

/// `Wire::<T>::new().push(&mut args, name);` for each parameter, at its type.
pub(crate) fn push_args<'a>(
    params: &'a [Param],
    args: &'a syn::Ident,
) -> impl Iterator<Item = TokenStream2> + 'a {
    params.iter().map(move |p| {
        let (ty, name) = (&p.ty, &p.name);
        quote::quote_spanned! {ty.span()=> ::ray::__private::Wire::<#ty>::new().push(&mut #args, #name); }
    })
}

/// `let name = Wire::<T>::new().decode(args)?;` for each parameter, at its type.
pub(crate) fn decode_args<'a>(params: &'a [Param], args: &'a syn::Ident) -> Vec<TokenStream2> {
    params
        .iter()
        .map(|p| {
            let (ty, local) = (&p.ty, &p.local);
            quote::quote_spanned! {ty.span()=> let #local = ::ray::__private::Wire::<#ty>::new().decode(#args)?; }
        })
        .collect()
}
