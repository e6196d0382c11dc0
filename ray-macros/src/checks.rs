//! Checks on parameter and return types, and rewriting `Self` in actor method signatures.

use crate::Errors;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Type, TypeReference};

fn owned_suggestion(r: &TypeReference) -> String {
    match &*r.elem {
        Type::Path(p) if p.path.is_ident("str") => "`String`".into(),
        Type::Path(p) if p.path.is_ident("Path") => "`PathBuf`".into(),
        Type::Slice(s) => format!("`Vec<{}>`", s.elem.to_token_stream().to_string().replace(' ', "")),
        Type::TraitObject(_) => "an owned, serializable type".into(),
        other => format!("`{}`", other.to_token_stream().to_string().replace(' ', "")),
    }
}

/// A parameter type must be owned and concrete to cross a process boundary.
pub(crate) fn check_param(ty: &Type, errors: &mut Errors) {
    match ty {
        Type::Reference(r) => errors.push(syn::Error::new(
            ty.span(),
            format!(
                "`{}` cannot be sent to a worker process: remote parameters are sent by value; take {} instead",
                ty.to_token_stream().to_string().replace(' ', ""),
                owned_suggestion(r)
            ),
        )),
        Type::ImplTrait(_) => errors.push(syn::Error::new(
            ty.span(),
            "`impl Trait` parameters cannot cross a process boundary: the worker must know the concrete type; \
             use a concrete type such as `Vec<f32>`",
        )),
        Type::BareFn(_) => errors.push(syn::Error::new(
            ty.span(),
            "function pointers cannot be sent to another process; pass data, or call a remote function by name",
        )),
        Type::TraitObject(_) => errors.push(syn::Error::new(
            ty.span(),
            "trait objects cannot be sent to another process; use a concrete serializable type",
        )),
        _ => {}
    }
}

pub(crate) fn check_return(ty: &Type, errors: &mut Errors) {
    match ty {
        Type::ImplTrait(_) => errors.push(syn::Error::new(
            ty.span(),
            "a remote function cannot return `impl Trait`: the caller must know the concrete type to decode it",
        )),
        Type::Reference(_) => errors.push(syn::Error::new(
            ty.span(),
            "a remote function cannot return a reference: results are sent back by value; return an owned type",
        )),
        _ => {}
    }
}

/// Replaces `Self` with the actor's type, for signatures copied out of its impl block.
pub(crate) fn replace_self(ty: &Type, with: &Type) -> Type {
    struct R<'a>(&'a Type);
    impl VisitMut for R<'_> {
        fn visit_type_mut(&mut self, t: &mut Type) {
            if let Type::Path(p) = t {
                if p.qself.is_none() && p.path.is_ident("Self") {
                    *t = self.0.clone();
                    return;
                }
            }
            syn::visit_mut::visit_type_mut(self, t);
        }
    }
    let mut out = ty.clone();
    R(with).visit_type_mut(&mut out);
    out
}

/// Compile-time checks that a type can be sent between processes, reported at the type.
pub(crate) fn assert_transferable(ty: &Type) -> proc_macro2::TokenStream {
    let span = ty.span();
    quote::quote_spanned! {span=>
        ::ray::__private::assert_transferable::<#ty>();
    }
}
