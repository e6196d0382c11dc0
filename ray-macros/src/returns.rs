//! How a task or method returns: one `ObjectRef`, several (`num_returns = n`, a tuple), or a
//! stream of them (`streaming`, an iterator). Decides the caller's return type, the
//! submission, and how the worker encodes the result.

use crate::Errors;
use crate::checks;
use crate::options::Options;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericArgument, PathArguments, ReturnType, Type, TypeParamBound};

pub(crate) enum Shape {
    /// `ObjectRef<R>`.
    One,
    /// `(ObjectRef<A>, ObjectRef<B>, ..)`: the tuple's element types.
    Many(Vec<Type>),
    /// `ObjectRefGenerator<T>`: the item type, and whether the return type is
    /// `impl Iterator<..>` (which the type checks must not refuse).
    Stream { item: Box<Type>, opaque: bool },
}

/// The item type of `impl Iterator<Item = T>` (or `IntoIterator`, ...), if `ty` is one.
fn impl_iterator_item(ty: &Type) -> Option<Type> {
    let Type::ImplTrait(i) = ty else { return None };
    i.bounds.iter().find_map(|b| {
        let TypeParamBound::Trait(t) = b else {
            return None;
        };
        let seg = t.path.segments.last()?;
        let iterator = matches!(
            seg.ident.to_string().as_str(),
            "Iterator" | "IntoIterator" | "DoubleEndedIterator" | "ExactSizeIterator"
        );
        let PathArguments::AngleBracketed(a) = &seg.arguments else {
            return None;
        };
        a.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(at) if iterator && at.ident == "Item" => Some(at.ty.clone()),
            _ => None,
        })
    })
}

