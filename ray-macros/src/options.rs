//! Parsing `#[ray::remote(...)]` options, with an error per bad option at the option itself.
//!
//! Valid options are kept even when others are wrong, so the generated code (and the user's
//! code that calls it) still type-checks and only the bad option is reported.

use crate::Errors;
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Lit, Meta, Token, UnOp};

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Kind {
    Task,
    Actor,
    /// `#[ray::method(..)]` on a method of an actor's impl block.
    Method,
}

const TASK_OPTIONS: &[&str] = &[
    "num_cpus",
    "num_gpus",
    "resources",
    "max_retries",
    "retry_exceptions",
    "max_calls",
    "num_returns",
    "streaming",
];
const ACTOR_OPTIONS: &[&str] = &[
    "num_cpus",
    "num_gpus",
    "resources",
    "max_restarts",
    "max_concurrency",
    "max_task_retries",
];
const METHOD_OPTIONS: &[&str] = &["num_returns", "streaming"];

/// Options as parsed; unset ones keep the runtime's defaults.
#[derive(Default)]
pub(crate) struct Options {
    pub num_cpus: Option<f64>,
    pub num_gpus: Option<f64>,
    pub resources: Vec<(String, f64)>,
    pub max_retries: Option<u32>,
    pub max_restarts: Option<u32>,
    /// The value and where it was written (errors about threads point there).
    pub max_concurrency: Option<(u32, Span)>,
    pub retry_exceptions: Option<bool>,
    pub max_calls: Option<u32>,
    /// `num_returns = n` and where it was written (errors about the return type point there).
    pub num_returns: Option<(u32, Span)>,
    /// `streaming`, where it was written.
    pub streaming: Option<Span>,
    /// `u32::MAX` for `-1` (forever).
    pub max_task_retries: Option<u32>,
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tokens as the user wrote them, for messages.
fn text(t: &impl ToTokens) -> String {
    let s = t.to_token_stream().to_string();
    // `to_string` spaces every token; close up the common cases.
    s.replace(" :: ", "::")
        .replace("- ", "-")
        .replace(" . ", ".")
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" )", ")")
}

/// Edit distance, for "did you mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    valid
        .iter()
        .map(|v| (distance(&lower, v), *v))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

