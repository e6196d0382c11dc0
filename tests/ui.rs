//! Compile errors of `#[ray::remote]`: each misuse in `tests/ui/*.rs` must fail with the
//! message committed next to it in `tests/ui/*.stderr`. After an intended change to a message,
//! rewrite them with `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[test]
fn misuses_of_remote_are_clear_compile_errors() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
