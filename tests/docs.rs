//! The API documentation as a user reads it: `cargo doc` of the `ray` facade (with the
//! re-exported runtime, the macros and the `gpu` feature's kernels) builds without a warning
//! (broken intra-doc links are warnings), and every link between its pages lands on a page
//! that exists, the ones inside re-exported items included.

use std::path::{Path, PathBuf};
use std::process::Command;

fn html_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            html_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "html") {
            out.push(path);
        }
    }
}

#[test]
fn the_rendered_docs_have_no_warnings_and_no_dead_links() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["doc", "--no-deps", "--features", "gpu"])
        .args([
            "-p",
            "ray",
            "-p",
            "ray-core",
            "-p",
            "ray-macros",
            "-p",
            "ray-gpu",
        ])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTDOCFLAGS", "-D warnings")
        .output()
        .expect("cargo doc runs");
    assert!(
        out.status.success(),
        "cargo doc failed or warned:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = target.join("doc");
    let mut pages = Vec::new();
    html_files(&doc.join("ray"), &mut pages);
    assert!(
        pages.len() > 20,
        "the facade's pages were rendered: {}",
        pages.len()
    );
    let mut dead = Vec::new();
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        for link in html
            .split("href=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
        {
            if link.contains("://") || link.starts_with('#') || link.starts_with("javascript:") {
                continue;
            }
            // Pages only: rustdoc's script templates (`${f}`) and the raw text of links that a
            // dependency's docs left unresolved (`crate::Span`, in tracing's blanket impls) are
            // not links between pages.
            let file = link.split('#').next().unwrap();
            if !file.ends_with(".html") || file.contains('$') {
                continue;
            }
            let target = page.parent().unwrap().join(file);
            if !target.exists() {
                dead.push(format!(
                    "{} -> {link}",
                    page.strip_prefix(&doc).unwrap().display()
                ));
            }
            // A user of `ray` reads `ray`'s pages: a link into `ray_core` leaves them.
            if link.contains("ray_core/") && !link.contains("/src/") {
                dead.push(format!(
                    "{} -> {link} (a page of the internal crate)",
                    page.strip_prefix(&doc).unwrap().display()
                ));
            }
        }
    }
    dead.sort();
    dead.dedup();
    assert!(
        dead.is_empty(),
        "links to pages that do not exist:\n{}",
        dead.join("\n")
    );
}