pub(crate) fn parse(attr: TokenStream, kind: Kind, errors: &mut Errors) -> Options {
    let mut out = Options::default();
    if attr.is_empty() {
        return out;
    }
    let valid = match kind {
        Kind::Task => TASK_OPTIONS,
        Kind::Actor => ACTOR_OPTIONS,
        Kind::Method => METHOD_OPTIONS,
    };
    let what = match kind {
        Kind::Task => "a task",
        Kind::Actor => "an actor",
        Kind::Method => "a method",
    };
    let metas =
        match syn::parse::Parser::parse2(Punctuated::<Meta, Token![,]>::parse_terminated, attr) {
            Ok(m) => m,
            Err(e) => {
                errors.push(syn::Error::new(
                    e.span(),
                    format!(
                        "{e}: options are written `name = value`, separated by commas, e.g. \
                     `#[ray::remote(num_cpus = 2, num_gpus = 0.5)]`; {what} accepts {}",
                        list(valid)
                    ),
                ));
                return out;
            }
        };
    let mut seen: Vec<(String, String)> = Vec::new();
    for meta in metas {
        let path = meta.path();
        let name = path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_else(|| text(path));
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            errors.push(syn::Error::new_spanned(
                path,
                format!("`{name}` is given twice (first as `{first}`): give each option once"),
            ));
            continue;
        }
        seen.push((name.clone(), text(&meta)));
        if !valid.contains(&name.as_str()) {
            let msg = match (kind, name.as_str()) {
                (Kind::Task, "max_restarts" | "max_concurrency") => format!(
                    "`{name}` is an actor option (put it on the actor's `struct`); a task accepts {}",
                    list(TASK_OPTIONS)
                ),
                (Kind::Task, "max_task_retries") => format!(
                    "`max_task_retries` is an actor option (on its `struct`: calls running when the \
                     actor restarts are run again); a task's retries are `max_retries`, and \
                     `retry_exceptions = true` retries panics too; a task accepts {}",
                    list(TASK_OPTIONS)
                ),
                (Kind::Actor, "num_returns" | "streaming") => format!(
                    "`{name}` is set per method: put `#[ray::method({name}{})]` on the method in the \
                     actor's `impl` block; the struct accepts {}",
                    if name == "streaming" { "" } else { " = 2" },
                    list(ACTOR_OPTIONS)
                ),
                (Kind::Actor, "retry_exceptions" | "max_calls") => format!(
                    "`{name}` is a task option; an actor accepts {} (calls in flight when the actor \
                     restarts are retried with `max_task_retries`)",
                    list(ACTOR_OPTIONS)
                ),
                (Kind::Actor, "name" | "namespace" | "lifetime" | "get_if_exists") => format!(
                    "`{name}` is chosen for each actor when it is created, not for its class: \
                     `Type::options().{name}(..).remote(..)`; the struct accepts {}",
                    list(ACTOR_OPTIONS)
                ),
                (Kind::Method, _) if ACTOR_OPTIONS.contains(&name.as_str()) => format!(
                    "`{name}` is an option of the whole actor: put it on the actor's `struct` \
                     (`#[ray::remote({name} = ..)]`); a method accepts {}",
                    list(METHOD_OPTIONS)
                ),
                (Kind::Actor, "max_retries") => format!(
                    "`max_retries` is a task option; an actor accepts {} (an actor's restarts are `max_restarts`)",
                    list(ACTOR_OPTIONS)
                ),
                _ => match closest(&name, valid) {
                    Some(close) => {
                        format!(
                            "unknown option `{name}`: did you mean `{close}`? {what} accepts {}",
                            list(valid)
                        )
                    }
                    None => format!("unknown option `{name}`: {what} accepts {}", list(valid)),
                },
            };
            errors.push(syn::Error::new_spanned(path, msg));
            continue;
        }
        match name.as_str() {
            "resources" => parse_resources(&meta, &mut out, errors),
            "num_cpus" => out.num_cpus = amount(&meta, &name, errors),
            "num_gpus" => out.num_gpus = amount(&meta, &name, errors),
            "max_retries" => out.max_retries = count(&meta, &name, 0, errors).map(|(v, _)| v),
            "max_restarts" => out.max_restarts = count(&meta, &name, 0, errors).map(|(v, _)| v),
            "retry_exceptions" => out.retry_exceptions = flag(&meta, &name, errors),
            "max_calls" => out.max_calls = count(&meta, &name, 0, errors).map(|(v, _)| v),
            "max_task_retries" => out.max_task_retries = retries(&meta, &name, errors),
            "num_returns" => out.num_returns = num_returns(&meta, errors),
            "streaming" => {
                if flag(&meta, &name, errors) == Some(true) {
                    out.streaming = Some(meta.span());
                }
            }
            _ => out.max_concurrency = count(&meta, &name, 1, errors),
        }
    }
    if let (Some((_, at)), Some(_)) = (out.num_returns, out.streaming) {
        errors.push(syn::Error::new(
            at,
            "a streaming call yields its items one by one, as objects of their own: it has no \
             `num_returns`; keep `streaming` or `num_returns`, not both",
        ));
        out.num_returns = None;
    }
    out
}

/// A flag: `name`, `name = true` or `name = false`.
fn flag(meta: &Meta, name: &str, errors: &mut Errors) -> Option<bool> {
    match meta {
        Meta::Path(_) => Some(true),
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(l) => match &l.lit {
                Lit::Bool(b) => Some(b.value),
                _ => {
                    errors.push(syn::Error::new_spanned(
                        &nv.value,
                        format!(
                            "`{name}` takes `true` or `false` (or write just `{name}`), found {}",
                            describe(&nv.value)
                        ),
                    ));
                    None
                }
            },
            other => {
                errors.push(syn::Error::new_spanned(
                    other,
                    format!("`{name}` takes `true` or `false` (or write just `{name}`)"),
                ));
                None
            }
        },
        Meta::List(l) => {
            errors.push(syn::Error::new_spanned(
                l,
                format!("write `{name}` or `{name} = true`"),
            ));
            None
        }
    }
}

/// `max_task_retries`: a whole number, or `-1` for forever (as in Ray).
fn retries(meta: &Meta, name: &str, errors: &mut Errors) -> Option<u32> {
    if let Meta::NameValue(nv) = meta {
        let minus_one = match &nv.value {
            Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => {
                matches!(&*u.expr, Expr::Lit(l) if matches!(&l.lit, Lit::Int(i) if i.base10_digits() == "1"))
            }
            Expr::Lit(l) => matches!(&l.lit, Lit::Int(i) if i.base10_digits() == "-1"),
            _ => false,
        };
        if minus_one {
            return Some(u32::MAX);
        }
    }
    count(meta, name, 0, errors).map(|(v, _)| v)
}

