//! Builds and runs `tests/downstream/`, a crate outside this workspace that depends on `ray` by
//! path exactly as a user's crate would: a library with tasks and actors in several modules, a
//! binary that uses it, and integration tests. Twice: in debug, and in release with fat LTO and
//! one codegen unit (where link-time registration is known to break). Its target directory is
//! kept under this workspace's, so later runs only rebuild what changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/downstream")
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("downstream")
}

/// Runs `cargo <args>` in the downstream crate, offline when the local cache has everything.
fn cargo(args: &[&str]) -> Output {
    let dir = crate_dir();
    let run = |offline: bool| {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(args)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", target_dir());
        if offline {
            cmd.arg("--offline");
        }
        // Nothing of this test process's own build or runtime leaks into the nested build.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("RAY_RS_")
                || key == "CARGO_BUILD_TARGET_DIR"
                || key == "RUSTC_WORKSPACE_WRAPPER"
            {
                cmd.env_remove(key);
            }
        }
        let start = Instant::now();
        let out = cmd.output().expect("cargo runs");
        eprintln!("cargo {} took {:.0?}", args.join(" "), start.elapsed());
        out
    };
    let out = run(true);
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("offline") {
        return run(false);
    }
    out
}

fn check(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The integration tests of the downstream crate ran, all four passed.
fn check_tests(out: &Output, what: &str) {
    let stdout = check(out, what);
    assert!(
        stdout.contains("test result: ok. 4 passed; 0 failed"),
        "{what}: expected the downstream crate's 4 integration tests to pass:\n{stdout}"
    );
}

fn check_binary(out: &Output, what: &str) {
    let stdout = check(out, what);
    let expected = [
        "geometry::norm 5",
        "geometry::scale (6.0, 8.0)",
        "geometry::norm(scale) 10",
        "stats::norm 6",
        "stats::nested::norm 7",
        "bare::repeat ababab",
        "bank (\"ada\", 15) own_process=true",
        "main::norm 14",
        "teller 10",
        "account (\"grace\", 10)",
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expected, "{what}: unexpected output");
}

#[test]
fn a_downstream_crate_builds_and_runs_in_debug_and_with_fat_lto() {
    // The same dependency versions as this workspace, so the build needs nothing new.
    let lock = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let target = crate_dir().join("Cargo.lock");
    if std::fs::read(&target).ok().as_ref() != Some(&lock) {
        std::fs::write(&target, &lock).unwrap();
    }

    // Debug, then release with `lto = "fat"` and `codegen-units = 1` (the crate's release
    // profile): the library, the binary and the integration tests (which also run the binary),
    // then the binary as a user would run it.
    for (profile, flags) in [("debug", &[][..]), ("release", &["--release"][..])] {
        let args: Vec<&str> = ["test"].into_iter().chain(flags.iter().copied()).collect();
        check_tests(&cargo(&args), &format!("cargo {}", args.join(" ")));
        let binary = target_dir().join(profile).join("ray-downstream");
        let out = Command::new(&binary)
            .output()
            .expect("the downstream binary runs");
        check_binary(&out, &binary.display().to_string());
    }
}