impl Shape {
    /// The shape the options ask for, checked against the return type `output` (with `Self`
    /// replaced: `ret`). Errors are reported at the return type; the shape then falls back
    /// to `One`.
    pub(crate) fn of(
        opts: &Options,
        output: &ReturnType,
        ret: &Type,
        errors: &mut Errors,
    ) -> Shape {
        let at = |errors: &mut Errors, msg: String| {
            errors.push(match output {
                ReturnType::Type(_, t) => syn::Error::new_spanned(t, msg),
                ReturnType::Default => syn::Error::new(output.span(), msg),
            });
        };
        if let Some(span) = opts.streaming {
            if matches!(output, ReturnType::Default) {
                errors.push(syn::Error::new(
                    span,
                    "a streaming function returns an iterator of its items, e.g. \
                     `-> impl Iterator<Item = u64>` or `-> Vec<u64>`; each item reaches the caller \
                     as an `ObjectRef` as soon as it is produced",
                ));
                return Shape::One;
            }
            if let Some(item) = impl_iterator_item(ret) {
                return Shape::Stream {
                    item: Box::new(item),
                    opaque: true,
                };
            }
            if let Type::ImplTrait(_) = ret {
                at(
                    errors,
                    format!(
                        "a streaming function returns `impl Iterator<Item = T>` (with the item type \
                         written out) or a concrete iterable type, not `{}`",
                        checks::text(ret)
                    ),
                );
                return Shape::One;
            }
            let item: Type = vec_element(ret)
                .unwrap_or_else(|| syn::parse_quote!(<#ret as ::core::iter::IntoIterator>::Item));
            return Shape::Stream {
                item: Box::new(item),
                opaque: false,
            };
        }
        let Some((n, _)) = opts.num_returns.filter(|(n, _)| *n > 1) else {
            return Shape::One;
        };
        match ret {
            Type::Tuple(t) if t.elems.len() == n as usize => {
                Shape::Many(t.elems.iter().cloned().collect())
            }
            Type::Tuple(t) => {
                at(
                    errors,
                    format!(
                        "`num_returns = {n}` needs a tuple of {n} values, but this tuple has {}: \
                         return `({})` or change `num_returns`",
                        t.elems.len(),
                        vec!["_"; n as usize].join(", ")
                    ),
                );
                Shape::One
            }
            other => {
                at(
                    errors,
                    format!(
                        "`num_returns = {n}` gives one `ObjectRef` per value of a tuple: return a \
                         tuple of {n} written out, e.g. `-> ({})`, not `{}`",
                        vec!["A", "B", "C", "D"]
                            .into_iter()
                            .cycle()
                            .take(n as usize)
                            .collect::<Vec<_>>()
                            .join(", "),
                        checks::text(other)
                    ),
                );
                Shape::One
            }
        }
    }

    /// Types that must travel between processes.
    pub(crate) fn transferred<'a>(&'a self, ret: &'a Type) -> Vec<&'a Type> {
        match self {
            Shape::One => vec![ret],
            Shape::Many(types) => types.iter().collect(),
            Shape::Stream { item, .. } => vec![&**item],
        }
    }

    /// What the caller gets.
    pub(crate) fn caller_type(&self, ret: &Type) -> TokenStream {
        match self {
            Shape::One => quote! { ::ray::ObjectRef<#ret> },
            Shape::Many(types) => quote! { ( #(::ray::ObjectRef<#types>,)* ) },
            Shape::Stream { item, .. } => quote! { ::ray::ObjectRefGenerator<#item> },
        }
    }

    /// The tail of a task's caller: submits with the name, the options and `args`.
    pub(crate) fn submit_task(
        &self,
        name: TokenStream,
        opts: TokenStream,
        args: &syn::Ident,
    ) -> TokenStream {
        match self {
            Shape::One => quote! { ::ray::__private::submit_task(#name, #opts, #args) },
            Shape::Many(types) => {
                let ids = crate::local("ids");
                let elems = adopt_each(types, &ids);
                quote! {
                    let #ids = ::ray::__private::submit_task_returns(#name, #opts, #args);
                    ( #(#elems,)* )
                }
            }
            Shape::Stream { item, .. } => {
                quote! { ::ray::__private::submit_task_stream::<#item>(#name, #opts, #args) }
            }
        }
    }

    /// The tail of an actor method's stub: calls `method` on the handle `self.0`.
    pub(crate) fn call_method(&self, method: &str, args: &syn::Ident) -> TokenStream {
        match self {
            Shape::One => quote! { self.0.call(#method, #args) },
            Shape::Many(types) => {
                let ids = crate::local("ids");
                let n = types.len() as u32;
                let elems = adopt_each(types, &ids);
                quote! {
                    let #ids = self.0.call_returns(#method, #args, #n);
                    ( #(#elems,)* )
                }
            }
            Shape::Stream { item, .. } => {
                quote! { self.0.call_stream::<#item>(#method, #args) }
            }
        }
    }

    /// In the worker: encodes the result of `call` (an expression producing the return
    /// value), as a `Result<Encoded>`; `?` may be used around it.
    pub(crate) fn encode(&self, call: TokenStream, ret: &Type) -> TokenStream {
        match self {
            Shape::One => quote_spanned! {ret.span()=>
                ::ray::__private::Wire::<#ret>::new().encode(&#call)
            },
            Shape::Many(types) => {
                let names: Vec<syn::Ident> = (0..types.len())
                    .map(|i| format_ident!("r{}", i, span = proc_macro2::Span::mixed_site()))
                    .collect();
                let encodes = types.iter().zip(&names).map(|(t, n)| {
                    quote_spanned! {t.span()=> ::ray::__private::Wire::<#t>::new().encode(&#n)? }
                });
                quote! {{
                    let ( #(#names,)* ) = #call;
                    ::ray::__private::returns(::std::vec![ #(#encodes,)* ])
                }}
            }
            Shape::Stream { item, .. } => {
                let it = crate::local("item");
                quote_spanned! {item.span()=>
                    ::ray::__private::stream(#call, |#it| ::ray::__private::Wire::<#item>::new().encode(#it))
                }
            }
        }
    }
}

/// `T` of `Vec<T>` (the common concrete iterable, named plainly in signatures).
fn vec_element(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Vec" || p.qself.is_some() {
        return None;
    }
    let PathArguments::AngleBracketed(a) = &seg.arguments else {
        return None;
    };
    match a.args.first() {
        Some(GenericArgument::Type(t)) if a.args.len() == 1 => Some(t.clone()),
        _ => None,
    }
}

fn adopt_each(types: &[Type], ids: &syn::Ident) -> Vec<TokenStream> {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| quote! { ::ray::__private::adopt_ref::<#t>(#ids[#i]) })
        .collect()
}
