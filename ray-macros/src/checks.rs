//! Checks on parameter and return types, and rewriting `Self` in actor method signatures.
//!
//! A type crosses a process boundary by value, so borrowed, `impl Trait`, trait-object and
//! function-pointer types are refused here, each with the owned type to use instead. Whether a
//! type implements serde's traits is left to the compiler (see `ray::__private::wire`).

use crate::Errors;
use proc_macro2::Span;
use quote::{ToTokens, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{GenericArgument, PathArguments, Type, TypeParamBound};

/// A type as written, without most of the spaces `to_string` puts between tokens.
pub(crate) fn text(t: &impl ToTokens) -> String {
    let s = t.to_token_stream().to_string();
    let chars: Vec<char> = s.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '\'';
    let mut out = String::new();
    let mut last_word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c != ' ' {
            if word(c) {
                last_word.push(c);
            } else {
                last_word.clear();
            }
            out.push(c);
            continue;
        }
        let prev = out.chars().last().unwrap_or(' ');
        let next = chars.get(i + 1).copied().unwrap_or(' ');
        let after_keyword = matches!(
            last_word.as_str(),
            "mut" | "dyn" | "impl" | "const" | "unsafe"
        );
        let keep = (word(prev) && word(next))
            || (after_keyword && next != ',' && next != '>' && next != ')')
            || matches!(prev, ',' | ';' | '=' | '+')
            || matches!(next, '=' | '+')
            || (next == '-' && chars.get(i + 2) == Some(&'>'))
            || (prev == '>' && out.ends_with("->"));
        if keep {
            out.push(' ');
        }
        last_word.clear();
    }
    out
}

/// A signature as text, for the build fingerprint: `fn add(a: i64, b: i64) -> i64`.
pub(crate) fn signature(sig: &syn::Signature) -> String {
    let params: Vec<String> = sig
        .inputs
        .iter()
        .map(|a| match a {
            syn::FnArg::Receiver(r) => text(r),
            syn::FnArg::Typed(pt) => format!("{}: {}", text(&pt.pat), text(&pt.ty)),
        })
        .collect();
    let ret = match &sig.output {
        syn::ReturnType::Default => String::new(),
        syn::ReturnType::Type(_, t) => format!(" -> {}", text(t)),
    };
    format!("fn {}({}){ret}", sig.ident, params.join(", "))
}