/// `num_returns = n` (n >= 1); `"streaming"` is spelled `streaming` here.
fn num_returns(meta: &Meta, errors: &mut Errors) -> Option<(u32, Span)> {
    if let Meta::NameValue(nv) = meta {
        if let Expr::Lit(l) = &nv.value {
            if let Lit::Str(s) = &l.lit {
                let msg = if s.value() == "streaming" {
                    "write `streaming` for a streaming call (Ray's `num_returns=\"streaming\"`), e.g. \
                     `#[ray::remote(streaming)] fn f() -> impl Iterator<Item = u64>`"
                        .to_string()
                } else {
                    "`num_returns` takes a whole number such as `2`, not a string; for a \
                     streaming call write `streaming`"
                        .to_string()
                };
                errors.push(syn::Error::new_spanned(&nv.value, msg));
                return None;
            }
        }
    }
    count(meta, "num_returns", 1, errors)
}

fn name_value<'a>(
    meta: &'a Meta,
    name: &str,
    example: &str,
    errors: &mut Errors,
) -> Option<&'a Expr> {
    match meta {
        Meta::NameValue(nv) => Some(&nv.value),
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                format!("`{name}` takes a value: write `{name} = {example}`"),
            ));
            None
        }
    }
}

/// What a value is, for "found ..." in messages.
fn describe(e: &Expr) -> String {
    let kind = match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(_) => "a string",
            Lit::Bool(_) => "a bool",
            Lit::Char(_) => "a char",
            Lit::Float(_) => "a fraction",
            _ => "a literal",
        },
        Expr::Path(_) => "a path",
        _ => "an expression",
    };
    format!("{kind} `{}`", text(e))
}

/// Paths such as `f64::NAN`, `f32::INFINITY`.
fn non_finite_path(e: &Expr) -> bool {
    matches!(e, Expr::Path(p) if p.path.segments.last().is_some_and(|s| {
        matches!(s.ident.to_string().as_str(), "NAN" | "INFINITY" | "NEG_INFINITY")
    }))
}

/// A resource amount: a finite, non-negative integer or float literal.
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
        let quoted = match inner {
            Expr::Lit(l) => match &l.lit {
                Lit::Str(s) => s.value().trim().parse::<f64>().ok().map(|_| s.value()),
                _ => None,
            },
            _ => None,
        };
        let msg = if non_finite_path(inner) {
            format!(
                "`{name}` must be a finite amount >= 0 such as `1` or `0.5`, not `{}`",
                text(value)
            )
        } else if let Some(q) = quoted {
            format!(
                "`{name}` takes a number, not a string: write `{name} = {}`",
                q.trim()
            )
        } else {
            format!(
                "`{name}` must be a number literal such as `1` or `0.5`, found {}",
                describe(value)
            )
        };
        errors.push(syn::Error::new_spanned(value, msg));
        return None;
    };
    // syn reads `-1` as one negative literal, or as `-` applied to `1`.
    if (negative && v != 0.0) || v < 0.0 {
        errors.push(syn::Error::new_spanned(
            value,
            format!("`{name}` cannot be negative: use an amount >= 0 such as `1` or `0.5`"),
        ));
        return None;
    }
    if !v.is_finite() {
        errors.push(syn::Error::new_spanned(
            value,
            format!(
                "`{name} = {}` is not a finite amount: use an amount >= 0 such as `1` or `0.5`",
                text(value)
            ),
        ));
        return None;
    }
    Some(v)
}

fn amount(meta: &Meta, name: &str, errors: &mut Errors) -> Option<f64> {
    let value = name_value(meta, name, "1", errors)?;
    let v = number(value, name, errors)?;
    whole_above_one(value, name, v, errors)
}

/// As in Ray, an amount above 1 must be whole: a task holds 2 CPUs, or a share of one.
fn whole_above_one(value: &Expr, name: &str, v: f64, errors: &mut Errors) -> Option<f64> {
    if v > 1.0 && v.fract() != 0.0 {
        let share = match name {
            "num_cpus" => " (a fraction below 1 shares a CPU)",
            "num_gpus" => " (a fraction below 1 shares a GPU)",
            _ => "",
        };
        errors.push(syn::Error::new_spanned(
            value,
            format!(
                "`{name} = {}`: amounts above 1 must be whole numbers, as in Ray{share}; use `{}` \
                 or `{}`, or a fraction below 1",
                text(value),
                v.floor(),
                v.ceil()
            ),
        ));
        return None;
    }
    Some(v)
}

