//! Parsing `#[ray::remote(...)]` options, with an error per bad option.

use crate::Errors;
use proc_macro2::TokenStream;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Lit, Meta, Token, UnOp};

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Kind {
    Task,
    Actor,
}

const TASK_OPTIONS: &[&str] = &["num_cpus", "num_gpus", "resources", "max_retries"];
const ACTOR_OPTIONS: &[&str] = &["num_cpus", "num_gpus", "resources", "max_restarts", "max_concurrency"];

/// Options as parsed; unset ones keep the runtime's defaults.
#[derive(Default)]
pub(crate) struct Options {
    pub num_cpus: Option<f64>,
    pub num_gpus: Option<f64>,
    pub resources: Vec<(String, f64)>,
    pub max_retries: Option<u32>,
    pub max_restarts: Option<u32>,
    pub max_concurrency: Option<u32>,
}

fn list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn parse(attr: TokenStream, kind: Kind, errors: &mut Errors) -> Options {
    let mut out = Options::default();
    if attr.is_empty() {
        return out;
    }
    let metas = match syn::parse::Parser::parse2(Punctuated::<Meta, Token![,]>::parse_terminated, attr) {
        Ok(m) => m,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                format!(
                    "{e}; options are written `name = value`, e.g. `#[ray::remote(num_cpus = 2, num_gpus = 0.5)]`"
                ),
            ));
            return out;
        }
    };
    let valid = match kind {
        Kind::Task => TASK_OPTIONS,
        Kind::Actor => ACTOR_OPTIONS,
    };
    let mut seen: Vec<String> = Vec::new();
    for meta in metas {
        let path = meta.path();
        let name = path.get_ident().map(|i| i.to_string()).unwrap_or_else(|| quote!(#path).to_string().replace(' ', ""));
        if seen.contains(&name) {
            errors.push(syn::Error::new(path.span(), format!("duplicate option `{name}`: give each option once")));
            continue;
        }
        seen.push(name.clone());
        if !valid.contains(&name.as_str()) {
            let msg = match (kind, name.as_str()) {
                (Kind::Task, "max_restarts" | "max_concurrency") => format!(
                    "`{name}` applies to actors (put it on the actor's `struct`); a task accepts {}",
                    list(TASK_OPTIONS)
                ),
                (Kind::Actor, "max_retries") => format!(
                    "`max_retries` applies to tasks; an actor accepts {} (restarts are `max_restarts`)",
                    list(ACTOR_OPTIONS)
                ),
                _ => format!("unknown option `{name}`; expected one of {}", list(valid)),
            };
            errors.push(syn::Error::new(path.span(), msg));
            continue;
        }
        match name.as_str() {
            "resources" => parse_resources(&meta, &mut out, errors),
            "num_cpus" | "num_gpus" => {
                if let Some(v) = amount(&meta, &name, errors) {
                    if name == "num_cpus" { out.num_cpus = Some(v) } else { out.num_gpus = Some(v) }
                }
            }
            _ => {
                if let Some(v) = count(&meta, &name, errors) {
                    match name.as_str() {
                        "max_retries" => out.max_retries = Some(v),
                        "max_restarts" => out.max_restarts = Some(v),
                        _ => {
                            if v == 0 {
                                errors.push(syn::Error::new(meta.span(), "`max_concurrency` must be at least 1"));
                            }
                            out.max_concurrency = Some(v)
                        }
                    }
                }
            }
        }
    }
    out
}

fn name_value<'a>(meta: &'a Meta, name: &str, example: &str, errors: &mut Errors) -> Option<&'a Expr> {
    match meta {
        Meta::NameValue(nv) => Some(&nv.value),
        other => {
            errors.push(syn::Error::new(other.span(), format!("`{name}` takes a value: write `{name} = {example}`")));
            None
        }
    }
}

fn describe_expr(e: &Expr) -> &'static str {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(_) => "a string",
            Lit::Bool(_) => "a bool",
            Lit::Char(_) => "a char",
            _ => "a literal",
        },
        Expr::Path(_) => "a path (only number literals are accepted)",
        _ => "an expression (only number literals are accepted)",
    }
}