/// What to take instead of a borrowed type.
fn owned(ty: &Type) -> Type {
    struct Owned;
    impl VisitMut for Owned {
        fn visit_type_mut(&mut self, t: &mut Type) {
            if let Type::Reference(r) = t {
                let elem = (*r.elem).clone();
                *t = match elem {
                    Type::Path(mut p) if p.qself.is_none() => {
                        // Unsized types with an owned counterpart, also as `std::path::Path`.
                        if let Some(last) = p.path.segments.last_mut() {
                            let owned = match last.ident.to_string().as_str() {
                                "str" => Some("String"),
                                "Path" => Some("PathBuf"),
                                "OsStr" => Some("OsString"),
                                "CStr" => Some("CString"),
                                _ => None,
                            };
                            if let Some(o) = owned {
                                last.ident = syn::Ident::new(o, last.ident.span());
                            }
                        }
                        Type::Path(p)
                    }
                    Type::Slice(s) => {
                        let e = &s.elem;
                        syn::parse_quote!(Vec<#e>)
                    }
                    other => other,
                };
            }
            syn::visit_mut::visit_type_mut(self, t);
        }
    }
    let mut out = ty.clone();
    Owned.visit_type_mut(&mut out);
    out
}

/// A concrete type to suggest for `impl Trait`, when the trait says which.
fn concrete_for(
    bounds: &syn::punctuated::Punctuated<TypeParamBound, syn::Token![+]>,
) -> Option<String> {
    for b in bounds {
        let TypeParamBound::Trait(t) = b else {
            continue;
        };
        let seg = t.path.segments.last()?;
        let name = seg.ident.to_string();
        let arg = match &seg.arguments {
            PathArguments::AngleBracketed(a) => a.args.first(),
            _ => None,
        };
        let suggestion = match (name.as_str(), arg) {
            ("Into", Some(GenericArgument::Type(t))) => text(t),
            ("AsRef", Some(GenericArgument::Type(Type::Path(p)))) if p.path.is_ident("str") => {
                "String".into()
            }
            ("AsRef", Some(GenericArgument::Type(Type::Slice(s)))) => {
                format!("Vec<{}>", text(&*s.elem))
            }
            ("AsRef", Some(GenericArgument::Type(t))) => text(&owned(t)),
            ("ToString" | "Display", _) => "String".into(),
            (
                "Iterator" | "IntoIterator" | "ExactSizeIterator" | "DoubleEndedIterator",
                Some(GenericArgument::AssocType(a)),
            ) => {
                format!("Vec<{}>", text(&a.ty))
            }
            _ => continue,
        };
        return Some(suggestion);
    }
    None
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Position {
    Param,
    Return,
}

/// Problems that make a type unusable even in the signatures of the generated stubs.
#[derive(Default)]
pub(crate) struct Verdict {
    /// An error was reported.
    pub error: bool,
    /// The type cannot appear in a generated signature (`impl Trait`, unsized trait object).
    pub unusable: bool,
}

/// Checks one parameter or return type; reports each problem at the offending token.
pub(crate) fn check_type(ty: &Type, pos: Position, errors: &mut Errors) -> Verdict {
    struct Finder<'a> {
        whole: &'a Type,
        pos: Position,
        errors: &'a mut Errors,
        verdict: Verdict,
        reference_reported: bool,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type(&mut self, t: &'ast Type) {
            let whole = text(self.whole);
            match t {
                Type::Reference(r) if !self.reference_reported => {
                    self.reference_reported = true;
                    let instead = text(&owned(self.whole));
                    let msg = match self.pos {
                        Position::Param if std::ptr::eq(t, self.whole) => format!(
                            "`{whole}` is a reference, which cannot be sent to a worker process: remote \
                             parameters are sent by value; take `{instead}` instead"
                        ),
                        Position::Param => format!(
                            "`{whole}` holds a reference (`{}`), which cannot be sent to a worker process: \
                             remote parameters are sent by value; take `{instead}` instead",
                            text(r)
                        ),
                        Position::Return => format!(
                            "a remote function cannot return a reference (`{}`): results are sent back by \
                             value; return `{instead}` instead",
                            text(r)
                        ),
                    };
                    self.errors.push(syn::Error::new_spanned(r, msg));
                    self.verdict.error = true;
                }
                Type::ImplTrait(i) => {
                    let suggestion = match concrete_for(&i.bounds) {
                        Some(s) => format!("take `{s}` instead"),
                        None => {
                            "use a concrete type such as `Vec<f32>` or your own serializable struct"
                                .into()
                        }
                    };
                    let msg = match self.pos {
                        Position::Param => format!(
                            "`impl Trait` parameters cannot cross a process boundary: the worker decodes the \
                             argument and must know its concrete type; {suggestion}"
                        ),
                        Position::Return => format!(
                            "a remote function cannot return `{}`: the caller decodes the result and must know \
                             its concrete type; {}",
                            text(i),
                            suggestion.replace("take", "return")
                        ),
                    };
                    self.errors.push(syn::Error::new_spanned(i, msg));
                    self.verdict = Verdict {
                        error: true,
                        unusable: true,
                    };
                    return;
                }
                Type::TraitObject(o) => {
                    self.errors.push(syn::Error::new_spanned(
                        o,
                        format!(
                            "`{}` is a trait object, which cannot be sent to another process: the receiver \
                             must know the concrete type; use a concrete serializable type (an enum for a \
                             fixed set of kinds)",
                            text(o)
                        ),
                    ));
                    self.verdict = Verdict {
                        error: true,
                        unusable: true,
                    };
                    return;
                }
                Type::BareFn(f) => {
                    self.errors.push(syn::Error::new_spanned(
                        f,
                        "function pointers cannot be sent to another process: pass data instead (an enum \
                         naming what to do), or call another remote function by name",
                    ));
                    self.verdict.error = true;
                    return;
                }
                Type::Infer(i) => {
                    self.errors.push(syn::Error::new_spanned(
                        i,
                        "remote functions need their types written out",
                    ));
                    self.verdict = Verdict {
                        error: true,
                        unusable: true,
                    };
                    return;
                }
                _ => {}
            }
            syn::visit::visit_type(self, t);
        }
    }
    let mut f = Finder {
        whole: ty,
        pos,
        errors,
        verdict: Verdict::default(),
        reference_reported: false,
    };
    f.visit_type(ty);
    f.verdict
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

/// Gives elided reference lifetimes `'static`, so that a signature with a (refused) borrowed
/// type still compiles while its error is reported.
pub(crate) fn static_lifetimes(ty: &Type) -> Type {
    struct S;
    impl VisitMut for S {
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            if r.lifetime.is_none() {
                r.lifetime = Some(syn::Lifetime::new("'static", r.and_token.span));
            }
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
    }
    let mut out = ty.clone();
    S.visit_type_mut(&mut out);
    out
}

/// Compile-time checks that each type can travel between processes, each reported at the
/// type, once per distinct type.
pub(crate) fn transferable<'a>(
    types: impl IntoIterator<Item = &'a Type>,
) -> Vec<proc_macro2::TokenStream> {
    let mut seen = Vec::new();
    transferable_unseen(types, &mut seen)
}

/// Like [`transferable`], skipping (and adding to) the types already in `seen`.
pub(crate) fn transferable_unseen<'a>(
    types: impl IntoIterator<Item = &'a Type>,
    seen: &mut Vec<String>,
) -> Vec<proc_macro2::TokenStream> {
    let mut out = Vec::new();
    for ty in types {
        let key = text(ty);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let span = ty.span().resolved_at(Span::call_site());
        out.push(quote_spanned! {span=>
            ::ray::__private::Wire::<#ty>::PROBE.check().require();
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_types_replace_references() {
        let t: Type = syn::parse_quote!(Vec<&[u8]>);
        assert_eq!(text(&owned(&t)), "Vec<Vec<u8>>");
        let t: Type = syn::parse_quote!(&'static str);
        assert_eq!(text(&owned(&t)), "String");
        let t: Type = syn::parse_quote!((&Path, &mut Vec<u8>));
        assert_eq!(text(&owned(&t)), "(PathBuf, Vec<u8>)");
        let t: Type = syn::parse_quote!(&std::path::Path);
        assert_eq!(text(&owned(&t)), "std::path::PathBuf");
    }

    #[test]
    fn text_closes_up_token_spaces() {
        let t: Type = syn::parse_quote!(std::collections::HashMap<String, Vec<(u8, i64)>>);
        assert_eq!(
            text(&t),
            "std::collections::HashMap<String, Vec<(u8, i64)>>"
        );
        let t: Type = syn::parse_quote!(&'a mut [u8]);
        assert_eq!(text(&t), "&'a mut [u8]");
        let t: Type = syn::parse_quote!(impl Iterator<Item = u8>);
        assert_eq!(text(&t), "impl Iterator<Item = u8>");
        let t: Type = syn::parse_quote!(Box<dyn Fn(u8) -> u8>);
        assert_eq!(text(&t), "Box<dyn Fn(u8) -> u8>");
    }

    #[test]
    fn signatures_read_as_written() {
        let f: syn::ItemFn = syn::parse_quote!(
            fn add(mut a: i64, (b, c): (u8, u8)) -> Vec<i64> {}
        );
        assert_eq!(
            signature(&f.sig),
            "fn add(mut a: i64, (b, c): (u8, u8)) -> Vec<i64>"
        );
        let f: syn::ImplItemFn = syn::parse_quote!(
            fn get(&mut self) {}
        );
        assert_eq!(signature(&f.sig), "fn get(&mut self)");
    }
}