/// A whole number >= `min`.
fn count(meta: &Meta, name: &str, min: u32, errors: &mut Errors) -> Option<(u32, Span)> {
    let example = if min == 0 { "3" } else { "4" };
    let value = name_value(meta, name, example, errors)?;
    let parsed = match value {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse::<u32>().ok(),
            _ => None,
        },
        _ => None,
    };
    let negative = match value {
        Expr::Unary(u) => matches!(u.op, UnOp::Neg(_)),
        Expr::Lit(l) => matches!(&l.lit, Lit::Int(i) if i.base10_digits().starts_with('-')),
        _ => false,
    };
    let msg = match parsed {
        Some(v) if v >= min => return Some((v, value.span())),
        Some(_) => format!("`{name}` must be at least {min}"),
        None if negative => {
            format!("`{name}` cannot be negative: use a whole number such as `{example}`")
        }
        None => format!(
            "`{name}` must be a whole number such as `{example}`, found {}",
            describe(value)
        ),
    };
    errors.push(syn::Error::new_spanned(value, msg));
    None
}

fn parse_resources(meta: &Meta, out: &mut Options, errors: &mut Errors) {
    let Meta::List(list) = meta else {
        errors.push(syn::Error::new_spanned(
            meta,
            "write custom resources as `resources(name = amount, ..)`, e.g. `resources(disk = 1)`",
        ));
        return;
    };
    let inner = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
        Ok(i) => i,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                format!("{e}: write `resources(name = amount, ..)`"),
            ));
            return;
        }
    };
    for m in inner {
        let Some(ident) = m.path().get_ident().map(|i| i.to_string()) else {
            errors.push(syn::Error::new_spanned(
                m.path(),
                "a resource name is a plain identifier such as `disk`",
            ));
            continue;
        };
        if ident == "CPU" || ident == "GPU" {
            let option = if ident == "CPU" {
                "num_cpus"
            } else {
                "num_gpus"
            };
            errors.push(syn::Error::new_spanned(
                m.path(),
                format!("`{ident}` is not a custom resource: use the `{option}` option"),
            ));
            continue;
        }
        if out.resources.iter().any(|(n, _)| *n == ident) {
            errors.push(syn::Error::new_spanned(
                m.path(),
                format!("resource `{ident}` is given twice: give each resource once"),
            ));
            continue;
        }
        if let Some(value) = name_value(&m, &ident, "1", errors) {
            if let Some(v) = number(value, &ident, errors)
                .and_then(|v| whole_above_one(value, &ident, v, errors))
            {
                out.resources.push((ident, v));
            }
        }
    }
}

impl Options {
    /// An expression building the `RawTaskOptions`/`RawActorOptions` (`ty`) these options
    /// describe, in a local named `o`.
    pub(crate) fn build(&self, ty: TokenStream, o: &syn::Ident) -> TokenStream {
        let default = quote! { <#ty as ::core::default::Default>::default() };
        let set = self.apply(o);
        if set.is_empty() {
            return default;
        }
        quote! {
            let mut #o = #default;
            #set
            #o
        }
    }

    /// Statements that apply the options to a `RawTaskOptions`/`RawActorOptions` named `o`.
    fn apply(&self, o: &syn::Ident) -> TokenStream {
        let mut s = TokenStream::new();
        let float = |v: f64| proc_macro2::Literal::f64_unsuffixed(v);
        if let Some(v) = self.num_cpus.map(float) {
            s.extend(quote! { #o.num_cpus(#v); });
        }
        if let Some(v) = self.num_gpus.map(float) {
            s.extend(quote! { #o.num_gpus(#v); });
        }
        for (name, v) in &self.resources {
            let v = float(*v);
            s.extend(quote! { #o.resource(#name, #v); });
        }
        if let Some(v) = self.max_retries {
            s.extend(quote! { #o.max_retries = #v; });
        }
        if let Some(v) = self.max_restarts {
            s.extend(quote! { #o.max_restarts = #v; });
        }
        if let Some((v, span)) = self.max_concurrency {
            s.extend(quote_spanned! {span=> #o.max_concurrency = #v; });
        }
        if let Some(v) = self.retry_exceptions {
            s.extend(quote! { #o.retry_exceptions(#v); });
        }
        if let Some(v) = self.max_calls {
            s.extend(quote! { #o.max_calls(#v); });
        }
        if let Some((v, _)) = self.num_returns.filter(|(n, _)| *n > 1) {
            s.extend(quote! { #o.num_returns(#v); });
        }
        if self.streaming.is_some() {
            s.extend(quote! { #o.streaming(); });
        }
        if let Some(v) = self.max_task_retries {
            s.extend(quote! { #o.max_task_retries(#v); });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_near_misses_only() {
        assert_eq!(closest("num_cpu", TASK_OPTIONS), Some("num_cpus"));
        assert_eq!(closest("NUM_GPUS", TASK_OPTIONS), Some("num_gpus"));
        assert_eq!(closest("max_retry", TASK_OPTIONS), Some("max_retries"));
        assert_eq!(closest("memory", TASK_OPTIONS), None);
    }
}