/// A resource amount: a non-negative integer or float literal.
fn number(value: &Expr, name: &str, errors: &mut Errors) -> Option<f64> {
    let (negative, inner) = match value {
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => (true, &*u.expr),
        other => (false, other),
    };
    let parsed = match inner {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse::<f64>().ok(),
            Lit::Float(f) => f.base10_parse::<f64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let Some(v) = parsed else {
        errors.push(syn::Error::new(
            value.span(),
            format!("`{name}` must be a number such as `1` or `0.5`, found {}", describe_expr(inner)),
        ));
        return None;
    };
    if negative && v != 0.0 {
        errors.push(syn::Error::new(value.span(), format!("`{name}` cannot be negative; use an amount >= 0 such as `1` or `0.5`")));
        return None;
    }
    if !v.is_finite() {
        errors.push(syn::Error::new(value.span(), format!("`{name}` must be a finite number")));
        return None;
    }
    Some(v)
}

fn amount(meta: &Meta, name: &str, errors: &mut Errors) -> Option<f64> {
    let value = name_value(meta, name, "1", errors)?;
    let v = number(value, name, errors)?;
    if name == "num_gpus" && v > 1.0 && v.fract() != 0.0 {
        errors.push(syn::Error::new(
            value.span(),
            format!("`num_gpus = {v}`: amounts above 1 must be whole numbers of GPUs (fractions share one GPU)"),
        ));
        return None;
    }
    Some(v)
}

fn count(meta: &Meta, name: &str, errors: &mut Errors) -> Option<u32> {
    let value = name_value(meta, name, "3", errors)?;
    let ok = match value {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse::<u32>().ok(),
            _ => None,
        },
        _ => None,
    };
    if ok.is_none() {
        errors.push(syn::Error::new(
            value.span(),
            format!("`{name}` must be a whole number >= 0 such as `3`, found {}", describe_expr(value)),
        ));
    }
    ok
}

fn parse_resources(meta: &Meta, out: &mut Options, errors: &mut Errors) {
    let Meta::List(list) = meta else {
        errors.push(syn::Error::new(meta.span(), "write custom resources as `resources(name = amount, ..)`, e.g. `resources(disk = 1)`"));
        return;
    };
    let inner = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
        Ok(i) => i,
        Err(e) => {
            errors.push(syn::Error::new(e.span(), format!("{e}; write `resources(name = amount, ..)`")));
            return;
        }
    };
    for m in inner {
        let Some(ident) = m.path().get_ident().map(|i| i.to_string()) else {
            errors.push(syn::Error::new(m.path().span(), "a resource name is a plain identifier such as `disk`"));
            continue;
        };
        if ident == "CPU" || ident == "GPU" {
            errors.push(syn::Error::new(m.path().span(), format!("`{ident}` is not a custom resource: use `num_cpus`/`num_gpus`")));
            continue;
        }
        if out.resources.iter().any(|(n, _)| *n == ident) {
            errors.push(syn::Error::new(m.path().span(), format!("resource `{ident}` is given twice")));
            continue;
        }
        if let Some(value) = name_value(&m, &ident, "1", errors) {
            if let Some(v) = number(value, &ident, errors) {
                out.resources.push((ident, v));
            }
        }
    }
}

impl Options {
    /// Statements that apply the options to a `RawTaskOptions`/`RawActorOptions` named `o`.
    pub(crate) fn apply(&self, o: &syn::Ident) -> TokenStream {
        let mut s = TokenStream::new();
        if let Some(v) = self.num_cpus {
            s.extend(quote! { #o.num_cpus(#v); });
        }
        if let Some(v) = self.num_gpus {
            s.extend(quote! { #o.num_gpus(#v); });
        }
        for (name, v) in &self.resources {
            s.extend(quote! { #o.resource(#name, #v); });
        }
        if let Some(v) = self.max_retries {
            s.extend(quote! { #o.max_retries = #v; });
        }
        if let Some(v) = self.max_restarts {
            s.extend(quote! { #o.max_restarts = #v; });
        }
        if let Some(v) = self.max_concurrency {
            s.extend(quote! { #o.max_concurrency = #v; });
        }
        s
    }
}
