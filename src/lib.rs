//! ray for Rust (facade).
