//! Expansion snapshots: what `#[ray::remote]` writes for the examples in `tests/expand/*.rs`,
//! pretty-printed and compared with the committed `tests/expand/*.expanded.rs`, so that a change
//! to the generated code shows in review. After an intended change, rewrite them with
//! `UPDATE_EXPAND=1 cargo test -p ray-macros`.

use std::path::Path;

/// Expands every `#[ray::remote]` and `#[ray::worker_setup]` item of `source`, as the compiler
/// would, and pretty-prints the result.
fn expand_file(source: &str) -> String {
    let file: syn::File = syn::parse_file(source).expect("example parses");
    let mut out = proc_macro2::TokenStream::new();
    for attr in &file.attrs {
        quote::ToTokens::to_tokens(attr, &mut out);
    }
    for mut item in file.items {
        let attrs = match &mut item {
            syn::Item::Fn(i) => &mut i.attrs,
            syn::Item::Struct(i) => &mut i.attrs,
            syn::Item::Impl(i) => &mut i.attrs,
            _ => {
                quote::ToTokens::to_tokens(&item, &mut out);
                continue;
            }
        };
        let position = attrs.iter().position(|a| {
            let path = a.path();
            path.segments.len() == 2
                && path.segments[0].ident == "ray"
                && (path.segments[1].ident == "remote" || path.segments[1].ident == "worker_setup")
        });
        match position {
            Some(i) => {
                let attr = attrs.remove(i);
                let setup = attr.path().segments[1].ident == "worker_setup";
                let args = match attr.meta {
                    syn::Meta::List(l) => l.tokens,
                    _ => proc_macro2::TokenStream::new(),
                };
                let item = quote::ToTokens::into_token_stream(item);
                out.extend(if setup {
                    crate::expand_worker_setup(args, item)
                } else {
                    crate::expand(args, item)
                });
            }
            None => quote::ToTokens::to_tokens(&item, &mut out),
        }
    }
    let printed = syn3::parse_file(&out.to_string()).expect("expansion parses");
    prettyplease::unparse(&printed)
}

#[test]
fn expansions_match_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
    let update = std::env::var_os("UPDATE_EXPAND").is_some();
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/expand exists")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".rs") || name.ends_with(".expanded.rs") {
            continue;
        }
        let expanded = expand_file(&std::fs::read_to_string(&path).unwrap());
        let snapshot = path.with_extension("expanded.rs");
        if update {
            std::fs::write(&snapshot, &expanded).unwrap();
        } else {
            let committed = std::fs::read_to_string(&snapshot).unwrap_or_else(|_| {
                panic!(
                    "{} is missing: run with UPDATE_EXPAND=1",
                    snapshot.display()
                )
            });
            if committed != expanded {
                let first = committed
                    .lines()
                    .zip(expanded.lines())
                    .position(|(a, b)| a != b);
                panic!(
                    "the expansion of {name} changed (first difference at line {}); if intended, rewrite \
                     the snapshot with `UPDATE_EXPAND=1 cargo test -p ray-macros`.\n\nnew expansion:\n{expanded}",
                    first.map_or(
                        committed.lines().count().min(expanded.lines().count()),
                        |l| l
                    ) + 1
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected the task and actor examples in {}",
        dir.display()
    );
}

/// The example in the `ray` crate's documentation ("What the macro writes") is this snapshot.
#[test]
fn facade_docs_show_the_current_expansion() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let facade = std::fs::read_to_string(root.join("../src/lib.rs")).unwrap();
    let docs: Vec<&str> = facade
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let docs = docs.join("\n");
    let snapshot = std::fs::read_to_string(root.join("tests/expand/task.expanded.rs")).unwrap();
    assert!(
        docs.contains(snapshot.trim_end()),
        "the \"What the macro writes\" section of src/lib.rs is not tests/expand/task.expanded.rs; copy \
         the snapshot there:\n{snapshot}"
    );
}
